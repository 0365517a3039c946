// Package pbconv converts between the bridge's messages and values and their
// protobuf form, edgegate.v1 in proto/edgegate/v1/gateway.proto: the one
// conversion that the gRPC service (grpcapi), edge functions (CEL's msg and the
// WebAssembly ABI) and the fleet uplink share.
//
// The numbering of Protocol, Quality, Priority and DeviceState is the proto's, so
// those convert by a cast. A zero time is an absent timestamp; a zero Value is an
// absent value. It imports the bridge and the generated code, nothing else of the
// gateway.
package pbconv

import (
	"fmt"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// JSON is the gateway's one JSON form of its gRPC messages (protojson with the
// proto's field names): `edgegate tail --json` prints a Message with it, and the
// northbound MQTT links' json format publishes one (AppendJSON).
var JSON = protojson.MarshalOptions{UseProtoNames: true}

// AppendJSON appends the JSON form of a message, as `edgegate tail --json`
// prints it, to b.
func AppendJSON(b []byte, m *bridge.Message) ([]byte, error) {
	return JSON.MarshalAppend(b, ToProto(m))
}

// ToProto converts a bridge message to its wire form. The labels map is shared,
// not copied: both sides treat it as read-only. A zero source or gateway time (a
// message before the hub, as edge functions see it) is left out.
//
// The message, its value and its timestamps are made in one allocation (a wire):
// every message the gateway streams goes through here, and they live and die
// together.
func ToProto(m *bridge.Message) *pb.Message {
	switch v := m.Value; v.Kind() {
	case bridge.KindDouble:
		w := new(wire[pb.Value_DoubleValue])
		w.kind.DoubleValue, _ = v.AsDouble()
		w.value.Kind = &w.kind
		return w.fill(m)
	case bridge.KindInt:
		w := new(wire[pb.Value_IntValue])
		w.kind.IntValue, _ = v.AsInt()
		w.value.Kind = &w.kind
		return w.fill(m)
	case bridge.KindUint:
		w := new(wire[pb.Value_UintValue])
		w.kind.UintValue, _ = v.AsUint()
		w.value.Kind = &w.kind
		return w.fill(m)
	case bridge.KindBool:
		w := new(wire[pb.Value_BoolValue])
		w.kind.BoolValue, _ = v.AsBool()
		w.value.Kind = &w.kind
		return w.fill(m)
	case bridge.KindString:
		w := new(wire[pb.Value_StringValue])
		w.kind.StringValue, _ = v.AsString()
		w.value.Kind = &w.kind
		return w.fill(m)
	case bridge.KindBytes:
		w := new(wire[pb.Value_BytesValue])
		w.kind.BytesValue, _ = v.AsBytes()
		w.value.Kind = &w.kind
		return w.fill(m)
	}
	w := new(wire[struct{}])
	out := w.fill(m)
	out.Value = nil // the zero Value
	return out
}

// wire is a message's wire form with what it points to: the value, of kind K, and
// the timestamps.
type wire[K any] struct {
	msg     pb.Message
	value   pb.Value
	gateway timestamppb.Timestamp
	source  timestamppb.Timestamp
	kind    K
}

// fill sets the message from m; w.value is its value, whose kind the caller set.
func (w *wire[K]) fill(m *bridge.Message) *pb.Message {
	out := &w.msg
	out.Sequence = m.Sequence
	out.Device = m.Device
	out.Point = m.Point
	out.Protocol = pb.Protocol(m.Protocol)
	out.Value = &w.value
	out.Quality = pb.Quality(m.Quality)
	if !m.GatewayTime.IsZero() {
		w.gateway.Seconds, w.gateway.Nanos = m.GatewayTime.Unix(), int32(m.GatewayTime.Nanosecond())
		out.GatewayTime = &w.gateway
	}
	out.Unit = m.Unit
	out.Labels = m.Labels
	out.Priority = pb.Priority(m.Priority)
	if !m.SourceTime.IsZero() {
		w.source.Seconds, w.source.Nanos = m.SourceTime.Unix(), int32(m.SourceTime.Nanosecond())
		out.SourceTime = &w.source
	}
	return out
}

// ValueToProto converts a value; the zero Value becomes nil.
func ValueToProto(v bridge.Value) *pb.Value {
	switch v.Kind() {
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: f}}
	case bridge.KindInt:
		i, _ := v.AsInt()
		return &pb.Value{Kind: &pb.Value_IntValue{IntValue: i}}
	case bridge.KindUint:
		u, _ := v.AsUint()
		return &pb.Value{Kind: &pb.Value_UintValue{UintValue: u}}
	case bridge.KindBool:
		b, _ := v.AsBool()
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: b}}
	case bridge.KindString:
		s, _ := v.AsString()
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}}
	case bridge.KindBytes:
		b, _ := v.AsBytes()
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: b}}
	}
	return nil
}

// ValueFromProto converts a wire value; a value with no kind set is an error.
func ValueFromProto(v *pb.Value) (bridge.Value, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_DoubleValue:
		return bridge.Double(k.DoubleValue), nil
	case *pb.Value_IntValue:
		return bridge.Int(k.IntValue), nil
	case *pb.Value_UintValue:
		return bridge.Uint(k.UintValue), nil
	case *pb.Value_BoolValue:
		return bridge.Bool(k.BoolValue), nil
	case *pb.Value_StringValue:
		return bridge.String(k.StringValue), nil
	case *pb.Value_BytesValue:
		return bridge.Bytes(k.BytesValue), nil
	}
	return bridge.Value{}, fmt.Errorf("value: exactly one kind must be set")
}

// DeviceToProto converts a device's entry in the registry.
func DeviceToProto(d bridge.DeviceInfo) *pb.Device {
	out := &pb.Device{
		Id:         d.ID,
		Protocol:   pb.Protocol(d.Protocol),
		State:      pb.DeviceState(d.State),
		LastError:  d.LastError,
		Messages:   d.Messages,
		Errors:     d.Errors,
		Writes:     d.Writes,
		Points:     d.Points,
		StateSince: timestamppb.New(d.StateSince),
	}
	if !d.LastSeen.IsZero() {
		out.LastSeen = timestamppb.New(d.LastSeen)
	}
	return out
}
