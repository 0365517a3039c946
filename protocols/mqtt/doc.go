// Package mqtt is the gateway's MQTT adapter: an embedded broker (mochi-mqtt v2) whose
// device topics feed the bridge in-process, through a mochi hook, with no loopback
// client.
//
// Devices publish readings on topics mapped by patterns (default
// devices/{device}/{point}, and devices/{device} for an object of several points),
// with the payload forms of package payload. The broker acknowledges a QoS 1 or 2
// publish only after the bridge accepted it. Writes from the gateway are published on
// devices/{device}/{point}/set. A will published on a device topic is the device's
// last reading. Every other topic is brokered as usual and ignored by the gateway, so
// the broker also serves as the site's ordinary MQTT broker.
//
// A payload that does not decode is counted (the device's error count and
// last_error, edgegate_mqtt_bad_payloads_total) and logged at a bounded rate. MQTT v5
// QoS 1 and 2 publishers get PUBACK or PUBREC 0x99 (payload format invalid); 3.1.1 has
// no negative acknowledgement, so there the publish is acknowledged and dropped (not
// retained, not delivered) rather than refused by closing the connection, which would
// only make the client send it again forever. When the bridge cannot take a reading
// for now (it is shutting down), nothing is acknowledged and the client is
// disconnected, so that it sends the message again.
//
// The package also owns the broker's safety: accounts with bcrypt hashes and per-user
// access lists; logins by client certificate (on a tls listener with client_ca_file,
// a CONNECT without a password logs in as the certificate's identity and may publish
// only its own devices' readings and subscribe only to their write topics; see
// certauth.go); sessions bound to the identity that created them (session.go);
// password checks throttled per source, bounded by connect_timeout and cached
// (login.go); no secret in the log (logging.go); plaintext refused off loopback (and a
// warning at start for each listener that insecure: true lets through); bounded
// connections, packets, in-flight windows and retained messages; rate-limited logs;
// and a listener of its own that contains a panic in mochi's packet decoding to the
// one connection that caused it. docs/security.md says what each refusal looks like
// to a device.
//
// It is not a general-purpose broker configuration: bridges to other brokers,
// websockets and persistent storage of sessions across restarts are not offered.
//
// Config keys (section `mqtt:`) and defaults:
//
//	listeners:               [{type: tcp, address: 127.0.0.1:1883}]
//	                         type tcp or tls (tls: {cert_file, key_file, client_ca_file, min_version});
//	                         the certificate and CA are re-read when their files change;
//	                         client_ca_file requires client certificates;
//	                         insecure: true allows plaintext off loopback
//	allow_anonymous:         false (an anonymous client may then publish and subscribe anything)
//	users:                   [] ({username, password_hash (bcrypt), publish: [filters], subscribe: [filters]};
//	                         an absent list allows nothing)
//	clients:                 [] ({identity, devices: [globs]}: the devices a certificate login
//	                         publishes for; without an entry, the device named like its
//	                         identity, a SPIFFE ID's last path segment)
//	topics:                  [{pattern: "devices/{device}/{point}"}]
//	max_connections:         10000
//	max_packet_size:         65536 bytes (also the largest payload decoded)
//	max_points_per_message:  256
//	max_inflight:            256 (QoS 1/2 messages unacknowledged per client, each way)
//	max_retained:            10000
//	connect_timeout:         10s (TLS handshake and CONNECT, the wait for a password check included)
//	session_expiry:          1h (the longest a disconnected persistent session is kept)
//	client_id:               "" (a glob binding client ids to logins, {username} standing for the
//	                         username or a certificate login's identity, e.g. "{username}-*";
//	                         empty: any id, but one whose session another identity holds is refused)
//	auth_failure_burst:      10 (failed logins per source, an IP or IPv6 /64, before it is throttled)
//	auth_failure_interval:   5s (then one more password check per interval)
//	auth_cache_ttl:          10m (a successful check is remembered this long; 0: never)
//	sparkplug:               {enabled: false, host_id: edgegate, max_metrics_per_payload: 1024,
//	                         max_aliases_per_node: 10000, max_nodes: 1000, rebirth_interval: 5s}:
//	                         Sparkplug B 3.0 edge nodes on spBv1.0/... (sparkplug.go, docs/sparkplug.md)
//
// `devices:` entries with `protocol: mqtt` give static labels, units and priorities:
//
//	{id, protocol: mqtt, labels: {k: v}, points: [{name, unit, priority: low|normal|high|critical}]}
package mqtt
