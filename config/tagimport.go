package config

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/edgegate/edgegate/protocols"
	"gopkg.in/yaml.v3"
)

// Tag lists (docs/profiles.md): a CSV file, one point a row, made a `devices:`
// document. The first row names the columns: the device column (`device` unless
// told otherwise) and `name` are required; `labels.KEY` is a point's label,
// `device.KEY` a device's key (`device.labels.KEY` its label); every other column
// is a point key of the device's protocol.
//
// Each cell becomes the YAML scalar a person would have written, a number or a
// boolean when it reads as one, and is checked alone against the protocol's
// strict decoder, so that a bad cell is reported with its line and column rather
// than as a line of a document the user never wrote. The whole document is then
// validated as `check` would, its problems traced back to rows.

// MaxImportProblems bounds the problems an import reports (a wrong column repeats
// on every row).
const MaxImportProblems = 1000

// columns whose cells are text whatever they look like.
var textColumns = map[string]bool{"name": true, "device.protocol": true, "device.profile": true, "device.address": true}

type column struct {
	name string
	// kind is where the cell goes: the device's id, a device key or label, a
	// point key or label.
	kind int
	key  string
}

const (
	colID = iota
	colDevice
	colDeviceLabel
	colPoint
	colPointLabel
)

type cell struct {
	col  *column
	node *yaml.Node
	line int
}

type importDevice struct {
	id    string
	line  int
	keys  []cell // device keys and labels, first seen, in column order
	byKey map[string]cell
	// points are each row's cells; pointLine is each point's row.
	points    [][]cell
	pointLine []int
	names     map[string]int
	// bad is set by a problem of the device, pointBad by one of a point's cells:
	// the document then leaves it out, so that checking the rest still finds
	// every other problem. emitted is the line of each point in the document.
	bad      bool
	pointBad map[int]bool
	emitted  []int
}

type importer struct {
	probs   Problems
	lines   []int // each problem's line, to sort them by
	more    int
	devices []*importDevice
	byID    map[string]*importDevice
	checked map[string]error // protocol, column, tag and value: the cell's verdict
}

func (im *importer) problem(line int, col string, format string, args ...any) {
	if len(im.probs) >= MaxImportProblems {
		im.more++
		return
	}
	msg := fmt.Sprintf(format, args...)
	im.lines = append(im.lines, line)
	if col == "" {
		im.probs = append(im.probs, fmt.Errorf("line %d: %s", line, msg))
		return
	}
	im.probs = append(im.probs, fmt.Errorf("line %d, column %q: %s", line, col, msg))
}

// add records a problem that is not a cell's.
func (im *importer) add(line int, err error) {
	if len(im.probs) >= MaxImportProblems {
		im.more++
		return
	}
	im.probs = append(im.probs, err)
	im.lines = append(im.lines, line)
}

// ImportTags reads a tag list and returns a YAML `devices:` document that Parse
// accepts. On failure it returns every problem found (Problems, each naming its
// line and column) and no document.
func ImportTags(r io.Reader, deviceColumn string) ([]byte, error) {
	if deviceColumn == "" {
		deviceColumn = "device"
	}
	if deviceColumn == "name" || strings.HasPrefix(deviceColumn, "device.") || strings.HasPrefix(deviceColumn, "labels.") {
		return nil, Problems{fmt.Errorf("the device column %q is a point's or a device's key", deviceColumn)}
	}
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	im := &importer{byID: map[string]*importDevice{}, checked: map[string]error{}}
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{errors.New("line 1: the header row is missing")}
		}
		return nil, Problems{err}
	}
	// A spreadsheet's "CSV UTF-8" starts with a byte order mark.
	header[0] = strings.TrimPrefix(header[0], "\ufeff")
	cols := im.readHeader(header, deviceColumn)
	if len(im.probs) > 0 {
		return nil, im.probs
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			im.problem(pe.StartLine, "", "%d cells, the header has %d", len(rec), len(cols))
			continue
		}
		if errors.As(err, &pe) {
			// A broken quote leaves the reader unsure where rows start: stop.
			im.problem(pe.Line, "", "%v", pe.Err)
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0) // where the row starts: a quoted cell may span lines
		im.row(line, cols, rec)
	}
	if len(im.probs) == 0 && len(im.devices) == 0 {
		im.problem(1, "", "no rows")
	}
	im.checkCells()
	// The devices without a problem yet are checked as a whole, even when others
	// have one: every bad row is reported at once.
	out, err := encodeYAML(im.document())
	if err != nil {
		return nil, err
	}
	im.validate(out)
	if len(im.probs) > 0 {
		return nil, im.result()
	}
	return out, nil
}

