package sparkplug

import (
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

func TestParseTopic(t *testing.T) {
	good := map[string]Topic{
		"spBv1.0/plant/NBIRTH/edge-1":      {Group: "plant", Type: NBIRTH, EdgeNode: "edge-1"},
		"spBv1.0/plant/NDATA/edge-1":       {Group: "plant", Type: NDATA, EdgeNode: "edge-1"},
		"spBv1.0/plant/NDEATH/edge-1":      {Group: "plant", Type: NDEATH, EdgeNode: "edge-1"},
		"spBv1.0/plant/NCMD/edge-1":        {Group: "plant", Type: NCMD, EdgeNode: "edge-1"},
		"spBv1.0/plant/DBIRTH/edge-1/pump": {Group: "plant", Type: DBIRTH, EdgeNode: "edge-1", Device: "pump"},
		"spBv1.0/plant/DDATA/edge-1/pump":  {Group: "plant", Type: DDATA, EdgeNode: "edge-1", Device: "pump"},
		"spBv1.0/plant/DDEATH/edge-1/pump": {Group: "plant", Type: DDEATH, EdgeNode: "edge-1", Device: "pump"},
		"spBv1.0/plant/DCMD/edge-1/pump":   {Group: "plant", Type: DCMD, EdgeNode: "edge-1", Device: "pump"},
	}
	for s, want := range good {
		got, err := ParseTopic(s)
		if err != nil || got != want {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), s)
		}
	}
	for _, s := range []string{"devices/a/b", "spBv1.0", "spBv1.0/STATE/host", "spAv1.0/g/NDATA/n"} {
		if _, err := ParseTopic(s); !errors.Is(err, ErrNotSparkplug) {
			t.Errorf("ParseTopic(%q) = %v, want ErrNotSparkplug", s, err)
		}
	}
	for _, s := range []string{
		"spBv1.0/g/NDATA", "spBv1.0/g/NDATA/n/d", "spBv1.0/g/DDATA/n", "spBv1.0/g/DDATA/n/d/x",
		"spBv1.0/g/XDATA/n", "spBv1.0//NDATA/n", "spBv1.0/g/NDATA/", "spBv1.0/g/DDATA/n/",
		"spBv1.0/+/NDATA/n", "spBv1.0/g/NDATA/#",
	} {
		if _, err := ParseTopic(s); err == nil || errors.Is(err, ErrNotSparkplug) {
			t.Errorf("ParseTopic(%q) = %v, want a malformed-topic error", s, err)
		}
	}
	if got := StateTopic("edgegate"); got != "spBv1.0/STATE/edgegate" {
		t.Errorf("StateTopic = %q", got)
	}
}

// Every scalar datatype survives Encode and Decode as the bridge value of the
// package comment's mapping.
func TestRoundTripScalarTypes(t *testing.T) {
	ts := time.UnixMilli(1700000000123).UTC()
	cases := []struct {
		dt   DataType
		in   bridge.Value
		want bridge.Value
	}{
		{pb.DataType_Int8, bridge.Int(-128), bridge.Int(-128)},
		{pb.DataType_Int8, bridge.Int(127), bridge.Int(127)},
		{pb.DataType_Int16, bridge.Int(-32768), bridge.Int(-32768)},
		{pb.DataType_Int32, bridge.Int(math.MinInt32), bridge.Int(math.MinInt32)},
		{pb.DataType_Int64, bridge.Int(math.MinInt64), bridge.Int(math.MinInt64)},
		{pb.DataType_UInt8, bridge.Uint(255), bridge.Uint(255)},
		{pb.DataType_UInt16, bridge.Int(65535), bridge.Uint(65535)},
		{pb.DataType_UInt32, bridge.Uint(math.MaxUint32), bridge.Uint(math.MaxUint32)},
		{pb.DataType_UInt64, bridge.Uint(math.MaxUint64), bridge.Uint(math.MaxUint64)},
		{pb.DataType_Float, bridge.Double(1.5), bridge.Double(1.5)},
		{pb.DataType_Double, bridge.Double(-2.25), bridge.Double(-2.25)},
		{pb.DataType_Double, bridge.Int(3), bridge.Double(3)},
		{pb.DataType_Boolean, bridge.Bool(true), bridge.Bool(true)},
		{pb.DataType_Boolean, bridge.Int(0), bridge.Bool(false)},
		{pb.DataType_String, bridge.String("héllo"), bridge.String("héllo")},
		{pb.DataType_Text, bridge.String("long text"), bridge.String("long text")},
		{pb.DataType_UUID, bridge.String("6f1c1b1e-6a0e-4d5e-9c1f-2b7e0f3a9d10"), bridge.String("6f1c1b1e-6a0e-4d5e-9c1f-2b7e0f3a9d10")},
		{pb.DataType_DateTime, bridge.Int(1700000000000), bridge.Int(1700000000000)},
		{pb.DataType_Bytes, bridge.Bytes([]byte{0, 1, 0xff}), bridge.Bytes([]byte{0, 1, 0xff})},
		{pb.DataType_File, bridge.Bytes([]byte("file")), bridge.Bytes([]byte("file"))},
	}
	for _, c := range cases {
		b, err := Encode(&Payload{Timestamp: ts, Seq: 7, HasSeq: true, Metrics: []Metric{{
			Name: "a/b", Alias: 3, HasAlias: true, Datatype: c.dt, Timestamp: ts, Value: c.in,
		}}})
		if err != nil {
			t.Fatalf("%s %#v: Encode: %v", c.dt, c.in, err)
		}
		p, err := Decode(b, 0)
		if err != nil {
			t.Fatalf("%s: Decode: %v", c.dt, err)
		}
		if !p.Timestamp.Equal(ts) || !p.HasSeq || p.Seq != 7 || len(p.Metrics) != 1 {
			t.Fatalf("%s: payload %+v", c.dt, p)
		}
		m := p.Metrics[0]
		if m.Name != "a/b" || !m.HasAlias || m.Alias != 3 || m.Datatype != c.dt || !m.Timestamp.Equal(ts) {
			t.Fatalf("%s: metric %+v", c.dt, m)
		}
		got, err := m.Decoded()
		if err != nil || !got.Equal(c.want) {
			t.Errorf("%s: Decoded = %#v, %v; want %#v", c.dt, got, err, c.want)
		}
	}
}

