package coap

import (
	"errors"
	"fmt"
	"strings"
)

// A resource pattern is a sequence of URI-Path segments, each a literal, {device}
// or {point}: `/devices/{device}/{point}` maps `/devices/boiler-1/temp` to device
// "boiler-1", point "temp". A pattern without {point} carries an object of points. A
// pattern that ends in {point} also implies the same pattern without that segment,
// for objects of points, so the default `/devices/{device}/{point}` implies
// `/devices/{device}`. Patterns are tried in config order; the first match wins.
//
// This mirrors the MQTT adapter's topic patterns (protocols/mqtt/topics.go) segment
// for segment; it is matched against the request's URI-Path options one by one, not
// against a joined string, so a segment that holds a '/' (percent-encoded in the
// URI) never splits into two.

type resourceKind uint8

const (
	resourceNone   resourceKind = iota // not the gateway's business: 4.04
	resourcePoint                      // one point
	resourceObject                     // an object of several points, or all of a device's points
)

func (k resourceKind) String() string {
	switch k {
	case resourcePoint:
		return "point"
	case resourceObject:
		return "object"
	}
	return "none"
}

type segmentKind uint8

const (
	segmentLiteral segmentKind = iota
	segmentDevice
	segmentPoint
)

type segment struct {
	kind segmentKind
	lit  string
}

type pattern struct {
	segments []segment
	kind     resourceKind // resourcePoint or resourceObject
}

const (
	placeholderDevice = "{device}"
	placeholderPoint  = "{point}"
)

// maxSegments bounds a pattern; a request with more URI-Path options than the
// longest pattern matches nothing, without being looked at further.
const maxSegments = 16

// compilePattern parses a configured pattern into the patterns it stands for: itself,
// and for one ending in {point}, the implied object pattern.
func compilePattern(src string) ([]pattern, error) {
	if src == "" {
		return nil, errors.New("empty")
	}
	if !strings.HasPrefix(src, "/") {
		return nil, errors.New("must start with '/'")
	}
	parts := strings.Split(src[1:], "/")
	if len(parts) > maxSegments {
		return nil, fmt.Errorf("has %d segments; at most %d", len(parts), maxSegments)
	}
	p := pattern{kind: resourceObject}
	var devices, points int
	for i, part := range parts {
		switch part {
		case placeholderDevice:
			devices++
			p.segments = append(p.segments, segment{kind: segmentDevice})
		case placeholderPoint:
			points++
			p.kind = resourcePoint
			p.segments = append(p.segments, segment{kind: segmentPoint})
		case "":
			return nil, fmt.Errorf("segment %d is empty", i+1)
		default:
			if strings.ContainsAny(part, "{}?#\x00") {
				return nil, fmt.Errorf("segment %q: only a literal, {device} or {point}", part)
			}
			if len(part) > 255 {
				return nil, fmt.Errorf("segment %q: longer than a URI-Path option (255 bytes)", part[:32]+"...")
			}
			p.segments = append(p.segments, segment{lit: part})
		}
	}
	if devices != 1 {
		return nil, fmt.Errorf("needs exactly one %s, has %d", placeholderDevice, devices)
	}
	if points > 1 {
		return nil, fmt.Errorf("has %d %s segments; at most one", points, placeholderPoint)
	}
	if p.segments[0].kind == segmentLiteral && p.segments[0].lit == ".well-known" {
		return nil, errors.New("/.well-known is reserved (RFC 8615)")
	}
	out := []pattern{p}
	if last := len(p.segments) - 1; p.kind == resourcePoint && p.segments[last].kind == segmentPoint && last > 0 {
		obj := pattern{segments: p.segments[:last:last], kind: resourceObject}
		if obj.hasDevice() {
			out = append(out, obj)
		}
	}
	return out, nil
}

func (p pattern) hasDevice() bool {
	for _, s := range p.segments {
		if s.kind == segmentDevice {
			return true
		}
	}
	return false
}

// expand writes the path the pattern matches for a device and point.
func (p pattern) expand(device, point string) string {
	var b strings.Builder
	for _, s := range p.segments {
		b.WriteByte('/')
		switch s.kind {
		case segmentDevice:
			b.WriteString(device)
		case segmentPoint:
			b.WriteString(point)
		default:
			b.WriteString(s.lit)
		}
	}
	return b.String()
}

// match reports whether the URI-Path segments match, and the device and point they
// name. A placeholder never matches an empty segment. It does not allocate.
func (p pattern) match(segs []string) (device, point string, ok bool) {
	if len(segs) != len(p.segments) {
		return "", "", false
	}
	for i, s := range p.segments {
		part := segs[i]
		switch s.kind {
		case segmentLiteral:
			if part != s.lit {
				return "", "", false
			}
			continue
		case segmentDevice:
			device = part
		case segmentPoint:
			point = part
		}
		if part == "" {
			return "", "", false
		}
	}
	return device, point, true
}

// resourceMap is the compiled list of patterns.
type resourceMap struct {
	patterns []pattern
}

func newResourceMap(cfg []ResourceConfig) (*resourceMap, error) {
	m := &resourceMap{}
	for i, r := range cfg {
		ps, err := compilePattern(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("coap: resources[%d]: pattern %q: %w", i, r.Pattern, err)
		}
		m.patterns = append(m.patterns, ps...)
	}
	return m, nil
}

type resourceMatch struct {
	kind          resourceKind
	device, point string // point is empty for resourceObject
}

// match maps a request's URI-Path segments.
func (m *resourceMap) match(segs []string) resourceMatch {
	if len(segs) > maxSegments {
		return resourceMatch{}
	}
	for _, p := range m.patterns {
		if d, pt, ok := p.match(segs); ok {
			return resourceMatch{kind: p.kind, device: d, point: pt}
		}
	}
	return resourceMatch{}
}

// splitPath splits a path such as "/devices/a/b" into its segments; "" and "/" have
// none. It is the inverse of the URI-Path options a client sends for that path.
func splitPath(path string) []string {
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}
