package grpcapi

import (
	"fmt"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ToProto converts a bridge message to its wire form. The labels map is shared,
// not copied: both sides treat it as read-only.
func ToProto(m *bridge.Message) *pb.Message {
	out := &pb.Message{
		Sequence:    m.Sequence,
		Device:      m.Device,
		Point:       m.Point,
		Protocol:    pb.Protocol(m.Protocol),
		Value:       ValueToProto(m.Value),
		Quality:     pb.Quality(m.Quality),
		GatewayTime: timestamppb.New(m.GatewayTime),
		Unit:        m.Unit,
		Labels:      m.Labels,
		Priority:    pb.Priority(m.Priority),
	}
	if !m.SourceTime.IsZero() {
		out.SourceTime = timestamppb.New(m.SourceTime)
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

func deviceToProto(d bridge.DeviceInfo) *pb.Device {
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
