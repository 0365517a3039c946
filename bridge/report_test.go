package bridge

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reportEnv is a hub with reporting rules on a fake clock, a subscriber that sees
// what the hub publishes, and the sampler's timer fired by hand (fire).
type reportEnv struct {
	t     *testing.T
	h     *Hub
	reg   *prometheus.Registry
	clock *fakeClock
	start time.Time
	sub   *Subscription
}

func newReportEnv(t *testing.T, cfg HubConfig, rules ...ReportRule) *reportEnv {
	t.Helper()
	e := &reportEnv{t: t, reg: prometheus.NewRegistry(), clock: newFakeClock()}
	e.start = e.clock.Now()
	cfg.Now = e.clock.Now
	e.h = NewHub(cfg, e.reg)
	t.Cleanup(e.h.Close)
	if err := e.h.SetReporting(rules); err != nil {
		t.Fatal(err)
	}
	e.sub = subscribe(t, e.h, SubscribeOptions{})
	return e
}

// at moves the clock to d after the start.
func (e *reportEnv) at(d time.Duration) {
	e.clock.Advance(e.start.Add(d).Sub(e.clock.Now()))
}

// fire is the sampler's timer: what is due now is published.
func (e *reportEnv) fire() {
	if err := e.h.rep.flush(e.h, e.clock.Now(), false); err != nil {
		e.t.Fatal(err)
	}
}

