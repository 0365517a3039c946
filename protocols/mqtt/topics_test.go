package mqtt

import (
	"strings"
	"testing"
)

func TestCompilePattern(t *testing.T) {
	for _, c := range []struct {
		pattern string
		ok      bool
		implied int // patterns it stands for
		desc    string
	}{
		{"devices/{device}/{point}", true, 2, "the default, which implies devices/{device}"},
		{"site/{device}/sensors/{point}", true, 2, "implies site/{device}/sensors"},
		{"{device}/{point}", true, 2, "implies {device}"},
		{"{point}/{device}", true, 1, "{point} not last: no implied object pattern"},
		{"plant/{device}", true, 1, "object of points only"},
		{"a/{device}/{point}/raw", true, 1, "literal after {point}"},
		{"", false, 0, "empty"},
		{"devices/{point}", false, 0, "no {device}"},
		{"{device}/{device}/{point}", false, 0, "two {device}"},
		{"{device}/{point}/{point}", false, 0, "two {point}"},
		{"devices/+/{device}", false, 0, "wildcard"},
		{"devices/#", false, 0, "wildcard"},
		{"devices//{device}", false, 0, "empty level"},
		{"devices/{device}/", false, 0, "trailing slash"},
		{"$SYS/{device}", false, 0, "broker topics"},
		{"devices/x{device}", false, 0, "placeholder inside a literal"},
		{"devices/{device}/{point}/set", false, 0, "the write topic"},
		{"devices/{point}/{device}/set", false, 0, "the write topic's shape"},
	} {
		ps, err := compilePattern(c.pattern)
		if (err == nil) != c.ok {
			t.Errorf("%s: compilePattern(%q) error %v, want ok=%v", c.desc, c.pattern, err, c.ok)
			continue
		}
		if c.ok && len(ps) != c.implied {
			t.Errorf("%s: compilePattern(%q) gave %d patterns, want %d", c.desc, c.pattern, len(ps), c.implied)
		}
	}
}

func TestTopicMatch(t *testing.T) {
	m, err := newTopicMap([]TopicConfig{{Pattern: DefaultTopic}, {Pattern: "plant/{device}/{point}/value"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic string
		want  topicMatch
	}{
		{"devices/boiler-1/temp", topicMatch{topicPoint, "boiler-1", "temp"}},
		{"devices/boiler-1", topicMatch{topicObject, "boiler-1", ""}},
		{"devices/boiler-1/temp/set", topicMatch{kind: topicWrite}},
		{"devices/boiler-1/temp/other", topicMatch{}},
		{"devices/boiler-1/", topicMatch{}},
		{"devices//temp", topicMatch{}},
		{"devices/", topicMatch{}},
		{"devices", topicMatch{}},
		{"/devices/a/b", topicMatch{}},
		{"Devices/a/b", topicMatch{}},
		{"plant/line-1/speed/value", topicMatch{topicPoint, "line-1", "speed"}},
		{"plant/line-1/speed", topicMatch{}},
		{"", topicMatch{}},
	} {
		if got := m.match(c.topic); got != c.want {
			t.Errorf("match(%q) = %+v, want %+v", c.topic, got, c.want)
		}
	}
}

func TestWriteTopic(t *testing.T) {
	for topic, want := range map[string]bool{
		"devices/a/b/set":   true,
		"devices/a/b/c/set": false,
		"devices//b/set":    false,
		"devices/a//set":    false,
		"devices/a/set":     false,
		"device/a/b/set":    false,
		"devices/a/b/sets":  false,
	} {
		if got := isWriteTopic(topic); got != want {
			t.Errorf("isWriteTopic(%q) = %v", topic, got)
		}
	}
	if !isWriteTopic(writeTopic("dev", "pt")) {
		t.Error("writeTopic does not produce a write topic")
	}
}

// FuzzTopicMap checks the mapper against arbitrary topics and patterns: no panic, a
// match names non-empty levels that put back into its pattern give the topic again,
// and a write topic is never a reading.
func FuzzTopicMap(f *testing.F) {
	for _, s := range []string{"devices/a/b", "devices/a", "devices/a/b/set", "x/y/z", "devices//b", "/", "", "devices/a/b/"} {
		f.Add(s, DefaultTopic)
	}
	f.Add("site/d/sensors/p", "site/{device}/sensors/{point}")
	f.Add("p/d", "{point}/{device}")
	f.Fuzz(func(t *testing.T, topic, src string) {
		ps, err := compilePattern(src)
		if err != nil {
			return
		}
		m := &topicMap{patterns: ps}
		got := m.match(topic)
		if isWriteTopic(topic) {
			if got.kind != topicWrite {
				t.Fatalf("write topic %q mapped to %v", topic, got.kind)
			}
			return
		}
		if got.kind == topicNone {
			return
		}
		if got.device == "" || strings.Contains(got.device, "/") || strings.Contains(got.point, "/") {
			t.Fatalf("match(%q) with %q gave %+v", topic, src, got)
		}
		if (got.kind == topicPoint) != (got.point != "") {
			t.Fatalf("match(%q) with %q gave %+v: kind and point disagree", topic, src, got)
		}
		for _, p := range ps {
			if p.kind == got.kind {
				if back := p.expand(got.device, got.point); back == topic {
					return
				}
			}
		}
		t.Fatalf("match(%q) with %q gave %+v, which no pattern expands back to", topic, src, got)
	})
}
