package bridge

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkPublish measures one Ingest.Publish of one message with 0, 1 and 10
// subscribers reading everything concurrently (drop_oldest, so that a subscriber
// that falls behind never slows or fails the publisher).
func BenchmarkPublish(b *testing.B) {
	for _, subscribers := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			h := NewHub(HubConfig{SlowPolicy: SlowDropOldest}, nil)
			defer h.Close()
			in := h.Ingest(ProtocolMQTT)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range subscribers {
				s, err := h.Subscribe(SubscribeOptions{})
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					defer s.Close()
					buf := make([]*Message, 0, 256)
					for {
						if _, err := s.Next(ctx, buf); err != nil {
							return
						}
					}
				})
			}
			points := []string{"temperature", "pressure", "setpoint", "alarm"}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m := &Message{Device: "boiler-1", Point: points[i%len(points)], Value: Double(float64(i))}
				if err := in.Publish(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			cancel()
			wg.Wait()
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	msg := &Message{Device: "boiler-17", Point: "temperature", Protocol: ProtocolModbus,
		Labels: map[string]string{"site": "0042"}}
	tests := []struct {
		name string
		f    Filter
	}{
		{"all", Filter{}},
		{"exact", Filter{Devices: []string{"boiler-1", "boiler-17", "fryer-2"}, Points: []string{"temperature"}}},
		{"glob", Filter{Devices: []string{"fryer-*", "boiler-*"}, Points: []string{"temp*"}}},
		{"exact miss", Filter{Devices: []string{"boiler-1", "fryer-2"}}},
		{"glob miss", Filter{Devices: []string{"fryer-*", "oven-*"}}},
		{"protocol and label", Filter{Protocols: []Protocol{ProtocolModbus}, Labels: map[string]string{"site": "0042"}}},
	}
	for _, tt := range tests {
		m, err := tt.f.Compile()
		if err != nil {
			b.Fatal(err)
		}
		want := m.Match(msg)
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if m.Match(msg) != want {
					b.Fatal("Match changed its mind")
				}
			}
		})
	}
}
