package payload

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
)

// CBOR (RFC 8949) carries the same forms as JSON, for devices that would rather not
// print numbers: a scalar, a reading map {"value", "ts", "unit", "quality"}, or a map
// of several points. The reader below accepts exactly that grammar and nothing else,
// like the JSON scanner: it never recurses (a map of points holds reading maps and
// nothing deeper), it checks every length against the bytes that are left before
// it allocates, and it refuses what it does not expect at the first byte.
//
// What maps to what:
//   - unsigned and negative integers: Int, or Uint above MaxInt64, or Double below
//     MinInt64 (as JSON numbers beyond 64 bits);
//   - half, single and double floats: Double; NaN and infinities are refused, as
//     JSON cannot carry them either;
//   - true and false: Bool; null and undefined are refused;
//   - text strings (which must be UTF-8): String; byte strings: Bytes;
//   - "ts": an RFC 3339 text string, the same with tag 0, or tag 1 (seconds since
//     1970, integer or float). A bare number is refused: it could be seconds,
//     milliseconds or anything else, and the decoder does not guess.
//
// Indefinite-length strings and maps are accepted; arrays, other tags (except the
// self-describing tag 55799 in front of the whole item) and simple values other than
// true and false are refused. Non-minimal encodings of lengths and integers are
// accepted: the decoder reads; it does not judge style.

// CBOR major types.
const (
	cborUint   = 0
	cborNegInt = 1
	cborBytes  = 2
	cborText   = 3
	cborArray  = 4
	cborMap    = 5
	cborTag    = 6
	cborSimple = 7
)

// cborBreak ends an indefinite-length item.
const cborBreak = 0xff

// DecodeCBOR decodes the CBOR payload of one point, whose name the caller knows: a
// scalar, or a reading map {"value": ..., "ts": ..., "unit": "...", "quality":
// "good|uncertain|bad"}. See the comment at the top of cbor.go for the types.
func (d Decoder) DecodeCBOR(raw []byte) (Reading, error) {
	if err := d.checkSize(raw); err != nil {
		return Reading{}, err
	}
	r := cborReader{b: raw}
	if err := r.skipSelfDescribe(); err != nil {
		return Reading{}, err
	}
	var out Reading
	var err error
	if r.peekMajor() == cborMap {
		out, err = r.readingMap("")
	} else {
		var v bridge.Value
		v, err = r.scalar("reading")
		out = Reading{Value: v, Quality: bridge.QualityGood}
	}
	if err == nil {
		err = r.end()
	}
	if err != nil {
		return Reading{}, err
	}
	return out, nil
}

// DecodeObjectCBOR decodes a CBOR map of several points, in the order they appear,
// as DecodeObject does for JSON: each point's value is a scalar or a reading map, and
// a top-level "ts" is the source time of every point without one of its own.
func (d Decoder) DecodeObjectCBOR(raw []byte) ([]Reading, error) {
	if err := d.checkSize(raw); err != nil {
		return nil, err
	}
	r := cborReader{b: raw}
	if err := r.skipSelfDescribe(); err != nil {
		return nil, err
	}
	if m := r.peekMajor(); m != cborMap {
		return nil, r.errorf("expected a CBOR map of points, got %s", cborMajorName(m))
	}
	var (
		out  []Reading
		ts   time.Time
		seen = map[string]bool{}
	)
	err := r.mapItems(func(key string) error {
		if key == "ts" {
			if seen[key] {
				return r.errorf("duplicate key \"ts\"")
			}
			seen[key] = true
			t, err := r.timestamp("")
			ts = t
			return err
		}
		if err := ValidName(key); err != nil {
			return r.errorf("point %s: %v", quote(key), err)
		}
		if seen[key] {
			return r.errorf("duplicate point %s", quote(key))
		}
		seen[key] = true
		if len(out) == d.maxPoints() {
			return fmt.Errorf("%w: %w: more than %d points", ErrInvalidPayload, ErrTooManyPoints, d.maxPoints())
		}
		var rd Reading
		var err error
		if r.peekMajor() == cborMap {
			rd, err = r.readingMap(key)
		} else {
			var v bridge.Value
			v, err = r.scalar("point " + quote(key))
			rd = Reading{Value: v, Quality: bridge.QualityGood}
		}
		if err != nil {
			return err
		}
		rd.Point = key
		out = append(out, rd)
		return nil
	})
	if err == nil {
		err = r.end()
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the map names no point", ErrInvalidPayload)
	}
	for i := range out {
		if out[i].SourceTime.IsZero() {
			out[i].SourceTime = ts
		}
	}
	return out, nil
}

