package pbconv

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestToProto checks ToProto field by field against a message built the plain way,
// for every kind of value, with and without a source time and a gateway time.
func TestToProto(t *testing.T) {
	gw := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	src := time.Date(1999, 12, 31, 23, 59, 59, 1, time.UTC)
	values := []bridge.Value{
		{}, bridge.Double(-1.5), bridge.Int(-7), bridge.Uint(1 << 63), bridge.Bool(true), bridge.Bool(false),
		bridge.String("°C"), bridge.String(""), bridge.Bytes([]byte{0, 1, 2}), bridge.Bytes(nil),
	}
	for _, v := range values {
		for _, times := range [][2]time.Time{{{}, gw}, {src, gw}, {src, {}}, {{}, {}}} {
			st, gt := times[0], times[1]
			m := &bridge.Message{
				Sequence: 42, Device: "boiler-1", Point: "temp", Protocol: bridge.ProtocolMQTT, Value: v,
				Quality: bridge.QualityUncertain, SourceTime: st, GatewayTime: gt, Unit: "C",
				Labels: map[string]string{"topic": "devices/boiler-1/temp"}, Priority: bridge.PriorityHigh,
			}
			want := &pb.Message{
				Sequence: 42, Device: "boiler-1", Point: "temp", Protocol: pb.Protocol_PROTOCOL_MQTT,
				Value: ValueToProto(v), Quality: pb.Quality_QUALITY_UNCERTAIN,
				Unit: "C", Labels: m.Labels, Priority: pb.Priority_PRIORITY_HIGH,
			}
			if !st.IsZero() {
				want.SourceTime = timestamppb.New(st)
			}
			if !gt.IsZero() {
				want.GatewayTime = timestamppb.New(gt)
			}
			got := ToProto(m)
			if !proto.Equal(got, want) {
				t.Errorf("ToProto(%v, source %v, gateway %v) = %v, want %v", v.GoString(), st, gt, got, want)
			}
			if (got.Value == nil) != v.IsZero() || (got.SourceTime == nil) != st.IsZero() || (got.GatewayTime == nil) != gt.IsZero() {
				t.Errorf("ToProto(%v, source %v, gateway %v): value %v, source time %v, gateway time %v",
					v.GoString(), st, gt, got.Value, got.SourceTime, got.GatewayTime)
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

func TestValueRoundTrip(t *testing.T) {
	for _, v := range []bridge.Value{
		bridge.Double(-1.5), bridge.Double(0), bridge.Int(-7), bridge.Int(0), bridge.Uint(1 << 63), bridge.Bool(true),
		bridge.Bool(false), bridge.String("héllo"), bridge.String(""), bridge.Bytes([]byte{0, 1, 255}),
	} {
		back, err := ValueFromProto(ValueToProto(v))
		if err != nil || !back.Equal(v) {
			t.Errorf("%#v -> %#v, %v", v, back, err)
		}
	}
	if ValueToProto(bridge.Value{}) != nil {
		t.Error("the zero Value must be nil")
	}
	for _, in := range []*pb.Value{nil, {}} {
		if _, err := ValueFromProto(in); err == nil {
			t.Errorf("ValueFromProto(%v): a value with no kind must be refused", in)
		}
	}
}

func TestDeviceToProto(t *testing.T) {
	since := time.Date(2026, 11, 26, 8, 0, 0, 5, time.UTC)
	d := bridge.DeviceInfo{
		ID: "pump-1", Protocol: bridge.ProtocolModbus, State: bridge.StateError, LastError: "timeout",
		Messages: 10, Errors: 2, Writes: 1, Points: []string{"speed", "temp"}, StateSince: since,
	}
	want := &pb.Device{
		Id: "pump-1", Protocol: pb.Protocol_PROTOCOL_MODBUS, State: pb.DeviceState_DEVICE_STATE_ERROR, LastError: "timeout",
		Messages: 10, Errors: 2, Writes: 1, Points: []string{"speed", "temp"}, StateSince: timestamppb.New(since),
	}
	if got := DeviceToProto(d); !proto.Equal(got, want) {
		t.Errorf("DeviceToProto, never seen = %v, want %v", got, want)
	}
	d.LastSeen = since.Add(time.Second)
	want.LastSeen = timestamppb.New(d.LastSeen)
	if got := DeviceToProto(d); !proto.Equal(got, want) {
		t.Errorf("DeviceToProto = %v, want %v", got, want)
	}
}

// FuzzValueFromProto: a Value from the network (a Write RPC, an uplink command, a
// WebAssembly module's output) converts without panicking, is refused exactly when
// no kind is set, and converts back to the same wire form.
func FuzzValueFromProto(f *testing.F) {
	for _, v := range []*pb.Value{
		{}, ValueToProto(bridge.Double(math.NaN())), ValueToProto(bridge.Double(math.Copysign(0, -1))), ValueToProto(bridge.Int(math.MinInt64)),
		ValueToProto(bridge.Uint(math.MaxUint64)), ValueToProto(bridge.Bool(true)), ValueToProto(bridge.String("°C")),
		ValueToProto(bridge.Bytes(nil)), ValueToProto(bridge.Bytes([]byte{0, 255})),
	} {
		b, err := proto.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x01, 0x10, 0x02}) // two kinds: the last one wins, as protobuf says
	f.Add([]byte{0x78, 0x01})             // an unknown field alone
	det := proto.MarshalOptions{Deterministic: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := new(pb.Value)
		if err := proto.Unmarshal(b, in); err != nil {
			return
		}
		v, err := ValueFromProto(in)
		if (err != nil) != (in.GetKind() == nil) {
			t.Fatalf("ValueFromProto(%v): %v", in, err)
		}
		if err != nil {
			if !v.IsZero() {
				t.Fatalf("ValueFromProto(%v) refused, but returned %#v", in, v)
			}
			return
		}
		want, err := det.Marshal(&pb.Value{Kind: in.GetKind()})
		if err != nil {
			t.Fatal(err)
		}
		got, err := det.Marshal(ValueToProto(v))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("ValueFromProto(%v) = %#v, back as %x, want %x", in, v, got, want)
		}
	})
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
