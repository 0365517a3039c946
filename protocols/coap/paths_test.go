package coap

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCompilePattern(t *testing.T) {
	good := []struct {
		src  string
		n    int // patterns it stands for
		kind resourceKind
	}{
		{"/devices/{device}/{point}", 2, resourcePoint},
		{"/devices/{device}", 1, resourceObject},
		{"/{device}/{point}", 2, resourcePoint},
		{"/{device}", 1, resourceObject},
		{"/{point}/{device}", 1, resourcePoint},
		{"/s/{device}/data/{point}", 2, resourcePoint},
		{"/a/b/c/{device}", 1, resourceObject},
	}
	for _, c := range good {
		ps, err := compilePattern(c.src)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if len(ps) != c.n || ps[0].kind != c.kind {
			t.Errorf("%s: %d patterns of kind %v, want %d of %v", c.src, len(ps), ps[0].kind, c.n, c.kind)
		}
		if got := ps[0].expand("{device}", "{point}"); got != c.src {
			t.Errorf("%s expands to %s", c.src, got)
		}
	}
	bad := map[string]string{
		"":                          "empty",
		"devices/{device}":          "must start with '/'",
		"/devices/{point}":          "exactly one {device}",
		"/{device}/{device}":        "exactly one {device}",
		"/{device}/{point}/{point}": "at most one",
		"/devices//{device}":        "empty",
		"/devices/{device}/":        "empty",
		"/dev{ice}/{device}":        "only a literal",
		"/.well-known/{device}":     "reserved",
		"/" + strings.Repeat("a/", 16) + "{device}": "segments",
	}
	for src, want := range bad {
		if _, err := compilePattern(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", src, err, want)
		}
	}
}

func TestResourceMatch(t *testing.T) {
	m, err := newResourceMap([]ResourceConfig{{Pattern: "/devices/{device}/{point}"}, {Pattern: "/s/{point}/{device}"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path          string
		kind          resourceKind
		device, point string
	}{
		{"/devices/boiler-1/temp", resourcePoint, "boiler-1", "temp"},
		{"/devices/boiler-1", resourceObject, "boiler-1", ""},
		{"/s/temp/boiler-1", resourcePoint, "boiler-1", "temp"},
		{"/devices", resourceNone, "", ""},
		{"/devices/a/b/c", resourceNone, "", ""},
		{"/", resourceNone, "", ""},
		{"/other/a/b", resourceNone, "", ""},
		{"/s/temp", resourceNone, "", ""},
	}
	for _, c := range cases {
		got := m.match(splitPath(c.path))
		if got.kind != c.kind || got.device != c.device || got.point != c.point {
			t.Errorf("%s: %+v, want %v %s %s", c.path, got, c.kind, c.device, c.point)
		}
	}
	// Segments are matched one by one: an empty one never names a device, and a '/'
	// inside a segment does not split it.
	if got := m.match([]string{"devices", "", "temp"}); got.kind != resourceNone {
		t.Errorf("empty device segment matched: %+v", got)
	}
	if got := m.match([]string{"devices", "a/b", "temp"}); got.kind != resourcePoint || got.device != "a/b" {
		t.Errorf("segment with a slash: %+v", got)
	}
	if got := m.match(make([]string, maxSegments+1)); got.kind != resourceNone {
		t.Errorf("too many segments matched")
	}
}

// FuzzResourceMatch compiles arbitrary patterns and matches arbitrary paths against
// them: nothing panics, what compiles expands to a path that matches back to the
// same device and point, and a match never names an empty device or point.
func FuzzResourceMatch(f *testing.F) {
	f.Add("/devices/{device}/{point}", "/devices/boiler-1/temp", "d", "p")
	f.Add("/{device}", "/x", "a", "b")
	f.Add("/s/{point}/{device}", "/s//x", "dev", "pt")
	f.Add("/a/{device}/b/{point}", "/a/x/b/y/z", "é", "∆")
	f.Add("//", "//", "", "")
	f.Fuzz(func(t *testing.T, src, path, device, point string) {
		ps, err := compilePattern(src)
		if err != nil {
			return
		}
		m := &resourceMap{patterns: ps}
		segs := splitPath(path)
		if got := m.match(segs); got.kind != resourceNone {
			if got.device == "" || (got.kind == resourcePoint && got.point == "") {
				t.Fatalf("%q on %q matched an empty name: %+v", path, src, got)
			}
		}
		if device == "" || point == "" || strings.Contains(device+point, "/") || !utf8.ValidString(device+point) {
			return
		}
		for _, p := range ps {
			d, pt, ok := p.match(splitPath(p.expand(device, point)))
			if !ok || d != device || (p.kind == resourcePoint && pt != point) {
				t.Fatalf("%q: expand(%q, %q) matches back as %q %q %v", src, device, point, d, pt, ok)
			}
		}
	})
}
