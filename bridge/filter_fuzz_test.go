package bridge

import (
	"path"
	"testing"
)

// FuzzFilter: a compiled filter decides a device and a point as path.Match does on
// the patterns it was given (issue 19.7 moved that decision into a per-name cache:
// a cached answer must be the uncached one), a pattern path.Match refuses is
// refused at Compile, and nothing a client can send panics.
func FuzzFilter(f *testing.F) {
	f.Add("fryer-*", "fryer-1", "oil_*", "oil_temp")
	f.Add("[a-", "a", "*", "x")
	f.Add(`\`, `\`, "?", "ab")
	f.Add("*/*", "a/b", "[!a]*", "b")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, devPat, dev, pointPat, point string) {
		fl := Filter{Devices: []string{devPat, "exact-device"}, Points: []string{pointPat}}
		m, err := fl.Compile()
		_, devErr := path.Match(devPat, "")
		_, pointErr := path.Match(pointPat, "")
		tooLong := len(devPat) > MaxPatternLen || len(pointPat) > MaxPatternLen
		if err != nil {
			if devErr == nil && pointErr == nil && !tooLong {
				t.Fatalf("Compile(%q, %q) refused good patterns: %v", devPat, pointPat, err)
			}
			return
		}
		if devErr != nil || pointErr != nil || tooLong {
			t.Fatalf("Compile(%q, %q) took a bad or too long pattern", devPat, pointPat)
		}
		devMatch, _ := path.Match(devPat, dev)
		wantDev := devMatch || dev == "exact-device"
		wantPoint, _ := path.Match(pointPat, point)
		msg := &Message{Device: dev, Point: point}
		for range 2 { // the second time from the cache
			if got := m.MatchDevice(dev, 0); got != wantDev {
				t.Fatalf("MatchDevice(%q) with %q = %v, path.Match says %v", dev, devPat, got, wantDev)
			}
			if got := m.Match(msg); got != (wantDev && wantPoint) {
				t.Fatalf("Match(%q, %q) with %q, %q = %v, want %v", dev, point, devPat, pointPat, got, wantDev && wantPoint)
			}
		}
	})
}
