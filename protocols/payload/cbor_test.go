package payload

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// cb builds a CBOR test input: a string is hex (spaces ignored), a []byte is taken
// as it is.
func cb(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b, err := hex.DecodeString(strings.ReplaceAll(v, " ", ""))
			if err != nil {
				panic(err)
			}
			out = append(out, b...)
		case []byte:
			out = append(out, v...)
		default:
			panic("cb: unexpected part")
		}
	}
	return out
}

// tx is a CBOR text string.
func tx(s string) []byte { return AppendCBORText(nil, s) }

// cborPointCases is the golden table of single-point CBOR payloads. The scalars are
// RFC 8949 appendix A's examples.
var cborPointCases = []struct {
	raw     []byte
	want    Reading
	wantErr error
	desc    string
}{
	{raw: cb("00"), want: good(bridge.Int(0)), desc: "0"},
	{raw: cb("17"), want: good(bridge.Int(23)), desc: "23 in the initial byte"},
	{raw: cb("1818"), want: good(bridge.Int(24)), desc: "24 in one more byte"},
	{raw: cb("1903e8"), want: good(bridge.Int(1000)), desc: "1000"},
	{raw: cb("1b000000e8d4a51000"), want: good(bridge.Int(1000000000000)), desc: "10^12 in eight bytes"},
	{raw: cb("1b7fffffffffffffff"), want: good(bridge.Int(math.MaxInt64)), desc: "MaxInt64 stays int"},
	{raw: cb("1bffffffffffffffff"), want: good(bridge.Uint(math.MaxUint64)), desc: "MaxUint64 is uint"},
	{raw: cb("3bffffffffffffffff"), want: good(bridge.Double(-18446744073709551616)), desc: "below MinInt64 is a double"},
	{raw: cb("3b7fffffffffffffff"), want: good(bridge.Int(math.MinInt64)), desc: "MinInt64"},
	{raw: cb("20"), want: good(bridge.Int(-1)), desc: "-1"},
	{raw: cb("3863"), want: good(bridge.Int(-100)), desc: "-100"},
	{raw: cb("1800"), want: good(bridge.Int(0)), desc: "non-minimal encoding is accepted"},
	{raw: cb("f90000"), want: good(bridge.Double(0)), desc: "half 0.0"},
	{raw: cb("f93c00"), want: good(bridge.Double(1)), desc: "half 1.0"},
	{raw: cb("f93e00"), want: good(bridge.Double(1.5)), desc: "half 1.5"},
	{raw: cb("f97bff"), want: good(bridge.Double(65504)), desc: "largest half"},
	{raw: cb("f90001"), want: good(bridge.Double(5.960464477539063e-8)), desc: "smallest subnormal half"},
	{raw: cb("f90400"), want: good(bridge.Double(0.00006103515625)), desc: "smallest normal half"},
	{raw: cb("f9c400"), want: good(bridge.Double(-4)), desc: "half -4.0"},
	{raw: cb("f94d60"), want: good(bridge.Double(21.5)), desc: "half 21.5"},
	{raw: cb("fa47c35000"), want: good(bridge.Double(100000)), desc: "single 100000.0"},
	{raw: cb("fa7f7fffff"), want: good(bridge.Double(3.4028234663852886e+38)), desc: "largest single"},
	{raw: cb("fb3ff199999999999a"), want: good(bridge.Double(1.1)), desc: "double 1.1"},
	{raw: cb("fb7e37e43c8800759c"), want: good(bridge.Double(1.0e+300)), desc: "double 1e300"},
	{raw: cb("fbc010666666666666"), want: good(bridge.Double(-4.1)), desc: "double -4.1"},
	{raw: cb("f97c00"), wantErr: ErrInvalidPayload, desc: "half infinity is refused"},
	{raw: cb("f97e00"), wantErr: ErrInvalidPayload, desc: "half NaN is refused"},
	{raw: cb("fa7fc00000"), wantErr: ErrInvalidPayload, desc: "single NaN is refused"},
	{raw: cb("fbfff0000000000000"), wantErr: ErrInvalidPayload, desc: "double -infinity is refused"},
	{raw: cb("f4"), want: good(bridge.Bool(false)), desc: "false"},
	{raw: cb("f5"), want: good(bridge.Bool(true)), desc: "true"},
	{raw: cb("f6"), wantErr: ErrInvalidPayload, desc: "null has no value"},
	{raw: cb("f7"), wantErr: ErrInvalidPayload, desc: "undefined has no value"},
	{raw: cb("f0"), wantErr: ErrInvalidPayload, desc: "simple(16)"},
	{raw: cb("f8ff"), wantErr: ErrInvalidPayload, desc: "simple(255)"},
	{raw: cb("ff"), wantErr: ErrInvalidPayload, desc: "a lone break"},
	{raw: cb("60"), want: good(bridge.String("")), desc: "empty text is a value"},
	{raw: cb("6449455446"), want: good(bridge.String("IETF")), desc: "text"},
	{raw: cb("62225c"), want: good(bridge.String("\"\\")), desc: "text with quote and backslash"},
	{raw: cb("63e6b0b4"), want: good(bridge.String("水")), desc: "UTF-8 text"},
	{raw: cb("64f0908591"), want: good(bridge.String("𐅑")), desc: "four-byte UTF-8"},
	{raw: cb("62c328"), wantErr: ErrInvalidPayload, desc: "text that is not UTF-8"},
	{raw: cb("40"), want: good(bridge.Bytes([]byte{})), desc: "empty byte string"},
	{raw: cb("4401020304"), want: good(bridge.Bytes([]byte{1, 2, 3, 4})), desc: "byte string"},
	{raw: cb("5f42010243030405ff"), want: good(bridge.Bytes([]byte{1, 2, 3, 4, 5})), desc: "indefinite byte string"},
	{raw: cb("7f657374726561646d696e67ff"), want: good(bridge.String("streaming")), desc: "indefinite text string"},
	{raw: cb("7fff"), want: good(bridge.String("")), desc: "indefinite text of no chunks"},
	{raw: cb("7f4101ff"), wantErr: ErrInvalidPayload, desc: "byte chunk in a text string"},
	{raw: cb("7f7f6161ffff"), wantErr: ErrInvalidPayload, desc: "nested indefinite chunk"},
	{raw: cb("7f6161"), wantErr: ErrInvalidPayload, desc: "indefinite text without break"},
	{raw: cb("d9d9f7 01"), want: good(bridge.Int(1)), desc: "self-describe tag"},
	{raw: cb("d9d9f7"), wantErr: ErrInvalidPayload, desc: "self-describe tag alone"},
	{raw: cb("c074323031332d30332d32315432303a30343a30305a"), wantErr: ErrInvalidPayload, desc: "a date is not a value"},
	{raw: cb("c249010000000000000000"), wantErr: ErrInvalidPayload, desc: "bignums are refused"},
	{raw: cb("80"), wantErr: ErrInvalidPayload, desc: "arrays are not readings"},
	{raw: cb("83010203"), wantErr: ErrInvalidPayload, desc: "array"},
	{raw: cb("9f01ff"), wantErr: ErrInvalidPayload, desc: "indefinite array"},
	{raw: cb(""), wantErr: ErrInvalidPayload, desc: "empty"},
	{raw: cb("01 01"), wantErr: ErrInvalidPayload, desc: "trailing data"},
	{raw: cb("19 03"), wantErr: ErrInvalidPayload, desc: "truncated argument"},
	{raw: cb("1c"), wantErr: ErrInvalidPayload, desc: "reserved additional information"},
	{raw: cb("1f"), wantErr: ErrInvalidPayload, desc: "indefinite integer"},
	{raw: cb("65 6162"), wantErr: ErrInvalidPayload, desc: "text longer than the payload"},
	{raw: cb("7b ffffffffffffffff 61"), wantErr: ErrInvalidPayload, desc: "huge length is checked before allocating"},
	{raw: cb("a1 6576616c7565 f94d60"), want: good(bridge.Double(21.5)), desc: "reading map"},
	{raw: cb("a3", tx("value"), "f94d60", tx("ts"), tx("2024-05-01T12:00:00Z"), tx("unit"), tx("°C")),
		want: Reading{Value: bridge.Double(21.5), SourceTime: ts, Unit: "°C", Quality: bridge.QualityGood}, desc: "reading map with text time and unit"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c0", tx("2024-05-01T14:00:00+02:00")),
		want: Reading{Value: bridge.Int(3), SourceTime: ts, Quality: bridge.QualityGood}, desc: "tag 0 time, normalized to UTC"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c1 1a66322ec0"),
		want: Reading{Value: bridge.Int(3), SourceTime: ts, Quality: bridge.QualityGood}, desc: "tag 1 integer epoch seconds"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c1 fb41d98c8bb0200000"),
		want: Reading{Value: bridge.Int(3), SourceTime: ts.Add(500 * time.Millisecond), Quality: bridge.QualityGood}, desc: "tag 1 float epoch seconds"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "1a66322ec0"), wantErr: ErrInvalidPayload, desc: "a bare number is not a time"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c2 4101"), wantErr: ErrInvalidPayload, desc: "another tag is not a time"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c1", tx("now")), wantErr: ErrInvalidPayload, desc: "tag 1 needs a number"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c1 fb7e37e43c8800759c"), wantErr: ErrInvalidPayload, desc: "tag 1 out of range"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), "c1 3b0000004000000000"), wantErr: ErrInvalidPayload, desc: "tag 1 before year 1"},
	{raw: cb("a2", tx("value"), "03", tx("ts"), tx("yesterday")), wantErr: ErrInvalidPayload, desc: "ts not RFC 3339"},
	{raw: cb("a2", tx("value"), tx("on"), tx("quality"), tx("bad")),
		want: Reading{Value: bridge.String("on"), Quality: bridge.QualityBad}, desc: "quality"},
	{raw: cb("a2", tx("value"), "01", tx("quality"), tx("great")), wantErr: ErrInvalidPayload, desc: "unknown quality"},
	{raw: cb("a1", tx("value"), "4201ff"), want: good(bridge.Bytes([]byte{1, 0xff})), desc: "bytes value"},
	{raw: cb("bf", tx("value"), "f5 ff"), want: good(bridge.Bool(true)), desc: "indefinite map"},
	{raw: cb("bf", tx("value"), "f5"), wantErr: ErrInvalidPayload, desc: "indefinite map without break"},
	{raw: cb("a0"), wantErr: ErrInvalidPayload, desc: "empty map"},
	{raw: cb("a1", tx("unit"), tx("%")), wantErr: ErrInvalidPayload, desc: "no value"},
	{raw: cb("a1", tx("value"), "f6"), wantErr: ErrInvalidPayload, desc: "null value"},
	{raw: cb("a1", tx("value"), "8101"), wantErr: ErrInvalidPayload, desc: "array value"},
	{raw: cb("a1", tx("value"), "a1", tx("value"), "01"), wantErr: ErrInvalidPayload, desc: "nested reading"},
	{raw: cb("a2", tx("value"), "01", tx("value"), "02"), wantErr: ErrInvalidPayload, desc: "duplicate key"},
	{raw: cb("a2", tx("value"), "01", tx("unti"), tx("%")), wantErr: ErrInvalidPayload, desc: "unknown key is refused, not ignored"},
	{raw: cb("a1 01 01"), wantErr: ErrInvalidPayload, desc: "integer key"},
	{raw: cb("a2", tx("value"), "01", tx("unit"), "01"), wantErr: ErrInvalidPayload, desc: "unit must be text"},
	{raw: cb("a2", tx("value"), "01", tx("unit"), tx(strings.Repeat("u", bridge.MaxNameLen+1))), wantErr: ErrInvalidPayload, desc: "unit too long"},
	{raw: cb("bb ffffffffffffffff"), wantErr: ErrInvalidPayload, desc: "huge map is checked before reading"},
	{raw: cb("a1", tx("value"), "01", "00"), wantErr: ErrInvalidPayload, desc: "trailing data after the map"},
	{raw: bytes.Repeat([]byte{0x01}, DefaultMaxSize+1), wantErr: ErrTooLarge, desc: "larger than the limit"},
}

