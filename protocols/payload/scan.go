package payload

import (
	"encoding/json"
	"fmt"
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
	if sc.peek() != 0 {
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

// str reads a JSON string. Finding its end is done here; decoding the escapes is left
// to encoding/json, which knows \u surrogate pairs.
func (sc *scanner) str() (string, error) {
	if sc.peek() != '"' {
		return "", sc.unexpected("a string")
	}
	start := sc.pos
	for i := start + 1; i < len(sc.s); i++ {
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

// scalar reads a JSON number, true, false or a string as a value.
func (sc *scanner) scalar(what string) (bridge.Value, error) {
	switch c := sc.peek(); {
	case c == '"':
		s, err := sc.str()
		return bridge.String(s), err
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
		if !json.Valid([]byte(lit)) {
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
	return bridge.Value{}, sc.unexpected(what + ": a number, true, false or a string")
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
	v, err := sc.scalar("point " + quote(point))
	if err != nil {
		return Reading{}, err
	}
	return Reading{Value: v, Quality: bridge.QualityGood}, nil
}

// readingObject reads {"value": ..., "ts": ..., "unit": ..., "quality": ...}. Other
// keys are refused: a misspelt "unit" would otherwise vanish without a word.
func (sc *scanner) readingObject(point string) (Reading, error) {
	what := "reading"
	if point != "" {
		what = "point " + quote(point)
	}
	r := Reading{Quality: bridge.QualityGood}
	seen := map[string]bool{}
	err := sc.object(func(key string) error {
		if seen[key] {
			return sc.errorf("%s: duplicate key %s", what, quote(key))
		}
		seen[key] = true
		var err error
		switch key {
		case "value":
			r.Value, err = sc.scalar(what + ": value")
		case "ts":
			r.SourceTime, err = sc.timestamp(what + ": ")
		case "unit":
			r.Unit, err = sc.str()
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

// timestamp reads an RFC 3339 string.
func (sc *scanner) timestamp(what string) (time.Time, error) {
	s, err := sc.str()
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, sc.errorf("%sts %s is not an RFC 3339 time", what, quote(s))
	}
	t = t.UTC()
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, sc.errorf("%sts %s is out of range", what, quote(s))
	}
	return t, nil
}
