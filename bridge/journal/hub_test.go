package journal

import (
	"context"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// durableHub is a hub writing through a journal in dir, with a tiny ring so that
// replays and slow subscribers must read from disk.
func durableHub(t *testing.T, dir string) (*bridge.Hub, *Journal) {
	t.Helper()
	j := open(t, dir, Options{Sync: SyncBatch, SegmentBytes: 16 << 10})
	h := bridge.NewHub(bridge.HubConfig{Retain: 16, QueueSize: 8, SlowPolicy: bridge.SlowHold,
		Journal: j, FirstSequence: j.NextSequence()}, nil)
	return h, j
}

func publishN(t *testing.T, h *bridge.Hub, from, n int) {
	t.Helper()
	in := h.Ingest(bridge.ProtocolMQTT)
	for i := from; i < from+n; i++ {
		if err := in.Publish(context.Background(), &bridge.Message{Device: "d", Point: "p", Value: bridge.Int(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

func drain(t *testing.T, sub *bridge.Subscription, n int) []*bridge.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var all []*bridge.Message
	buf := make([]*bridge.Message, 0, 37)
	for len(all) < n {
		got, err := sub.Next(ctx, buf)
		if err != nil {
			t.Fatalf("after %d: %v", len(all), err)
		}
		all = append(all, got...)
	}
	return all
}

// values checks that the messages carry the values from, from+1, ... in order.
func values(t *testing.T, ms []*bridge.Message, from int) {
	t.Helper()
	for i, m := range ms {
		if v, _ := m.Value.AsInt(); v != int64(from+i) {
			t.Fatalf("message %d has value %d, want %d (seq %d)", i, v, from+i, m.Sequence)
		}
		if i > 0 && m.Sequence <= ms[i-1].Sequence {
			t.Fatalf("sequence %d after %d", m.Sequence, ms[i-1].Sequence)
		}
	}
}

func TestHubReplaysFromDiskAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	h, j := durableHub(t, dir)
	publishN(t, h, 0, 500)
	sub, err := h.Subscribe(bridge.SubscribeOptions{Start: bridge.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	all := drain(t, sub, 500)
	values(t, all, 0)
	resumeAfter := all[299].Sequence
	sub.Close()
	h.Close()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: resume after the 300th message, then live messages follow without
	// a gap or a duplicate at the seam.
	h, j = durableHub(t, dir)
	defer j.Close()
	defer h.Close()
	sub, err = h.Subscribe(bridge.SubscribeOptions{Start: bridge.StartAfter, After: resumeAfter})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishN(t, h, 500, 200)
	}()
	rest := drain(t, sub, 400)
	<-done
	values(t, rest, 300)
	if rest[0].Sequence != resumeAfter+1 {
		t.Fatalf("resume began at %d, want %d", rest[0].Sequence, resumeAfter+1)
	}
}

func TestSlowSubscriberIsHeldOnDisk(t *testing.T) {
	h, j := durableHub(t, t.TempDir())
	defer j.Close()
	defer h.Close()
	sub, err := h.Subscribe(bridge.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// 1000 messages with a ring of 16 and a queue of 8: far behind, never dropped.
	publishN(t, h, 0, 1000)
	all := drain(t, sub, 1000)
	values(t, all, 0)
	if sub.Dropped() != 0 {
		t.Fatalf("dropped %d", sub.Dropped())
	}
}

func TestPublishWaitsForDisk(t *testing.T) {
	h, j := durableHub(t, t.TempDir())
	defer j.Close()
	defer h.Close()
	publishN(t, h, 0, 1)
	if j.Stats().Durable < h.LastSequence() {
		t.Fatalf("Publish returned before the message was durable: durable %d, last %d", j.Stats().Durable, h.LastSequence())
	}
}
