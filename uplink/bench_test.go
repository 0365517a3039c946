package uplink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// BenchmarkDrain forwards a backlog of b.N messages to an embedded hub
// (make bench measures against a separate nats-server).
func BenchmarkDrain(b *testing.B) {
	hub := startHub(b, b.TempDir())
	cfg := fastConfig(hub.ClientURL())
	cfg.MaxInFlight = 256
	s := newSite(b, b.TempDir(), cfg)
	batch := make([]*bridge.Message, 0, 1000)
	for i := 0; i < b.N; i++ {
		batch = append(batch, &bridge.Message{Device: "fryer-0042", Point: "oil_temp", Value: bridge.String(strings.Repeat("x", 170)), Unit: "°C"})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := s.ingest.Publish(b.Context(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	s.start()
	s.waitAcked(10 * time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
