package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSubscribeLive(t *testing.T) {
	h := newHub(t, HubConfig{})
	in := h.Ingest(ProtocolMQTT)
	publishN(t, in, 3)
	s := subscribe(t, h, SubscribeOptions{})
	if s.Cursor() != 4 || s.Skipped() != 0 {
		t.Fatalf("live subscription: cursor %d skipped %d, want 4 and 0", s.Cursor(), s.Skipped())
	}
	publishN(t, in, 2)
	checkContiguous(t, sequences(collect(t, s, 2)), 4)
}

// A live subscription opened while messages are being published starts exactly at
// its cursor: nothing before it, nothing skipped after it.
func TestSubscribeLiveWhilePublishing(t *testing.T) {
	for i := range 10 {
		h := newHub(t, HubConfig{Retain: 1 << 12})
		in := h.Ingest(ProtocolMQTT)
		const n = 1000
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := publishNErr(in, n); err != nil {
				t.Error(err)
			}
		})
		waitFor(t, "some messages", func() bool { return h.LastSequence() >= uint64(i*50) })
		s := subscribe(t, h, SubscribeOptions{})
		first := s.Cursor()
		got := collect(t, s, int(n+1-first))
		wg.Wait()
		checkContiguous(t, sequences(got), first)
		s.Close()
		h.Close()
	}
}

// StartEarliest replays what is retained and continues live: subscribing while a
// publisher runs must show every sequence once, with no gap or duplicate at the seam.
func TestSubscribeEarliestSeam(t *testing.T) {
	for i := range 10 {
		h := newHub(t, HubConfig{Retain: 1 << 12})
		in := h.Ingest(ProtocolMQTT)
		const n = 1000
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := publishNErr(in, n); err != nil {
				t.Error(err)
			}
		})
		waitFor(t, "some messages", func() bool { return h.LastSequence() >= uint64(i*90) })
		s := subscribe(t, h, SubscribeOptions{Start: StartEarliest})
		if s.Cursor() != 1 {
			t.Fatalf("earliest cursor = %d, want 1", s.Cursor())
		}
		got := collect(t, s, n)
		wg.Wait()
		checkContiguous(t, sequences(got), 1)
		s.Close()
		h.Close()
	}
}

func TestSubscribeStart(t *testing.T) {
	// 40 messages in a ring of 16: sequences 25 to 40 are retained.
	tests := []struct {
		name        string
		opts        SubscribeOptions
		wantCursor  uint64
		wantSkipped uint64
	}{
		{"live", SubscribeOptions{}, 41, 0},
		{"earliest", SubscribeOptions{Start: StartEarliest}, 25, 0},
		{"after the newest", SubscribeOptions{Start: StartAfter, After: 40}, 41, 0},
		{"after a retained one", SubscribeOptions{Start: StartAfter, After: 30}, 31, 0},
		{"after the one before the oldest", SubscribeOptions{Start: StartAfter, After: 24}, 25, 0},
		{"after one no longer retained", SubscribeOptions{Start: StartAfter, After: 5}, 25, 19},
		{"after zero", SubscribeOptions{Start: StartAfter, After: 0}, 25, 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t, HubConfig{Retain: 16})
			in := h.Ingest(ProtocolMQTT)
			publishN(t, in, 40)
			s := subscribe(t, h, tt.opts)
			if s.Cursor() != tt.wantCursor || s.Skipped() != tt.wantSkipped {
				t.Fatalf("cursor %d skipped %d; want %d and %d", s.Cursor(), s.Skipped(), tt.wantCursor, tt.wantSkipped)
			}
			// It reads what is retained from its cursor, then continues live.
			checkContiguous(t, sequences(collect(t, s, int(41-tt.wantCursor))), tt.wantCursor)
			mustPublish(t, in, reading("dev", "p", Int(40)))
			checkContiguous(t, sequences(collect(t, s, 1)), 41)
		})
	}
	h := newHub(t, HubConfig{})
	if _, err := h.Subscribe(SubscribeOptions{Start: Start(42)}); err == nil || !strings.Contains(err.Error(), "unknown start") {
		t.Fatalf("Subscribe with an unknown start: %v", err)
	}
	if n := len(h.subscriptions()); n != 0 {
		t.Fatalf("%d subscriptions left registered", n)
	}
}

