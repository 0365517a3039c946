package bridge

import (
	"fmt"
	"maps"
	"path"
	"strings"
)

// Filter selects messages by device and point glob patterns, protocols and labels.
// Every part that is set must match; an empty part matches everything.
//
// Patterns use path.Match syntax (`*`, `?`, `[a-z]`, `\` to escape); `*` does not
// match `/`.
type Filter struct {
	Devices   []string
	Points    []string
	Protocols []Protocol
	Labels    map[string]string
	// Within, when set, is what the subscriber is allowed to see: a device must
	// also match one of these patterns (authorization intersects the request
	// with it). Empty: no restriction.
	Within []string
}

// Matcher is a compiled Filter. The zero Matcher matches everything.
type Matcher struct {
	devices   patterns
	points    patterns
	within    patterns
	protocols uint32 // bit per protocol; 0 matches all
	labels    map[string]string
}

// Compile checks the filter's patterns and returns its matcher.
func (f Filter) Compile() (*Matcher, error) {
	// The matcher keeps its own labels: the caller may reuse or change its map.
	m := &Matcher{labels: maps.Clone(f.Labels)}
	var err error
	if m.devices, err = compilePatterns(f.Devices); err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	if m.points, err = compilePatterns(f.Points); err != nil {
		return nil, fmt.Errorf("points: %w", err)
	}
	if m.within, err = compilePatterns(f.Within); err != nil {
		return nil, fmt.Errorf("within: %w", err)
	}
	for _, p := range f.Protocols {
		if _, ok := protocolNames[p]; !ok {
			return nil, fmt.Errorf("protocols: unknown protocol %d", p)
		}
		m.protocols |= 1 << uint(p)
	}
	return m, nil
}

// Match reports whether a message passes the filter.
func (m *Matcher) Match(msg *Message) bool {
	if m.protocols != 0 && m.protocols&(1<<uint(msg.Protocol)) == 0 {
		return false
	}
	if !m.devices.match(msg.Device) || !m.points.match(msg.Point) || !m.within.match(msg.Device) {
		return false
	}
	for k, v := range m.labels {
		if got, ok := msg.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// matchesAll reports whether the matcher has no condition at all.
func (m *Matcher) matchesAll() bool {
	return m.protocols == 0 && len(m.labels) == 0 && m.devices.all() && m.points.all() && m.within.all()
}

// MatchDevice reports whether a device passes the device and protocol parts.
func (m *Matcher) MatchDevice(id string, p Protocol) bool {
	if m.protocols != 0 && m.protocols&(1<<uint(p)) == 0 {
		return false
	}
	return m.devices.match(id) && m.within.match(id)
}

// patterns is a set of globs; those without a meta character are compared for
// equality, which is the common case and much cheaper than path.Match.
type patterns struct {
	exact map[string]struct{}
	globs []string
}

func compilePatterns(list []string) (patterns, error) {
	var p patterns
	for _, s := range list {
		if _, err := path.Match(s, ""); err != nil {
			return p, fmt.Errorf("bad pattern %q: %w", s, err)
		}
		if !strings.ContainsAny(s, `*?[\`) {
			if p.exact == nil {
				p.exact = make(map[string]struct{})
			}
			p.exact[s] = struct{}{}
			continue
		}
		p.globs = append(p.globs, s)
	}
	return p, nil
}

func (p patterns) all() bool { return p.exact == nil && p.globs == nil }

func (p patterns) match(s string) bool {
	if p.all() {
		return true
	}
	if _, ok := p.exact[s]; ok {
		return true
	}
	for _, g := range p.globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}