// cborReader reads one CBOR item from b.
type cborReader struct {
	b   []byte
	pos int
}

// cborHead is an item's initial byte and argument.
type cborHead struct {
	major      byte
	info       byte   // the additional information, the low five bits
	arg        uint64 // the argument; for major 7, the simple value or the float bits
	indefinite bool
}

func (r *cborReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: CBOR at byte %d: %s", ErrInvalidPayload, r.pos, fmt.Sprintf(format, args...))
}

// peekMajor returns the major type of the next item, or 0xff at the end.
func (r *cborReader) peekMajor() byte {
	if r.pos >= len(r.b) {
		return 0xff
	}
	return r.b[r.pos] >> 5
}

// end checks that the item was the whole payload.
func (r *cborReader) end() error {
	if r.pos != len(r.b) {
		return r.errorf("%d bytes of trailing data after the CBOR item", len(r.b)-r.pos)
	}
	return nil
}

// skipSelfDescribe skips tag 55799, which only announces that CBOR follows (RFC 8949
// section 3.4.6), in its usual form 0xd9 0xd9 0xf7.
func (r *cborReader) skipSelfDescribe() error {
	if len(r.b)-r.pos >= 3 && r.b[r.pos] == 0xd9 && r.b[r.pos+1] == 0xd9 && r.b[r.pos+2] == 0xf7 {
		r.pos += 3
	}
	if r.pos >= len(r.b) {
		return r.errorf("empty")
	}
	return nil
}

// head reads an item's initial byte and argument.
func (r *cborReader) head() (cborHead, error) {
	if r.pos >= len(r.b) {
		return cborHead{}, r.errorf("unexpected end")
	}
	ib := r.b[r.pos]
	h := cborHead{major: ib >> 5, info: ib & 0x1f}
	var n int
	switch {
	case h.info < 24:
		h.arg = uint64(h.info)
	case h.info <= 27:
		n = 1 << (h.info - 24)
	case h.info == 31:
		switch h.major {
		case cborBytes, cborText, cborArray, cborMap, cborSimple:
			h.indefinite = true
		default:
			return cborHead{}, r.errorf("%s cannot have an indefinite length", cborMajorName(h.major))
		}
	default:
		return cborHead{}, r.errorf("reserved additional information %d", h.info)
	}
	if len(r.b)-r.pos-1 < n {
		return cborHead{}, r.errorf("unexpected end in the argument of %s", cborMajorName(h.major))
	}
	switch n {
	case 1:
		h.arg = uint64(r.b[r.pos+1])
	case 2:
		h.arg = uint64(binary.BigEndian.Uint16(r.b[r.pos+1:]))
	case 4:
		h.arg = uint64(binary.BigEndian.Uint32(r.b[r.pos+1:]))
	case 8:
		h.arg = binary.BigEndian.Uint64(r.b[r.pos+1:])
	}
	r.pos += 1 + n
	return h, nil
}

