// Package coap is the gateway's CoAP adapter (go-coap v3, pion/dtls v3), both ways:
//
//   - Devices push to the gateway: POST or PUT a reading to /devices/{device}/{point}
//     (or a configured pattern), or an object of several points to /devices/{device},
//     over UDP, TCP, DTLS (pre-shared keys and certificates) or TLS. The payload is
//     read by its Content-Format: text (a number, true/false, text, or JSON, as MQTT
//     payloads), application/json, application/cbor, application/octet-stream. The
//     answer to a confirmable request (and to every request over TCP and TLS) is 2.04
//     Changed once the reading is on disk (with gateway.data_dir; else once the bridge
//     has it), piggybacked on the acknowledgement; meanwhile the peer's other requests
//     are served. A non-confirmable reading is answered as soon as the bridge has it.
//     5.03 with a Max-Age when the durable log cannot write (the device sends again)
//     or max_pending_responses readings wait already; 4.00 for a payload that does not decode, 4.15 for a
//     format the adapter does not read, 4.13 beyond max_payload_size, 4.01 or 4.03
//     where the listener's identities may not write that device. Payloads larger than
//     a block travel block-wise (RFC 7959).
//   - GET on a point answers its latest value (text, or a reading object in JSON or
//     CBOR by Accept); on /devices/{device}, an object of its points. A GET with
//     Observe registers for the device's writes (the Write RPC), delivered as
//     notifications (RFC 7641): confirmable over UDP and DTLS, so that Write returns
//     once an observer acknowledged.
//   - Devices that serve resources (a `devices:` entry with an address coap://,
//     coaps://, coap+tcp:// or coaps+tcp://): the gateway observes each point's
//     resource (observe: true) or polls it, registers again when a notification is
//     overdue (the device restarted), reconnects with backoff, and PUTs writes.
//
// The adapter serves its sessions itself, from go-coap's connection types, rather
// than through go-coap's servers: that is where every bound below can be applied.
// A UDP socket is demultiplexed by a listener of its own (datagram.go) that bounds
// peers, queues and queued bytes, for CoAP over UDP and under pion's DTLS (whose own
// listener grows a buffer per peer without limit); each session's response cache
// for retransmissions is bounded in bytes (go-coap's keeps every response for 247 s);
// block-wise uploads are bounded in size and number; DTLS uses HelloVerify cookies
// (pion's default, which the adapter never turns off), at most an eighth of the
// session slots (at least 16) may be in handshake at once and at most
// max_handshakes_per_source from one address, and a session ends after idle_timeout
// without traffic, observations or not (an observer re-registers, RFC 7641 section
// 3.3.1). Only a device that is configured or has sent a reading may be observed
// (else 4.04). A new UDP peer beyond max_connections is answered 5.03 with Max-Age
// 10 (at most 100 such answers a second per listener). Writes to TCP and TLS peers have a
// 10 s deadline; an observer holds at most 8 unacknowledged notifications; large
// responses awaiting block-wise transfer share 4 MiB.
//
// It does not offer: CoAP over WebSockets, multicast, OSCORE, Q-Block (RFC 9177),
// SenML, resource discovery (/.well-known/core), or proxying.
//
// Config keys (section `coap:`) and defaults:
//
//	listeners:   [{type: udp, address: 127.0.0.1:5683}] when the section has no listeners key;
//	             none without a coap section (then only the devices with an address run).
//	             type udp, tcp, dtls or tls; address host:port;
//	             tls: {cert_file, key_file, client_ca_file, min_version} (dtls, tls; read again
//	             when the files change; client_ca_file: clients present certificates, and
//	             their identity is the SPIFFE URI SAN, else the first DNS SAN, else the CN);
//	             psk: [{identity, key_file, devices: [globs]}] (dtls; the key file holds the key's
//	             bytes, one trailing newline ignored);
//	             clients: [{identity, devices: [globs]}] (with client_ca_file);
//	             insecure: true allows plaintext (udp, tcp) off loopback.
//	             An identity may write (and observe) the device named like it, unless its
//	             devices list says otherwise; on a listener with psk or client_ca_file a request
//	             without an identity is 4.01, for another device 4.03.
//	resources:                        [{pattern: "/devices/{device}/{point}"}] (also /devices/{device})
//	max_connections:                  4096 sessions, adapter-wide (UDP peers, DTLS sessions,
//	                                  TCP and TLS connections, handshakes included)
//	max_message_size:                 8192 bytes (a datagram, a decrypted record, a TCP frame)
//	max_payload_size:                 16384 bytes (after block-wise reassembly)
//	max_points_per_message:           256
//	max_options:                      32 (a request with more is dropped)
//	max_observations:                 4096
//	max_observations_per_connection:  16
//	max_observations_per_peer:        1024 (one source address, all its ports; beyond: 2.05 without Observe)
//	max_handshakes_per_source:        8 DTLS handshakes in progress from one address
//	max_pending_responses:            4096 confirmable readings awaiting the durable log (beyond: 5.03)
//	max_cached_values:                65536 (the latest values GET answers from)
//	idle_timeout:                     2m (a session without traffic ends, with its observations)
//	handshake_timeout:                10s (DTLS and TLS)
//	block_timeout:                    10s (a block-wise transfer, first block to last)
//
// `devices:` entries with `protocol: coap`:
//
//	{id, protocol: coap, labels: {k: v}, points: [{name, unit, priority}]}    a device that pushes
//	{id, protocol: coap, address: coap://host:port, observe: false, poll_interval: 10s,
//	 timeout: 5s, psk: {identity, key_file}, tls: {ca_file, cert_file, key_file, server_name},
//	 points: [{name, path: /resource, unit, priority, writable: false}]}       a device that serves
//
// Messages carry the labels `path` (the request's or resource's path) and, from an
// authenticated peer, `identity`.
//
// Write PUTs to a device the gateway is the client of (writable points), or notifies
// the observers of a device that pushes (ErrNoObserver without one); Read GETs a
// point of a device the gateway is the client of.
//
// Metrics: edgegate_coap_requests_total{transport,method,code}, _bad_payloads_total,
// _sessions{transport}, _sessions_total, _sessions_refused_total{transport,reason},
// _observations, _observations_refused_total{reason}, _pending_responses,
// _readings_unacknowledged_total{reason}, _notifications_total{result}, _datagrams_dropped_total{reason},
// _client_requests_total{method,result}, _client_observations, _recovered_panics_total,
// _log_lines_suppressed_total.
package coap
