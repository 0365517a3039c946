package functions

import (
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// encodeOutput writes an Output the way a module does.
func encodeOutput(msgs []*pb.Message, writes []*pb.WriteRequest, drop []uint32, errMsg string) []byte {
	var b []byte
	for _, m := range msgs {
		v, _ := proto.Marshal(m)
		b = protowire.AppendTag(b, fieldMessages, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	for _, w := range writes {
		v, _ := proto.Marshal(w)
		b = protowire.AppendTag(b, fieldWrites, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	if len(drop) > 0 {
		var packed []byte
		for _, d := range drop {
			packed = protowire.AppendVarint(packed, uint64(d))
		}
		b = protowire.AppendTag(b, fieldDrop, protowire.BytesType)
		b = protowire.AppendBytes(b, packed)
	}
	if errMsg != "" {
		b = protowire.AppendTag(b, fieldError, protowire.BytesType)
		b = protowire.AppendString(b, errMsg)
	}
	return b
}

func dbl(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: f}} }

func TestDecodeOutput(t *testing.T) {
	b := encodeOutput(
		[]*pb.Message{{Device: "d", Point: "p", Value: dbl(1.5), Unit: "°C", Labels: map[string]string{"k": "v"}, Quality: pb.Quality_QUALITY_UNCERTAIN, Priority: pb.Priority_PRIORITY_HIGH}},
		[]*pb.WriteRequest{{Device: "d", Point: "setpoint", Value: dbl(2)}},
		[]uint32{0, 2}, "")
	// An unknown field is skipped, as protobuf does; a drop as a lone varint is read too.
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, fieldDrop, protowire.VarintType)
	b = protowire.AppendVarint(b, 5)
	out, err := decodeOutput(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.messages) != 1 || len(out.writes) != 1 || len(out.drop) != 3 || out.err != "" {
		t.Fatalf("decoded %+v", out)
	}
	m := out.messages[0]
	if m.Device != "d" || m.Point != "p" || !m.Value.Equal(bridge.Double(1.5)) || m.Unit != "°C" || m.Labels["k"] != "v" ||
		m.Quality != bridge.QualityUncertain || m.Priority != bridge.PriorityHigh {
		t.Errorf("message %+v", m)
	}
	if w := out.writes[0]; w.device != "d" || w.point != "setpoint" || !w.value.Equal(bridge.Double(2)) {
		t.Errorf("write %+v", w)
	}
	if out.drop[0] != 0 || out.drop[1] != 2 || out.drop[2] != 5 {
		t.Errorf("drop %v", out.drop)
	}
}

func TestDecodeOutputRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"no device", encodeOutput([]*pb.Message{{Point: "p", Value: dbl(1)}}, nil, nil, ""), "no device"},
		{"no point", encodeOutput([]*pb.Message{{Device: "d", Value: dbl(1)}}, nil, nil, ""), "no point"},
		{"no value", encodeOutput([]*pb.Message{{Device: "d", Point: "p"}}, nil, nil, ""), "exactly one kind"},
		{"long name", encodeOutput([]*pb.Message{{Device: strings.Repeat("d", 300), Point: "p", Value: dbl(1)}}, nil, nil, ""), "longer than"},
		{"quality", encodeOutput([]*pb.Message{{Device: "d", Point: "p", Value: dbl(1), Quality: 9}}, nil, nil, ""), "unknown quality"},
		{"write without value", encodeOutput(nil, []*pb.WriteRequest{{Device: "d", Point: "p"}}, nil, ""), "writes[0]"},
		{"drop out of range", encodeOutput(nil, nil, []uint32{maxWASMMaxBatch}, ""), "out of range"},
		{"truncated", encodeOutput([]*pb.Message{{Device: "d", Point: "p", Value: dbl(1)}}, nil, nil, "")[:5], "messages"},
		{"wrong wire type", protowire.AppendVarint(protowire.AppendTag(nil, fieldMessages, protowire.VarintType), 1), "wire type"},
		{"bad tag", []byte{0x00}, "invalid output"},
		{"not UTF-8", append(protowire.AppendTag(nil, fieldMessages, protowire.BytesType), 5, 0x12, 0x03, 0xff, 0xfe, 0xfd), "messages[0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeOutput(c.b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want %q", err, c.want)
			}
		})
	}
}

