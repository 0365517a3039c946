package payload

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// scanner reads the small subset of JSON that payloads use. It is hand-written rather
// than built on encoding/json's Decoder so that it can refuse what it does not expect
// (arrays, deeper objects, duplicate keys) at the first byte, say where, and never
// recurse: the grammar is at most two objects deep. It works on a string the caller
// has checked to be UTF-8.
type scanner struct {
	s   string
	pos int
}

func newScanner(s string) *scanner { return &scanner{s: s} }

func (sc *scanner) skipSpace() {
	for sc.pos < len(sc.s) {
		switch sc.s[sc.pos] {
		case ' ', '\t', '\n', '\r':
			sc.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (sc *scanner) peek() byte {
	sc.skipSpace()
	if sc.pos >= len(sc.s) {
		return 0
	}
	return sc.s[sc.pos]
}

func (sc *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrInvalidPayload, sc.pos, fmt.Sprintf(format, args...))
}

func (sc *scanner) unexpected(want string) error {
	if sc.pos >= len(sc.s) {
		return sc.errorf("unexpected end, want %s", want)
	}
	return sc.errorf("unexpected %s, want %s", quote(sc.s[sc.pos:]), want)
}

func (sc *scanner) expect(c byte, want string) error {
	if sc.peek() != c {
		return sc.unexpected(want)
	}
	sc.pos++
	return nil
}

// end checks that nothing but whitespace follows the value.
func (sc *scanner) end() error {
	// Not peek: a NUL byte (what peek returns at the end) is trailing data too.
	if sc.skipSpace(); sc.pos < len(sc.s) {
		return sc.errorf("trailing data %s after the JSON value", quote(sc.s[sc.pos:]))
	}
	return nil
}

// object reads {"key": value, ...}; member is called after each key's colon and must
// consume the value.
func (sc *scanner) object(member func(key string) error) error {
	if err := sc.expect('{', "'{'"); err != nil {
		return err
	}
	if sc.peek() == '}' {
		sc.pos++
		return nil
	}
	for {
		if sc.peek() != '"' {
			return sc.unexpected("a quoted key")
		}
		key, err := sc.str()
		if err != nil {
			return err
		}
		if err := sc.expect(':', "':'"); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch sc.peek() {
		case ',':
			sc.pos++
		case '}':
			sc.pos++
			return nil
		default:
			return sc.unexpected("',' or '}'")
		}
	}
}

// str reads a JSON string. Finding its end is done here. A string without escapes or
// control characters is its own value, a substring of the payload; decoding the
// escapes (and refusing control characters) is left to encoding/json, which knows \u
// surrogate pairs. The payload is UTF-8 (the caller checked), so no byte needs
// replacing. The result shares the payload's memory: a caller that keeps it beyond
// the payload's decoding clones it (see keep).
func (sc *scanner) str() (string, error) {
	if sc.peek() != '"' {
		return "", sc.unexpected("a string")
	}
	start := sc.pos
	for i := plain(sc.s, start+1); i < len(sc.s); i++ {
		switch c := sc.s[i]; {
		case c == '"':
			sc.pos = i + 1
			return sc.s[start+1 : i], nil
		case c == '\\' || c < 0x20:
			return sc.slowStr(start, i)
		}
	}
	return "", sc.errorf("unterminated string")
}

// plain skips, eight bytes at a time, bytes of s from i on that cannot end or escape
// a string: it returns i or a later index at or before the first '"', '\\' or
// control character (or the last few bytes of s, read one by one by the caller).
func plain(s string, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		q := x ^ ones*'"'
		e := x ^ ones*'\\'
		// A byte below 0x20, or a zero byte in q or e: the classic "has less
		// than" and "has zero" tests, exact for whether any byte is one.
		if ((x-ones*0x20)&^x|(q-ones)&^q|(e-ones)&^e)&highs != 0 {
			return i
		}
	}
	return i
}

// slowStr reads the string that starts at start and holds an escape or a control
// character at i or later.
func (sc *scanner) slowStr(start, i int) (string, error) {
	for ; i < len(sc.s); i++ {
		switch sc.s[i] {
		case '\\':
			i++ // the escaped byte cannot end the string
		case '"':
			var v string
			if err := json.Unmarshal([]byte(sc.s[start:i+1]), &v); err != nil {
				return "", sc.errorf("bad string: %v", err)
			}
			sc.pos = i + 1
			return v, nil
		}
	}
	return "", sc.errorf("unterminated string")
}

// label names what the scanner reads, in its errors. Its text is made only when there
// is an error to say.
type label struct {
	point string // the point of an object of points; "" for the reading of Decode
	field string // "value" within a reading object; "" for the point or reading itself
}

func (l label) String() string {
	s := "reading"
	if l.point != "" {
		s = "point " + quote(l.point)
	}
	if l.field != "" {
		s += ": " + l.field
	}
	return s
}

// scalar reads a JSON number, true, false or a string as a value.
func (sc *scanner) scalar(what label) (bridge.Value, error) {
	switch c := sc.peek(); {
	case c == '"':
		s, err := sc.str()
		return bridge.String(keep(s)), err
	case c == '{':
		return bridge.Value{}, sc.errorf("%s: an object is not a value here", what)
	case c == '[':
		return bridge.Value{}, sc.errorf("%s: a JSON array is not a value", what)
	case c == '-' || isDigit(c):
		start := sc.pos
		for sc.pos < len(sc.s) && isNumberByte(sc.s[sc.pos]) {
			sc.pos++
		}
		lit := sc.s[start:sc.pos]
		if !validNumber(lit) {
			sc.pos = start
			return bridge.Value{}, sc.errorf("%s: bad number %s", what, quote(lit))
		}
		return parseNumber(lit)
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(sc.s)-sc.pos >= len(lit) && sc.s[sc.pos:sc.pos+len(lit)] == lit {
			if lit == "null" {
				return bridge.Value{}, sc.errorf("%s: null is not a value", what)
			}
			sc.pos += len(lit)
			return bridge.Bool(lit == "true"), nil
		}
	}
	return bridge.Value{}, sc.unexpected(what.String() + ": a number, true, false or a string")
}

// keep copies a string that str returned out of the payload, for a value that outlives
// the decoding: a short unit must not hold a whole payload in memory.
func keep(s string) string { return strings.Clone(s) }

// validNumber reports whether s is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isNumberByte(c byte) bool {
	return isDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// pointValue reads one point's value in an object of points: a scalar or a reading
// object.
func (sc *scanner) pointValue(point string) (Reading, error) {
	if sc.peek() == '{' {
		return sc.readingObject(point)
	}
	v, err := sc.scalar(label{point: point})
	if err != nil {
		return Reading{}, err
	}
	return Reading{Value: v, Quality: bridge.QualityGood}, nil
}

// readingObject reads {"value": ..., "ts": ..., "unit": ..., "quality": ...}. Other
// keys are refused: a misspelt "unit" would otherwise vanish without a word.
func (sc *scanner) readingObject(point string) (Reading, error) {
	what := label{point: point}
	r := Reading{Quality: bridge.QualityGood}
	// The keys seen so far, a bit each: any other key is refused at once.
	const (
		seenValue = 1 << iota
		seenTS
		seenUnit
		seenQuality
	)
	var seen uint8
	err := sc.object(func(key string) error {
		var bit uint8
		switch key {
		case "value":
			bit = seenValue
		case "ts":
			bit = seenTS
		case "unit":
			bit = seenUnit
		case "quality":
			bit = seenQuality
		}
		if seen&bit != 0 {
			return sc.errorf("%s: duplicate key %s", what, quote(key))
		}
		seen |= bit
		var err error
		switch key {
		case "value":
			r.Value, err = sc.scalar(label{point: point, field: "value"})
		case "ts":
			r.SourceTime, err = sc.timestamp(what, true)
		case "unit":
			r.Unit, err = sc.str()
			r.Unit = keep(r.Unit)
			if err == nil && len(r.Unit) > bridge.MaxNameLen {
				err = sc.errorf("%s: unit longer than %d bytes", what, bridge.MaxNameLen)
			}
		case "quality":
			var q string
			if q, err = sc.str(); err == nil {
				var ok bool
				if r.Quality, ok = ParseQuality(q); !ok {
					err = sc.errorf("%s: quality %s is not good, uncertain or bad", what, quote(q))
				}
			}
		default:
			err = sc.errorf("%s: unknown key %s (want value, ts, unit, quality)", what, quote(key))
		}
		return err
	})
	if err != nil {
		return Reading{}, err
	}
	if r.Value.IsZero() {
		return Reading{}, fmt.Errorf("%w: %s: no \"value\"", ErrInvalidPayload, what)
	}
	return r, nil
}

// Timestamps outside the years 1 to 9999 cannot be carried by a protobuf Timestamp,
// and the zero time means "no source time".
var (
	minTime = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// timestamp reads an RFC 3339 string: the "ts" of the reading what names, or with
// inReading false the top-level "ts" of an object of points.
func (sc *scanner) timestamp(what label, inReading bool) (time.Time, error) {
	s, err := sc.str()
	if err != nil {
		return time.Time{}, err
	}
	prefix := func() string {
		if !inReading {
			return ""
		}
		return what.String() + ": "
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, sc.errorf("%sts %s is not an RFC 3339 time", prefix(), quote(s))
	}
	t = t.UTC()
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, sc.errorf("%sts %s is out of range", prefix(), quote(s))
	}
	return t, nil
}
