package grpcapi

import (
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestToProto checks ToProto field by field against a message built the plain way,
// for every kind of value, with and without a source time.
func TestToProto(t *testing.T) {
	gw := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	src := time.Date(1999, 12, 31, 23, 59, 59, 1, time.UTC)
	values := []bridge.Value{
		{}, bridge.Double(-1.5), bridge.Int(-7), bridge.Uint(1 << 63), bridge.Bool(true), bridge.Bool(false),
		bridge.String("°C"), bridge.String(""), bridge.Bytes([]byte{0, 1, 2}), bridge.Bytes(nil),
	}
	for _, v := range values {
		for _, st := range []time.Time{{}, src} {
			m := &bridge.Message{
				Sequence: 42, Device: "boiler-1", Point: "temp", Protocol: bridge.ProtocolMQTT, Value: v,
				Quality: bridge.QualityUncertain, SourceTime: st, GatewayTime: gw, Unit: "C",
				Labels: map[string]string{"topic": "devices/boiler-1/temp"}, Priority: bridge.PriorityHigh,
			}
			want := &pb.Message{
				Sequence: 42, Device: "boiler-1", Point: "temp", Protocol: pb.Protocol_PROTOCOL_MQTT,
				Value: ValueToProto(v), Quality: pb.Quality_QUALITY_UNCERTAIN, GatewayTime: timestamppb.New(gw),
				Unit: "C", Labels: m.Labels, Priority: pb.Priority_PRIORITY_HIGH,
			}
			if !st.IsZero() {
				want.SourceTime = timestamppb.New(st)
			}
			got := ToProto(m)
			if !proto.Equal(got, want) {
				t.Errorf("ToProto(%v, source %v) = %v, want %v", v.GoString(), st, got, want)
			}
			if (got.Value == nil) != v.IsZero() || (got.SourceTime == nil) != st.IsZero() {
				t.Errorf("ToProto(%v, source %v): value %v, source time %v", v.GoString(), st, got.Value, got.SourceTime)
			}
			b, err := proto.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			back := new(pb.Message)
			if err := proto.Unmarshal(b, back); err != nil || !proto.Equal(back, want) {
				t.Errorf("ToProto(%v) round trip: %v, %v", v.GoString(), back, err)
			}
		}
	}
}

// BenchmarkToProto is the per-message work of a Subscribe stream before gRPC frames
// it: the conversion and the encoding.
func BenchmarkToProto(b *testing.B) {
	now := time.Now()
	m := &bridge.Message{
		Sequence: 1 << 20, Device: "bench-p0", Point: "v", Protocol: bridge.ProtocolMQTT, Value: bridge.Int(123456),
		Quality: bridge.QualityGood, SourceTime: now, GatewayTime: now, Unit: "xxxxxxxxxxxxxxxxxxxx",
		Labels: map[string]string{"topic": "devices/bench-p0/v"}, Priority: bridge.PriorityNormal,
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], ToProto(m))
		if err != nil {
			b.Fatal(err)
		}
	}
}