// result is the problems by line (a stable sort: a line's problems keep their
// order), bounded.
func (im *importer) result() Problems {
	order := make([]int, len(im.probs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return im.lines[order[i]] < im.lines[order[j]] })
	sorted := make(Problems, len(order))
	for i, k := range order {
		sorted[i] = im.probs[k]
	}
	im.probs = sorted
	if im.more > 0 {
		return append(im.probs, fmt.Errorf("and %d more problems", im.more))
	}
	return im.probs
}

func (im *importer) readHeader(header []string, deviceColumn string) []*column {
	cols := make([]*column, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		c := &column{name: h, kind: colPoint, key: h}
		switch {
		case h == "":
			im.problem(1, "", "column %d has no name", i+1)
		case seen[h]:
			im.problem(1, h, "a second column of this name")
		case h == deviceColumn:
			c.kind = colID
		case strings.HasPrefix(h, "device.labels."):
			c.kind, c.key = colDeviceLabel, strings.TrimPrefix(h, "device.labels.")
		case strings.HasPrefix(h, "device."):
			c.kind, c.key = colDevice, strings.TrimPrefix(h, "device.")
			switch c.key {
			case "id":
				im.problem(1, h, "the device's id is the %q column", deviceColumn)
			case "points", "labels":
				im.problem(1, h, "%s are given by the rows (labels: device.labels.KEY columns)", c.key)
			}
		case strings.HasPrefix(h, "labels."):
			c.kind, c.key = colPointLabel, strings.TrimPrefix(h, "labels.")
		case h == "labels":
			im.problem(1, h, "a point's labels are labels.KEY columns")
		}
		if c.key == "" || strings.Contains(c.key, ".") && c.kind != colPointLabel && c.kind != colDeviceLabel {
			im.problem(1, h, "only labels.KEY, device.KEY and device.labels.KEY columns have dots")
		}
		seen[h] = true
		cols[i] = c
	}
	for _, need := range []string{deviceColumn, "name"} {
		if !seen[need] {
			im.problem(1, "", "the column %q is required", need)
		}
	}
	return cols
}

// row adds one point, and its device's keys.
func (im *importer) row(line int, cols []*column, rec []string) {
	var id string
	var cells []cell
	empty := true
	for i, v := range rec {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		empty = false
		if cols[i].kind == colID {
			id = v
			continue
		}
		cells = append(cells, cell{col: cols[i], node: scalar(cols[i], v), line: line})
	}
	if empty {
		return
	}
	var name string
	for _, c := range cells {
		if c.col.name == "name" {
			name = c.node.Value
		}
	}
	bad := false
	for col, v := range map[string]string{im.idColumn(cols): id, "name": name} {
		if v == "" {
			im.problem(line, col, "required")
			bad = true
		}
	}
	if bad {
		return
	}
	d := im.byID[id]
	if d == nil {
		d = &importDevice{id: id, line: line, byKey: map[string]cell{}, names: map[string]int{}, pointBad: map[int]bool{}}
		im.byID[id] = d
		im.devices = append(im.devices, d)
	}
	if first, dup := d.names[name]; dup {
		im.problem(line, "name", "device %q has a point %q on line %d already", id, name, first)
		d.bad = true
		return
	}
	d.names[name] = line
	var point []cell
	for _, c := range cells {
		switch c.col.kind {
		case colDevice, colDeviceLabel:
			if had, ok := d.byKey[c.col.name]; ok {
				if had.node.Value != c.node.Value {
					im.problem(line, c.col.name, "device %q: %q here, %q on line %d", id, c.node.Value, had.node.Value, had.line)
					d.bad = true
				}
				continue
			}
			d.byKey[c.col.name] = c
			d.keys = append(d.keys, c)
		default:
			point = append(point, c)
		}
	}
	d.points = append(d.points, point)
	d.pointLine = append(d.pointLine, line)
}

