package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestBaseDoublesToMax(t *testing.T) {
	p := Policy{Min: 100 * ms, Max: time.Second}
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}
	for i, w := range want {
		if got := p.Base(i + 1); got != w {
			t.Errorf("Base(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := p.Base(1 << 20); got != time.Second {
		t.Errorf("Base(1<<20) = %v, want the max", got)
	}
}

func TestBaseFactor(t *testing.T) {
	p := Policy{Min: 100 * ms, Max: time.Second, Factor: 1.5}
	want := []time.Duration{100 * ms, 150 * ms, 225 * ms}
	for i, w := range want {
		if got := p.Base(i + 1); got != w {
			t.Errorf("Base(%d) = %v, want %v", i+1, got, w)
		}
	}
	// Max below Min: every wait is Min.
	q := Policy{Min: time.Second}
	if got := q.Base(5); got != time.Second {
		t.Errorf("no max: Base(5) = %v, want the min", got)
	}
}

func TestJitterRange(t *testing.T) {
	for _, j := range []float64{0, 0.2, 0.25, 0.5, 1} {
		p := Policy{Min: 100 * ms, Max: 30 * time.Second, Jitter: j}
		for n := 1; n <= 12; n++ {
			d := p.Base(n)
			lo := d - time.Duration(j*float64(d))
			if got := p.delay(n, 0); got != d {
				t.Errorf("jitter %v: delay(%d, 0) = %v, want %v", j, n, got, d)
			}
			if got := p.delay(n, 0.999999); got < lo || got > d {
				t.Errorf("jitter %v: delay(%d, ~1) = %v, not in [%v, %v]", j, n, got, lo, d)
			}
			if got := p.delay(n, 0.5); got != d-time.Duration(j*0.5*float64(d)) {
				t.Errorf("jitter %v: delay(%d, 0.5) = %v", j, n, got)
			}
			for range 50 {
				if got := p.Delay(n); got < lo || got > d {
					t.Fatalf("jitter %v: Delay(%d) = %v, not in [%v, %v]", j, n, got, lo, d)
				}
			}
		}
	}
	// Out of range jitter is clamped: never a negative wait, never above the base.
	if got := (Policy{Min: time.Second, Max: time.Second, Jitter: 3}).delay(1, 0.999); got < 0 || got > time.Second {
		t.Errorf("jitter 3: %v", got)
	}
	if got := (Policy{Min: time.Second, Max: time.Second, Jitter: -1}).delay(1, 0.999); got != time.Second {
		t.Errorf("jitter -1: %v", got)
	}
}

func TestJitterSpreads(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Second, Jitter: 0.5}
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[p.Delay(1)] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 jittered waits took only %d values", len(seen))
	}
}

func TestBackoffSequenceAndReset(t *testing.T) {
	b := New(Policy{Min: 10 * ms, Max: 50 * ms})
	if b.Ceiling() != 10*ms || b.Failures() != 0 {
		t.Fatalf("fresh: ceiling %v, failures %d", b.Ceiling(), b.Failures())
	}
	want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms}
	for i, w := range want {
		if got := b.Next(); got != w {
			t.Errorf("Next #%d = %v, want %v", i+1, got, w)
		}
	}
	if b.Failures() != len(want) || b.Ceiling() != 50*ms {
		t.Errorf("after %d: failures %d, ceiling %v", len(want), b.Failures(), b.Ceiling())
	}
	b.Reset()
	if b.Failures() != 0 || b.Next() != 10*ms {
		t.Errorf("after Reset the first wait is not Min")
	}
	var zero Backoff
	if d := zero.Next(); d != 0 {
		t.Errorf("zero Backoff waits %v", d)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := New(Policy{Min: time.Hour, Max: time.Hour})
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended context = %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Sleep(ctx, time.Hour) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep cancelled midway = %v", err)
	}

	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
}