// stringBody reads the contents of a byte or text string whose head was read.
func (r *cborReader) stringBody(h cborHead) ([]byte, error) {
	if !h.indefinite {
		if h.arg > uint64(len(r.b)-r.pos) {
			return nil, r.errorf("%s of %d bytes, only %d left", cborMajorName(h.major), h.arg, len(r.b)-r.pos)
		}
		s := r.b[r.pos : r.pos+int(h.arg)]
		r.pos += int(h.arg)
		return s, nil
	}
	// Chunks of the same major type, each of definite length, until a break. Their
	// total is bounded by the payload's size.
	var out []byte
	for {
		if r.pos < len(r.b) && r.b[r.pos] == cborBreak {
			r.pos++
			if out == nil {
				out = []byte{}
			}
			return out, nil
		}
		start := r.pos
		c, err := r.head()
		if err != nil {
			return nil, err
		}
		if c.major != h.major || c.indefinite {
			r.pos = start
			return nil, r.errorf("a chunk of an indefinite %s must be a definite %s", cborMajorName(h.major), cborMajorName(h.major))
		}
		s, err := r.stringBody(c)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
}

// text reads a text string.
func (r *cborReader) text(what string) (string, error) {
	start := r.pos
	h, err := r.head()
	if err != nil {
		return "", err
	}
	if h.major != cborText {
		r.pos = start
		return "", r.errorf("%s: expected a text string, got %s", what, cborMajorName(h.major))
	}
	b, err := r.stringBody(h)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		r.pos = start
		return "", r.errorf("%s: text string is not UTF-8", what)
	}
	return string(b), nil
}

// scalar reads a number, true, false, a text string or a byte string as a value.
func (r *cborReader) scalar(what string) (bridge.Value, error) {
	start := r.pos
	h, err := r.head()
	if err != nil {
		return bridge.Value{}, err
	}
	switch h.major {
	case cborUint:
		if h.arg > math.MaxInt64 {
			return bridge.Uint(h.arg), nil
		}
		return bridge.Int(int64(h.arg)), nil
	case cborNegInt:
		if h.arg > math.MaxInt64 {
			// Below MinInt64: a double is the closest the model can carry.
			return bridge.Double(-1 - float64(h.arg)), nil
		}
		return bridge.Int(-1 - int64(h.arg)), nil
	case cborBytes:
		b, err := r.stringBody(h)
		if err != nil {
			return bridge.Value{}, err
		}
		return bridge.Bytes(b), nil
	case cborText:
		r.pos = start
		s, err := r.text(what)
		if err != nil {
			return bridge.Value{}, err
		}
		return bridge.String(s), nil
	case cborSimple:
		v, err := r.simple(h, what)
		if err != nil {
			r.pos = start
		}
		return v, err
	}
	r.pos = start
	return bridge.Value{}, r.errorf("%s: %s is not a value here", what, cborMajorName(h.major))
}

// simple reads what major type 7 holds: false, true or a float.
func (r *cborReader) simple(h cborHead, what string) (bridge.Value, error) {
	var f float64
	switch h.info {
	case 20, 21:
		return bridge.Bool(h.info == 21), nil
	case 22:
		return bridge.Value{}, r.errorf("%s: null is not a value", what)
	case 23:
		return bridge.Value{}, r.errorf("%s: undefined is not a value", what)
	case 25:
		f = halfToFloat(uint16(h.arg))
	case 26:
		f = float64(math.Float32frombits(uint32(h.arg)))
	case 27:
		f = math.Float64frombits(h.arg)
	case 31:
		return bridge.Value{}, r.errorf("%s: unexpected break", what)
	default:
		return bridge.Value{}, r.errorf("%s: simple value %d is not a value", what, h.arg)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return bridge.Value{}, r.errorf("%s: %v is not a finite number", what, f)
	}
	return bridge.Double(f), nil
}

// halfToFloat converts an IEEE 754 half-precision float (RFC 8949 appendix D).
func halfToFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var v float64
	switch exp {
	case 0:
		v = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			v = math.Inf(1)
		} else {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		return -v
	}
	return v
}

