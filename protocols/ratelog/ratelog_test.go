package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	l := New(10, 3, dropped)
	l.Now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := l.Allow(); !ok {
			t.Fatalf("line %d of the burst refused", i)
		}
	}
	for range 5 {
		if ok, _ := l.Allow(); ok {
			t.Fatal("line beyond the burst allowed")
		}
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	ok, suppressed := l.Allow()
	if !ok || suppressed != 5 {
		t.Errorf("after 100ms: allowed %v, suppressed %d; want true, 5", ok, suppressed)
	}
	if ok, _ := l.Allow(); ok {
		t.Error("a second line in the same 100ms allowed")
	}
	now = now.Add(time.Hour) // refills to the burst, not beyond
	for range 3 {
		l.Allow()
	}
	if ok, _ := l.Allow(); ok {
		t.Error("the bucket refilled beyond its burst")
	}
	if n := counterValue(t, dropped); n != 7 {
		t.Errorf("dropped %v, want 7", n)
	}
}

func TestLogAndHandlerReportSuppressed(t *testing.T) {
	now := time.Unix(1000, 0)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := New(1, 1, nil)
	l.Now = func() time.Time { return now }
	l.Log(log, slog.LevelWarn, "one")
	l.Log(log, slog.LevelWarn, "dropped")
	now = now.Add(time.Second)
	l.Log(log, slog.LevelWarn, "two")
	out := buf.String()
	if !strings.Contains(out, "one") || strings.Contains(out, "dropped") || !strings.Contains(out, "msg=two suppressed=1") {
		t.Errorf("log:\n%s", out)
	}
	buf.Reset()
	h := slog.New(Handler(slog.NewTextHandler(&buf, nil), l)).With("component", "lib")
	now = now.Add(time.Second)
	h.Info("a")
	h.Info("b")
	if out := buf.String(); !strings.Contains(out, "msg=a component=lib") || strings.Contains(out, "msg=b") {
		t.Errorf("handler:\n%s", out)
	}
}
