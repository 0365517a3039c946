// Package opcua is the gateway's OPC UA client adapter: one session per configured
// server, a subscription per session with a monitored item per point, data change
// notifications turned into messages, writes and on-demand reads.
//
// Notifications carry the server's source timestamp (its server timestamp when it
// gives none) and a quality from the status code's severity: Good, Uncertain, Bad.
// Every message is labelled node=<node id>; one that is not Good also gets
// status=<status name> (e.g. BadNodeIdUnknown). A Bad value without a value
// carries the point's last value, or the status name when there never was one.
//
// Values (see ToValue): Boolean is bool; SByte to Int64 are int; Byte to UInt64 and
// StatusCode are uint; Float and Double are double; String, XmlElement,
// LocalizedText (its text), QualifiedName ("ns:name"), NodeId, ExpandedNodeId and
// Guid are strings; DateTime is an RFC 3339 string (UTC, nanoseconds); ByteString
// and arrays of Byte are bytes. Any other array or matrix is a string holding a
// JSON array (nested for matrices; byte strings in base64, NaN and infinities as
// strings); a structure (ExtensionObject) is a string holding the JSON object
// {"type": "<encoding node id>", "value": {fields}}, with no value when gopcua does
// not know the type. Writes convert the other way, to the node's DataType (read once
// and cached), refusing what does not fit (out of range, a fraction for an integer);
// structures and arrays cannot be written.
//
// Recovery: every session attempt is a new client. A server restart, a dropped
// connection, a lost session or a server gone silent (no data and no keepalive for
// two keepalive periods plus the request timeout) ends the session: every point is
// published BAD (BadNotConnected) once, and the adapter connects again after a
// backoff that doubles from backoff_initial to backoff_max, with jitter. A lost
// subscription is made again on the same session (three times, then the session is
// made again). Monitored items are created in batches of the server's
// MaxMonitoredItemsPerCall (500 when it says nothing, halved while it answers
// BadTooManyOperations); an item that fails (BadNodeIdUnknown...) is published BAD,
// named in the device's last error, and created again every backoff_max while the
// others flow.
//
// Security: policy Basic256Sha256 and mode SignAndEncrypt unless the device says
// otherwise; None only when both are written out; Basic128Rsa15 and Basic256 are
// refused. For a secure policy the server's certificate (from GetEndpoints) must be
// in trusted_dir, or be signed by a CA certificate there; an untrusted one is saved
// to <data_dir>/opcua/pki/rejected (without a data dir: $TMPDIR/edgegate-opcua-rejected)
// and the error says which file to copy into trusted_dir. The trust list is read at
// every attempt, so copying the file in is enough. The client certificate is
// cert_file/key_file, or one generated for the gateway and kept in
// <data_dir>/opcua/pki/own (cert.der, key.pem): the one certificate to trust on every
// server. Without a data dir it is generated in memory at every start, so servers
// that check client certificates must trust it again after each restart; set
// data_dir or cert_file/key_file to avoid that. Without a data dir, trusted_dir is
// required. A password is only sent over a secure policy.
//
// Rotation: cert_file and key_file (each PEM or DER; the key PKCS#1 or PKCS#8) are
// read again when they change, without a restart. They are checked by stat (the
// path each symlink resolves to, device, inode, size, modification time) before
// every session attempt and every 5 seconds while the adapter runs, which sees a
// file rewritten or renamed over, and a Kubernetes Secret volume whose ..data
// symlink the kubelet swaps (cert-manager renews this way). The next session
// attempt uses the new certificate; an open session keeps the one it was made with
// (its secure channel renewals too) until it ends for another reason: a rotation
// never drops a working session. Changed files that do not load (half written, a
// key that does not match, garbage) are logged at error level once per change and
// counted, and the last good certificate stays in use. Metrics:
// edgegate_opcua_client_cert_reloads_total{device,result="ok|error"} and
// edgegate_opcua_client_cert_expiry_timestamp_seconds{device} (the certificate the
// next session shows; the generated one's too). The generated certificate does not
// rotate.
//
// Config (section `opcua:`, all optional) and defaults:
//
//	max_points_per_device:          10000 (at most 100000)
//	request_timeout:                10s
//	connect_timeout:                10s
//	backoff_initial:                500ms
//	backoff_max:                    30s (also how often failed items are retried)
//	keepalive:                      5s (the server's longest silence; < request_timeout)
//	session_timeout:                1m
//	publish_requests:               3 (kept at the server; at most 16)
//	max_notifications_per_publish:  2000
//
// For many fast items raise publish_requests so that a whole interval's
// notifications fit in the requests at the server: cmd/edgebench's OPC UA section
// (10,000 items every 100 ms) uses 10 requests of up to 1500 notifications and
// queue_size 2.
//
// `devices:` entries with `protocol: opcua`:
//
//	id, protocol: opcua
//	endpoint:             opc.tcp://host:port[/path] (required)
//	security:             {policy: Basic256Sha256, mode: SignAndEncrypt, cert_file, key_file,
//	                       trusted_dir: <data_dir>/opcua/pki/trusted}
//	username, password:   optional (only with a secure policy)
//	labels:               {k: v} on every message
//	publishing_interval:  the smallest sampling_interval of the points
//	points: [{name, node: "ns=1;s=Line1.Temperature", sampling_interval: 1s,
//	          deadband: 0 (absolute), queue_size: 1 (at most 1000), writable: false,
//	          unit, priority: low|normal|high|critical}]
//
// It does not browse, call methods, read history or subscribe to events.
package opcua
