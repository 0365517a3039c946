// Package client is the Go client of an edgegate gateway: one typed stream of
// device messages that survives lost connections and gateway restarts, durable
// consumers with acknowledgement, writes back to devices, reads of the latest
// values and the device list.
//
// Dial prepares a connection to host:port or unix:///path, plaintext on loopback
// and Unix sockets only unless WithInsecure, TLS (and mutual TLS) with WithTLSFiles
// or WithTLS. It does not wait for the gateway, so a workload and its sidecar may
// start in any order.
//
// A Subscription reconnects with backoff after any failure that is not a refusal
// of the request itself, and resumes after the last sequence it delivered: the
// caller sees every message once, in sequence order, as long as the gateway still
// retains what was published while the connection was down (with gateway.data_dir,
// the durable log keeps it across gateway restarts). What the gateway no longer
// retained is counted in Stats().Skipped, never silently.
//
// A durable consumer (the Consumer option; the gateway needs gateway.data_dir)
// keeps its position in the gateway: a workload that restarts continues after its
// last Ack. The gateway saves positions periodically rather than on every Ack, so a
// gateway killed outright may redeliver the last moment's messages to a new
// subscription; the same Subscription drops them, and tells the restarted gateway
// its latest acknowledgement again.
//
// Values are typed: Float64, Int64, Uint64, Bool, Text and BytesValue return the
// value and whether it has (or converts from) that kind; String formats any kind.
//
// The package wraps the generated code in proto/edgegate/v1; API returns it for
// what is not wrapped. It does not cache, batch or retry writes: whether a write
// may be repeated is the caller's to know.
package client
