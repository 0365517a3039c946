package payload

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
)

var ts = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func good(v bridge.Value) Reading { return Reading{Value: v, Quality: bridge.QualityGood} }

// pointCases is the golden table of single-point payloads: raw bytes, the decoded
// reading or the error it must wrap, and what the case is about.
var pointCases = []struct {
	raw     string
	want    Reading
	wantErr error
	desc    string
}{
	{raw: "21.5", want: good(bridge.Double(21.5)), desc: "bare decimal is a double"},
	{raw: "21.5\n", want: good(bridge.Double(21.5)), desc: "trailing newline from echo is ignored"},
	{raw: " 42 ", want: good(bridge.Int(42)), desc: "integer is an int"},
	{raw: "-7", want: good(bridge.Int(-7)), desc: "negative integer"},
	{raw: "+7", want: good(bridge.Int(7)), desc: "explicit plus sign"},
	{raw: "007", want: good(bridge.Int(7)), desc: "leading zeros in a bare number"},
	{raw: "9223372036854775807", want: good(bridge.Int(math.MaxInt64)), desc: "MaxInt64 stays int"},
	{raw: "9223372036854775808", want: good(bridge.Uint(1 << 63)), desc: "above MaxInt64 is uint"},
	{raw: "18446744073709551615", want: good(bridge.Uint(math.MaxUint64)), desc: "MaxUint64"},
	{raw: "18446744073709551616", want: good(bridge.Double(18446744073709551616)), desc: "beyond 64 bits is a double"},
	{raw: "-9223372036854775809", want: good(bridge.Double(-9223372036854775809)), desc: "below MinInt64 is a double"},
	{raw: "1e3", want: good(bridge.Double(1000)), desc: "exponent makes a double"},
	{raw: "1E-2", want: good(bridge.Double(0.01)), desc: "capital exponent"},
	{raw: ".5", want: good(bridge.Double(0.5)), desc: "leading dot"},
	{raw: "5.", want: good(bridge.Double(5)), desc: "trailing dot is still a double"},
	{raw: "1e400", wantErr: ErrInvalidPayload, desc: "double out of range"},
	{raw: "true", want: good(bridge.Bool(true)), desc: "true"},
	{raw: "false", want: good(bridge.Bool(false)), desc: "false"},
	{raw: "True", want: good(bridge.String("True")), desc: "booleans are lowercase, as in JSON; this is text"},
	{raw: "NaN", want: good(bridge.String("NaN")), desc: "NaN is text, not a number"},
	{raw: "0x10", want: good(bridge.String("0x10")), desc: "hex is text"},
	{raw: "12 V", want: good(bridge.String("12 V")), desc: "a number with a unit is text"},
	{raw: "hello world", want: good(bridge.String("hello world")), desc: "bare text"},
	{raw: "  open\r\n", want: good(bridge.String("open")), desc: "bare text is trimmed"},
	{raw: "°C ok", want: good(bridge.String("°C ok")), desc: "UTF-8 text"},
	{raw: "\xff\x00\x01", want: good(bridge.Bytes([]byte{0xff, 0, 1})), desc: "non-UTF-8 is bytes"},
	{raw: " \xff ", want: good(bridge.Bytes([]byte(" \xff "))), desc: "bytes are kept as they came"},
	{raw: `"21.5"`, want: good(bridge.String("21.5")), desc: "a JSON string stays a string"},
	{raw: `"a\"b\u00e9\ud83d\ude00"`, want: good(bridge.String("a\"bé😀")), desc: "JSON escapes and surrogate pairs"},
	{raw: `""`, want: good(bridge.String("")), desc: "the empty JSON string is a value"},
	{raw: `"abc`, wantErr: ErrInvalidPayload, desc: "unterminated JSON string"},
	{raw: `"a" b`, wantErr: ErrInvalidPayload, desc: "trailing data after a JSON string"},
	{raw: "\"a\tb\"", wantErr: ErrInvalidPayload, desc: "raw control character in a JSON string"},
	{raw: "", wantErr: ErrInvalidPayload, desc: "empty"},
	{raw: " \n", wantErr: ErrInvalidPayload, desc: "only whitespace"},
	{raw: "null", wantErr: ErrInvalidPayload, desc: "null has no value"},
	{raw: "[1,2]", wantErr: ErrInvalidPayload, desc: "arrays are not readings"},
	{raw: `{"value": 21.5}`, want: good(bridge.Double(21.5)), desc: "reading object"},
	{raw: `{"value": 21.5, "ts": "2024-05-01T12:00:00Z", "unit": "°C"}`,
		want: Reading{Value: bridge.Double(21.5), SourceTime: ts, Unit: "°C", Quality: bridge.QualityGood}, desc: "reading object with time and unit"},
	{raw: `{"value": 3, "ts": "2024-05-01T14:00:00+02:00", "quality": "uncertain"}`,
		want: Reading{Value: bridge.Int(3), SourceTime: ts, Quality: bridge.QualityUncertain}, desc: "offsets are normalized to UTC; quality"},
	{raw: `{"value": "on", "quality": "bad"}`, want: Reading{Value: bridge.String("on"), Quality: bridge.QualityBad}, desc: "string value, bad quality"},
	{raw: `{"value": true}`, want: good(bridge.Bool(true)), desc: "bool value"},
	{raw: `{"value": 18446744073709551615}`, want: good(bridge.Uint(math.MaxUint64)), desc: "uint in an object"},
	{raw: `{"value": 1.5e2}`, want: good(bridge.Double(150)), desc: "exponent in an object"},
	{raw: `{"value": +1}`, wantErr: ErrInvalidPayload, desc: "JSON numbers have no plus sign"},
	{raw: `{"value": 01}`, wantErr: ErrInvalidPayload, desc: "JSON numbers have no leading zero"},
	{raw: `{"unit": "%"}`, wantErr: ErrInvalidPayload, desc: "no value"},
	{raw: `{}`, wantErr: ErrInvalidPayload, desc: "empty object"},
	{raw: `{"value": null}`, wantErr: ErrInvalidPayload, desc: "null value"},
	{raw: `{"value": [1]}`, wantErr: ErrInvalidPayload, desc: "array value"},
	{raw: `{"value": {"value": 1}}`, wantErr: ErrInvalidPayload, desc: "nested reading"},
	{raw: `{"value": 1, "value": 2}`, wantErr: ErrInvalidPayload, desc: "duplicate key"},
	{raw: `{"value": 1, "unti": "%"}`, wantErr: ErrInvalidPayload, desc: "unknown key is refused, not ignored"},
	{raw: `{"value": 1, "ts": "yesterday"}`, wantErr: ErrInvalidPayload, desc: "ts not RFC 3339"},
	{raw: `{"value": 1, "ts": 1714564800}`, wantErr: ErrInvalidPayload, desc: "ts must be a string"},
	{raw: `{"value": 1, "ts": "0000-01-01T00:00:00Z"}`, wantErr: ErrInvalidPayload, desc: "ts before year 1"},
	{raw: `{"value": 1, "quality": "great"}`, wantErr: ErrInvalidPayload, desc: "unknown quality"},
	{raw: `{"value": 1,}`, wantErr: ErrInvalidPayload, desc: "trailing comma"},
	{raw: `{"value": 1} {}`, wantErr: ErrInvalidPayload, desc: "two JSON values"},
	{raw: "{\"value\": 1}\x00", wantErr: ErrInvalidPayload, desc: "a NUL byte after the object"},
	{raw: "\"a\"\x00", wantErr: ErrInvalidPayload, desc: "a NUL byte after a JSON string"},
	{raw: `{"value": 1`, wantErr: ErrInvalidPayload, desc: "truncated object"},
	{raw: `{value: 1}`, wantErr: ErrInvalidPayload, desc: "unquoted key"},
	{raw: strings.Repeat("1", DefaultMaxSize+1), wantErr: ErrTooLarge, desc: "larger than the limit"},
}