func (im *importer) idColumn(cols []*column) string {
	for _, c := range cols {
		if c.kind == colID {
			return c.name
		}
	}
	return "device"
}

// scalar is the YAML a person would have written for a cell: a number or a
// boolean when it reads as one (and the column is not text), a string otherwise.
func scalar(c *column, v string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: v}
	tag := n.ShortTag()
	switch {
	case c.kind == colPointLabel || c.kind == colDeviceLabel || textColumns[c.name]:
		tag = "!!str"
	case tag == "!!int" || tag == "!!float" || tag == "!!bool":
	default:
		tag = "!!str"
	}
	n.Tag = tag
	return n
}

// checkCells decodes each device's cells alone with its protocol's strict
// decoder. A cell that reads as a number or boolean but that the decoder takes
// only as text (a numeric point name, say) becomes text.
func (im *importer) checkCells() {
	for _, d := range im.devices {
		proto := ""
		if c, ok := d.byKey["device.protocol"]; ok {
			proto = c.node.Value
		}
		_, hasProfile := d.byKey["device.profile"]
		if proto == "" {
			if !hasProfile {
				im.problem(d.line, "device.protocol", "device %q: required (or device.profile)", d.id)
				d.bad = true
			}
			continue // the profile's protocol is not known here: the document's check says the rest
		}
		if _, ok := protocols.Lookup(proto); !ok {
			im.problem(d.byKey["device.protocol"].line, "device.protocol", "device %q: unknown protocol %q (known: %s)", d.id, proto, strings.Join(protocols.Names(), ", "))
			d.bad = true
			continue
		}
		for _, c := range d.keys {
			if !im.checkCell(d.id, proto, c) {
				d.bad = true
			}
		}
		for i, p := range d.points {
			for _, c := range p {
				if (c.col.kind != colPoint || c.col.name != "name") && !im.checkCell(d.id, proto, c) {
					d.pointBad[i] = true
				}
			}
		}
		if len(d.pointBad) == len(d.points) {
			d.bad = true
		}
	}
}

func (im *importer) checkCell(id, proto string, c cell) bool {
	err := im.probe(proto, c)
	if err != nil && c.node.Tag != "!!str" {
		if im.probe(proto, cell{col: c.col, node: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: c.node.Value}}) == nil {
			c.node.Tag = "!!str"
			return true
		}
	}
	if err != nil {
		im.problem(c.line, c.col.name, "device %q: %v", id, err)
		return false
	}
	return true
}

// probe decodes a device with the one cell, cached: a tag list repeats its
// values.
func (im *importer) probe(proto string, c cell) error {
	key := proto + "\x00" + c.col.name + "\x00" + c.node.Tag + "\x00" + c.node.Value
	if err, ok := im.checked[key]; ok {
		return err
	}
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	dev := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("id"), str("probe"), str("protocol"), str(proto)}}
	switch c.col.kind {
	case colDevice:
		if c.col.key != "protocol" {
			dev.Content = append(dev.Content, str(c.col.key), c.node)
		}
	case colDeviceLabel:
		dev.Content = append(dev.Content, str("labels"), &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str(c.col.key), c.node}})
	default:
		kv := []*yaml.Node{str(c.col.key), c.node}
		if c.col.kind == colPointLabel {
			kv = []*yaml.Node{str("labels"), {Kind: yaml.MappingNode, Content: kv}}
		}
		pt := &yaml.Node{Kind: yaml.MappingNode, Content: append([]*yaml.Node{str("name"), str("probe")}, kv...)}
		dev.Content = append(dev.Content, str("points"), &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{pt}})
	}
	newCfg, _ := protocols.Lookup(proto)
	var err error
	if taker, ok := newCfg().(protocols.DeviceTaker); !ok {
		err = fmt.Errorf("protocol %q takes no devices entries", proto)
	} else if err = taker.AddDevice(dev); err != nil {
		err = errors.New(decoderMessage(err.Error()))
	}
	im.checked[key] = err
	return err
}