func TestDecodeCBOR(t *testing.T) {
	for _, c := range cborPointCases {
		got, err := Decoder{}.DecodeCBOR(c.raw)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) || !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("%s: DecodeCBOR(%x) = %#v, %v; want error %v", c.desc, c.raw, got, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: DecodeCBOR(%x): %v", c.desc, c.raw, err)
			continue
		}
		if !sameReading(got, c.want) || got.Value.Kind() != c.want.Value.Kind() {
			t.Errorf("%s: DecodeCBOR(%x) = %s, want %s", c.desc, c.raw, show(got), show(c.want))
		}
	}
}

var cborObjectCases = []struct {
	raw     []byte
	want    []Reading
	wantErr error
	desc    string
}{
	{raw: cb("a2", tx("temp"), "f94d60", tx("hum"), "a2", tx("value"), "1828", tx("unit"), tx("%")),
		want: []Reading{{Point: "temp", Value: bridge.Double(21.5), Quality: bridge.QualityGood},
			{Point: "hum", Value: bridge.Int(40), Unit: "%", Quality: bridge.QualityGood}},
		desc: "scalar and reading map, in order"},
	{raw: cb("a3", tx("ts"), "c1 1a66322ec0", tx("a"), "01", tx("b"), "a2", tx("value"), "f4", tx("ts"), tx("2025-01-01T00:00:00Z")),
		want: []Reading{{Point: "a", Value: bridge.Int(1), SourceTime: ts, Quality: bridge.QualityGood},
			{Point: "b", Value: bridge.Bool(false), SourceTime: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Quality: bridge.QualityGood}},
		desc: "top-level ts applies to points without their own"},
	{raw: cb("bf", tx("a"), "01", tx("b"), "4100", "ff"),
		want: []Reading{{Point: "a", Value: bridge.Int(1), Quality: bridge.QualityGood},
			{Point: "b", Value: bridge.Bytes([]byte{0}), Quality: bridge.QualityGood}},
		desc: "indefinite map"},
	{raw: cb("d9d9f7 a1", tx("état"), tx("ouvert")), want: []Reading{{Point: "état", Value: bridge.String("ouvert"), Quality: bridge.QualityGood}}, desc: "self-described, UTF-8 names"},
	{raw: cb("a0"), wantErr: ErrInvalidPayload, desc: "no points"},
	{raw: cb("a1", tx("ts"), tx("2024-05-01T12:00:00Z")), wantErr: ErrInvalidPayload, desc: "only a time"},
	{raw: cb("f94d60"), wantErr: ErrInvalidPayload, desc: "a scalar is not a map of points"},
	{raw: cb("820102"), wantErr: ErrInvalidPayload, desc: "an array is not a map of points"},
	{raw: cb(""), wantErr: ErrInvalidPayload, desc: "empty"},
	{raw: cb("a2", tx("a"), "01", tx("a"), "02"), wantErr: ErrInvalidPayload, desc: "duplicate point"},
	{raw: cb("a2", tx("ts"), tx("2024-05-01T12:00:00Z"), tx("ts"), tx("2024-05-01T12:00:00Z")), wantErr: ErrInvalidPayload, desc: "duplicate ts"},
	{raw: cb("a1", tx(""), "01"), wantErr: ErrInvalidPayload, desc: "empty point name"},
	{raw: cb("a1", tx("a/b"), "01"), wantErr: ErrInvalidPayload, desc: "slash in a point name"},
	{raw: cb("a1", tx("a\n"), "01"), wantErr: ErrInvalidPayload, desc: "control character in a point name"},
	{raw: cb("a1", tx(strings.Repeat("x", bridge.MaxNameLen+1)), "01"), wantErr: ErrInvalidPayload, desc: "point name too long"},
	{raw: cb("a1 4161 01"), wantErr: ErrInvalidPayload, desc: "byte string key"},
	{raw: cb("a1", tx("a"), "8101"), wantErr: ErrInvalidPayload, desc: "array point"},
	{raw: cb("a1", tx("a"), "a1", tx("b"), "a1", tx("value"), "01"), wantErr: ErrInvalidPayload, desc: "deeper than a reading map"},
	{raw: cb("a1", tx("a"), "a1", tx("unit"), tx("%")), wantErr: ErrInvalidPayload, desc: "reading map without value"},
	{raw: cb("a2", tx("ts"), tx("now"), tx("a"), "01"), wantErr: ErrInvalidPayload, desc: "bad top-level ts"},
	{raw: cborManyPoints(DefaultMaxPoints + 1), wantErr: ErrTooManyPoints, desc: "more points than the limit"},
	{raw: cb("a1", tx("a"), bytes.Repeat([]byte{0x81}, 1000), "01"), wantErr: ErrInvalidPayload, desc: "deep nesting is refused at the first array"},
}