// published lists what the hub published since the last call, as "point=value",
// with the quality when it is not good and the publish time when it is not now.
func (e *reportEnv) published() string {
	var out []string
	for _, m := range poll(e.t, e.sub) {
		s := m.Point + "=" + m.Value.String()
		if m.Quality == QualityBad {
			s += "(bad)"
		}
		if !m.GatewayTime.Equal(e.clock.Now()) {
			s += "@" + m.GatewayTime.Sub(e.start).String()
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func (e *reportEnv) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	v, ok := metricValue(e.t, e.reg, name, labels)
	if !ok {
		e.t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func pv(point string, v Value) *Message { return reading("dev", point, v) }

func withQuality(m *Message, q Quality) *Message { m.Quality = q; return m }

func critical(m *Message) *Message { m.Priority = PriorityCritical; return m }

// TestReporting walks the rules through their cases one message at a time: each
// step says what the hub publishes then.
func TestReporting(t *testing.T) {
	const s = time.Second
	type step struct {
		at   time.Duration
		m    *Message // nil: the sampler's timer fires
		want string   // what the hub publishes at this step
	}
	for _, c := range []struct {
		name     string
		rules    []ReportRule
		steps    []step
		deadband float64 // edgegate_reporting_suppressed_total{reason=deadband} at the end
		sample   float64 // and {reason=sample}
	}{
		{
			name: "no rules: everything passes",
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{0, pv("t", Int(1)), "t=1"},
			},
		},
		{
			name:  "a rule without a deadband: exact repeats are suppressed",
			rules: []ReportRule{{}},
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{s, pv("t", Int(1)), ""},
				{2 * s, pv("t", Int(2)), "t=2"},
				{3 * s, pv("t", Double(2)), "t=2"}, // another kind is a change
				{4 * s, pv("t", Double(2)), ""},
			},
			deadband: 2,
		},
		{
			name:  "absolute deadband, from the last published value",
			rules: []ReportRule{{Deadband: Deadband{Absolute: 0.5}}},
			steps: []step{
				{0, pv("t", Double(20)), "t=20"},
				{s, pv("t", Double(20.2)), ""},
				{2 * s, pv("t", Double(20.4)), ""},
				{3 * s, pv("t", Double(20.5)), "t=20.5"},
				{4 * s, pv("t", Double(20.9)), ""},
				{5 * s, pv("t", Int(21)), "t=21"},
			},
			deadband: 3,
		},
		{
			name:  "percent deadband",
			rules: []ReportRule{{Deadband: Deadband{Percent: 10}}},
			steps: []step{
				{0, pv("t", Double(100)), "t=100"},
				{s, pv("t", Double(105)), ""},
				{2 * s, pv("t", Double(110)), "t=110"},
				{3 * s, pv("t", Double(120)), ""}, // 10 < 11% of 110
				{4 * s, pv("t", Double(121)), "t=121"},
			},
			deadband: 2,
		},
		{
			name:  "a change of quality always passes",
			rules: []ReportRule{{Deadband: Deadband{Absolute: 5}, SampleInterval: 10 * s}},
			steps: []step{
				{0, pv("t", Double(20)), "t=20"},
				{s, withQuality(pv("t", Double(20)), QualityBad), "t=20(bad)"},
				{2 * s, withQuality(pv("t", Double(20)), QualityBad), ""},
				{3 * s, pv("t", Double(21)), "t=21"},
			},
			deadband: 1,
		},
		{
			name:  "states (bool, string) pass at once when they change, never held",
			rules: []ReportRule{{Deadband: Deadband{Absolute: 5}, SampleInterval: 10 * s}},
			steps: []step{
				{0, pv("door", Bool(true)), "door=true"},
				{s, pv("door", Bool(false)), "door=false"},
				{2 * s, pv("door", Bool(true)), "door=true"},
				{3 * s, pv("door", Bool(true)), ""},
				{4 * s, pv("mode", String("idle")), "mode=idle"},
				{5 * s, pv("mode", String("frying")), "mode=frying"},
				{6 * s, pv("mode", Double(180)), "mode=180"}, // from a string to a number
				{7 * s, nil, ""},
			},
			deadband: 1,
		},
		{
			name:  "sampling: the first passes, the newest is published when the interval ends",
			rules: []ReportRule{{SampleInterval: 5 * s}},
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{s, pv("t", Int(2)), ""},
				{2 * s, pv("t", Int(3)), ""}, // replaces 2: counted
				{4 * s, nil, ""},
				{5 * s, nil, "t=3"},
				{6 * s, pv("t", Int(4)), ""},
				{7 * s, pv("t", Int(4)), ""}, // the same as held: replaces it
				{10 * s, nil, "t=4"},
				{15 * s, nil, ""},
				{16 * s, pv("t", Int(5)), "t=5"}, // 6s after the last: at once
			},
			sample: 2,
		},
		{
			name:  "sampling: a value back within the deadband drops what was held",
			rules: []ReportRule{{Deadband: Deadband{Absolute: 0.5}, SampleInterval: 5 * s}},
			steps: []step{
				{0, pv("t", Double(20)), "t=20"},
				{s, pv("t", Double(25)), ""},
				{2 * s, pv("t", Double(20.1)), ""},
				{5 * s, nil, ""},
			},
			deadband: 1,
			sample:   1,
		},
		{
			name:  "sampling: late timer, a value after the interval passes and replaces the held one",
			rules: []ReportRule{{SampleInterval: 5 * s}},
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{s, pv("t", Int(2)), ""},
				{7 * s, pv("t", Int(3)), "t=3"},
				{7 * s, nil, ""},
			},
			sample: 1,
		},
		{
			name:  "CRITICAL is never held, but its deadband applies",
			rules: []ReportRule{{Deadband: Deadband{Absolute: 1}, SampleInterval: 5 * s}},
			steps: []step{
				{0, critical(pv("t", Double(20))), "t=20"},
				{s, critical(pv("t", Double(25))), "t=25"},
				{2 * s, critical(pv("t", Double(25.5))), ""},
				{3 * s, pv("t", Double(30)), ""},               // NORMAL: held
				{4 * s, critical(pv("t", Double(31))), "t=31"}, // replaces it
				{5 * s, nil, ""},
				{9 * s, nil, ""},
			},
			deadband: 1,
			sample:   1,
		},
		{
			name:  "heartbeat: an unchanged value again after the silence",
			rules: []ReportRule{{Heartbeat: 10 * s}},
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{5 * s, pv("t", Int(1)), ""},
				{10 * s, pv("t", Int(1)), "t=1"},
				{15 * s, pv("t", Int(1)), ""},
				{19 * s, pv("t", Int(1)), ""},
				{20 * s, pv("t", Int(1)), "t=1"},
			},
			deadband: 3,
		},
		{
			name:  "heartbeat with sampling",
			rules: []ReportRule{{SampleInterval: 5 * s, Heartbeat: 10 * s}},
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{s, pv("t", Int(2)), ""},
				{5 * s, nil, "t=2"},
				{14 * s, pv("t", Int(2)), ""},
				{15 * s, pv("t", Int(2)), "t=2"},
			},
			deadband: 1,
		},
		{
			name: "first match wins; protocol, devices and points select",
			rules: []ReportRule{
				{Protocol: ProtocolCoAP, Deadband: Deadband{Absolute: 100}},
				{Points: "fast_*", SampleInterval: 5 * s},
				{Devices: "dev", Deadband: Deadband{Absolute: 1}},
			},
			steps: []step{
				{0, pv("fast_a", Double(1)), "fast_a=1"},
				{0, pv("slow", Double(1)), "slow=1"},
				{s, pv("fast_a", Double(1.5)), ""}, // held, not a deadband of 1
				{s, pv("slow", Double(1.5)), ""},   // a deadband of 1, not 100 (CoAP)
				{2 * s, pv("slow", Double(2)), "slow=2"},
				{5 * s, nil, "fast_a=1.5"},
			},
			deadband: 1,
		},
		{
			name:  "points no rule matches pass, and keep no state",
			rules: []ReportRule{{Devices: "other-*"}},
			steps: []step{
				{0, pv("t", Int(1)), "t=1"},
				{s, pv("t", Int(1)), "t=1"},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newReportEnv(t, HubConfig{}, c.rules...)
			in := e.h.Ingest(ProtocolMQTT)
			for i, st := range c.steps {
				e.at(st.at)
				if st.m == nil {
					e.fire()
				} else {
					mustPublish(t, in, st.m)
				}
				if got := e.published(); got != st.want {
					t.Fatalf("step %d at %s: published %q, want %q", i, st.at, got, st.want)
				}
			}
			if v := e.metric("edgegate_reporting_suppressed_total", map[string]string{"reason": "deadband"}); v != c.deadband {
				t.Errorf("suppressed{deadband} = %v, want %v", v, c.deadband)
			}
			if v := e.metric("edgegate_reporting_suppressed_total", map[string]string{"reason": "sample"}); v != c.sample {
				t.Errorf("suppressed{sample} = %v, want %v", v, c.sample)
			}
		})
	}
}

