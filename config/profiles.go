package config

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Profiles (docs/profiles.md): a `profiles:` entry is a device without an id, and
// a device that names one with `profile:` takes every key of it. The expansion
// works on YAML nodes, before any protocol decodes a device, so that it serves every
// protocol alike and the protocol's strict decoding still sees (and refuses) every
// key, with the line it was written on.
//
// The rules: a device's own key wins over its profile's; `labels` maps merge, the
// device's value winning per label; `points` merge by name: a device point whose
// name is a profile point's overrides that point's keys (its labels merging the
// same way), and a new name is added after the profile's points.

// expansion is what expandProfiles made of a config's profiles and devices.
type expansion struct {
	// devices is the `devices:` list with every profile applied and every
	// `profile:` key gone; nil when the config has no devices.
	devices *yaml.Node
	// profileOf is each expanded device's profile, and merged its node, by
	// device id.
	profileOf map[string]string
	merged    map[string]*yaml.Node
	// unused lists the profiles no device names, sorted.
	unused []string
	probs  Problems
}

// expandProfiles applies profiles to devices. A device whose profile cannot be
// applied (it names none that exists) is left out of the result, so that its
// one problem is reported rather than a protocol's guesses about a half device.
func expandProfiles(profiles, devices *yaml.Node) *expansion {
	x := &expansion{profileOf: map[string]string{}, merged: map[string]*yaml.Node{}}
	byName := x.readProfiles(profiles)
	used := map[string]bool{}
	if devices = deref(devices); devices != nil && devices.Kind == yaml.SequenceNode {
		out := *devices
		out.Content = make([]*yaml.Node, 0, len(devices.Content))
		for i, d := range devices.Content {
			d = deref(d)
			pn, pv := lookup(d, "profile")
			if pv == nil {
				out.Content = append(out.Content, d)
				continue
			}
			id := deviceID(d)
			where := fmt.Sprintf("devices[%d]", i)
			if id != "" {
				where = fmt.Sprintf("device %q", id)
			}
			if pv.Kind != yaml.ScalarNode || pv.Value == "" {
				x.problem("%s: profile: line %d: must be a profile's name", where, pn.Line)
				continue
			}
			p, ok := byName[pv.Value]
			if !ok {
				x.problem("%s: profile: line %d: unknown profile %q%s", where, pn.Line, pv.Value, known(byName))
				continue
			}
			used[pv.Value] = true
			if p == nil {
				continue
			}
			m := merge(p, d, "profile")
			if id != "" {
				x.profileOf[id], x.merged[id] = pv.Value, m
			}
			out.Content = append(out.Content, m)
		}
		devices = &out
	}
	x.devices = devices
	for name, p := range byName {
		if p != nil && !used[name] {
			x.unused = append(x.unused, name)
		}
	}
	sort.Strings(x.unused)
	return x
}

func (x *expansion) problem(format string, args ...any) {
	x.probs = append(x.probs, fmt.Errorf(format, args...))
}

// readProfiles checks the `profiles:` list and returns each profile's keys
// without its name, by name; nil for a profile with problems.
func (x *expansion) readProfiles(list *yaml.Node) map[string]*yaml.Node {
	byName := map[string]*yaml.Node{}
	if list = deref(list); list == nil {
		return byName
	}
	if list.Kind != yaml.SequenceNode {
		x.problem("profiles: line %d: must be a list", list.Line)
		return byName
	}
	index := map[string]int{}
	for i, p := range list.Content {
		p = deref(p)
		if p.Kind != yaml.MappingNode {
			x.problem("profiles[%d]: line %d: must be a mapping", i, p.Line)
			continue
		}
		_, nv := lookup(p, "name")
		if nv == nil || nv.Kind != yaml.ScalarNode || nv.Value == "" {
			x.problem("profiles[%d]: line %d: name is required", i, p.Line)
			continue
		}
		name := nv.Value
		where := fmt.Sprintf("profile %q", name)
		if j, dup := index[name]; dup {
			x.problem("%s: line %d: name also used by profiles[%d]", where, nv.Line, j)
			continue
		}
		index[name] = i
		body := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: p.Line, Column: p.Column}
		seen := map[string]bool{}
		bad := false
		for k := 0; k+1 < len(p.Content); k += 2 {
			key, val := p.Content[k], p.Content[k+1]
			switch {
			case seen[key.Value]:
				x.problem("%s: %s: line %d: duplicate key", where, key.Value, key.Line)
				bad = true
			case key.Value == "id":
				x.problem("%s: id: line %d: a profile has no id (each device has its own)", where, key.Line)
				bad = true
			case key.Value == "profile":
				x.problem("%s: profile: line %d: profiles do not nest", where, key.Line)
				bad = true
			case key.Value == "points":
				bad = !x.checkPoints(where, val) || bad
			case key.Value == "labels" && deref(val).Kind != yaml.MappingNode:
				// Else a device's labels would replace it unseen.
				x.problem("%s: labels: line %d: must be a mapping", where, key.Line)
				bad = true
			}
			seen[key.Value] = true
			if key.Value != "name" {
				body.Content = append(body.Content, key, val)
			}
		}
		if bad {
			body = nil // reported: its devices are left out without a word more
		}
		byName[name] = body
	}
	return byName
}