func cborManyPoints(n int) []byte {
	b := AppendCBORMapHead(nil, n)
	for i := range n {
		b = AppendCBORText(b, "p"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
		b = AppendCBOR(b, bridge.Int(1))
	}
	return b
}

func TestDecodeObjectCBOR(t *testing.T) {
	for _, c := range cborObjectCases {
		got, err := Decoder{}.DecodeObjectCBOR(c.raw)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) || !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("%s: DecodeObjectCBOR(%x) = %v, %v; want error %v", c.desc, c.raw, got, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: DecodeObjectCBOR(%x): %v", c.desc, c.raw, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %d readings, want %d", c.desc, len(got), len(c.want))
			continue
		}
		for i := range got {
			if !sameReading(got[i], c.want[i]) {
				t.Errorf("%s: reading %d = %s, want %s", c.desc, i, show(got[i]), show(c.want[i]))
			}
		}
	}
}

func TestCBORLimits(t *testing.T) {
	d := Decoder{MaxSize: 8, MaxPoints: 2}
	if _, err := d.DecodeCBOR(cb("6a", tx("123456789")[1:])); !errors.Is(err, ErrTooLarge) {
		t.Errorf("10 bytes with MaxSize 8: %v, want ErrTooLarge", err)
	}
	d.MaxSize = 0
	if _, err := d.DecodeObjectCBOR(cb("a3", tx("a"), "01", tx("b"), "02", tx("c"), "03")); !errors.Is(err, ErrTooManyPoints) {
		t.Errorf("3 points with MaxPoints 2: %v, want ErrTooManyPoints", err)
	}
}