// mapItems reads a map with text keys; member is called after each key and must
// consume the value.
func (r *cborReader) mapItems(member func(key string) error) error {
	start := r.pos
	h, err := r.head()
	if err != nil {
		return err
	}
	if h.major != cborMap {
		r.pos = start
		return r.errorf("expected a map, got %s", cborMajorName(h.major))
	}
	if !h.indefinite && h.arg > uint64(len(r.b)-r.pos)/2 {
		// Each pair takes at least two bytes.
		return r.errorf("map of %d pairs, only %d bytes left", h.arg, len(r.b)-r.pos)
	}
	for i := uint64(0); h.indefinite || i < h.arg; i++ {
		if h.indefinite {
			if r.pos >= len(r.b) {
				return r.errorf("unexpected end in an indefinite map")
			}
			if r.b[r.pos] == cborBreak {
				r.pos++
				return nil
			}
		}
		key, err := r.text("map key")
		if err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
	}
	return nil
}

// readingMap reads {"value": ..., "ts": ..., "unit": ..., "quality": ...}. Other keys
// are refused, as in a JSON reading object.
func (r *cborReader) readingMap(point string) (Reading, error) {
	what := "reading"
	if point != "" {
		what = "point " + quote(point)
	}
	rd := Reading{Quality: bridge.QualityGood}
	seen := map[string]bool{}
	err := r.mapItems(func(key string) error {
		if seen[key] {
			return r.errorf("%s: duplicate key %s", what, quote(key))
		}
		seen[key] = true
		var err error
		switch key {
		case "value":
			if r.peekMajor() == cborMap {
				return r.errorf("%s: value: a map is not a value", what)
			}
			rd.Value, err = r.scalar(what + ": value")
		case "ts":
			rd.SourceTime, err = r.timestamp(what + ": ")
		case "unit":
			rd.Unit, err = r.text(what + ": unit")
			if err == nil && len(rd.Unit) > bridge.MaxNameLen {
				err = r.errorf("%s: unit longer than %d bytes", what, bridge.MaxNameLen)
			}
		case "quality":
			var q string
			if q, err = r.text(what + ": quality"); err == nil {
				var ok bool
				if rd.Quality, ok = ParseQuality(q); !ok {
					err = r.errorf("%s: quality %s is not good, uncertain or bad", what, quote(q))
				}
			}
		default:
			err = r.errorf("%s: unknown key %s (want value, ts, unit, quality)", what, quote(key))
		}
		return err
	})
	if err != nil {
		return Reading{}, err
	}
	if rd.Value.IsZero() {
		return Reading{}, fmt.Errorf("%w: %s: no \"value\"", ErrInvalidPayload, what)
	}
	return rd, nil
}

// timestamp reads an RFC 3339 text string (tag 0 optional) or tag 1 epoch seconds.
func (r *cborReader) timestamp(what string) (time.Time, error) {
	start := r.pos
	tag := uint64(0)
	tagged := false
	if r.peekMajor() == cborTag {
		h, err := r.head()
		if err != nil {
			return time.Time{}, err
		}
		if h.arg != 0 && h.arg != 1 {
			r.pos = start
			return time.Time{}, r.errorf("%sts: tag %d is not a time (want tag 0 or 1)", what, h.arg)
		}
		tag, tagged = h.arg, true
	}
	if !tagged || tag == 0 {
		if r.peekMajor() != cborText {
			return time.Time{}, r.errorf("%sts: expected an RFC 3339 text string or tag 1 epoch seconds", what)
		}
		s, err := r.text(what + "ts")
		if err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			r.pos = start
			return time.Time{}, r.errorf("%sts %s is not an RFC 3339 time", what, quote(s))
		}
		return r.inRange(t.UTC(), what, start)
	}
	v, err := r.scalar(what + "ts")
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	switch v.Kind() {
	case bridge.KindInt:
		sec, _ := v.AsInt()
		t = time.Unix(sec, 0).UTC()
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if math.Abs(f) > 1<<40 {
			r.pos = start
			return time.Time{}, r.errorf("%sts %v seconds is out of range", what, f)
		}
		sec, frac := math.Modf(f)
		t = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	default:
		r.pos = start
		return time.Time{}, r.errorf("%sts: tag 1 needs a number of seconds, got %s", what, v.Kind())
	}
	return r.inRange(t, what, start)
}