// TestReportingBatch: in a multi-point batch, only the points that are due are
// published, with consecutive sequences; a batch with nothing due publishes nothing.
func TestReportingBatch(t *testing.T) {
	e := newReportEnv(t, HubConfig{}, ReportRule{Points: "[ab]"})
	in := e.h.Ingest(ProtocolMQTT)
	mustPublish(t, in, pv("a", Int(1)), pv("b", Int(1)), pv("c", Int(1)))
	if got := e.published(); got != "a=1 b=1 c=1" {
		t.Fatalf("first batch: %q", got)
	}
	before := e.h.LastSequence()
	mustPublish(t, in, pv("a", Int(1)), pv("b", Int(2)), pv("a", Int(1)))
	if got := e.published(); got != "b=2" {
		t.Fatalf("second batch: %q", got)
	}
	if e.h.LastSequence() != before+1 {
		t.Fatalf("sequence %d after %d", e.h.LastSequence(), before)
	}
	mustPublish(t, in, pv("a", Int(1)), pv("b", Int(2)))
	if got := e.published(); got != "" || e.h.LastSequence() != before+1 {
		t.Fatalf("an unchanged batch published %q", got)
	}
	// Suppressed messages were accepted from the device all the same.
	if v := e.metric("edgegate_messages_in_total", map[string]string{"device": "dev"}); v != 8 {
		t.Errorf("messages_in_total = %v, want 8", v)
	}
	if v := e.metric("edgegate_reporting_points", nil); v != 2 {
		t.Errorf("reporting_points = %v, want 2 (a and b)", v)
	}
}

// TestReportingPendingBounded: a point holds at most one value, and the gauge says
// how many are held.
func TestReportingPendingBounded(t *testing.T) {
	e := newReportEnv(t, HubConfig{}, ReportRule{SampleInterval: time.Second})
	in := e.h.Ingest(ProtocolMQTT)
	for _, p := range []string{"a", "b", "c"} {
		mustPublish(t, in, pv(p, Int(0)))
	}
	e.published()
	for i := 1; i <= 100; i++ {
		for _, p := range []string{"a", "b", "c"} {
			mustPublish(t, in, pv(p, Int(int64(i))))
		}
	}
	if v := e.metric("edgegate_reporting_pending", nil); v != 3 {
		t.Fatalf("pending = %v, want 3", v)
	}
	if n := len(e.h.rep.due); n != 3 {
		t.Fatalf("%d held in the heap, want 3", n)
	}
	if v := e.metric("edgegate_reporting_suppressed_total", map[string]string{"reason": "sample"}); v != 3*99 {
		t.Errorf("suppressed{sample} = %v, want %d", v, 3*99)
	}
	e.at(time.Second)
	e.fire()
	if got := e.published(); got != "a=100 b=100 c=100" {
		t.Fatalf("at the interval's end: %q", got)
	}
	if v := e.metric("edgegate_reporting_pending", nil); v != 0 {
		t.Fatalf("pending = %v after the flush", v)
	}
}

