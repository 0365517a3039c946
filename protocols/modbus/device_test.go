package modbus

import (
	"math"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// TestPointUnchanged: a point's deadband is the bridge's, so the adapter and the
// gateway's reporting rules agree on what a change is.
func TestPointUnchanged(t *testing.T) {
	nan := bridge.Double(math.NaN())
	for _, c := range []struct {
		deadband   float64
		last, next bridge.Value
		want       bool
	}{
		{0, bridge.Int(100), bridge.Int(100), true},
		{0, bridge.Int(100), bridge.Int(101), false},
		{5, bridge.Int(100), bridge.Int(104), true},
		{5, bridge.Int(100), bridge.Int(95), false},
		{0.5, bridge.Double(20), bridge.Double(20.4), true},
		{0.5, bridge.Double(20), bridge.Double(20.5), false},
		// A float register that reads NaN on every poll is unchanged; it used to be
		// published at each poll when the point had a deadband.
		{0.5, nan, nan, true},
		{0.5, bridge.Double(20), nan, false},
	} {
		p := &point{deadband: bridge.Deadband{Absolute: c.deadband}, last: c.last}
		if got := p.unchanged(c.next); got != c.want {
			t.Errorf("deadband %v: %#v after %#v: unchanged = %v, want %v", c.deadband, c.next, c.last, got, c.want)
		}
	}
}