// decoderMessage is the last line of a strict decoder's error without its line
// numbers, which count lines of a document made up for the probe.
func decoderMessage(msg string) string {
	if i := strings.LastIndex(msg, "\n"); i >= 0 {
		msg = msg[i+1:]
	}
	msg = strings.TrimSpace(msg)
	for {
		loc := leadingLine.FindStringIndex(msg)
		if loc == nil {
			break
		}
		msg = msg[loc[1]:]
	}
	if strings.HasPrefix(msg, "yaml: unmarshal errors:") {
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml: unmarshal errors:"))
	}
	if strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type ") {
		f, typ, _ := strings.Cut(strings.TrimPrefix(msg, "field "), " not found in type ")
		return fmt.Sprintf("%q is not a key of %s", f, typ)
	}
	return msg
}

var leadingLine = regexp.MustCompile(`^(device "[^"]*": )?line \d+: `)

// document is the devices in the order of their first rows.
func (im *importer) document() *yaml.Node {
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, d := range im.devices {
		if d.bad {
			continue
		}
		dev := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("id"), str(d.id)}}
		var labels *yaml.Node
		for _, c := range d.keys {
			if c.col.kind == colDeviceLabel {
				if labels == nil {
					labels = &yaml.Node{Kind: yaml.MappingNode}
				}
				labels.Content = append(labels.Content, str(c.col.key), c.node)
				continue
			}
			dev.Content = append(dev.Content, str(c.col.key), c.node)
		}
		if labels != nil {
			dev.Content = append(dev.Content, str("labels"), labels)
		}
		points := &yaml.Node{Kind: yaml.SequenceNode}
		d.emitted = d.emitted[:0]
		for i, p := range d.points {
			if d.pointBad[i] {
				continue
			}
			d.emitted = append(d.emitted, d.pointLine[i])
			pt := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
			var plabels *yaml.Node
			for _, c := range p {
				if c.col.kind == colPointLabel {
					if plabels == nil {
						plabels = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
					}
					plabels.Content = append(plabels.Content, str(c.col.key), c.node)
					continue
				}
				pt.Content = append(pt.Content, str(c.col.key), c.node)
			}
			if plabels != nil {
				pt.Content = append(pt.Content, str("labels"), plabels)
			}
			points.Content = append(points.Content, pt)
		}
		dev.Content = append(dev.Content, str("points"), points)
		list.Content = append(list.Content, dev)
	}
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("devices"), list}}
}

var (
	problemDevice = regexp.MustCompile(`device ("(?:[^"\\]|\\.)*")`)
	problemPoint  = regexp.MustCompile(`points\[(\d+)\]( "(?:[^"\\]|\\.)*")?: ([a-z_]+)?`)
	problemKey    = regexp.MustCompile(`^: ([a-z_]+):`)
)

// validate checks the document as `check` would, unless a device takes a profile
// the tag list does not have: then the config it joins is checked where it is
// used. Each problem is traced back to the row of its device or point.
func (im *importer) validate(doc []byte) {
	good := 0
	for _, d := range im.devices {
		if _, ok := d.byKey["device.profile"]; ok {
			return
		}
		if !d.bad {
			good++
		}
	}
	if good == 0 {
		return
	}
	cfg, err := Parse(doc)
	if err == nil {
		cfg.FunctionSet.Close()
		return
	}
	var probs Problems
	if !errors.As(err, &probs) {
		im.add(0, err)
		return
	}
	for _, p := range probs {
		msg := p.Error()
		m := problemDevice.FindStringSubmatchIndex(msg)
		if m == nil {
			im.add(0, fmt.Errorf("the document: %s", msg))
			continue
		}
		id, _ := strconv.Unquote(msg[m[2]:m[3]])
		d := im.byID[id]
		if d == nil {
			im.add(0, fmt.Errorf("the document: %s", msg))
			continue
		}
		rest := msg[m[1]:]
		if pm := problemPoint.FindStringSubmatch(rest); pm != nil {
			i, _ := strconv.Atoi(pm[1])
			if i < len(d.emitted) {
				col := pm[3]
				if col == "" {
					col = "name"
				}
				im.problem(d.emitted[i], col, "device %q%s", id, rest)
				continue
			}
		}
		col := "device." + strings.TrimPrefix(problemKey.FindString(rest), ": ")
		col = strings.TrimSuffix(col, ":")
		line := d.line
		if c, ok := d.byKey[col]; ok {
			line = c.line
		}
		if col == "device." {
			col = ""
		}
		im.problem(line, col, "device %q%s", id, rest)
	}
}
