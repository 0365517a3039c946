package mqtt

import (
	"context"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// nopSink takes every message and keeps none.
type nopSink struct{ protocols.Sink }

func (nopSink) Publish(context.Context, ...*bridge.Message) error { return nil }

// BenchmarkIngest is the adapter's share of one publish on a point topic: decoding
// the payload and building the message, for a connection (with its labels cache) and for a will (without).
func BenchmarkIngest(b *testing.B) {
	a, err := newAdapter(testConfig(), protocols.Env{})
	if err != nil {
		b.Fatal(err)
	}
	pk := packets.Packet{TopicName: "devices/bench-p0/v",
		Payload: []byte(`{"value":123456,"ts":"2024-05-01T12:00:00.123456789Z","unit":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)}
	m := a.cur().topics.match(pk.TopicName)
	if m.kind != topicPoint {
		b.Fatalf("topic %q: kind %v", pk.TopicName, m.kind)
	}
	for _, c := range []struct {
		name  string
		cache *labelCache
	}{{"connection", new(labelCache)}, {"will", nil}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res, _, err := a.ingest(context.Background(), nopSink{}, m, pk, c.cache); res != resultAccepted {
					b.Fatal(res, err)
				}
			}
		})
	}
}
