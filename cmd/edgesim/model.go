package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The simulated device model: what a device reports and how a write changes it.
// It knows nothing of MQTT; mqtt.go moves its payloads.

// kind is how a point's value evolves between readings.
type kind int

const (
	kindTemperature kind = iota // random walk around 21 °C
	kindCounter                 // monotonic integer, a production or energy counter
	kindAlarm                   // bool that flips rarely
	kindHumidity                // random walk in [0, 100] %
	kindPressure                // random walk around 1013.25 hPa
	kindHeld                    // a point created by a write: reports what was written
)

// kinds is the cycle of generated points: point i is kinds[i%len(kinds)].
var kinds = []struct {
	name, unit string
	kind       kind
}{
	{"temperature", "°C", kindTemperature},
	{"counter", "", kindCounter},
	{"alarm", "", kindAlarm},
	{"humidity", "%", kindHumidity},
	{"pressure", "hPa", kindPressure},
}

// maxPoints bounds a device's points, generated and created by writes together.
const maxPoints = 1024

// point is one simulated point. Its value is kept as a JSON literal (21.5, 42, true,
// "open"), which is also what every payload form carries.
type point struct {
	name string
	unit string
	kind kind
	num  float64 // walks
	cnt  int64   // counter
	on   bool    // alarm
	// held is set by a write: the point reports it from then on, as a device holds
	// a setpoint until told otherwise.
	held string
}

// device is one simulated device's state. It is not safe for concurrent use: one
// goroutine owns it (mqtt.go's device loop).
type device struct {
	id     string
	points []*point
	byName map[string]*point
	rng    *rand.Rand
	next   int // the point the next single-point reading is of
}

// newDevice makes a device with n generated points. Its values start at random
// within their ranges, from a generator seeded with (seed, index): the same seed
// gives the same readings.
func newDevice(id string, n int, seed uint64, index uint64) *device {
	d := &device{id: id, byName: make(map[string]*point, n), rng: rand.New(rand.NewPCG(seed, index))}
	for i := range n {
		k := kinds[i%len(kinds)]
		name := k.name
		if i >= len(kinds) {
			name = k.name + "_" + strconv.Itoa(i/len(kinds)+1)
		}
		p := &point{name: name, unit: k.unit, kind: k.kind}
		switch k.kind {
		case kindTemperature:
			p.num = 18 + d.rng.Float64()*6
		case kindCounter:
			p.cnt = d.rng.Int64N(1000)
		case kindHumidity:
			p.num = 35 + d.rng.Float64()*20
		case kindPressure:
			p.num = 1005 + d.rng.Float64()*15
		}
		d.points = append(d.points, p)
		d.byName[name] = p
	}
	return d
}

// step advances a point to its next reading and returns it as a JSON literal.
func (p *point) step(rng *rand.Rand) string {
	switch p.kind {
	case kindTemperature:
		// Mean-reverting walk: noisy, but it stays where a room or a fryer would.
		p.num += 0.05*(21-p.num) + rng.NormFloat64()*0.2
		p.num = clamp(p.num, -40, 125)
	case kindHumidity:
		p.num += 0.02*(45-p.num) + rng.NormFloat64()*0.5
		p.num = clamp(p.num, 0, 100)
	case kindPressure:
		p.num += 0.01*(1013.25-p.num) + rng.NormFloat64()*0.1
	case kindCounter:
		p.cnt += 1 + rng.Int64N(3)
	case kindAlarm:
		if rng.IntN(100) == 0 {
			p.on = !p.on
		}
	}
	return p.literal()
}

