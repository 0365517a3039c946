package sparkplug

import (
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// BenchmarkDecode: a DDATA of 10 metrics by alias, decoded and each value typed.
func BenchmarkDecode(b *testing.B) {
	p := &Payload{Timestamp: time.Now(), HasSeq: true, Seq: 7}
	for i := range 10 {
		p.Metrics = append(p.Metrics, Metric{Alias: uint64(i + 1), HasAlias: true, Datatype: pb.DataType_Double, Value: bridge.Double(float64(i))})
	}
	raw, err := Encode(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := Decode(raw, 0)
		if err != nil {
			b.Fatal(err)
		}
		for i := range d.Metrics {
			if _, err := d.Metrics[i].DecodedAs(pb.DataType_Double); err != nil {
				b.Fatal(err)
			}
		}
	}
}