// TestEncodeBatch: the direct encoder writes what protobuf writes for the same
// message.
func TestEncodeBatch(t *testing.T) {
	base := func() *bridge.Message {
		return &bridge.Message{Device: "d", Point: "p", Protocol: bridge.ProtocolCoAP, Value: bridge.Int(-3), Unit: "°C",
			Labels: map[string]string{"a": "b", "": "empty key", "c": ""}, SourceTime: time.Unix(10, 5).UTC(), Priority: bridge.PriorityLow}
	}
	var cases []*bridge.Message
	for _, v := range []bridge.Value{bridge.Double(0), bridge.Double(-1.5), bridge.Int(0), bridge.Int(-1 << 62), bridge.Uint(0), bridge.Uint(1 << 63),
		bridge.Bool(false), bridge.Bool(true), bridge.String(""), bridge.String("frying ✓"), bridge.Bytes(nil), bridge.Bytes([]byte{0, 1, 255})} {
		m := base()
		m.Value = v
		cases = append(cases, m)
	}
	bare := &bridge.Message{Device: "d", Point: "p", Value: bridge.Double(1)}
	old := base()
	old.SourceTime, old.GatewayTime, old.Sequence = time.Unix(-86400*365, 999_999_999), time.Unix(1<<40, 1), 1<<50
	old.Quality = bridge.QualityBad
	cases = append(cases, bare, old)
	b := encodeBatch(nil, cases)
	for i, m := range cases {
		num, typ, l := protowire.ConsumeTag(b)
		if num != fieldMessages || typ != protowire.BytesType {
			t.Fatalf("message %d: field %d type %d", i, num, typ)
		}
		v, l2 := protowire.ConsumeBytes(b[l:])
		if l2 < 0 {
			t.Fatalf("message %d: %v", i, protowire.ParseError(l2))
		}
		b = b[l+l2:]
		var got pb.Message
		if err := proto.Unmarshal(v, &got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := pbconv.ToProto(m); !proto.Equal(&got, want) {
			t.Errorf("message %d:\n got %v\nwant %v", i, &got, want)
		}
		if want, _ := proto.Marshal(pbconv.ToProto(m)); len(v) != len(want) {
			t.Errorf("message %d: %d bytes; protobuf writes %d", i, len(v), len(want))
		}
	}
	if len(b) > 0 {
		t.Errorf("%d bytes left", len(b))
	}
}

// FuzzDecodeOutput: whatever a module returns, decoding neither panics nor lets
// through a message the hub would refuse.
func FuzzDecodeOutput(f *testing.F) {
	f.Add(encodeOutput([]*pb.Message{{Device: "d", Point: "p", Value: dbl(1)}}, []*pb.WriteRequest{{Device: "d", Point: "s", Value: dbl(2)}}, []uint32{1, 2}, "e"))
	f.Add(encodeOutput(nil, nil, []uint32{3}, ""))
	f.Add([]byte{0x1a, 0x02, 0x01, 0x02})
	f.Add([]byte{0x22, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := decodeOutput(b)
		if err != nil {
			return
		}
		for _, m := range out.messages {
			if checkNames(m.Device, m.Point) != nil || m.Value.IsZero() || len(m.Unit) > bridge.MaxNameLen {
				t.Fatalf("decoded an invalid message %+v", m)
			}
		}
		for _, d := range out.drop {
			if d >= maxWASMMaxBatch {
				t.Fatalf("drop %d", d)
			}
		}
		if len(out.err) > 4*maxOutError {
			t.Fatalf("error of %d bytes", len(out.err))
		}
	})
}