func (r *cborReader) inRange(t time.Time, what string, start int) (time.Time, error) {
	if t.Before(minTime) || t.After(maxTime) {
		r.pos = start
		return time.Time{}, r.errorf("%sts %s is out of range", what, t.Format(time.RFC3339))
	}
	return t, nil
}

func cborMajorName(m byte) string {
	switch m {
	case cborUint:
		return "an unsigned integer"
	case cborNegInt:
		return "a negative integer"
	case cborBytes:
		return "a byte string"
	case cborText:
		return "a text string"
	case cborArray:
		return "an array"
	case cborMap:
		return "a map"
	case cborTag:
		return "a tag"
	case cborSimple:
		return "a simple value or float"
	}
	return "nothing"
}

// AppendCBOR appends v's CBOR encoding: integers in their shortest form, doubles as
// float64 (or float32 when that is exact), strings as text, bytes as a byte string.
// The zero Value is encoded as null.
func AppendCBOR(dst []byte, v bridge.Value) []byte {
	switch v.Kind() {
	case bridge.KindInt:
		i, _ := v.AsInt()
		if i >= 0 {
			return appendCBORHead(dst, cborUint, uint64(i))
		}
		return appendCBORHead(dst, cborNegInt, uint64(-1-i))
	case bridge.KindUint:
		u, _ := v.AsUint()
		return appendCBORHead(dst, cborUint, u)
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f32 := float32(f); float64(f32) == f && !math.IsNaN(f) {
			return binary.BigEndian.AppendUint32(append(dst, 0xfa), math.Float32bits(f32))
		}
		return binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(f))
	case bridge.KindBool:
		if b, _ := v.AsBool(); b {
			return append(dst, 0xf5)
		}
		return append(dst, 0xf4)
	case bridge.KindString:
		s, _ := v.AsString()
		return AppendCBORText(dst, s)
	case bridge.KindBytes:
		b, _ := v.AsBytes()
		return append(appendCBORHead(dst, cborBytes, uint64(len(b))), b...)
	}
	return append(dst, 0xf6)
}

// AppendCBORText appends a text string.
func AppendCBORText(dst []byte, s string) []byte {
	return append(appendCBORHead(dst, cborText, uint64(len(s))), s...)
}

// AppendCBORMapHead appends the head of a map of n pairs.
func AppendCBORMapHead(dst []byte, n int) []byte {
	return appendCBORHead(dst, cborMap, uint64(n))
}

func appendCBORHead(dst []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(dst, m|byte(arg))
	case arg <= math.MaxUint8:
		return append(dst, m|24, byte(arg))
	case arg <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(arg))
	case arg <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(arg))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), arg)
}

// AppendJSON appends v as a JSON value: numbers in Go's shortest form, strings
// quoted, bytes as a base64 string. The zero Value is null. A double that JSON
// cannot carry (NaN, infinities) is written as a string.
func AppendJSON(dst []byte, v bridge.Value) []byte {
	switch v.Kind() {
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return appendJSONString(dst, v.String())
		}
		s := v.String()
		if !strings.ContainsAny(s, ".eE") {
			// 21 would read back as an int: keep the double a double.
			s += ".0"
		}
		return append(dst, s...)
	case bridge.KindInt, bridge.KindUint, bridge.KindBool:
		return append(dst, v.String()...)
	case bridge.KindString, bridge.KindBytes:
		return appendJSONString(dst, v.String())
	}
	return append(dst, "null"...)
}

// AppendJSONString appends s as a quoted JSON string.
func AppendJSONString(dst []byte, s string) []byte { return appendJSONString(dst, s) }

func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', byte(c))
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20 || c == 0x2028 || c == 0x2029:
			dst = append(dst, '\\', 'u', hex[c>>12&0xf], hex[c>>8&0xf], hex[c>>4&0xf], hex[c&0xf])
		case c == utf8.RuneError:
			dst = append(dst, `\ufffd`...)
		default:
			dst = utf8.AppendRune(dst, c)
		}
	}
	return append(dst, '"')
}
