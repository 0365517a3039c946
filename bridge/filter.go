package bridge

import (
	"fmt"
	"maps"
	"path"
	"strings"
	"sync"
)

// Bounds of a filter's request parts (Devices, Points, Labels; Within comes from
// the configuration and is not bounded here). A filter is evaluated for every
// message a subscriber is offered, under the hub's read lock: 220,000 globs on 12
// streams cut a QoS 1 publisher from 50 to 5 messages a second (issue 19.7).
const (
	// MaxFilterPatterns bounds the patterns of Devices and of Points, and the pairs
	// of Labels.
	MaxFilterPatterns = 256
	// MaxPatternLen bounds one pattern or label key, in bytes: no
	// device or point name is longer (MaxNameLen).
	MaxPatternLen = MaxNameLen
	// maxLabelValueLen bounds a label value, as gateway.labels does.
	maxLabelValueLen = 1024
	// maxDecisions bounds the names a Matcher remembers its decision for, per part.
	maxDecisions = 4096
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
//
// Glob patterns are evaluated once per device name and once per point name, not
// once per message: the decision is remembered (for at most maxDecisions names
// per part; beyond them, an arbitrary one is forgotten), so that the cost per
// message is a map lookup whatever the number of patterns. A Matcher is safe for
// concurrent use.
type Matcher struct {
	devices   patterns
	points    patterns
	within    patterns
	protocols uint32 // bit per protocol; 0 matches all
	labels    map[string]string
	// byDevice and byPoint remember the glob decisions; nil when the part has
	// no glob (an exact name is a map lookup already).
	byDevice, byPoint *decisions
}

// Compile checks the filter's patterns and returns its matcher.
func (f Filter) Compile() (*Matcher, error) {
	if err := f.checkBounds(); err != nil {
		return nil, err
	}
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
	if m.devices.globs != nil || m.within.globs != nil {
		m.byDevice = &decisions{decide: func(d string) bool { return m.devices.match(d) && m.within.match(d) }}
	}
	if m.points.globs != nil {
		m.byPoint = &decisions{decide: m.points.match}
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
	if !m.matchDevice(msg.Device) || !m.matchPoint(msg.Point) {
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
	return m.matchDevice(id)
}

func (m *Matcher) matchDevice(id string) bool {
	if m.byDevice != nil {
		return m.byDevice.match(id)
	}
	return m.devices.match(id) && m.within.match(id)
}

func (m *Matcher) matchPoint(name string) bool {
	if m.byPoint != nil {
		return m.byPoint.match(name)
	}
	return m.points.match(name)
}

// checkBounds refuses a filter larger than a client may ask for.
func (f Filter) checkBounds() error {
	for _, part := range [...]struct {
		name string
		list []string
	}{{"devices", f.Devices}, {"points", f.Points}} {
		if len(part.list) > MaxFilterPatterns {
			return fmt.Errorf("%s: %d patterns, the limit is %d", part.name, len(part.list), MaxFilterPatterns)
		}
		for _, p := range part.list {
			if len(p) > MaxPatternLen {
				return fmt.Errorf("%s: pattern %.32q... is %d bytes long, the limit is %d", part.name, p, len(p), MaxPatternLen)
			}
		}
	}
	if len(f.Labels) > MaxFilterPatterns {
		return fmt.Errorf("labels: %d pairs, the limit is %d", len(f.Labels), MaxFilterPatterns)
	}
	for k, v := range f.Labels {
		if len(k) > MaxPatternLen || len(v) > maxLabelValueLen {
			return fmt.Errorf("labels: %.32q: keys are at most %d bytes, values at most %d", k, MaxPatternLen, maxLabelValueLen)
		}
	}
	return nil
}

// decisions remembers a part's decision per name.
type decisions struct {
	decide func(string) bool
	mu     sync.Mutex
	known  map[string]bool
	misses int // decisions computed, for tests
}

func (d *decisions) match(name string) bool {
	d.mu.Lock()
	v, ok := d.known[name]
	d.mu.Unlock()
	if ok {
		return v
	}
	// Evaluated without the mutex: another goroutine deciding the same name
	// meanwhile computes the same answer.
	v = d.decide(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.misses++
	if d.known == nil {
		d.known = make(map[string]bool)
	}
	if len(d.known) >= maxDecisions {
		for k := range d.known { // forget one, at random: map order
			delete(d.known, k)
			break
		}
	}
	d.known[name] = v
	return v
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
