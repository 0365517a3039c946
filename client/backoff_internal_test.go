package client

import (
	"testing"
	"time"
)

// TestBackoffPolicy: the reconnect waits are Min·Factor^(n-1) up to Max, each
// ±Jitter, as Backoff says.
func TestBackoffPolicy(t *testing.T) {
	for _, b := range []Backoff{DefaultBackoff, {Min: time.Second, Max: 10 * time.Second, Factor: 3, Jitter: 0.5}} {
		p := b.policy()
		d := float64(b.Min)
		for n := 1; n <= 10; n++ {
			c := min(d, float64(b.Max))
			lo, hi := time.Duration(c*(1-b.Jitter)), time.Duration(c*(1+b.Jitter))
			if got := p.Base(n); got < hi-time.Microsecond || got > hi+time.Microsecond {
				t.Errorf("%+v: wait %d: bound %v, want %v", b, n, got, hi)
			}
			for range 50 {
				if w := p.Delay(n); w < lo-time.Microsecond || w > hi+time.Microsecond {
					t.Fatalf("%+v: wait %d: %v outside [%v, %v]", b, n, w, lo, hi)
				}
			}
			d *= b.Factor
		}
	}
}