func TestDecode(t *testing.T) {
	for _, c := range pointCases {
		got, err := Decoder{}.Decode([]byte(c.raw))
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) || !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("%s: Decode(%q) = %#v, %v; want error %v", c.desc, clip(c.raw), got, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Decode(%q): %v", c.desc, c.raw, err)
			continue
		}
		if !sameReading(got, c.want) {
			t.Errorf("%s: Decode(%q) = %s, want %s", c.desc, c.raw, show(got), show(c.want))
		}
	}
}

// objectCases is the golden table of objects of points.
var objectCases = []struct {
	raw     string
	want    []Reading
	wantErr error
	desc    string
}{
	{raw: `{"temp": 21.5, "hum": {"value": 40, "unit": "%"}}`,
		want: []Reading{{Point: "temp", Value: bridge.Double(21.5), Quality: bridge.QualityGood},
			{Point: "hum", Value: bridge.Int(40), Unit: "%", Quality: bridge.QualityGood}},
		desc: "scalar and reading object, in document order"},
	{raw: `{"ts": "2024-05-01T12:00:00Z", "a": 1, "b": {"value": false, "ts": "2025-01-01T00:00:00Z"}}`,
		want: []Reading{{Point: "a", Value: bridge.Int(1), SourceTime: ts, Quality: bridge.QualityGood},
			{Point: "b", Value: bridge.Bool(false), SourceTime: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Quality: bridge.QualityGood}},
		desc: "top-level ts applies to points without their own"},
	{raw: `{"a": 1, "ts": "2024-05-01T12:00:00Z"}`,
		want: []Reading{{Point: "a", Value: bridge.Int(1), SourceTime: ts, Quality: bridge.QualityGood}},
		desc: "ts may come last"},
	{raw: ` {"état": "ouvert"} `, want: []Reading{{Point: "état", Value: bridge.String("ouvert"), Quality: bridge.QualityGood}}, desc: "UTF-8 names"},
	{raw: `{}`, wantErr: ErrInvalidPayload, desc: "no points"},
	{raw: `{"ts": "2024-05-01T12:00:00Z"}`, wantErr: ErrInvalidPayload, desc: "only a time"},
	{raw: `21.5`, wantErr: ErrInvalidPayload, desc: "a scalar is not an object of points"},
	{raw: ``, wantErr: ErrInvalidPayload, desc: "empty"},
	{raw: "{\"a\": \"\xff\"}", wantErr: ErrInvalidPayload, desc: "not UTF-8"},
	{raw: `{"a": 1, "a": 2}`, wantErr: ErrInvalidPayload, desc: "duplicate point"},
	{raw: `{"ts": "2024-05-01T12:00:00Z", "ts": "2024-05-01T12:00:00Z", "a": 1}`, wantErr: ErrInvalidPayload, desc: "duplicate ts"},
	{raw: `{"": 1}`, wantErr: ErrInvalidPayload, desc: "empty point name"},
	{raw: `{"a/b": 1}`, wantErr: ErrInvalidPayload, desc: "slash in a point name"},
	{raw: `{"a#": 1}`, wantErr: ErrInvalidPayload, desc: "wildcard in a point name"},
	{raw: `{"a\n": 1}`, wantErr: ErrInvalidPayload, desc: "control character in a point name"},
	{raw: `{"` + strings.Repeat("x", bridge.MaxNameLen+1) + `": 1}`, wantErr: ErrInvalidPayload, desc: "point name too long"},
	{raw: `{"a": [1]}`, wantErr: ErrInvalidPayload, desc: "array point"},
	{raw: `{"a": {"b": {"value": 1}}}`, wantErr: ErrInvalidPayload, desc: "deeper than a reading object"},
	{raw: `{"a": {"unit": "%"}}`, wantErr: ErrInvalidPayload, desc: "reading object without value"},
	{raw: `{"a": 1 "b": 2}`, wantErr: ErrInvalidPayload, desc: "missing comma"},
	{raw: `{"a": 1}}`, wantErr: ErrInvalidPayload, desc: "trailing brace"},
	{raw: "{\"a\": 1}\x00", wantErr: ErrInvalidPayload, desc: "a NUL byte after the object"},
	{raw: `{"ts": "now", "a": 1}`, wantErr: ErrInvalidPayload, desc: "bad top-level ts"},
	{raw: manyPoints(DefaultMaxPoints + 1), wantErr: ErrTooManyPoints, desc: "more points than the limit"},
	{raw: `{"a":` + strings.Repeat("[", 100000) + `}`, wantErr: ErrTooLarge, desc: "deep nesting beyond the size limit"},
	{raw: `{"a":` + strings.Repeat("[", 1000) + `}`, wantErr: ErrInvalidPayload, desc: "deep nesting is refused at the first bracket"},
}

