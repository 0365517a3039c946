// Package payload decodes the payloads that devices publish over MQTT (and CoAP) into
// typed readings: a bare number, true or false, a JSON string, bare text, a JSON
// reading object, or an object of several points at once (docs/mqtt.md, "Payloads").
//
// It is only the codec: it knows nothing of topics, devices or the bridge's hub, and
// it never guesses. A payload that does not fit one of the forms is refused with an
// error wrapping ErrInvalidPayload that says what is wrong, so that the device's
// author can fix it. Every input is bounded (size, points per object); nesting is
// bounded by the grammar itself: an object of points may hold reading objects and
// nothing deeper, and anything deeper is refused at its first byte, before it is read.
package payload

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
)

// Defaults for a zero Decoder.
const (
	// DefaultMaxSize matches the MQTT adapter's default packet size: a payload
	// cannot be larger than the packet carrying it.
	DefaultMaxSize = 64 << 10
	// DefaultMaxPoints bounds one object of points; a device with more points
	// publishes them in several objects.
	DefaultMaxPoints = 256
)

// Every error this package returns wraps ErrInvalidPayload; those for a bound also
// wrap ErrTooLarge or ErrTooManyPoints.
var (
	ErrInvalidPayload = errors.New("invalid payload")
	ErrTooLarge       = errors.New("payload too large")
	ErrTooManyPoints  = errors.New("too many points")
)

// Reading is one decoded value of one point.
type Reading struct {
	Point      string // empty from Decode: the point is named by the topic
	Value      bridge.Value
	SourceTime time.Time // zero when the payload gives none
	Unit       string
	Quality    bridge.Quality // QualityGood unless the payload says otherwise
}

// Decoder decodes payloads within bounds. The zero value uses the defaults; it is
// safe for concurrent use.
type Decoder struct {
	MaxSize   int // bytes; 0 means DefaultMaxSize
	MaxPoints int // points in one object; 0 means DefaultMaxPoints
}

func (d Decoder) maxSize() int {
	if d.MaxSize > 0 {
		return d.MaxSize
	}
	return DefaultMaxSize
}

func (d Decoder) maxPoints() int {
	if d.MaxPoints > 0 {
		return d.MaxPoints
	}
	return DefaultMaxPoints
}

// Decode decodes the payload of one point, whose name the caller knows (from the
// topic): a bare number, true or false, a JSON string, bare text, or a reading object
// {"value": ..., "ts": "RFC 3339", "unit": "...", "quality": "good|uncertain|bad"}.
//
// Numbers without '.' or an exponent are Int, or Uint when above MaxInt64 (and Double
// beyond MaxUint64); other numbers are Double. Surrounding whitespace is ignored, so
// "21.5\n" is 21.5 and " hello " is "hello". A payload that is not UTF-8 is Bytes, as
// it came. A payload that starts like JSON ('{', '"' or '[') must be valid JSON.
func (d Decoder) Decode(raw []byte) (Reading, error) {
	if err := d.checkSize(raw); err != nil {
		return Reading{}, err
	}
	if !utf8.Valid(raw) {
		// Binary data: there is no text form to interpret.
		return Reading{Value: bridge.Bytes(raw), Quality: bridge.QualityGood}, nil
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return Reading{}, fmt.Errorf("%w: empty", ErrInvalidPayload)
	}
	switch s[0] {
	case '{':
		sc := newScanner(s)
		r, err := sc.readingObject("")
		if err == nil {
			err = sc.end()
		}
		return r, err
	case '"':
		sc := newScanner(s)
		v, err := sc.str()
		if err == nil {
			err = sc.end()
		}
		if err != nil {
			return Reading{}, err
		}
		return Reading{Value: bridge.String(v), Quality: bridge.QualityGood}, nil
	case '[':
		return Reading{}, fmt.Errorf("%w: a JSON array is not a reading", ErrInvalidPayload)
	}
	switch s {
	case "true", "false":
		return Reading{Value: bridge.Bool(s == "true"), Quality: bridge.QualityGood}, nil
	case "null":
		return Reading{}, fmt.Errorf("%w: null is not a value", ErrInvalidPayload)
	}
	if looksNumeric(s) {
		v, err := parseNumber(s)
		if err != nil {
			return Reading{}, err
		}
		return Reading{Value: v, Quality: bridge.QualityGood}, nil
	}
	return Reading{Value: bridge.String(s), Quality: bridge.QualityGood}, nil
}

