package functions

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// TestAggregateWindows runs in a synctest bubble: its clock is fake and moves only
// when every goroutine waits, so window boundaries are exact.
func TestAggregateWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, compile(t, `
- {name: avg, match: {points: [temp]}, aggregate: {window: 1m, fn: avg, point: temp_avg}}
- {name: min, match: {points: [temp]}, aggregate: {window: 1m, fn: min, point: temp_min}}
- {name: max, match: {points: [temp]}, aggregate: {window: 1m, fn: max, point: temp_max}}
- {name: sum, match: {points: [temp]}, aggregate: {window: 1m, fn: sum, point: temp_sum}}
- {name: count, match: {points: [temp]}, aggregate: {window: 1m, fn: count, point: temp_count}}
- {name: last, match: {points: [temp]}, aggregate: {window: 1m, fn: last, point: temp_last, unit: K}}
- {name: slow, match: {points: [temp]}, aggregate: {window: 5m, fn: count, point: temp_count_5m}}
`))
		start := time.Now()
		if start.Truncate(time.Minute) != start {
			t.Fatalf("the bubble's clock starts at %v, not on a minute", start)
		}
		// at moves the bubble's fake clock to start+d: inside testing/synctest,
		// time.Sleep returns as soon as every goroutine is blocked, so this waits
		// for nothing real; it is how a synctest test advances time.
		at := func(d time.Duration) {
			time.Sleep(time.Until(start.Add(d)))
			synctest.Wait() // what the timer fired has run
		}
		// emitted returns the aggregates published since it was last called.
		var seen uint64
		emitted := func() map[string]*bridge.Message {
			out := map[string]*bridge.Message{}
			for _, m := range e.published() {
				if m.Sequence <= seen {
					continue
				}
				seen = m.Sequence
				if m.Labels[LabelDerivedFrom] != "" {
					if out[m.Device+"/"+m.Point] != nil {
						t.Fatalf("%s/%s emitted twice in one window", m.Device, m.Point)
					}
					out[m.Device+"/"+m.Point] = m
				}
			}
			return out
		}
		temp := func(device string, v bridge.Value) {
			m := reading(device, "temp", v)
			m.Unit = "°C"
			e.publish(m)
		}

		// Window [0, 1m): 10, 20 and 30 from fryer-1.
		temp("fryer-1", bridge.Double(10))
		at(20 * time.Second)
		temp("fryer-1", bridge.Int(20))
		at(40 * time.Second)
		temp("fryer-1", bridge.Double(30))
		at(59 * time.Second)
		if got := emitted(); len(got) != 0 {
			t.Fatalf("emitted before the window's end: %v", got)
		}
		at(60 * time.Second)
		got := emitted()
		want := map[string]bridge.Value{
			"fryer-1/temp_avg": bridge.Double(20), "fryer-1/temp_min": bridge.Double(10),
			"fryer-1/temp_max": bridge.Double(30), "fryer-1/temp_sum": bridge.Double(60),
			"fryer-1/temp_count": bridge.Int(3), "fryer-1/temp_last": bridge.Double(30),
		}
		if len(got) != len(want) {
			t.Fatalf("emitted %d messages at 1m: %v; want %d", len(got), got, len(want))
		}
		for k, v := range want {
			m := got[k]
			if m == nil || !m.Value.Equal(v) {
				t.Fatalf("%s: got %v; want %#v", k, m, v)
			}
			if !m.SourceTime.Equal(start.Add(time.Minute)) {
				t.Errorf("%s: source time %v; want the window's end", k, m.SourceTime)
			}
			if m.Labels["line"] != "a" {
				t.Errorf("%s: labels %v; want the device's", k, m.Labels)
			}
		}
		if u := got["fryer-1/temp_avg"].Unit; u != "°C" {
			t.Errorf("avg unit %q; want the readings'", u)
		}
		if u := got["fryer-1/temp_count"].Unit; u != "" {
			t.Errorf("count unit %q; want none", u)
		}
		if u := got["fryer-1/temp_last"].Unit; u != "K" {
			t.Errorf("last unit %q; want the config's", u)
		}

		// Nothing in [1m, 3m): nothing emitted, and nothing twice.
		at(3 * time.Minute)
		if got := emitted(); len(got) != 0 {
			t.Fatalf("emitted after empty windows: %v", got)
		}

		// [3m, 4m): two devices, each its own window.
		at(3*time.Minute + 10*time.Second)
		temp("fryer-1", bridge.Double(1))
		temp("fryer-2", bridge.Double(2))
		temp("fryer-2", bridge.Double(4))
		at(4 * time.Minute)
		got = emitted()
		if m := got["fryer-1/temp_avg"]; !m.Value.Equal(bridge.Double(1)) || !m.SourceTime.Equal(start.Add(4*time.Minute)) {
			t.Errorf("fryer-1 avg of [3m, 4m): %#v at %v", m.Value, m.SourceTime)
		}
		if m := got["fryer-2/temp_avg"]; m == nil || !m.Value.Equal(bridge.Double(3)) {
			t.Errorf("fryer-2 avg of [3m, 4m): %v; want 3", m)
		}
		if m := got["fryer-2/temp_count_5m"]; m != nil {
			t.Errorf("the 5m window emitted early: %v", m)
		}
		at(5 * time.Minute)
		got = emitted()
		if m := got["fryer-1/temp_count_5m"]; m == nil || !m.Value.Equal(bridge.Int(4)) {
			t.Errorf("fryer-1 count of [0, 5m): %v; want 4", m)
		}
		if len(got) != 2 {
			t.Errorf("emitted at 5m: %v; want the two 5m counts", got)
		}
		if v := e.metric("emits", "avg"); v != 3 {
			t.Errorf("avg emits %v; want 3 (fryer-1 twice, fryer-2 once)", v)
		}
	})
}

// TestAggregateNonNumeric: avg of a string is a failure; the reading goes on.
func TestAggregateNonNumeric(t *testing.T) {
	e := newEnv(t, compile(t, `[{name: a, aggregate: {window: 1h, fn: avg, point: x}}, {name: l, aggregate: {window: 1h, fn: last, point: y}}]`))
	e.publish(reading("m-1", "state", bridge.String("on")))
	if got := e.published(); len(got) != 1 {
		t.Fatalf("published %s", describe(got))
	}
	if v := e.metric("failures", "a", reasonResult); v != 1 {
		t.Errorf("avg failures %v; want 1", v)
	}
	if v := e.metric("failures", "l", reasonResult); v != 0 {
		t.Errorf("last failures %v; want 0: last takes any value", v)
	}
}
