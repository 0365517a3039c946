package bridge

import (
	"errors"
	"path"
	"strconv"
	"strings"
	"testing"
)

func TestFilterMatch(t *testing.T) {
	boiler := &Message{Device: "boiler-1", Point: "temperature", Protocol: ProtocolModbus,
		Labels: map[string]string{"site": "0042", "line": "a"}}
	fryer := &Message{Device: "fryer-12", Point: "oil_temp", Protocol: ProtocolMQTT}
	slash := &Message{Device: "plant/boiler-2", Point: "temperature", Protocol: ProtocolMQTT}
	all := []*Message{boiler, fryer, slash}

	tests := []struct {
		name string
		f    Filter
		want []*Message
	}{
		{"empty matches all", Filter{}, all},
		{"empty lists match all", Filter{Devices: []string{}, Points: []string{}, Protocols: []Protocol{}, Labels: map[string]string{}}, all},
		{"exact device", Filter{Devices: []string{"boiler-1"}}, []*Message{boiler}},
		{"exact device is not a prefix", Filter{Devices: []string{"boiler"}}, nil},
		{"several exact devices", Filter{Devices: []string{"boiler-1", "fryer-12"}}, []*Message{boiler, fryer}},
		{"star", Filter{Devices: []string{"fryer-*"}}, []*Message{fryer}},
		{"star does not cross slash", Filter{Devices: []string{"*boiler-*"}}, []*Message{boiler}},
		{"star with slash", Filter{Devices: []string{"plant/*"}}, []*Message{slash}},
		{"question mark", Filter{Devices: []string{"boiler-?"}}, []*Message{boiler}},
		{"question mark needs a character", Filter{Devices: []string{"fryer-?"}}, nil},
		{"class", Filter{Devices: []string{"[bf]*"}}, []*Message{boiler, fryer}},
		{"negated class", Filter{Devices: []string{"[^b]*"}}, []*Message{fryer}}, // and "plant/..." has a slash
		{"range", Filter{Devices: []string{"fryer-[0-9][0-9]"}}, []*Message{fryer}},
		{"escaped star is literal", Filter{Devices: []string{`fryer-\*`}}, nil},
		{"exact and glob mixed", Filter{Devices: []string{"boiler-1", "fryer-*"}}, []*Message{boiler, fryer}},
		{"points", Filter{Points: []string{"temperature"}}, []*Message{boiler, slash}},
		{"point glob", Filter{Points: []string{"*temp*"}}, all},
		{"device and point both", Filter{Devices: []string{"*"}, Points: []string{"oil_*"}}, []*Message{fryer}},
		{"protocol", Filter{Protocols: []Protocol{ProtocolMQTT}}, []*Message{fryer, slash}},
		{"protocols", Filter{Protocols: []Protocol{ProtocolModbus, ProtocolMQTT}}, all},
		{"other protocol", Filter{Protocols: []Protocol{ProtocolOPCUA}}, nil},
		{"label", Filter{Labels: map[string]string{"site": "0042"}}, []*Message{boiler}},
		{"labels all must match", Filter{Labels: map[string]string{"site": "0042", "line": "b"}}, nil},
		{"label value must match", Filter{Labels: map[string]string{"site": "0043"}}, nil},
		{"empty label value is not absence", Filter{Labels: map[string]string{"site": ""}}, nil},
		{"every part must match", Filter{Devices: []string{"boiler-*"}, Protocols: []Protocol{ProtocolMQTT}}, nil},
		{"within restricts all", Filter{Within: []string{"fryer-*"}}, []*Message{fryer}},
		{"within intersects devices", Filter{Devices: []string{"*-1*"}, Within: []string{"fryer-*"}}, []*Message{fryer}},
		{"within outside the request", Filter{Devices: []string{"boiler-1"}, Within: []string{"fryer-*"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.f.Compile()
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			want := map[*Message]bool{}
			for _, msg := range tt.want {
				want[msg] = true
			}
			for _, msg := range all {
				if got := m.Match(msg); got != want[msg] {
					t.Errorf("Match(%s/%s %s) = %v, want %v", msg.Device, msg.Point, msg.Protocol, got, want[msg])
				}
			}
		})
	}
}

func TestZeroMatcherMatchesAll(t *testing.T) {
	var m Matcher
	if !m.Match(&Message{Device: "d", Point: "p"}) || !m.MatchDevice("d", ProtocolCoAP) {
		t.Fatal("the zero Matcher does not match everything")
	}
}

// Compile must not keep the caller's label map: a filter built from a request that
// is reused would otherwise change, or race with, a running subscription.
func TestFilterLabelsCopied(t *testing.T) {
	labels := map[string]string{"site": "1"}
	m, err := Filter{Labels: labels}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	labels["site"] = "2"
	if !m.Match(&Message{Device: "d", Point: "p", Labels: map[string]string{"site": "1"}}) {
		t.Fatal("changing the Filter's map after Compile changed the Matcher")
	}
}

func TestFilterBadPatterns(t *testing.T) {
	tests := []struct {
		name string
		f    Filter
		want string // in the error
	}{
		{"unclosed class", Filter{Devices: []string{"boiler-["}}, `devices: bad pattern "boiler-["`},
		{"trailing backslash", Filter{Devices: []string{"ok", `boiler\`}}, `devices: bad pattern "boiler\\"`},
		{"bad range", Filter{Points: []string{"[a-"}}, `points: bad pattern "[a-"`},
		{"bad after star", Filter{Points: []string{"*["}}, `points: bad pattern "*["`},
		{"empty class", Filter{Points: []string{"[]"}}, `points: bad pattern "[]"`},
		{"unspecified protocol", Filter{Protocols: []Protocol{ProtocolUnspecified}}, "protocols: unknown protocol 0"},
		{"negative protocol", Filter{Protocols: []Protocol{-1}}, "protocols: unknown protocol -1"},
		{"protocol out of range", Filter{Protocols: []Protocol{32}}, "protocols: unknown protocol 32"},
		{"protocol not defined", Filter{Protocols: []Protocol{ProtocolModbus + 1}}, "protocols: unknown protocol 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.f.Compile()
			if err == nil {
				t.Fatalf("Compile succeeded (%+v), want an error", m)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.HasPrefix(tt.want, "devices") || strings.HasPrefix(tt.want, "points") {
				if !errors.Is(err, path.ErrBadPattern) {
					t.Errorf("error %q does not wrap path.ErrBadPattern", err)
				}
			}
		})
	}
}

func TestMatchDevice(t *testing.T) {
	tests := []struct {
		name     string
		f        Filter
		id       string
		protocol Protocol
		want     bool
	}{
		{"all", Filter{}, "boiler-1", ProtocolModbus, true},
		{"exact", Filter{Devices: []string{"boiler-1"}}, "boiler-1", ProtocolModbus, true},
		{"glob", Filter{Devices: []string{"boiler-*"}}, "boiler-7", ProtocolModbus, true},
		{"glob miss", Filter{Devices: []string{"boiler-*"}}, "fryer-7", ProtocolModbus, false},
		{"protocol", Filter{Protocols: []Protocol{ProtocolModbus}}, "boiler-1", ProtocolModbus, true},
		{"protocol miss", Filter{Protocols: []Protocol{ProtocolMQTT}}, "boiler-1", ProtocolModbus, false},
		// A device has no point or labels: those parts do not apply.
		{"points ignored", Filter{Points: []string{"nothing"}}, "boiler-1", ProtocolModbus, true},
		{"labels ignored", Filter{Labels: map[string]string{"a": "b"}}, "boiler-1", ProtocolModbus, true},
		{"within", Filter{Within: []string{"boiler-*"}}, "boiler-1", ProtocolModbus, true},
		{"within miss", Filter{Devices: []string{"*"}, Within: []string{"fryer-*"}}, "boiler-1", ProtocolModbus, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.f.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if got := m.MatchDevice(tt.id, tt.protocol); got != tt.want {
				t.Errorf("MatchDevice(%q, %v) = %v, want %v", tt.id, tt.protocol, got, tt.want)
			}
		})
	}
}

// A message with a protocol number outside the matcher's bit set must not match by
// accident of the shift.
func TestMatchOutOfRangeProtocol(t *testing.T) {
	m, err := Filter{Protocols: []Protocol{ProtocolMQTT}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Protocol{-1, 33, 1 + 32, 1 + 64} {
		if m.Match(&Message{Device: "d", Point: "p", Protocol: p}) {
			t.Errorf("protocol %d matched a filter for mqtt", p)
		}
	}
}

// Issue 19.7: a filter is bounded, and its globs are evaluated once per name, not
// once per message.
func TestFilterBoundsAndDecisionCache(t *testing.T) {
	many := make([]string, MaxFilterPatterns+1)
	for i := range many {
		many[i] = "fryer-" + strings.Repeat("?", i%8) + "*"
	}
	long := strings.Repeat("a", MaxPatternLen+1)
	labels := make(map[string]string, MaxFilterPatterns+1)
	for i := range MaxFilterPatterns + 1 {
		labels["k"+strconv.Itoa(i)] = "v"
	}
	for name, f := range map[string]Filter{
		"devices":    {Devices: many},
		"points":     {Points: many},
		"long glob":  {Devices: []string{long}},
		"long point": {Points: []string{"ok", long}},
		"labels":     {Labels: labels},
		"label key":  {Labels: map[string]string{long: "v"}},
		"label val":  {Labels: map[string]string{"k": strings.Repeat("v", 1025)}},
	} {
		if _, err := f.Compile(); err == nil || !strings.Contains(err.Error(), "limit") && !strings.Contains(err.Error(), "at most") {
			t.Errorf("%s: Compile = %v, want a refusal naming the limit", name, err)
		}
	}
	if _, err := (Filter{Devices: many[:MaxFilterPatterns], Points: []string{strings.Repeat("p", MaxPatternLen)}}).Compile(); err != nil {
		t.Errorf("at the bounds: %v", err)
	}
	// Within comes from the configuration: not bounded.
	if _, err := (Filter{Within: many}).Compile(); err != nil {
		t.Errorf("within: %v", err)
	}

	m, err := Filter{Devices: many[:MaxFilterPatterns], Points: []string{"oil_*", "state"}, Within: []string{"fryer-[12]*"}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"fryer-1/oil_temp": true, "fryer-2/state": true, "fryer-3/oil_temp": false, "fryer-1/humidity": false, "oven-1/oil_temp": false}
	for range 100 {
		for key, ok := range want {
			dev, point, _ := strings.Cut(key, "/")
			if got := m.Match(&Message{Device: dev, Point: point}); got != ok {
				t.Fatalf("Match(%s) = %v, want %v", key, got, ok)
			}
		}
	}
	// Four devices and three point names, each decided once in 500 matches.
	if m.byDevice.misses != 4 || m.byPoint.misses != 3 {
		t.Errorf("globs evaluated for %d devices and %d points, want 4 and 3", m.byDevice.misses, m.byPoint.misses)
	}
	// The memory is bounded: beyond maxDecisions names, old ones are forgotten.
	for i := range maxDecisions + 10 {
		m.MatchDevice("fryer-1-"+strconv.Itoa(i), ProtocolMQTT)
	}
	if n := len(m.byDevice.known); n > maxDecisions {
		t.Errorf("%d decisions kept, bound %d", n, maxDecisions)
	}
}
