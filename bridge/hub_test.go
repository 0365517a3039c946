package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestHubConfigDefaults(t *testing.T) {
	h := NewHub(HubConfig{}, nil)
	defer h.Close()
	c := h.Config()
	if c.Retain != 1<<16 || c.QueueSize != 8192 || c.FirstSequence != 1 ||
		c.MaxDevices != 10000 || c.MaxPointsPerDevice != 4096 || c.Now == nil || c.SlowPolicy != SlowDisconnect {
		t.Fatalf("defaults: %+v", c)
	}
	if got := h.LastSequence(); got != 0 {
		t.Fatalf("LastSequence before any message = %d, want 0", got)
	}

	tests := []struct {
		retain, queue         int
		wantRetain, wantQueue int
	}{
		{1, 0, 1, 1},
		{3, 0, 4, 4},
		{1000, 100, 1024, 100},
		{1024, 2000, 1024, 1024},
		{1025, 0, 2048, 2048},
		{0, 100, 1 << 16, 100},
		{-5, -5, 1 << 16, 8192},
	}
	for _, tt := range tests {
		h := NewHub(HubConfig{Retain: tt.retain, QueueSize: tt.queue}, nil)
		c := h.Config()
		h.Close()
		if c.Retain != tt.wantRetain || c.QueueSize != tt.wantQueue {
			t.Errorf("Retain %d QueueSize %d: got %d, %d; want %d, %d",
				tt.retain, tt.queue, c.Retain, c.QueueSize, tt.wantRetain, tt.wantQueue)
		}
	}
}

func TestPublishFillsDefaults(t *testing.T) {
	clock := newFakeClock()
	h := newHub(t, HubConfig{Now: clock.Now})
	in := h.Ingest(ProtocolMQTT)
	if in.Protocol() != ProtocolMQTT {
		t.Fatalf("Ingest.Protocol() = %v", in.Protocol())
	}
	src := clock.Now().Add(-time.Minute)
	plain := reading("d", "a", Double(1))
	plain.Protocol = ProtocolModbus // the Ingest's protocol wins
	plain.GatewayTime = src         // the hub's clock wins
	set := &Message{Device: "d", Point: "b", Value: Int(2), Quality: QualityBad,
		Priority: PriorityCritical, SourceTime: src, Unit: "°C"}
	now := clock.Advance(time.Second)
	mustPublish(t, in, plain, set)

	if plain.Quality != QualityGood || plain.Priority != PriorityNormal {
		t.Errorf("defaults: quality %v priority %v, want good and normal", plain.Quality, plain.Priority)
	}
	if set.Quality != QualityBad || set.Priority != PriorityCritical {
		t.Errorf("explicit quality %v priority %v changed", set.Quality, set.Priority)
	}
	for _, m := range []*Message{plain, set} {
		if !m.GatewayTime.Equal(now) {
			t.Errorf("%s: GatewayTime %v, want %v", m.Point, m.GatewayTime, now)
		}
		if m.Protocol != ProtocolMQTT {
			t.Errorf("%s: Protocol %v, want mqtt", m.Point, m.Protocol)
		}
	}
	if !set.SourceTime.Equal(src) || set.Unit != "°C" {
		t.Errorf("SourceTime %v unit %q changed", set.SourceTime, set.Unit)
	}
	if plain.Sequence != 1 || set.Sequence != 2 || h.LastSequence() != 2 {
		t.Errorf("sequences %d, %d, last %d; want 1, 2, 2", plain.Sequence, set.Sequence, h.LastSequence())
	}
}

func TestStaticLabels(t *testing.T) {
	static := map[string]string{"site": "0042", "zone": "a"}
	h := newHub(t, HubConfig{Labels: static})
	in := h.Ingest(ProtocolMQTT)
	bare := reading("d", "a", Int(1))
	own := reading("d", "b", Int(1))
	own.Labels = map[string]string{"zone": "b", "topic": "devices/d/b"}
	mustPublish(t, in, bare, own)
	if fmt.Sprint(bare.Labels) != "map[site:0042 zone:a]" {
		t.Errorf("labels without own: %v", bare.Labels)
	}
	if fmt.Sprint(own.Labels) != "map[site:0042 topic:devices/d/b zone:b]" {
		t.Errorf("labels with own: %v", own.Labels)
	}
	if fmt.Sprint(static) != "map[site:0042 zone:a]" {
		t.Errorf("the static labels changed: %v", static)
	}
}

func TestFirstSequence(t *testing.T) {
	h := newHub(t, HubConfig{FirstSequence: 1_000_000})
	if got := h.LastSequence(); got != 999_999 {
		t.Fatalf("LastSequence before any message = %d, want 999999", got)
	}
	in := h.Ingest(ProtocolCoAP)
	publishN(t, in, 3)
	if got := h.LastSequence(); got != 1_000_002 {
		t.Fatalf("LastSequence = %d, want 1000002", got)
	}
	s := subscribe(t, h, SubscribeOptions{Start: StartEarliest})
	checkContiguous(t, sequences(collect(t, s, 3)), 1_000_000)
}

