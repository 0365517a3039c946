// Package northbound streams the gateway's messages to external MQTT brokers
// (docs/northbound.md): each `northbound:` entry is a Link with its own match,
// broker and format: json (one message a reading on a topic template) or
// sparkplug (a Sparkplug B edge node, sparkplug.go, with protocols/sparkplug's
// encoder).
//
// A link is fed by a subscription to the hub with its match. With the durable
// log (gateway.data_dir) it is a durable consumer, northbound-<name>: what is
// published is on disk first, the position moves only over what the broker
// acknowledged (QoS 1 PUBACK), and after an outage or a restart the backlog is
// read from the log and drains in order. Without the log the link starts with
// the live stream and its position lives in memory: an outage longer than the
// hub's memory (gateway.retain), or a restart, loses messages, counted in
// edgegate_northbound_lost_total.
//
// It reuses the uplink's pieces: its Log interface, its reconnect backoff, the
// tls package's client side and plaintext rule, the hub's filters, the gRPC
// JSON form of a message (pbconv.AppendJSON) and the gateway's write path
// (grpcapi.Write) for commands.
package northbound