// TestSetReporting: new rules publish what the old ones held and start afresh; an
// invalid rule changes nothing.
func TestSetReporting(t *testing.T) {
	e := newReportEnv(t, HubConfig{}, ReportRule{SampleInterval: time.Minute})
	in := e.h.Ingest(ProtocolMQTT)
	mustPublish(t, in, pv("t", Int(1)))
	mustPublish(t, in, pv("t", Int(2)))
	if got := e.published(); got != "t=1" {
		t.Fatalf("before: %q", got)
	}
	for _, bad := range [][]ReportRule{
		{{Devices: "["}},
		{{Points: "a[", SampleInterval: time.Second}},
		{{Deadband: Deadband{Absolute: -1}}},
		{{Deadband: Deadband{Percent: math.NaN()}}},
		{{SampleInterval: time.Millisecond}},
		{{Heartbeat: -time.Second}},
		{{SampleInterval: time.Minute, Heartbeat: time.Second}},
		{{Protocol: Protocol(42)}},
		make([]ReportRule, MaxReportRules+1),
	} {
		if err := e.h.SetReporting(bad); err == nil {
			t.Errorf("SetReporting(%+v) accepted", bad)
		}
	}
	if got := e.published(); got != "" {
		t.Fatalf("a refused SetReporting published %q", got)
	}
	if err := e.h.SetReporting([]ReportRule{{}}); err != nil {
		t.Fatal(err)
	}
	if got := e.published(); got != "t=2" {
		t.Fatalf("the held value on a change of rules: %q", got)
	}
	mustPublish(t, in, pv("t", Int(2))) // afresh: the first message passes
	mustPublish(t, in, pv("t", Int(2)))
	if got := e.published(); got != "t=2" {
		t.Fatalf("after the change: %q", got)
	}
	if err := e.h.SetReporting(nil); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, in, pv("t", Int(2)))
	if got := e.published(); got != "t=2" {
		t.Fatalf("without rules: %q", got)
	}
	if v := e.metric("edgegate_reporting_points", nil); v != 0 {
		t.Errorf("reporting_points = %v without rules", v)
	}
}

// failingJournal refuses appends while fail is set, and counts WaitDurable.
type failingJournal struct {
	fail  bool
	last  uint64
	waits int
}

func (j *failingJournal) Append(msgs []*Message) error {
	if j.fail {
		return errors.New("disk full")
	}
	j.last = msgs[len(msgs)-1].Sequence
	return nil
}
func (j *failingJournal) WaitDurable(context.Context, uint64) error { j.waits++; return nil }
func (j *failingJournal) First() uint64                             { return math.MaxUint64 }
func (j *failingJournal) Check(uint64) (bool, error)                { return true, nil }
func (j *failingJournal) Moved() <-chan struct{}                    { return nil }
func (j *failingJournal) Last() uint64                              { return j.last }
func (j *failingJournal) NewReader() JournalReader                  { return nil }