func TestEncodeRefusesWhatDoesNotFit(t *testing.T) {
	cases := []struct {
		dt DataType
		v  bridge.Value
	}{
		{pb.DataType_Int8, bridge.Int(128)},
		{pb.DataType_Int16, bridge.Int(-32769)},
		{pb.DataType_UInt8, bridge.Int(-1)},
		{pb.DataType_UInt32, bridge.Uint(1 << 32)},
		{pb.DataType_Int64, bridge.Uint(math.MaxUint64)},
		{pb.DataType_Int32, bridge.Double(1.5)},
		{pb.DataType_Boolean, bridge.Int(2)},
		{pb.DataType_String, bridge.Int(1)},
		{pb.DataType_Double, bridge.String("1")},
		{pb.DataType_Bytes, bridge.String("x")},
		{pb.DataType_DataSet, bridge.Int(1)},
		{pb.DataType_Int32, bridge.Value{}},
	}
	for _, c := range cases {
		if _, err := Encode(&Payload{Metrics: []Metric{{Name: "m", Datatype: c.dt, Value: c.v}}}); err == nil {
			t.Errorf("Encode(%s, %#v) succeeded", c.dt, c.v)
		}
	}
}

// Signed integers in int_value: edge nodes send a negative Int8 as the low byte or
// sign-extended to 32 bits; anything else outside the range is refused.
func TestDecodeSignedInts(t *testing.T) {
	cases := []struct {
		dt   DataType
		raw  uint32
		want int64
		ok   bool
	}{
		{pb.DataType_Int8, 0xFF, -1, true},
		{pb.DataType_Int8, 0xFFFFFFFF, -1, true},
		{pb.DataType_Int8, 0x80, -128, true},
		{pb.DataType_Int8, 0xFFFFFF80, -128, true},
		{pb.DataType_Int8, 0x7F, 127, true},
		{pb.DataType_Int8, 0x100, 0, false},
		{pb.DataType_Int8, 0xFFFFFF7F, 0, false},
		{pb.DataType_Int16, 0xFFFF, -1, true},
		{pb.DataType_Int16, 0xFFFF8000, -32768, true},
		{pb.DataType_Int16, 0x10000, 0, false},
		{pb.DataType_Int32, 0x80000000, math.MinInt32, true},
	}
	for _, c := range cases {
		b, _ := proto.Marshal(&pb.Payload{Metrics: []*pb.Payload_Metric{{
			Name: proto.String("m"), Datatype: proto.Uint32(uint32(c.dt)), Value: &pb.Payload_Metric_IntValue{IntValue: c.raw},
		}}})
		p, err := Decode(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		v, err := p.Metrics[0].Decoded()
		if !c.ok {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("%s %#x: %#v, %v; want ErrInvalidPayload", c.dt, c.raw, v, err)
			}
			continue
		}
		if i, isInt := v.AsInt(); err != nil || !isInt || i != c.want {
			t.Errorf("%s %#x: %#v, %v; want %d", c.dt, c.raw, v, err, c.want)
		}
	}
}