func TestSubscribeFilters(t *testing.T) {
	h := newHub(t, HubConfig{})
	mq, mb := h.Ingest(ProtocolMQTT), h.Ingest(ProtocolModbus)
	compile := func(f Filter) *Matcher {
		m, err := f.Compile()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		f    Filter
		want string
	}{
		{"all", Filter{}, "[fryer-1/oil_temp fryer-2/oil_temp fryer-2/vibration boiler-1/temperature boiler-1/setpoint]"},
		{"device glob", Filter{Devices: []string{"fryer-*"}}, "[fryer-1/oil_temp fryer-2/oil_temp fryer-2/vibration]"},
		{"point", Filter{Points: []string{"oil_temp"}}, "[fryer-1/oil_temp fryer-2/oil_temp]"},
		{"protocol", Filter{Protocols: []Protocol{ProtocolModbus}}, "[boiler-1/temperature boiler-1/setpoint]"},
		{"label", Filter{Labels: map[string]string{"line": "b"}}, "[fryer-2/oil_temp fryer-2/vibration]"},
		{"nothing", Filter{Devices: []string{"oven-*"}}, "[]"},
	}
	var subs []*Subscription
	for _, tt := range tests {
		subs = append(subs, subscribe(t, h, SubscribeOptions{Match: compile(tt.f)}))
	}
	line := func(l string) map[string]string { return map[string]string{"line": l} }
	mustPublish(t, mq, &Message{Device: "fryer-1", Point: "oil_temp", Value: Double(180), Labels: line("a")})
	mustPublish(t, mq, &Message{Device: "fryer-2", Point: "oil_temp", Value: Double(175), Labels: line("b")},
		&Message{Device: "fryer-2", Point: "vibration", Value: Double(0.2), Labels: line("b")})
	mustPublish(t, mb, reading("boiler-1", "temperature", Double(60)), reading("boiler-1", "setpoint", Double(65)))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := []string{}
			for _, m := range poll(t, subs[i]) {
				got = append(got, m.Device+"/"+m.Point)
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

// A subscriber whose filter matches nothing for more than a scan's worth of ring
// slots must still find the message that matches after them.
func TestNarrowFilterPastScanLimit(t *testing.T) {
	h := newHub(t, HubConfig{Retain: 4 * scanLimit, QueueSize: 4 * scanLimit})
	in := h.Ingest(ProtocolMQTT)
	m, _ := Filter{Points: []string{"rare"}}.Compile()
	s := subscribe(t, h, SubscribeOptions{Match: m})
	batch := make([]*Message, 2*scanLimit+500)
	for i := range batch {
		batch[i] = reading("d", "common", Int(int64(i)))
	}
	mustPublish(t, in, batch...)
	mustPublish(t, in, reading("d", "rare", Int(1)))
	got := collect(t, s, 1)
	if got[0].Point != "rare" || got[0].Sequence != uint64(len(batch)+1) {
		t.Fatalf("got %s at %d", got[0].Point, got[0].Sequence)
	}
}

func TestNextBufferCapacity(t *testing.T) {
	h := newHub(t, HubConfig{})
	in := h.Ingest(ProtocolMQTT)
	s := subscribe(t, h, SubscribeOptions{Start: StartEarliest})
	publishN(t, in, 100)
	ctx := context.Background()
	got, err := s.Next(ctx, make([]*Message, 5, 10)) // length is ignored, capacity bounds
	if err != nil || len(got) != 10 || got[0].Sequence != 1 {
		t.Fatalf("Next with capacity 10: %d messages from %v, %v", len(got), sequences(got[:min(1, len(got))]), err)
	}
	got, err = s.Next(ctx, nil) // no buffer: one of 64 is made
	if err != nil || len(got) != 64 || got[0].Sequence != 11 {
		t.Fatalf("Next without a buffer: %d messages, %v", len(got), err)
	}
}

// Ten subscribers reading at once each receive every message in order.
func TestFanOut(t *testing.T) {
	const subscribers, n = 10, 2000
	h := newHub(t, HubConfig{Retain: 1 << 12})
	in := h.Ingest(ProtocolMQTT)
	var wg sync.WaitGroup
	got := make([][]uint64, subscribers)
	for i := range subscribers {
		s := subscribe(t, h, SubscribeOptions{})
		wg.Go(func() {
			ms, err := collectErr(s, n)
			if err != nil {
				t.Errorf("subscriber %d: %v", i, err)
			}
			got[i] = sequences(ms)
		})
	}
	publishN(t, in, n)
	wg.Wait()
	for i := range got {
		checkContiguous(t, got[i], 1)
	}
}

// A subscriber that starts in the past may replay the whole ring although that is
// more than QueueSize: the backlog it asked for is not slowness. Once it has caught
// up, QueueSize applies; and a replay that the ring overtakes is too slow.
func TestReplayLongerThanQueue(t *testing.T) {
	for _, policy := range []SlowPolicy{SlowDisconnect, SlowDropOldest} {
		t.Run(policy.String(), func(t *testing.T) {
			h := newHub(t, HubConfig{Retain: 64, QueueSize: 8, SlowPolicy: policy})
			in := h.Ingest(ProtocolMQTT)
			publishN(t, in, 100) // 37 to 100 retained
			early := subscribe(t, h, SubscribeOptions{Start: StartEarliest})
			after := subscribe(t, h, SubscribeOptions{Start: StartAfter, After: 70})
			first, err := early.Next(context.Background(), make([]*Message, 0, 32))
			if err != nil || len(first) != 32 {
				t.Fatalf("first read of the replay: %d messages, %v", len(first), err)
			}
			got := sequences(first)
			publishN(t, in, 20) // the replay falls further behind, but within the ring
			got = append(got, sequences(collect(t, early, 52))...)
			checkContiguous(t, got, 37)
			checkContiguous(t, sequences(collect(t, after, 50)), 71)
			if early.Dropped() != 0 || after.Dropped() != 0 {
				t.Fatalf("dropped %d and %d while replaying", early.Dropped(), after.Dropped())
			}
			// Caught up, they are live subscribers: 9 behind is too slow.
			publishN(t, in, 9)
			_, err = early.Next(context.Background(), nil)
			if policy == SlowDisconnect && !errors.Is(err, ErrSlowConsumer) {
				t.Fatalf("9 behind a queue of 8 after catching up: %v, want ErrSlowConsumer", err)
			}
			if policy == SlowDropOldest && (err != nil || early.Dropped() != 1) {
				t.Fatalf("9 behind a queue of 8 after catching up: %v, dropped %d; want 1 dropped", err, early.Dropped())
			}

			// A replay that the ring overtakes is too slow.
			slow := subscribe(t, h, SubscribeOptions{Start: StartEarliest})
			if got, err := slow.Next(context.Background(), make([]*Message, 0, 10)); len(got) != 10 || err != nil {
				t.Fatalf("first read of the replay: %d messages, %v", len(got), err)
			}
			publishN(t, in, 11)
			got2, err := slow.Next(context.Background(), nil)
			switch policy {
			case SlowDisconnect:
				if !errors.Is(err, ErrSlowConsumer) || !strings.Contains(err.Error(), "65 messages behind, limit 64") {
					t.Fatalf("a replay overtaken by the ring: %v, want ErrSlowConsumer", err)
				}
			case SlowDropOldest:
				// It skips to the newest QueueSize, counting the 1 message it lost
				// to the ring and the 56 it skipped.
				if err != nil || got2[0].Sequence != h.LastSequence()-7 || slow.Dropped() != 57 {
					t.Fatalf("a replay overtaken by the ring: from %d, %v, dropped %d", got2[0].Sequence, err, slow.Dropped())
				}
			}
		})
	}
}

// Under SlowDisconnect a subscriber more than QueueSize behind gets ErrSlowConsumer,
// and keeps getting it; a subscriber that keeps up is not affected.
func TestSlowDisconnect(t *testing.T) {
	h := newHub(t, HubConfig{Retain: 64, QueueSize: 16, SlowPolicy: SlowDisconnect})
	in := h.Ingest(ProtocolMQTT)
	fast := subscribe(t, h, SubscribeOptions{})
	slow := subscribe(t, h, SubscribeOptions{})
	var seen []uint64
	for range 10 {
		publishN(t, in, 8)
		seen = append(seen, sequences(collect(t, fast, 8))...)
	}
	ctx := context.Background()
	_, err := slow.Next(ctx, nil)
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("slow subscriber: %v, want ErrSlowConsumer", err)
	}
	if !strings.Contains(err.Error(), "80 messages behind, limit 16") {
		t.Errorf("error %q does not say how far behind", err)
	}
	if _, err := slow.Next(ctx, nil); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("slow subscriber, second Next: %v, want ErrSlowConsumer again", err)
	}
	publishN(t, in, 8)
	seen = append(seen, sequences(collect(t, fast, 8))...)
	checkContiguous(t, seen, 1)
	if fast.Dropped() != 0 || slow.Dropped() != 0 {
		t.Errorf("dropped: fast %d slow %d, want 0", fast.Dropped(), slow.Dropped())
	}
}

