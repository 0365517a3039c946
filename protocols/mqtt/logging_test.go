package mqtt

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	l := newLimiter(10, 3, dropped)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := l.allow(); !ok {
			t.Fatalf("line %d of the burst refused", i)
		}
	}
	for range 5 {
		if ok, _ := l.allow(); ok {
			t.Fatal("line beyond the burst allowed")
		}
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	ok, suppressed := l.allow()
	if !ok || suppressed != 5 {
		t.Errorf("after 100ms: allowed %v, suppressed %d; want true, 5", ok, suppressed)
	}
	if ok, _ := l.allow(); ok {
		t.Error("a second line in the same 100ms allowed")
	}
	now = now.Add(time.Hour) // refills to the burst, not beyond
	for range 3 {
		l.allow()
	}
	if ok, _ := l.allow(); ok {
		t.Error("the bucket refilled beyond its burst")
	}
	if n := metricValue(t, dropped); n != 7 {
		t.Errorf("dropped %v, want 7", n)
	}
}
