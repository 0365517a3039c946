// Package uplink connects a site's gateway to its fleet's hub, a NATS JetStream
// server or cluster (docs/uplink.md: the subjects, headers, streams and config keys).
//
// Data goes up from the gateway's durable log, not from the live stream: the log
// is the store-and-forward buffer, so an outage of the hub, or of the gateway,
// costs nothing but disk. The forwarder publishes every message on
// edgegate.data.<gateway id>.<device>.<point> with Nats-Msg-Id <gateway id>:<sequence>,
// several at once, and saves how far the hub has acknowledged in the log (the
// positions named "uplink" and "uplink-priority"). After an outage the backlog's
// high and critical messages go first; all of it within the uplink's budget.
//
// Commands come down from the gateway's durable pull consumer on EDGEGATE_CMD:
// each is a WriteRequest that runs at most once through the hub's Write (the ids
// of commands started are kept in <data_dir>/uplink), is refused after its
// Edgegate-Expires, and is answered with a WriteResponse on
// edgegate.result.<gateway id>.
//
// The uplink owns its connection: it reconnects with jittered exponential
// backoff, and each connection starts again from the saved positions. It does
// not create the hub's streams unless create_streams says so, and it does not
// decide what the hub keeps.
package uplink