// Exactly QueueSize behind is still allowed.
func TestSlowDisconnectBoundary(t *testing.T) {
	h := newHub(t, HubConfig{Retain: 64, QueueSize: 16})
	in := h.Ingest(ProtocolMQTT)
	s := subscribe(t, h, SubscribeOptions{})
	publishN(t, in, 16)
	checkContiguous(t, sequences(collect(t, s, 16)), 1)
	publishN(t, in, 17)
	if _, err := s.Next(context.Background(), nil); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("17 behind with a limit of 16: %v, want ErrSlowConsumer", err)
	}
}

// Under SlowDropOldest a subscriber that fell behind skips to the newest QueueSize
// messages, and Dropped counts the messages it skipped that its filter matches.
func TestSlowDropOldest(t *testing.T) {
	tests := []struct {
		name        string
		f           Filter
		wantDropped uint64
		wantFirst   uint64
		wantN       int
	}{
		// 40 messages, points alternating even/odd by sequence; QueueSize 16: the
		// subscriber skips sequences 1 to 24 and reads 25 to 40.
		{"all", Filter{}, 24, 25, 16},
		{"even points", Filter{Points: []string{"even"}}, 12, 26, 8},
		{"not there", Filter{Points: []string{"none"}}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(t, HubConfig{Retain: 64, QueueSize: 16, SlowPolicy: SlowDropOldest})
			in := h.Ingest(ProtocolMQTT)
			m, err := tt.f.Compile()
			if err != nil {
				t.Fatal(err)
			}
			s := subscribe(t, h, SubscribeOptions{Match: m})
			fast := subscribe(t, h, SubscribeOptions{})
			for seq := 1; seq <= 40; seq++ {
				pt := map[bool]string{true: "even", false: "odd"}[seq%2 == 0]
				mustPublish(t, in, reading("d", pt, Int(int64(seq))))
				// The fast subscriber, under the same policy, keeps up and loses nothing.
				checkContiguous(t, sequences(collect(t, fast, 1)), uint64(seq))
			}
			got := poll(t, s)
			if len(got) != tt.wantN {
				t.Fatalf("read %v, want %d messages", sequences(got), tt.wantN)
			}
			if tt.wantN > 0 && (got[0].Sequence != tt.wantFirst || got[len(got)-1].Sequence != 40) {
				t.Errorf("read %v, want %d to 40", sequences(got), tt.wantFirst)
			}
			if s.Dropped() != tt.wantDropped {
				t.Errorf("Dropped() = %d, want %d", s.Dropped(), tt.wantDropped)
			}
			// Within bounds again, it no longer drops.
			mustPublish(t, in, reading("d", "even", Int(41)), reading("d", "odd", Int(42)))
			want := map[string]int{"all": 2, "even points": 1, "not there": 0}[tt.name]
			if got := poll(t, s); len(got) != want {
				t.Errorf("after catching up read %v, want %d messages", sequences(got), want)
			}
			if s.Dropped() != tt.wantDropped {
				t.Errorf("Dropped() after catching up = %d, want %d", s.Dropped(), tt.wantDropped)
			}
			if fast.Dropped() != 0 {
				t.Errorf("the fast subscriber dropped %d", fast.Dropped())
			}
		})
	}
}