// Many goroutines publish single messages and batches at once; every subscriber
// sees every sequence once, in order, with no gap, each batch's sequences are
// consecutive, and each device's messages keep their publishing order.
func TestSequencesConcurrentPublishers(t *testing.T) {
	const publishers, perPublisher, subscribers = 8, 400, 3
	h := newHub(t, HubConfig{Retain: 1 << 13})
	in := h.Ingest(ProtocolMQTT)
	var subs []*Subscription
	for range subscribers {
		subs = append(subs, subscribe(t, h, SubscribeOptions{}))
	}
	const total = publishers * perPublisher
	got := make([][]*Message, subscribers)
	var readers sync.WaitGroup
	for i, s := range subs {
		readers.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			buf := make([]*Message, 0, 100)
			for len(got[i]) < total {
				batch, err := s.Next(ctx, buf)
				if err != nil {
					t.Errorf("subscriber %d after %d messages: %v", i, len(got[i]), err)
					return
				}
				got[i] = append(got[i], batch...)
			}
		})
	}
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			dev := fmt.Sprintf("dev-%d", p)
			for n := 0; n < perPublisher; {
				size := min(1+n%4, perPublisher-n) // batches of 1 to 4
				batch := make([]*Message, size)
				for i := range batch {
					batch[i] = reading(dev, fmt.Sprintf("p%d", i), Int(int64(n+i)))
				}
				if err := in.Publish(context.Background(), batch...); err != nil {
					t.Errorf("publisher %d: %v", p, err)
					return
				}
				for i := 1; i < size; i++ {
					if batch[i].Sequence != batch[0].Sequence+uint64(i) {
						t.Errorf("batch sequences %v are not consecutive", sequences(batch))
					}
				}
				n += size
			}
		})
	}
	pubs.Wait()
	readers.Wait()
	if t.Failed() {
		return
	}
	if h.LastSequence() != total {
		t.Fatalf("LastSequence = %d, want %d", h.LastSequence(), total)
	}
	for i := range got {
		checkContiguous(t, sequences(got[i]), 1)
		next := map[string]int64{}
		for _, m := range got[i] {
			v, _ := m.Value.AsInt()
			if v != next[m.Device] {
				t.Fatalf("subscriber %d: %s sent value %d, want %d next", i, m.Device, v, next[m.Device])
			}
			next[m.Device]++
		}
	}
}

func TestLatest(t *testing.T) {
	h := newHub(t, HubConfig{})
	mq, co := h.Ingest(ProtocolMQTT), h.Ingest(ProtocolCoAP)
	if _, ok := h.Latest("a", "x"); ok {
		t.Fatal("Latest found a point before any message")
	}
	if all := h.LatestAll(); len(all) != 0 {
		t.Fatalf("LatestAll before any message = %v", all)
	}
	mustPublish(t, mq, reading("a", "x", Int(1)), reading("a", "y", Int(1)))
	mustPublish(t, co, reading("b", "x", Int(1)))
	mustPublish(t, mq, reading("a", "x", Int(2)))
	mustPublish(t, mq, reading("a", "x", Int(3)), reading("a", "y", Int(3)))

	m, ok := h.Latest("a", "x")
	if !ok || !m.Value.Equal(Int(3)) || m.Sequence != 5 {
		t.Errorf("Latest(a, x) = %+v, %v; want value 3 at sequence 5", m, ok)
	}
	if m, ok := h.Latest("b", "x"); !ok || m.Sequence != 3 || m.Protocol != ProtocolCoAP {
		t.Errorf("Latest(b, x) = %+v, %v", m, ok)
	}
	if _, ok := h.Latest("b", "y"); ok {
		t.Error("Latest(b, y) found a point that never had a value")
	}
	var got []string
	for _, m := range h.LatestAll() {
		got = append(got, fmt.Sprintf("%d:%s/%s=%s", m.Sequence, m.Device, m.Point, m.Value))
	}
	if want := "[3:b/x=1 5:a/x=3 6:a/y=3]"; fmt.Sprint(got) != want {
		t.Errorf("LatestAll = %v, want %s", got, want)
	}
}

func TestHubClose(t *testing.T) {
	h := NewHub(HubConfig{}, nil)
	in := h.Ingest(ProtocolMQTT)
	mustPublish(t, in, reading("d", "p", Int(1)))
	h.Close()
	h.Close() // twice is fine
	err := in.Publish(context.Background(), reading("d", "p", Int(2)))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	if h.LastSequence() != 1 {
		t.Fatalf("LastSequence after a refused publish = %d, want 1", h.LastSequence())
	}
	if m, _ := h.Latest("d", "p"); !m.Value.Equal(Int(1)) {
		t.Fatalf("the cache took a message published after Close: %#v", m.Value)
	}
	if _, err := h.Subscribe(SubscribeOptions{Start: StartEarliest}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func TestPublishCancelledContext(t *testing.T) {
	h := newHub(t, HubConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Ingest(ProtocolMQTT).Publish(ctx, reading("d", "p", Int(1))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled context: %v", err)
	}
	if h.LastSequence() != 0 || len(h.Devices(nil)) != 0 {
		t.Fatal("a publish with a cancelled context left a trace")
	}
}
