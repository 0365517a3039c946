package modbus

import (
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/backoff"
)

// TestScheduleGrid: polls stay on their grid however late one ran; a slot missed
// entirely is skipped, not made up.
func TestScheduleGrid(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &device{interval: time.Second, due: t0}
	// A poll that ran 300 ms late: the next is still due at t0+1s.
	d.due = d.due.Add(d.interval)
	if n := skip(d, t0.Add(300*time.Millisecond)); n != 0 || !d.due.Equal(t0.Add(time.Second)) {
		t.Errorf("late poll: due %v, skipped %d", d.due.Sub(t0), n)
	}
	// One that ran 2.5 s late: the slots at 1s and 2s are gone; the next is at 3s.
	if n := skip(d, t0.Add(2500*time.Millisecond)); n != 2 || !d.due.Equal(t0.Add(3*time.Second)) {
		t.Errorf("very late poll: due %v, skipped %d", d.due.Sub(t0), n)
	}
	// Exactly on a slot counts as missed: the poll for it is running now.
	if n := skip(d, t0.Add(3*time.Second)); n != 1 || !d.due.Equal(t0.Add(4*time.Second)) {
		t.Errorf("on the slot: due %v, skipped %d", d.due.Sub(t0), n)
	}
}

// TestPhase: devices are spread over the interval, each always at the same place.
func TestPhase(t *testing.T) {
	c := NewConfig()
	seen := map[time.Duration]bool{}
	for i := range 100 {
		unit := 1
		d := newDevice(DeviceConfig{ID: "plc-" + string(rune('A'+i%26)) + string(rune('a'+i/26)), UnitID: &unit,
			Points: []PointConfig{{Name: "v", Register: "holding", Address: ptr(0)}}}, c, nil)
		if d.phase < 0 || d.phase >= d.interval {
			t.Fatalf("phase %v outside the interval", d.phase)
		}
		seen[d.phase.Truncate(100*time.Millisecond)] = true
	}
	if len(seen) < 8 {
		t.Errorf("100 devices fall in only %d of 10 tenths of the interval", len(seen))
	}
}

func TestBackoff(t *testing.T) {
	c := NewConfig()
	for _, tc := range []struct {
		name     string
		p        backoff.Policy
		min, max time.Duration
	}{
		{"reconnect", c.reconnectBackoff(), c.ReconnectBackoff, c.ReconnectBackoffMax},
		{"busy", c.busyBackoff(), c.BusyBackoff, c.BusyBackoffMax},
	} {
		prev := time.Duration(0)
		for attempts := 1; attempts <= 12; attempts++ {
			want := min(tc.min<<(attempts-1), tc.max)
			for range 20 {
				b := tc.p.Delay(attempts)
				if b < want*6/10 || b > want {
					t.Fatalf("%s: attempt %d: %v outside [60%%, 100%%] of %v", tc.name, attempts, b, want)
				}
			}
			if want < prev {
				t.Fatalf("%s: backoff shrank", tc.name)
			}
			prev = want
		}
	}
}
