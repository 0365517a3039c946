package mqtt

import (
	"errors"
	"fmt"
	"strings"
)

// A topic pattern is a sequence of levels separated by '/', each a literal, {device}
// or {point}: `devices/{device}/{point}` maps `devices/boiler-1/temp` to device
// "boiler-1", point "temp". A pattern without {point} carries an object of points.
// A pattern that ends in {point} also implies the same pattern without that level
// for objects of points, so the default `devices/{device}/{point}` implies
// `devices/{device}`. Patterns are tried in config order; the first match wins.
//
// The gateway's own write topics, devices/{device}/{point}/set, are never readings,
// whatever the patterns say; every other topic that matches no pattern is brokered
// as usual and ignored by the gateway.

type topicKind uint8

const (
	topicNone   topicKind = iota // not the gateway's business
	topicPoint                   // one point's reading
	topicObject                  // an object of several points
	topicWrite                   // a write the gateway published: never a reading
)

func (k topicKind) String() string {
	switch k {
	case topicPoint:
		return "point"
	case topicObject:
		return "object"
	case topicWrite:
		return "write"
	}
	return "none"
}

type levelKind uint8

const (
	levelLiteral levelKind = iota
	levelDevice
	levelPoint
)

type level struct {
	kind levelKind
	lit  string
}

type pattern struct {
	levels []level
	kind   topicKind // topicPoint or topicObject
}

const (
	placeholderDevice = "{device}"
	placeholderPoint  = "{point}"
)

// compilePattern parses a configured pattern into the patterns it stands for: itself,
// and for one ending in {point}, the implied object pattern.
func compilePattern(src string) ([]pattern, error) {
	if src == "" {
		return nil, errors.New("empty")
	}
	parts := strings.Split(src, "/")
	p := pattern{kind: topicObject}
	var devices, points int
	for i, part := range parts {
		switch part {
		case placeholderDevice:
			devices++
			p.levels = append(p.levels, level{kind: levelDevice})
		case placeholderPoint:
			points++
			p.kind = topicPoint
			p.levels = append(p.levels, level{kind: levelPoint})
		case "":
			return nil, fmt.Errorf("level %d is empty", i+1)
		default:
			if strings.ContainsAny(part, "+#{}\x00") {
				return nil, fmt.Errorf("level %q: only a literal, {device} or {point}; no wildcards", part)
			}
			if i == 0 && strings.HasPrefix(part, "$") {
				return nil, fmt.Errorf("level %q: topics starting with $ are the broker's", part)
			}
			p.levels = append(p.levels, level{lit: part})
		}
	}
	if devices != 1 {
		return nil, fmt.Errorf("needs exactly one %s, has %d", placeholderDevice, devices)
	}
	if points > 1 {
		return nil, fmt.Errorf("has %d %s levels; at most one", points, placeholderPoint)
	}
	if isWriteTopic(p.expand("x", "y")) {
		return nil, errors.New("would take the gateway's write topics (devices/{device}/{point}/set) for readings")
	}
	out := []pattern{p}
	if last := len(p.levels) - 1; p.kind == topicPoint && p.levels[last].kind == levelPoint && last > 0 {
		obj := pattern{levels: p.levels[:last:last], kind: topicObject}
		if obj.hasDevice() {
			out = append(out, obj)
		}
	}
	return out, nil
}

func (p pattern) hasDevice() bool {
	for _, l := range p.levels {
		if l.kind == levelDevice {
			return true
		}
	}
	return false
}

// expand writes the topic the pattern matches for a device and point.
func (p pattern) expand(device, point string) string {
	parts := make([]string, len(p.levels))
	for i, l := range p.levels {
		switch l.kind {
		case levelDevice:
			parts[i] = device
		case levelPoint:
			parts[i] = point
		default:
			parts[i] = l.lit
		}
	}
	return strings.Join(parts, "/")
}

// match reports whether topic matches, and the device and point it names. A
// placeholder never matches an empty level. It does not allocate: it runs for every
// publish.
func (p pattern) match(topic string) (device, point string, ok bool) {
	rest := topic
	for i, l := range p.levels {
		last := i == len(p.levels)-1
		var part string
		j := strings.IndexByte(rest, '/')
		switch {
		case last && j >= 0, !last && j < 0:
			return "", "", false // more or fewer levels than the pattern
		case last:
			part = rest
		default:
			part, rest = rest[:j], rest[j+1:]
		}
		switch l.kind {
		case levelLiteral:
			if part != l.lit {
				return "", "", false
			}
			continue
		case levelDevice:
			device = part
		case levelPoint:
			point = part
		}
		if part == "" {
			return "", "", false
		}
	}
	return device, point, true
}

// topicMap is the compiled list of patterns.
type topicMap struct {
	patterns []pattern
}

func newTopicMap(cfg []TopicConfig) (*topicMap, error) {
	m := &topicMap{}
	for i, t := range cfg {
		ps, err := compilePattern(t.Pattern)
		if err != nil {
			return nil, fmt.Errorf("mqtt: topics[%d]: pattern %q: %w", i, t.Pattern, err)
		}
		m.patterns = append(m.patterns, ps...)
	}
	return m, nil
}

type topicMatch struct {
	kind          topicKind
	device, point string // point is empty for topicObject
}

// match maps a published topic.
func (m *topicMap) match(topic string) topicMatch {
	if isWriteTopic(topic) {
		return topicMatch{kind: topicWrite}
	}
	for _, p := range m.patterns {
		if d, pt, ok := p.match(topic); ok {
			return topicMatch{kind: p.kind, device: d, point: pt}
		}
	}
	return topicMatch{}
}

// writeTopic is where the gateway publishes a write: devices/{device}/{point}/set,
// whatever the topic patterns are (docs/mqtt.md).
func writeTopic(device, point string) string {
	return "devices/" + device + "/" + point + "/set"
}

// isWriteTopic reports whether topic has the shape devices/{device}/{point}/set.
func isWriteTopic(topic string) bool {
	rest, ok := strings.CutPrefix(topic, "devices/")
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, "/set")
	if !ok {
		return false
	}
	device, point, ok := strings.Cut(rest, "/")
	return ok && device != "" && point != "" && !strings.Contains(point, "/")
}