// A subscriber that falls ever further behind costs no memory beyond the ring, and
// when it reads again it gets the newest QueueSize messages, having dropped the rest.
func TestSlowDropOldestBounded(t *testing.T) {
	const retain, queue = 64, 16
	h := newHub(t, HubConfig{Retain: retain, QueueSize: queue, SlowPolicy: SlowDropOldest})
	in := h.Ingest(ProtocolMQTT)
	s := subscribe(t, h, SubscribeOptions{})
	var dropped uint64
	for round := 1; round <= 3; round++ {
		n := 10 * retain * round
		publishN(t, in, n)
		if len(h.ring) != retain || h.retained() != retain {
			t.Fatalf("ring holds %d slots, %d retained; want %d", len(h.ring), h.retained(), retain)
		}
		got := collect(t, s, queue)
		last := h.LastSequence()
		checkContiguous(t, sequences(got), last-queue+1)
		dropped += uint64(n - queue)
		if s.Dropped() != dropped {
			t.Errorf("round %d: Dropped() = %d, want %d", round, s.Dropped(), dropped)
		}
	}
	// Nothing the hub holds grows with the backlog.
	if len(h.lvc) != 1 || len(h.subscriptions()) != 1 {
		t.Fatalf("cache %d entries, %d subscriptions", len(h.lvc), len(h.subscriptions()))
	}
}