func manyPoints(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"p` + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + `": 1`)
	}
	b.WriteString("}")
	return b.String()
}

func TestDecodeObject(t *testing.T) {
	for _, c := range objectCases {
		got, err := Decoder{}.DecodeObject([]byte(c.raw))
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) || !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("%s: DecodeObject(%q) = %v, %v; want error %v", c.desc, clip(c.raw), got, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: DecodeObject(%q): %v", c.desc, c.raw, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: DecodeObject(%q) gave %d readings, want %d", c.desc, c.raw, len(got), len(c.want))
			continue
		}
		for i := range got {
			if !sameReading(got[i], c.want[i]) {
				t.Errorf("%s: reading %d = %s, want %s", c.desc, i, show(got[i]), show(c.want[i]))
			}
		}
	}
}

func TestLimits(t *testing.T) {
	d := Decoder{MaxSize: 8, MaxPoints: 2}
	if _, err := d.Decode([]byte("123456789")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("9 bytes with MaxSize 8: %v, want ErrTooLarge", err)
	}
	if _, err := d.Decode([]byte("12345678")); err != nil {
		t.Errorf("8 bytes with MaxSize 8: %v", err)
	}
	d.MaxSize = 0
	if _, err := d.DecodeObject([]byte(`{"a":1,"b":2,"c":3}`)); !errors.Is(err, ErrTooManyPoints) {
		t.Errorf("3 points with MaxPoints 2: %v, want ErrTooManyPoints", err)
	}
	if rs, err := d.DecodeObject([]byte(`{"a":1,"b":2}`)); err != nil || len(rs) != 2 {
		t.Errorf("2 points with MaxPoints 2: %v, %v", rs, err)
	}
}

func TestErrorsAreClipped(t *testing.T) {
	_, err := Decoder{}.Decode([]byte(`{"` + strings.Repeat("k", 5000) + `": 1}`))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error for a long key is %d bytes: %v", len(err.Error()), err)
	}
}

func sameReading(a, b Reading) bool {
	if a.Value.Kind() == bridge.KindDouble && b.Value.Kind() == bridge.KindDouble {
		x, _ := a.Value.AsDouble()
		y, _ := b.Value.AsDouble()
		if x != y {
			return false
		}
	} else if !a.Value.Equal(b.Value) {
		return false
	}
	return a.Point == b.Point && a.SourceTime.Equal(b.SourceTime) && a.Unit == b.Unit && a.Quality == b.Quality
}

func show(r Reading) string {
	return r.Point + "=" + r.Value.GoString() + " ts=" + r.SourceTime.Format(time.RFC3339Nano) + " unit=" + r.Unit
}

// FuzzDecode feeds arbitrary bytes to both entry points. Nothing may panic, and what
// decodes must be something the bridge accepts.
func FuzzDecode(f *testing.F) {
	for _, c := range pointCases {
		if len(c.raw) < 1000 {
			f.Add([]byte(c.raw))
		}
	}
	for _, c := range objectCases {
		if len(c.raw) < 1000 {
			f.Add([]byte(c.raw))
		}
	}
	f.Add([]byte(`"a\tb"`))
	f.Add([]byte(`{"value":-0.5e+3,"unit":"\u00b0C"}`))
	d := Decoder{MaxSize: 4096, MaxPoints: 16}
	f.Fuzz(func(t *testing.T, raw []byte) {
		crossCheckJSON(t, raw)
		if r, err := d.Decode(raw); err == nil {
			checkReading(t, r, false)
		} else if !errors.Is(err, ErrInvalidPayload) {
			t.Fatalf("Decode error %v does not wrap ErrInvalidPayload", err)
		}
		rs, err := d.DecodeObject(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("DecodeObject error %v does not wrap ErrInvalidPayload", err)
			}
			return
		}
		if len(rs) == 0 || len(rs) > 16 {
			t.Fatalf("DecodeObject gave %d readings", len(rs))
		}
		seen := map[string]bool{}
		for _, r := range rs {
			checkReading(t, r, true)
			if seen[r.Point] {
				t.Fatalf("point %q twice", r.Point)
			}
			seen[r.Point] = true
		}
	})
}

func checkReading(t *testing.T, r Reading, named bool) {
	t.Helper()
	if r.Value.IsZero() {
		t.Fatalf("reading without a value: %s", show(r))
	}
	if s, ok := r.Value.AsString(); ok && !utf8.ValidString(s) {
		t.Fatalf("string value is not UTF-8: %q", s)
	}
	if f, ok := r.Value.AsDouble(); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		t.Fatalf("double %v", f)
	}
	if named {
		if err := ValidName(r.Point); err != nil {
			t.Fatalf("point name %q: %v", r.Point, err)
		}
	} else if r.Point != "" {
		t.Fatalf("Decode named a point: %q", r.Point)
	}
	if !utf8.ValidString(r.Unit) || len(r.Unit) > bridge.MaxNameLen {
		t.Fatalf("unit %q", r.Unit)
	}
	if r.Quality < bridge.QualityGood || r.Quality > bridge.QualityBad {
		t.Fatalf("quality %d", r.Quality)
	}
	if !r.SourceTime.IsZero() && (r.SourceTime.Year() < 1 || r.SourceTime.Year() > 9999 || r.SourceTime.Location() != time.UTC) {
		t.Fatalf("source time %v", r.SourceTime)
	}
}

// crossCheckJSON checks the scanner's own readings of JSON strings and numbers
// against encoding/json: a JSON string decodes to what json.Unmarshal makes of it,
// and a literal of number bytes is a number exactly when json.Valid says so.
func crossCheckJSON(t *testing.T, raw []byte) {
	t.Helper()
	if len(raw) > 0 && !strings.ContainsFunc(string(raw), func(r rune) bool { return !isNumberByte(byte(r)) || r >= 0x80 }) {
		if got, want := validNumber(string(raw)), json.Valid(raw); got != want {
			t.Fatalf("validNumber(%q) = %v, json.Valid says %v", raw, got, want)
		}
	}
	if len(raw) == 0 || raw[0] != '"' || !utf8.Valid(raw) {
		return
	}
	sc := newScanner(string(raw))
	got, err := sc.str()
	if err != nil {
		// Then no prefix of raw is a JSON string either.
		var v string
		if json.Unmarshal(raw, &v) == nil {
			t.Fatalf("str(%q): %v, but encoding/json reads %q", raw, err, v)
		}
		return
	}
	var want string
	if err := json.Unmarshal(raw[:sc.pos], &want); err != nil || got != want {
		t.Fatalf("str(%q) = %q, encoding/json reads %q from its first %d bytes (%v)", raw, got, want, sc.pos, err)
	}
}

func TestJSONScalars(t *testing.T) {
	for _, raw := range []string{
		"0", "-0", "01", "-", "1.", ".1", "1.5", "-1.5e10", "1e", "1e+", "1E-07", "+1", "1-2",
		"1.5.5", "1ee5", "--1", "-01", "123456789012345678901234567890", "0e0", "0.0e-0",
		`""`, `"abc"`, `"a\"b"`, `"\u00e9"`, `"\ud83d\ude00"`, `"\ud83d"`, `"a` + "\t" + `b"`,
		`"a` + "\x01" + `"`, `"\x"`, `"abc`, `"a\"`, `"é"`, `"a" `, `"a"b`,
	} {
		crossCheckJSON(t, []byte(raw))
	}
	// Long strings, read eight bytes at a time, with a byte that ends, escapes or
	// spoils them at every offset.
	for _, special := range []string{`"`, `\\`, `\"`, "\x00", "\x1f", "\n", " ", "\x7f", "é", "\u2028"} {
		for at := 0; at <= 24; at++ {
			crossCheckJSON(t, []byte(`"`+strings.Repeat("a", at)+special+strings.Repeat("b", 24-at)+`"`))
		}
	}
}