// TestAppendCBOR checks the encoder against RFC 8949 appendix A and the decoder.
func TestAppendCBOR(t *testing.T) {
	cases := []struct {
		v    bridge.Value
		want string
	}{
		{bridge.Int(0), "00"}, {bridge.Int(23), "17"}, {bridge.Int(24), "1818"}, {bridge.Int(1000), "1903e8"},
		{bridge.Int(1000000), "1a000f4240"}, {bridge.Int(1000000000000), "1b000000e8d4a51000"},
		{bridge.Uint(math.MaxUint64), "1bffffffffffffffff"}, {bridge.Int(-1), "20"}, {bridge.Int(-1000), "3903e7"},
		{bridge.Int(math.MinInt64), "3b7fffffffffffffff"},
		{bridge.Double(1.5), "fa3fc00000"}, {bridge.Double(1.1), "fb3ff199999999999a"}, {bridge.Double(100000), "fa47c35000"},
		{bridge.Bool(false), "f4"}, {bridge.Bool(true), "f5"}, {bridge.Value{}, "f6"},
		{bridge.String(""), "60"}, {bridge.String("IETF"), "6449455446"}, {bridge.Bytes([]byte{1, 2, 3, 4}), "4401020304"},
	}
	for _, c := range cases {
		got := hex.EncodeToString(AppendCBOR(nil, c.v))
		if got != c.want {
			t.Errorf("AppendCBOR(%#v) = %s, want %s", c.v, got, c.want)
		}
		if c.v.IsZero() {
			continue
		}
		r, err := Decoder{}.DecodeCBOR(AppendCBOR(nil, c.v))
		if err != nil || !r.Value.Equal(c.v) {
			t.Errorf("DecodeCBOR(AppendCBOR(%#v)) = %#v, %v", c.v, r.Value, err)
		}
	}
	long := strings.Repeat("x", 70000)
	if r, err := (Decoder{MaxSize: 1 << 20}).DecodeCBOR(AppendCBOR(nil, bridge.String(long))); err != nil || r.Value.String() != long {
		t.Errorf("a 70000-byte string does not round-trip: %v", err)
	}
}