// checkPoints requires of a profile's points what merging by name needs: each a
// mapping with a name of its own.
func (x *expansion) checkPoints(where string, points *yaml.Node) bool {
	points = deref(points)
	if points.Kind != yaml.SequenceNode {
		x.problem("%s: points: line %d: must be a list", where, points.Line)
		return false
	}
	ok := true
	names := map[string]int{}
	for i, pt := range points.Content {
		name := pointName(pt)
		switch j, dup := names[name]; {
		case name == "":
			x.problem("%s: points[%d]: line %d: name is required (points merge by name)", where, i, pt.Line)
			ok = false
		case dup:
			x.problem("%s: points[%d]: line %d: name %q also used by points[%d]", where, i, pt.Line, name, j)
			ok = false
		default:
			names[name] = i
		}
	}
	return ok
}

// merge returns base with over applied: over's keys win, `labels` mappings merge
// and `points` lists merge by name. Keys named in drop are left out. The nodes of
// base and over are shared, never changed: a profile serves every device.
func merge(base, over *yaml.Node, drop ...string) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: over.Line, Column: over.Column}
	if k, v := lookup(over, "id"); k != nil {
		// A device's id first, where a reader of check --expand looks for it (a
		// profile has none; a second id stays for the decoder to refuse).
		out.Content = append(out.Content, k, v)
		drop = append(drop[:len(drop):len(drop)], "id")
	}
	at := map[string]int{} // key: index of its value in out.Content
	for k := 0; k+1 < len(base.Content); k += 2 {
		at[base.Content[k].Value] = len(out.Content) + 1
		out.Content = append(out.Content, base.Content[k], base.Content[k+1])
	}
	taken := map[string]bool{}
	for k := 0; k+1 < len(over.Content); k += 2 {
		key, val := over.Content[k], over.Content[k+1]
		if contains(drop, key.Value) {
			if key.Value == "id" && key != out.Content[0] {
				out.Content = append(out.Content, key, val)
			}
			continue
		}
		i, inBase := at[key.Value]
		if !inBase || taken[key.Value] {
			// New, or said twice: the second time stays for the protocol's
			// decoder to refuse as a duplicate.
			out.Content = append(out.Content, key, val)
			continue
		}
		taken[key.Value] = true
		out.Content[i-1] = key
		out.Content[i] = mergeValue(key.Value, deref(out.Content[i]), deref(val))
	}
	return out
}

func mergeValue(key string, base, over *yaml.Node) *yaml.Node {
	switch {
	case key == "labels" && base.Kind == yaml.MappingNode && over.Kind == yaml.MappingNode:
		return merge(base, over)
	case key == "points" && base.Kind == yaml.SequenceNode && over.Kind == yaml.SequenceNode:
		return mergePoints(base, over)
	}
	return over
}

// mergePoints merges a device's points into its profile's by name.
func mergePoints(base, over *yaml.Node) *yaml.Node {
	out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: over.Line, Column: over.Column}
	out.Content = append(out.Content, base.Content...)
	at := map[string]int{}
	for i, pt := range base.Content {
		at[pointName(pt)] = i
	}
	for _, pt := range over.Content {
		name := pointName(pt)
		i, ok := at[name]
		if name == "" || !ok {
			out.Content = append(out.Content, pt)
			continue
		}
		delete(at, name) // a second point of the same name is added, and refused as a duplicate
		out.Content[i] = merge(deref(out.Content[i]), deref(pt))
	}
	return out
}

