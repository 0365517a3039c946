// Package sparkplug speaks Eclipse Sparkplug B 3.0 on the wire: it parses Sparkplug
// topics, decodes payloads into typed metrics and encodes payloads (commands,
// births, data). It holds no state and knows nothing of brokers or sessions: the
// MQTT adapter (protocols/mqtt, docs/sparkplug.md) is the host application that
// tracks births, aliases and sequence numbers with it.
//
// The API is small on purpose:
//
//   - ParseTopic and Topic: spBv1.0/{group}/{type}/{edge_node}[/{device}];
//     StateTopic for a host application's spBv1.0/STATE/{host_id}.
//   - Decode: payload bytes into a Payload of Metrics, bounded by a metric count.
//     Metric.Decoded is the value typed by the metric's datatype; a DATA metric
//     that leaves its datatype out is typed with its BIRTH's by Metric.DecodedAs.
//   - Encode: a Payload into bytes, each metric's bridge.Value converted to its
//     Sparkplug datatype (or one inferred from the value), range-checked.
//   - RebirthRequest: the NCMD payload that asks an edge node for a new birth.
//
// Value mapping, both ways: Int8, Int16, Int32, Int64 are bridge Int; UInt8, UInt16,
// UInt32, UInt64 are Uint; Float and Double are Double; Boolean is Bool; String, Text
// and UUID are String; Bytes and File are Bytes; DateTime is Int, milliseconds since
// the Unix epoch (the Sparkplug representation). DataSet, Template, PropertySet and
// the array types have no scalar value: Decode keeps them (their names and aliases
// count) but Decoded reports ErrUnsupportedType.
//
// The generated protobuf types are in package sparkplugpb.
package sparkplug