func TestAppendJSON(t *testing.T) {
	cases := []struct {
		v    bridge.Value
		want string
	}{
		{bridge.Double(21.5), "21.5"}, {bridge.Double(21), "21.0"}, {bridge.Double(1e21), "1e+21"},
		{bridge.Double(math.NaN()), `"NaN"`}, {bridge.Int(-3), "-3"}, {bridge.Uint(math.MaxUint64), "18446744073709551615"},
		{bridge.Bool(true), "true"}, {bridge.String("a\"b\\c\n\x01é"), `"a\"b\\c\n\u0001é"`},
		{bridge.Bytes([]byte{0xff, 0}), `"/wA="`}, {bridge.Value{}, "null"},
	}
	for _, c := range cases {
		if got := string(AppendJSON(nil, c.v)); got != c.want {
			t.Errorf("AppendJSON(%#v) = %s, want %s", c.v, got, c.want)
		}
	}
	// What AppendJSON writes, Decode reads back as the same value (bytes excepted:
	// JSON has no bytes, so they come back as their base64 string).
	for _, v := range []bridge.Value{bridge.Double(21.5), bridge.Double(-0.25), bridge.Double(3), bridge.Int(7), bridge.Uint(1 << 63), bridge.Bool(false), bridge.String(" x\ty ")} {
		r, err := Decoder{}.Decode(AppendJSON(nil, v))
		if err != nil || !r.Value.Equal(v) {
			t.Errorf("Decode(AppendJSON(%#v)) = %#v, %v", v, r.Value, err)
		}
	}
}