func pointName(pt *yaml.Node) string {
	if pt = deref(pt); pt.Kind != yaml.MappingNode {
		return ""
	}
	if _, v := lookup(pt, "name"); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

func deviceID(d *yaml.Node) string {
	if _, v := lookup(d, "id"); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// lookup returns the first key named key of a mapping and its value, or nils.
func lookup(m *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == key {
			return m.Content[k], deref(m.Content[k+1])
		}
	}
	return nil, nil
}

// deref follows YAML aliases (`*anchor`) to what they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func known(byName map[string]*yaml.Node) string {
	if len(byName) == 0 {
		return " (the config has no profiles)"
	}
	names := make([]string, 0, len(byName))
	for n, p := range byName {
		if p != nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	return fmt.Sprintf(" (known: %v)", names)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deviceRef finds the first device a problem names: `device "fryer-2"`.
var deviceRef = regexp.MustCompile(`device ("(?:[^"\\]|\\.)*")`)

// profiled is a problem of a device expanded from a profile: its text names the
// profile too.
type profiled struct {
	msg string
	err error
}

func (p *profiled) Error() string { return p.msg }
func (p *profiled) Unwrap() error { return p.err }

// nameProfiles adds its profile to every problem that names an expanded device,
// `device "fryer-2" (profile "fryer-x200"): ...`, so that the reader knows where
// a key the device does not say itself came from.
func (x *expansion) nameProfiles(probs Problems) Problems {
	if len(x.profileOf) == 0 {
		return probs
	}
	for i, err := range probs {
		msg := err.Error()
		loc := deviceRef.FindStringSubmatchIndex(msg)
		if loc == nil {
			continue
		}
		id, uerr := strconv.Unquote(msg[loc[2]:loc[3]])
		p, ok := x.profileOf[id]
		if uerr != nil || !ok {
			continue
		}
		msg = fmt.Sprintf("%s (profile %q)%s", msg[:loc[1]], p, fileLines(msg[loc[1]:], x.merged[id]))
		probs[i] = &profiled{msg: msg, err: err}
	}
	return probs
}

// decodedLine is a line number in an error of the strict decoder.
var decodedLine = regexp.MustCompile(`\bline (\d+):`)

// fileLines puts the lines of the file into the strict decoder's errors about
// a merged device. protocols.DecodeStrict decodes a node encoded again, so its
// errors count the lines of that text, which for a device written out by hand
// are near enough; a merged device's keys come from two places, so each line is
// traced back to the node it was encoded from, which remembers its own.
func fileLines(msg string, merged *yaml.Node) string {
	if merged == nil {
		return msg
	}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(merged); err != nil { // as DecodeStrict does
		return msg
	}
	var again yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &again); err != nil || len(again.Content) == 0 {
		return msg
	}
	lines := map[int]int{}
	var walk func(re, orig *yaml.Node)
	walk = func(re, orig *yaml.Node) {
		if orig = deref(orig); orig == nil || re.Kind != orig.Kind || len(re.Content) != len(orig.Content) {
			return
		}
		if _, ok := lines[re.Line]; !ok {
			lines[re.Line] = orig.Line
		}
		for i := range re.Content {
			walk(re.Content[i], orig.Content[i])
		}
	}
	walk(again.Content[0], merged)
	first := true
	return decodedLine.ReplaceAllStringFunc(msg, func(s string) string {
		if first { // the device's own line, from the node DecodeStrict was given
			first = false
			return s
		}
		n, _ := strconv.Atoi(decodedLine.FindStringSubmatch(s)[1])
		if l, ok := lines[n]; ok {
			return fmt.Sprintf("line %d:", l)
		}
		return s
	})
}

// Expand returns a config with its profiles applied: no `profiles:` section, and
// every device complete. It checks nothing but the profiles themselves: run Parse
// for the rest. The result, once valid, is a config Parse takes as it is.
func Expand(b []byte) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Problems{fmt.Errorf("config: %w", err)}
	}
	if len(root.Content) == 0 {
		return b, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, Problems{fmt.Errorf("config: line %d: the top level must be a mapping", doc.Line)}
	}
	_, profiles := lookup(doc, "profiles")
	_, devices := lookup(doc, "devices")
	x := expandProfiles(profiles, devices)
	if len(x.probs) > 0 {
		return nil, x.probs
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: doc.HeadComment}
	for k := 0; k+1 < len(doc.Content); k += 2 {
		switch doc.Content[k].Value {
		case "profiles":
		case "devices":
			out.Content = append(out.Content, doc.Content[k], x.devices)
		default:
			out.Content = append(out.Content, doc.Content[k], doc.Content[k+1])
		}
	}
	return encodeYAML(out)
}

// UnusedProfiles lists the profiles of a config that no device names: not an
// error, but likely a mistake worth a warning.
func UnusedProfiles(b []byte) []string {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	_, profiles := lookup(root.Content[0], "profiles")
	_, devices := lookup(root.Content[0], "devices")
	return expandProfiles(profiles, devices).unused
}

// encodeYAML writes a document with the two-space indent of the examples.
func encodeYAML(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if b := buf.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}
