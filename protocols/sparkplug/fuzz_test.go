package sparkplug

import (
	"errors"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// FuzzDecode: no payload makes Decode or a metric's value panic, every error wraps
// ErrInvalidPayload (or ErrUnsupportedType for a value), and the metric bound holds.
func FuzzDecode(f *testing.F) {
	ts := time.UnixMilli(1700000000000)
	seeds := []*Payload{
		{Timestamp: ts, Seq: 0, HasSeq: true, Metrics: []Metric{
			{Name: "bdSeq", Datatype: pb.DataType_Int64, Value: bridge.Int(3)},
			{Name: "Node Control/Rebirth", Datatype: pb.DataType_Boolean, Value: bridge.Bool(false)},
			{Name: "Temp", Alias: 1, HasAlias: true, Datatype: pb.DataType_Float, Value: bridge.Double(21.5)},
			{Name: "Count", Alias: 2, HasAlias: true, Datatype: pb.DataType_Int8, Value: bridge.Int(-3)},
			{Name: "Id", Datatype: pb.DataType_UUID, Value: bridge.String("x")},
			{Name: "Blob", Datatype: pb.DataType_Bytes, Value: bridge.Bytes([]byte{1, 2})},
		}},
		{Timestamp: ts, Seq: 255, HasSeq: true, Metrics: []Metric{
			{Alias: 1, HasAlias: true, Value: bridge.Double(22)},
			{Alias: 2, HasAlias: true, Datatype: pb.DataType_Int8, IsNull: true},
		}},
	}
	for _, s := range seeds {
		b, err := Encode(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(RebirthRequest(ts))
	f.Add([]byte{})
	f.Add([]byte("not protobuf"))
	const limit = 8
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b, limit)
		if err != nil {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("error %v does not wrap ErrInvalidPayload", err)
			}
			return
		}
		if len(p.Metrics) > limit {
			t.Fatalf("%d metrics, limit %d", len(p.Metrics), limit)
		}
		for i := range p.Metrics {
			m := &p.Metrics[i]
			for _, dt := range []DataType{m.Datatype, pb.DataType_Int8, pb.DataType_UInt64, pb.DataType_String} {
				if _, err := m.DecodedAs(dt); err != nil && !errors.Is(err, ErrInvalidPayload) && !errors.Is(err, ErrUnsupportedType) {
					t.Fatalf("metric %d as %s: %v", i, dt, err)
				}
			}
		}
	})
}