func TestNextContext(t *testing.T) {
	h := newHub(t, HubConfig{})
	s := subscribe(t, h, SubscribeOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(ctx, nil)
		errc <- err
	}()
	waitFor(t, "Next to wait", s.waiting.Load)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(patience):
		t.Fatal("Next did not return after its context was cancelled")
	}

	dctx, dcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer dcancel()
	if _, err := s.Next(dctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past its deadline: %v", err)
	}

	// The subscription still works afterwards, and nothing was lost.
	in := h.Ingest(ProtocolMQTT)
	publishN(t, in, 2)
	checkContiguous(t, sequences(collect(t, s, 2)), 1)
}

// Closing the hub wakes a blocked Next with ErrClosed.
func TestNextHubClose(t *testing.T) {
	h := NewHub(HubConfig{}, nil)
	waiting := subscribe(t, h, SubscribeOptions{})
	errc := make(chan error, 1)
	go func() {
		_, err := waiting.Next(context.Background(), nil)
		errc <- err
	}()
	waitFor(t, "Next to wait", waiting.waiting.Load)
	h.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Next after hub Close: %v, want ErrClosed", err)
		}
	case <-time.After(patience):
		t.Fatal("hub Close did not wake a blocked Next")
	}
	if _, err := waiting.Next(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after hub Close: %v, want ErrClosed", err)
	}
}

