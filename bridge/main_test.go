package bridge

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// patience bounds every wait in these tests; it is only reached when something is wrong.
const patience = 10 * time.Second

// waitFor polls cond until it holds, failing the test after patience. It yields
// between looks instead of sleeping, so a condition that holds soon is seen soon.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// fakeClock is a settable clock for HubConfig.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// newHub returns a hub closed when the test ends.
func newHub(t testing.TB, cfg HubConfig) *Hub {
	t.Helper()
	h := NewHub(cfg, nil)
	t.Cleanup(h.Close)
	return h
}

// subscribe opens a subscription closed when the test ends.
func subscribe(t testing.TB, h *Hub, opts SubscribeOptions) *Subscription {
	t.Helper()
	s, err := h.Subscribe(opts)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", opts, err)
	}
	t.Cleanup(s.Close)
	return s
}

func reading(device, point string, v Value) *Message {
	return &Message{Device: device, Point: point, Value: v}
}

func mustPublish(t testing.TB, in *Ingest, msgs ...*Message) {
	t.Helper()
	if err := in.Publish(context.Background(), msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// publishN publishes n readings of device "dev", point "p", valued 0 to n-1.
func publishN(t testing.TB, in *Ingest, n int) {
	t.Helper()
	if err := publishNErr(in, n); err != nil {
		t.Fatal(err)
	}
}

// publishNErr is publishN for goroutines other than the test's.
func publishNErr(in *Ingest, n int) error {
	for i := range n {
		if err := in.Publish(context.Background(), reading("dev", "p", Int(int64(i)))); err != nil {
			return fmt.Errorf("publish %d of %d: %w", i+1, n, err)
		}
	}
	return nil
}

// collect reads until it has n messages, failing on an error, on more than n, or
// after patience.
func collect(t testing.TB, s *Subscription, n int) []*Message {
	t.Helper()
	out, err := collectErr(s, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != n {
		t.Fatalf("got %d messages, want %d", len(out), n)
	}
	return out
}

// collectErr reads until it has at least n messages; it is collect for goroutines
// other than the test's.
func collectErr(s *Subscription, n int) ([]*Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var out []*Message
	buf := make([]*Message, 0, 64)
	for len(out) < n {
		batch, err := s.Next(ctx, buf)
		if err != nil {
			return out, fmt.Errorf("Next after %d of %d messages: %w", len(out), n, err)
		}
		out = append(out, batch...)
	}
	return out, nil
}

// poll returns what the subscription has now without waiting: Next with a context
// that is already done reads what is there and returns the context's error when
// nothing is left.
func poll(t testing.TB, s *Subscription) []*Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []*Message
	for {
		batch, err := s.Next(ctx, nil)
		if errors.Is(err, context.Canceled) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, batch...)
	}
}

func sequences(ms []*Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Sequence
	}
	return out
}

// checkContiguous fails unless seqs are first, first+1, first+2, ...
func checkContiguous(t testing.TB, seqs []uint64, first uint64) {
	t.Helper()
	for i, s := range seqs {
		if want := first + uint64(i); s != want {
			t.Fatalf("message %d has sequence %d, want %d (previous %v)", i, s, want, seqs[max(0, i-3):i])
		}
	}
}

// metricValue returns the value of the counter or gauge name with the given labels
// (every pair must match), and whether such a series exists.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			}
			t.Fatalf("metric %s has type %v", name, mf.GetType())
		}
	}
	return 0, false
}