// TestReportingRefusedBatch: when the journal refuses a batch, the points' states
// are as before, so the device's retry is not taken for a repeat; a held value the
// hub refuses is tried again an interval later. A batch with nothing to publish
// does not wait for the disk.
func TestReportingRefusedBatch(t *testing.T) {
	j := &failingJournal{}
	e := newReportEnv(t, HubConfig{Journal: j, SlowPolicy: SlowDisconnect},
		ReportRule{Points: "t", Deadband: Deadband{Absolute: 1}},
		ReportRule{Points: "s", SampleInterval: time.Second})
	in := e.h.Ingest(ProtocolMQTT)
	mustPublish(t, in, pv("t", Int(1)), pv("s", Int(1)))
	mustPublish(t, in, pv("s", Int(2))) // held
	e.published()

	j.fail = true
	if err := in.Publish(context.Background(), pv("t", Int(5)), pv("new", Int(1))); err == nil {
		t.Fatal("the journal's refusal was not returned")
	}
	e.at(time.Second)
	if err := e.h.rep.flush(e.h, e.clock.Now(), false); err == nil {
		t.Fatal("the refused flush was not reported")
	}
	if v := e.metric("edgegate_reporting_pending", nil); v != 1 {
		t.Fatalf("pending = %v after a refused flush, want 1", v)
	}
	j.fail = false
	mustPublish(t, in, pv("t", Int(5)), pv("new", Int(1)))
	if got := e.published(); got != "t=5 new=1" {
		t.Fatalf("the retry published %q", got)
	}
	e.at(1500 * time.Millisecond)
	e.fire()
	if got := e.published(); got != "" {
		t.Fatalf("the held value came again before its next interval: %q", got)
	}
	e.at(2 * time.Second)
	e.fire()
	if got := e.published(); got != "s=2" {
		t.Fatalf("the held value after the retry: %q", got)
	}
	before := j.waits
	mustPublish(t, in, pv("t", Int(5)), pv("s", Int(2)))
	if j.waits != before {
		t.Errorf("a batch with nothing published waited for the disk, with nothing before it to wait for")
	}
}

// TestReportingClosedHub: a message that would be held is refused once the hub is
// closed, like any other; a value held when the hub closed without publishing it
// is counted as lost.
func TestReportingClosedHub(t *testing.T) {
	e := newReportEnv(t, HubConfig{}, ReportRule{SampleInterval: time.Second})
	in := e.h.Ingest(ProtocolMQTT)
	mustPublish(t, in, pv("t", Int(1)))
	mustPublish(t, in, pv("t", Int(2))) // held
	e.h.Close()
	if err := in.Publish(context.Background(), pv("t", Int(3))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close = %v", err)
	}
	e.at(time.Second)
	if err := e.h.rep.flush(e.h, e.clock.Now(), false); !errors.Is(err, ErrClosed) {
		t.Fatalf("flush after Close = %v", err)
	}
	if v := e.metric("edgegate_reporting_suppressed_total", map[string]string{"reason": "lost"}); v != 1 {
		t.Errorf("lost = %v, want 1", v)
	}
}

// TestRunReporting runs the sampler's goroutine in a synctest bubble, whose clock
// moves only when every goroutine waits: held values are published exactly when
// their interval ends, and the one held when the sampler stops is published then.
func TestRunReporting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(HubConfig{}, nil)
		defer h.Close()
		if err := h.SetReporting([]ReportRule{{SampleInterval: 5 * time.Second}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var errs []error
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.RunReporting(ctx, func(err error) { errs = append(errs, err) })
		}()
		start := time.Now()
		// at moves the bubble's fake clock to start+d: inside testing/synctest,
		// time.Sleep returns as soon as every goroutine is blocked, so this waits
		// for nothing real.
		at := func(d time.Duration) {
			time.Sleep(time.Until(start.Add(d)))
			synctest.Wait()
		}
		in := h.Ingest(ProtocolModbus)
		latest := func() (Value, time.Duration) {
			m, ok := h.Latest("dev", "t")
			if !ok {
				t.Fatal("nothing published")
			}
			return m.Value, m.GatewayTime.Sub(start)
		}
		check := func(want Value, wantAt time.Duration) {
			t.Helper()
			if v, when := latest(); !v.Equal(want) || when != wantAt {
				t.Fatalf("latest = %#v at %s, want %#v at %s", v, when, want, wantAt)
			}
		}
		mustPublish(t, in, pv("t", Int(1)))
		at(time.Second)
		mustPublish(t, in, pv("t", Int(2)))
		at(2 * time.Second)
		mustPublish(t, in, pv("t", Int(3)))
		at(4999 * time.Millisecond)
		check(Int(1), 0)
		at(5 * time.Second)
		check(Int(3), 5*time.Second)
		at(6 * time.Second)
		mustPublish(t, in, pv("t", Int(4)))
		at(10 * time.Second)
		check(Int(4), 10*time.Second)
		at(11 * time.Second)
		mustPublish(t, in, pv("t", Int(5)))
		at(12 * time.Second)
		cancel() // a stop publishes what is held, early rather than never
		<-done
		check(Int(5), 12*time.Second)
		if len(errs) != 0 {
			t.Errorf("errors: %v", errs)
		}
	})
}