// A subscriber still behind when the hub closes first reads what was published
// before the close.
func TestNextHubCloseDrains(t *testing.T) {
	h := NewHub(HubConfig{}, nil)
	in := h.Ingest(ProtocolMQTT)
	s := subscribe(t, h, SubscribeOptions{})
	publishN(t, in, 3)
	h.Close()
	checkContiguous(t, sequences(collect(t, s, 3)), 1)
	if _, err := s.Next(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after draining a closed hub: %v, want ErrClosed", err)
	}
}

// Closing a subscription ends it with ErrClosed, even while another goroutine is
// blocked in its Next, and removes it from the hub.
func TestSubscriptionClose(t *testing.T) {
	h := newHub(t, HubConfig{})
	in := h.Ingest(ProtocolMQTT)
	s := subscribe(t, h, SubscribeOptions{})
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background(), nil)
		errc <- err
	}()
	waitFor(t, "Next to wait", s.waiting.Load)
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Next after Close: %v, want ErrClosed", err)
		}
	case <-time.After(patience):
		t.Fatal("Subscription.Close did not wake a blocked Next")
	}
	s.Close() // twice is fine
	if n := len(h.subscriptions()); n != 0 {
		t.Fatalf("%d subscriptions registered after Close", n)
	}
	// Even with messages waiting, a closed subscription reads nothing more.
	s2 := subscribe(t, h, SubscribeOptions{})
	publishN(t, in, 1)
	s2.Close()
	if got, err := s2.Next(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, %v; want ErrClosed", sequences(got), err)
	}
}

// A subscriber blocked in Next is woken by a single publish, every time. Half the
// rounds publish once the subscriber is known to be asleep; the other half publish
// at once, racing with its way into sleep.
func TestNoLostWakeups(t *testing.T) {
	rounds := 2000
	if testing.Short() {
		rounds = 200
	}
	h := newHub(t, HubConfig{Retain: 1 << 12})
	in := h.Ingest(ProtocolMQTT)
	s := subscribe(t, h, SubscribeOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []*Message)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]*Message, 0, 8)
		for {
			batch, err := s.Next(ctx, buf)
			if err != nil {
				return
			}
			select {
			case got <- batch:
			case <-ctx.Done():
				return
			}
		}
	}()
	timeout := time.NewTimer(patience)
	defer timeout.Stop()
	for i := 1; i <= rounds; i++ {
		if i%2 == 0 {
			waitFor(t, "the subscriber to sleep", s.waiting.Load)
		}
		mustPublish(t, in, reading("d", "p", Int(int64(i))))
		timeout.Reset(patience)
		select {
		case batch := <-got:
			if len(batch) != 1 || batch[0].Sequence != uint64(i) {
				t.Fatalf("round %d: got %v", i, sequences(batch))
			}
		case <-timeout.C:
			t.Fatalf("round %d: a publish did not wake the subscriber", i)
		}
	}
	cancel()
	<-done
}

// Many subscribers come and go while messages are published: none misses or
// repeats one, and the hub's list of subscriptions ends empty.
func TestSubscribeUnsubscribeChurn(t *testing.T) {
	h := newHub(t, HubConfig{Retain: 1 << 12})
	in := h.Ingest(ProtocolMQTT)
	const n = 2000
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := publishNErr(in, n); err != nil {
			t.Error(err)
		}
	})
	for range 4 {
		wg.Go(func() {
			for h.LastSequence() < n {
				s, err := h.Subscribe(SubscribeOptions{Start: StartAfter, After: h.LastSequence() / 2})
				if err != nil {
					t.Error(err)
					return
				}
				first := s.Cursor()
				got, err := collectErr(s, 10)
				s.Close()
				if err != nil {
					t.Error(err)
					return
				}
				for i, m := range got {
					if m.Sequence != first+uint64(i) {
						t.Errorf("from %d: got %v", first, sequences(got))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if k := len(h.subscriptions()); k != 0 {
		t.Fatalf("%d subscriptions left", k)
	}
}