// FuzzDecodeCBOR feeds arbitrary bytes to both CBOR entry points. Nothing may panic,
// what decodes must be something the bridge accepts, and each decoded value must
// survive AppendCBOR and DecodeCBOR unchanged.
func FuzzDecodeCBOR(f *testing.F) {
	for _, c := range cborPointCases {
		if len(c.raw) < 1000 {
			f.Add(c.raw)
		}
	}
	for _, c := range cborObjectCases {
		if len(c.raw) < 1000 {
			f.Add(c.raw)
		}
	}
	d := Decoder{MaxSize: 4096, MaxPoints: 16}
	roundTrip := func(t *testing.T, v bridge.Value) {
		back, err := d.DecodeCBOR(AppendCBOR(nil, v))
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", v, err)
		}
		if !back.Value.Equal(v) {
			t.Fatalf("round trip of %#v gave %#v", v, back.Value)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if r, err := d.DecodeCBOR(raw); err == nil {
			checkReading(t, r, false)
			roundTrip(t, r.Value)
		} else if !errors.Is(err, ErrInvalidPayload) {
			t.Fatalf("DecodeCBOR error %v does not wrap ErrInvalidPayload", err)
		}
		rs, err := d.DecodeObjectCBOR(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("DecodeObjectCBOR error %v does not wrap ErrInvalidPayload", err)
			}
			return
		}
		if len(rs) == 0 || len(rs) > 16 {
			t.Fatalf("DecodeObjectCBOR gave %d readings", len(rs))
		}
		seen := map[string]bool{}
		for _, r := range rs {
			checkReading(t, r, true)
			roundTrip(t, r.Value)
			if seen[r.Point] {
				t.Fatalf("point %q twice", r.Point)
			}
			seen[r.Point] = true
		}
	})
}
