package functions

import (
	"context"
	"fmt"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// Benchmarks of one batch through a function into a real hub; make bench
// (cmd/edgebench, section functions) reports the same per core.
func benchmarkPipeline(b *testing.B, list string, batch int) {
	var s *Set
	if list != "" {
		s = compile(b, list)
	}
	p := New(s, Options{Logger: discardLog()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	defer hub.Close()
	sink := p.Sink(hub.Ingest(bridge.ProtocolMQTT))
	labels := map[string]string{"line": "a"}
	msgs := make([]*bridge.Message, batch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range msgs {
			k := i*batch + j
			msgs[j] = &bridge.Message{Device: fmt.Sprint("fryer-", k%16), Point: "oil_temp", Labels: labels, Value: bridge.Double(float64(k%1000) / 1000)}
		}
		if err := sink.Publish(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msg/s")
}

func BenchmarkNone100(b *testing.B) { benchmarkPipeline(b, "", 100) }
func BenchmarkCELFilter100(b *testing.B) {
	benchmarkPipeline(b, `[{name: f, filter: {cel: "value > 0.5"}}]`, 100)
}
func BenchmarkWASMExample1(b *testing.B) {
	benchmarkPipeline(b, fmt.Sprintf(`[{name: f, wasm: {module: %q}}]`, exampleModule(b)), 1)
}
func BenchmarkWASMExample100(b *testing.B) {
	benchmarkPipeline(b, fmt.Sprintf(`[{name: f, wasm: {module: %q}}]`, exampleModule(b)), 100)
}