func TestDecodeRefusals(t *testing.T) {
	metric := func(dt DataType, v any) *pb.Payload_Metric {
		m := &pb.Payload_Metric{Name: proto.String("m"), Datatype: proto.Uint32(uint32(dt))}
		switch v := v.(type) {
		case uint32:
			m.Value = &pb.Payload_Metric_IntValue{IntValue: v}
		case string:
			m.Value = &pb.Payload_Metric_StringValue{StringValue: v}
		case float64:
			m.Value = &pb.Payload_Metric_DoubleValue{DoubleValue: v}
		}
		return m
	}
	// A value field that does not fit the datatype.
	for _, m := range []*pb.Payload_Metric{
		metric(pb.DataType_Int32, "1"),
		metric(pb.DataType_Double, uint32(1)),
		metric(pb.DataType_UInt8, uint32(256)),
		metric(pb.DataType_String, "\xff"),
		metric(pb.DataType_Unknown, uint32(1)),
		metric(pb.DataType_Boolean, nil),
	} {
		b, _ := proto.Marshal(&pb.Payload{Metrics: []*pb.Payload_Metric{m}})
		p, err := Decode(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := p.Metrics[0].Decoded(); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("%v: %#v, %v; want ErrInvalidPayload", m, v, err)
		}
	}
	// A type without a scalar value.
	b, _ := proto.Marshal(&pb.Payload{Metrics: []*pb.Payload_Metric{{
		Name: proto.String("ds"), Datatype: proto.Uint32(uint32(pb.DataType_DataSet)),
		Value: &pb.Payload_Metric_DatasetValue{DatasetValue: &pb.Payload_DataSet{NumOfColumns: proto.Uint64(0)}},
	}}})
	p, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Metrics[0].Decoded(); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("DataSet: %v, want ErrUnsupportedType", err)
	}
	// A null metric has no value and no error.
	b, _ = proto.Marshal(&pb.Payload{Metrics: []*pb.Payload_Metric{{
		Name: proto.String("n"), Datatype: proto.Uint32(uint32(pb.DataType_Int32)), IsNull: proto.Bool(true),
	}}})
	if p, err = Decode(b, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := p.Metrics[0].Decoded(); err != nil || !v.IsZero() || !p.Metrics[0].IsNull {
		t.Errorf("null: %#v, %v", v, err)
	}
	// Too many metrics, refused before they are decoded.
	many := &pb.Payload{}
	for range 11 {
		many.Metrics = append(many.Metrics, metric(pb.DataType_Int32, uint32(1)))
	}
	b, _ = proto.Marshal(many)
	if _, err := Decode(b, 10); !errors.Is(err, ErrTooManyMetrics) || !errors.Is(err, ErrInvalidPayload) {
		t.Errorf("11 metrics, limit 10: %v", err)
	}
	if _, err := Decode(b, 11); err != nil {
		t.Errorf("11 metrics, limit 11: %v", err)
	}
	// Not protobuf.
	for _, raw := range [][]byte{[]byte("{\"a\":1}"), {0x12, 0x05, 0x0a}, {0xff, 0xff, 0xff}} {
		if _, err := Decode(raw, 0); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("Decode(%q) = %v, want ErrInvalidPayload", raw, err)
		}
	}
}

func TestRebirthRequest(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	p, err := Decode(RebirthRequest(now), 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasSeq || !p.Timestamp.Equal(now) || len(p.Metrics) != 1 {
		t.Fatalf("%+v", p)
	}
	m := p.Metrics[0]
	v, err := m.Decoded()
	if m.Name != "Node Control/Rebirth" || m.Datatype != pb.DataType_Boolean || err != nil || !v.Equal(bridge.Bool(true)) {
		t.Fatalf("%+v %#v %v", m, v, err)
	}
}

// Integers of 32 bits and fewer are also read from long_value, where some edge nodes
// (Eclipse Tahu's JavaScript library, for UInt32) put them.
func TestDecodeSmallIntsInLongValue(t *testing.T) {
	minus5 := int64(-5)
	cases := []struct {
		dt   DataType
		raw  uint64
		want bridge.Value
	}{
		{pb.DataType_UInt32, math.MaxUint32, bridge.Uint(math.MaxUint32)},
		{pb.DataType_UInt8, 7, bridge.Uint(7)},
		{pb.DataType_Int16, uint64(minus5), bridge.Int(-5)},
		{pb.DataType_Int32, math.MaxInt32, bridge.Int(math.MaxInt32)},
		{pb.DataType_UInt32, math.MaxUint32 + 1, bridge.Value{}},
		{pb.DataType_Int8, 128, bridge.Value{}},
	}
	for _, c := range cases {
		b, _ := proto.Marshal(&pb.Payload{Metrics: []*pb.Payload_Metric{{
			Name: proto.String("m"), Datatype: proto.Uint32(uint32(c.dt)), Value: &pb.Payload_Metric_LongValue{LongValue: c.raw},
		}}})
		p, err := Decode(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		v, err := p.Metrics[0].Decoded()
		if c.want.IsZero() {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("%s long_value %d: %#v, %v; want ErrInvalidPayload", c.dt, c.raw, v, err)
			}
		} else if err != nil || !v.Equal(c.want) {
			t.Errorf("%s long_value %d: %#v, %v; want %#v", c.dt, c.raw, v, err, c.want)
		}
	}
}