// DecodeObject decodes an object of several points, in the order they appear:
//
//	{"temp": 21.5, "hum": {"value": 40, "unit": "%"}, "ts": "2024-05-01T12:00:00Z"}
//
// Each point's value is a JSON scalar or a reading object. The top-level "ts" is the
// source time of every point that has none of its own; it is therefore not a point
// name. Names are non-empty, at most bridge.MaxNameLen bytes, and hold no '/', '+',
// '#' or control character, so that every point can also be named in a topic.
func (d Decoder) DecodeObject(raw []byte) ([]Reading, error) {
	if err := d.checkSize(raw); err != nil {
		return nil, err
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: an object of points must be UTF-8 JSON", ErrInvalidPayload)
	}
	s := strings.TrimSpace(string(raw))
	if s == "" || s[0] != '{' {
		return nil, fmt.Errorf("%w: expected a JSON object of points, got %s", ErrInvalidPayload, describe(s))
	}
	sc := newScanner(s)
	var (
		out    []Reading
		ts     time.Time
		seenTS bool
		// seen holds the points once there are too many to look through out.
		seen map[string]bool
	)
	const scanPoints = 16
	dup := func(key string) bool {
		if seen != nil {
			return seen[key]
		}
		for i := range out {
			if out[i].Point == key {
				return true
			}
		}
		return false
	}
	err := sc.object(func(key string) error {
		if key == "ts" {
			if seenTS {
				return fmt.Errorf("%w: duplicate key \"ts\"", ErrInvalidPayload)
			}
			seenTS = true
			t, err := sc.timestamp(label{}, false)
			ts = t
			return err
		}
		if err := ValidName(key); err != nil {
			return fmt.Errorf("%w: point %s: %w", ErrInvalidPayload, quote(key), err)
		}
		if dup(key) {
			return fmt.Errorf("%w: duplicate point %s", ErrInvalidPayload, quote(key))
		}
		if len(out) == scanPoints {
			seen = make(map[string]bool, 2*scanPoints)
			for i := range out {
				seen[out[i].Point] = true
			}
		}
		if seen != nil {
			seen[key] = true
		}
		if len(out) == d.maxPoints() {
			return fmt.Errorf("%w: %w: more than %d points", ErrInvalidPayload, ErrTooManyPoints, d.maxPoints())
		}
		r, err := sc.pointValue(key)
		if err != nil {
			return err
		}
		r.Point = keep(key)
		out = append(out, r)
		return nil
	})
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the object names no point", ErrInvalidPayload)
	}
	for i := range out {
		if out[i].SourceTime.IsZero() {
			out[i].SourceTime = ts
		}
	}
	return out, nil
}

func (d Decoder) checkSize(raw []byte) error {
	if len(raw) > d.maxSize() {
		return fmt.Errorf("%w: %w: %d bytes, limit %d", ErrInvalidPayload, ErrTooLarge, len(raw), d.maxSize())
	}
	return nil
}

// ValidName reports why s cannot be a point (or device) name: it must be non-empty
// UTF-8 of at most bridge.MaxNameLen bytes, without '/', '+', '#' (they would make the
// name impossible to use in a topic) or control characters.
func ValidName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > bridge.MaxNameLen:
		return fmt.Errorf("name longer than %d bytes", bridge.MaxNameLen)
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

// ParseQuality reads "good", "uncertain" or "bad".
func ParseQuality(s string) (bridge.Quality, bool) {
	switch s {
	case "good":
		return bridge.QualityGood, true
	case "uncertain":
		return bridge.QualityUncertain, true
	case "bad":
		return bridge.QualityBad, true
	}
	return bridge.QualityUnspecified, false
}

// looksNumeric reports whether s has the shape of a number: an optional sign, digits
// with at most one '.', and an optional exponent. Anything else ("NaN", "0x10",
// "1_000", "12 V") is text, not a number that failed.
func looksNumeric(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseNumber converts a numeric literal (looksNumeric is true) to Int, Uint or
// Double as described at Decode.
func parseNumber(s string) (bridge.Value, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return bridge.Int(i), nil
		}
		if s[0] != '-' {
			if u, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, 64); err == nil {
				return bridge.Uint(u), nil
			}
		}
		// Beyond 64 bits: a double is the closest the model can carry.
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return bridge.Value{}, fmt.Errorf("%w: number %s is out of range", ErrInvalidPayload, clip(s))
	}
	return bridge.Double(f), nil
}

// describe names what a payload starts with, for errors, without echoing much of it.
func describe(s string) string {
	if s == "" {
		return "nothing"
	}
	return quote(s)
}

// clip bounds text taken from a payload before it goes into an error, which ends up
// in logs and in the device's last_error.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func quote(s string) string { return strconv.Quote(clip(s)) }