// literal is the point's current value as a JSON literal.
func (p *point) literal() string {
	if p.held != "" {
		return p.held
	}
	switch p.kind {
	case kindCounter:
		return strconv.FormatInt(p.cnt, 10)
	case kindAlarm:
		return strconv.FormatBool(p.on)
	case kindHumidity:
		return strconv.FormatFloat(p.num, 'f', 1, 64)
	default:
		return strconv.FormatFloat(p.num, 'f', 2, 64)
	}
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// payloadForm is how readings are encoded, the --payload flag.
type payloadForm int

const (
	formJSON   payloadForm = iota // {"value": 21.5, "ts": "...", "unit": "°C"} on devices/{device}/{point}
	formNumber                    // the bare value on devices/{device}/{point}
	formObject                    // every point at once on devices/{device}
)

func parseForm(s string) (payloadForm, bool) {
	switch s {
	case "json":
		return formJSON, true
	case "number":
		return formNumber, true
	case "object":
		return formObject, true
	}
	return 0, false
}

// reading is one message to publish.
type reading struct {
	topic   string
	payload []byte
}

// nextReading advances the device and encodes its next message: in the object form
// every point, otherwise the next point in turn.
func (d *device) nextReading(form payloadForm, now time.Time) reading {
	if form == formObject {
		var b bytes.Buffer
		b.WriteByte('{')
		for _, p := range d.points {
			v := p.step(d.rng)
			fmt.Fprintf(&b, "%q:", p.name)
			if p.unit != "" {
				fmt.Fprintf(&b, `{"value":%s,"unit":%q},`, v, p.unit)
			} else {
				b.WriteString(v)
				b.WriteByte(',')
			}
		}
		fmt.Fprintf(&b, `"ts":%q}`, now.UTC().Format(time.RFC3339Nano))
		return reading{topic: "devices/" + d.id, payload: b.Bytes()}
	}
	p := d.points[d.next]
	d.next = (d.next + 1) % len(d.points)
	return d.pointReading(p, p.step(d.rng), form, now)
}

// pointReading encodes one point's value.
func (d *device) pointReading(p *point, v string, form payloadForm, now time.Time) reading {
	topic := "devices/" + d.id + "/" + p.name
	if form == formNumber {
		return reading{topic: topic, payload: []byte(v)}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"value":%s,"ts":%q`, v, now.UTC().Format(time.RFC3339Nano))
	if p.unit != "" {
		fmt.Fprintf(&b, `,"unit":%q`, p.unit)
	}
	b.WriteByte('}')
	if form == formObject {
		// An object of one point, on the device's topic.
		return reading{topic: "devices/" + d.id, payload: fmt.Appendf(nil, `{%q:%s}`, p.name, b.Bytes())}
	}
	return reading{topic: topic, payload: b.Bytes()}
}

// errBadWrite is wrapped by every error applyWrite returns.
var errBadWrite = errors.New("bad write")

// applyWrite takes a write published on devices/{device}/{point}/set: the point
// holds the written value from then on (a point the device did not have is created,
// up to maxPoints). It returns the reading that reports the new value.
func (d *device) applyWrite(topic string, raw []byte, form payloadForm, now time.Time) (reading, error) {
	name, ok := writePoint(topic, d.id)
	if !ok {
		return reading{}, fmt.Errorf("%w: topic %q is not devices/%s/{point}/set", errBadWrite, topic, d.id)
	}
	if err := validName(name); err != nil {
		return reading{}, fmt.Errorf("%w: point %q: %v", errBadWrite, name, err)
	}
	lit, err := writeLiteral(raw)
	if err != nil {
		return reading{}, fmt.Errorf("%w: point %q: %v", errBadWrite, name, err)
	}
	p := d.byName[name]
	if p == nil {
		if len(d.points) >= maxPoints {
			return reading{}, fmt.Errorf("%w: point %q: the device already has %d points", errBadWrite, name, maxPoints)
		}
		p = &point{name: name, kind: kindHeld}
		d.points = append(d.points, p)
		d.byName[name] = p
	}
	p.held = lit
	return d.pointReading(p, lit, form, now), nil
}

// writePoint extracts the point from devices/{device}/{point}/set.
func writePoint(topic, id string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "devices/"+id+"/")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/set")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// maxWriteSize bounds a write payload.
const maxWriteSize = 4096

// writeLiteral turns a write payload into the JSON literal the point then reports.
// It takes what a device would: a JSON scalar (21.5, true, "open"), a reading object
// {"value": ...}, or bare text, which is a string.
func writeLiteral(raw []byte) (string, error) {
	if len(raw) > maxWriteSize {
		return "", fmt.Errorf("payload of %d bytes is over %d", len(raw), maxWriteSize)
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "", errors.New("empty payload")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("payload is not UTF-8")
	}
	v, err := decodeJSON(s)
	if err != nil {
		if strings.ContainsAny(s[:1], "{[\"") {
			return "", fmt.Errorf("payload is not valid JSON: %v", err)
		}
		// Bare text: a string value.
		b, _ := json.Marshal(s)
		return string(b), nil
	}
	if obj, ok := v.(map[string]any); ok {
		val, ok := obj["value"]
		if !ok {
			return "", errors.New(`a JSON object must have a "value"`)
		}
		v = val
	}
	switch v := v.(type) {
	case json.Number:
		// As written: an integer stays an integer, however large.
		return v.String(), nil
	case bool, string:
		b, err := json.Marshal(v)
		return string(b), err
	}
	return "", fmt.Errorf("value must be a number, true, false or a string, not %s", describeJSON(v))
}

// decodeJSON decodes one JSON value, keeping numbers as text.
func decodeJSON(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func describeJSON(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// validName is the gateway's rule for device and point names: 1 to 256 bytes of
// UTF-8 without '/', '+', '#' or control characters, so a name fits in a topic level.
func validName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > 256:
		return errors.New("name longer than 256 bytes")
	case !utf8.ValidString(s):
		return errors.New("name is not UTF-8")
	}
	for _, r := range s {
		if r == '/' || r == '+' || r == '#' || unicode.IsControl(r) {
			return fmt.Errorf("name holds %q", r)
		}
	}
	return nil
}
