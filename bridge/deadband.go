package bridge

import "math"

// Deadband says how far a number must move from the last reported value before it
// is reported again. The reporting stage (report.go) and the Modbus adapter's
// per-point deadband both use it, so that the two agree on what a change is.
//
// The zero Deadband reports every change.
type Deadband struct {
	// Absolute is the smallest change reported, in the point's unit.
	Absolute float64
	// Percent is the smallest change reported, as a percentage of the magnitude of
	// the last reported value. With both set, a change must reach both.
	Percent float64
}

// IsZero reports whether d has no band, so that only exact repeats are unchanged.
func (d Deadband) IsZero() bool { return d.Absolute <= 0 && d.Percent <= 0 }

// Changed reports whether next is worth reporting after prev was.
//
// A value equal to prev (same kind, same contents) is never a change. The band
// applies only when both values are numbers (double, int or uint, compared across
// kinds, integers exactly): a change smaller than the band is not a change. Any
// other difference is: of kind, of a bool, string or bytes value, or to or from
// NaN. A bool is a state, not a quantity: a deadband never hides a flip.
func (d Deadband) Changed(prev, next Value) bool {
	if next.Equal(prev) {
		return false
	}
	if d.IsZero() || !prev.isNumber() || !next.isNumber() {
		return true
	}
	diff := distance(prev, next)
	if math.IsNaN(diff) {
		return true
	}
	band := max(d.Absolute, 0)
	if d.Percent > 0 {
		p, _ := prev.Float()
		band = max(band, math.Abs(p)*d.Percent/100)
	}
	// diff > 0: 21 and 21.0 are not a change once a band is asked for, even where
	// the band itself is zero (a percentage of zero).
	return diff > 0 && diff >= band
}

// isNumber reports whether v is a double, an int or a uint.
func (v Value) isNumber() bool {
	return v.kind == KindDouble || v.kind == KindInt || v.kind == KindUint
}

// distance is |a - b| for two numbers, exact for two integers of one kind (whose
// difference a float64 would round above 2^53).
func distance(a, b Value) float64 {
	switch {
	case a.kind == KindInt && b.kind == KindInt:
		x, y := int64(a.n), int64(b.n)
		if x < y {
			x, y = y, x
		}
		return float64(uint64(x) - uint64(y))
	case a.kind == KindUint && b.kind == KindUint:
		x, y := a.n, b.n
		if x < y {
			x, y = y, x
		}
		return float64(x - y)
	}
	x, _ := a.Float()
	y, _ := b.Float()
	return math.Abs(x - y)
}
