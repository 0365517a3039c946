package northbound_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/mosquittotest"
	"github.com/edgegate/edgegate/internal/testwait"
)

// BenchmarkDrain publishes a backlog of b.N messages from the durable log to
// mosquitto, QoS 1, 256 in flight (format json).
func BenchmarkDrain(b *testing.B) {
	br := mosquittotest.Start(b)
	s := newSite(b, b.TempDir())
	batch := make([]*bridge.Message, 0, 1000)
	var last uint64
	for i := 0; i < b.N; i++ {
		batch = append(batch, &bridge.Message{Device: "fryer-0042", Point: "oil_temp", Value: bridge.String(strings.Repeat("x", 170)), Unit: "°C"})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := s.ingest.Publish(b.Context(), batch...); err != nil {
				b.Fatal(err)
			}
			last = batch[len(batch)-1].Sequence
			batch = batch[:0]
		}
	}
	cfg := testConfig(br.URL())
	cfg.MQTT.MaxInFlight = 256
	l := s.link(cfg)
	b.ResetTimer()
	run(b, l)
	testwait.For(b, 10*time.Minute, "the backlog to drain", func() bool { return l.Acked() == last })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
