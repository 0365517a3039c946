package bridge

import (
	"math"
	"testing"
)

func TestDeadbandChanged(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	abs := func(a float64) Deadband { return Deadband{Absolute: a} }
	pct := func(p float64) Deadband { return Deadband{Percent: p} }
	for _, c := range []struct {
		name       string
		band       Deadband
		prev, next Value
		want       bool
	}{
		{"equal, no band", Deadband{}, Double(20), Double(20), false},
		{"equal, band", abs(1), Int(7), Int(7), false},
		{"any change, no band", Deadband{}, Int(1), Int(2), true},
		{"kind change, no band", Deadband{}, Int(21), Double(21), true},
		{"within the band", abs(0.5), Double(20), Double(20.4), false},
		{"at the band", abs(0.5), Double(20), Double(20.5), true},
		{"at the band, down", abs(0.5), Double(20), Double(19.5), true},
		{"Modbus: int within", abs(5), Int(100), Int(104), false},
		{"Modbus: int at", abs(5), Int(100), Int(95), true},
		{"across kinds, within", abs(0.5), Int(21), Double(21.4), false},
		{"across kinds, same number", abs(0.5), Int(21), Double(21), false},
		{"uint", abs(2), Uint(10), Uint(12), true},
		{"int exactly above 2^53", abs(0.5), Int(1 << 60), Int(1<<60 + 1), true},
		{"uint exactly at the top", abs(0.5), Uint(math.MaxUint64), Uint(math.MaxUint64 - 1), true},
		{"int extremes", abs(1), Int(math.MinInt64), Int(math.MaxInt64), true},
		{"bool flips whatever the band", abs(5), Bool(false), Bool(true), true},
		{"bool unchanged", abs(5), Bool(true), Bool(true), false},
		{"string changes", abs(5), String("idle"), String("frying"), true},
		{"string unchanged", abs(5), String("idle"), String("idle"), false},
		{"number to string", abs(5), Double(1), String("1"), true},
		{"bytes", Deadband{}, Bytes([]byte{1}), Bytes([]byte{2}), true},
		{"to NaN", abs(1), Double(5), Double(nan), true},
		{"from NaN", abs(1), Double(nan), Double(5), true},
		{"NaN again", abs(1), Double(nan), Double(nan), false},
		{"infinity again", abs(1), Double(inf), Double(inf), false},
		{"from infinity", abs(1), Double(inf), Double(5), true},
		{"percent within", pct(10), Double(200), Double(215), false},
		{"percent at", pct(10), Double(200), Double(220), true},
		{"percent of a negative", pct(10), Double(-200), Double(-181), false},
		{"percent of zero: any change", pct(10), Double(0), Double(0.001), true},
		{"both: the absolute floor", Deadband{Absolute: 1, Percent: 10}, Double(5), Double(5.8), false},
		{"both: the absolute floor reached", Deadband{Absolute: 1, Percent: 10}, Double(5), Double(6), true},
		{"both: the percentage", Deadband{Absolute: 1, Percent: 10}, Double(100), Double(105), false},
	} {
		if got := c.band.Changed(c.prev, c.next); got != c.want {
			t.Errorf("%s: %+v.Changed(%#v, %#v) = %v, want %v", c.name, c.band, c.prev, c.next, got, c.want)
		}
	}
}
