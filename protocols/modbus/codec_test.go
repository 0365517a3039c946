package modbus

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// golden is one value with its register bytes in each byte order, written out by
// hand: the letters of the byte order name the value's bytes, most significant
// first (A), in the order they travel; each register goes high byte first
// (Modbus Application Protocol v1.1b3, 4.2: "big-Endian representation").
type golden struct {
	typ   Type
	value bridge.Value
	regs  int // strings only
	wire  map[ByteOrder]string
}

var goldens = []golden{
	{TypeBool, bridge.Bool(true), 0, map[ByteOrder]string{ABCD: "0001", CDAB: "0001", BADC: "0100", DCBA: "0100"}},
	{TypeBool, bridge.Bool(false), 0, map[ByteOrder]string{ABCD: "0000", CDAB: "0000", BADC: "0000", DCBA: "0000"}},
	{TypeInt16, bridge.Int(-2), 0, map[ByteOrder]string{ABCD: "fffe", CDAB: "fffe", BADC: "feff", DCBA: "feff"}},
	{TypeInt16, bridge.Int(0x1234), 0, map[ByteOrder]string{ABCD: "1234", CDAB: "1234", BADC: "3412", DCBA: "3412"}},
	{TypeUint16, bridge.Uint(0xABCD), 0, map[ByteOrder]string{ABCD: "abcd", CDAB: "abcd", BADC: "cdab", DCBA: "cdab"}},
	{TypeUint16, bridge.Uint(555), 0, map[ByteOrder]string{ABCD: "022b", CDAB: "022b", BADC: "2b02", DCBA: "2b02"}},
	{TypeInt32, bridge.Int(0x12345678), 0, map[ByteOrder]string{ABCD: "12345678", CDAB: "56781234", BADC: "34127856", DCBA: "78563412"}},
	{TypeInt32, bridge.Int(-123456789), 0, map[ByteOrder]string{ABCD: "f8a432eb", CDAB: "32ebf8a4", BADC: "a4f8eb32", DCBA: "eb32a4f8"}},
	{TypeUint32, bridge.Uint(0xDEADBEEF), 0, map[ByteOrder]string{ABCD: "deadbeef", CDAB: "beefdead", BADC: "addeefbe", DCBA: "efbeadde"}},
	{TypeFloat32, bridge.Double(21.5), 0, map[ByteOrder]string{ABCD: "41ac0000", CDAB: "000041ac", BADC: "ac410000", DCBA: "0000ac41"}},
	{TypeFloat32, bridge.Double(-1.5), 0, map[ByteOrder]string{ABCD: "bfc00000", CDAB: "0000bfc0", BADC: "c0bf0000", DCBA: "0000c0bf"}},
	{TypeFloat32, bridge.Double(123.456), 0, map[ByteOrder]string{ABCD: "42f6e979", CDAB: "e97942f6", BADC: "f64279e9", DCBA: "79e9f642"}},
	{TypeInt64, bridge.Int(0x0102030405060708), 0, map[ByteOrder]string{ABCD: "0102030405060708", CDAB: "0708050603040102", BADC: "0201040306050807", DCBA: "0807060504030201"}},
	{TypeInt64, bridge.Int(-2), 0, map[ByteOrder]string{ABCD: "fffffffffffffffe", CDAB: "fffeffffffffffff", BADC: "fffffffffffffeff", DCBA: "feffffffffffffff"}},
	{TypeUint64, bridge.Uint(0xFEDCBA9876543210), 0, map[ByteOrder]string{ABCD: "fedcba9876543210", CDAB: "32107654ba98fedc", BADC: "dcfe98ba54761032", DCBA: "1032547698badcfe"}},
	{TypeFloat64, bridge.Double(1), 0, map[ByteOrder]string{ABCD: "3ff0000000000000", CDAB: "0000000000003ff0", BADC: "f03f000000000000", DCBA: "000000000000f03f"}},
	{TypeFloat64, bridge.Double(math.Pi), 0, map[ByteOrder]string{ABCD: "400921fb54442d18", CDAB: "2d18544421fb4009", BADC: "0940fb214454182d", DCBA: "182d4454fb210940"}},
	{TypeString, bridge.String("AB12"), 2, map[ByteOrder]string{ABCD: "41423132", BADC: "42413231"}},
	{TypeString, bridge.String("abc"), 2, map[ByteOrder]string{ABCD: "61626300", BADC: "62610063"}},
	{TypeString, bridge.String("°C"), 2, map[ByteOrder]string{ABCD: "c2b04300", BADC: "b0c20043"}},
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecGolden(t *testing.T) {
	covered := map[Type]map[ByteOrder]bool{}
	for _, g := range goldens {
		for o, w := range g.wire {
			wire := unhex(t, w)
			got, err := Decode(g.typ, o, wire)
			if err != nil || !got.Equal(g.value) {
				t.Errorf("Decode(%s, %s, %x) = %#v, %v; want %#v", g.typ, o, wire, got, err, g.value)
			}
			enc, err := Encode(g.typ, o, g.value, g.regs)
			if err != nil || !bytes.Equal(enc, wire) {
				t.Errorf("Encode(%s, %s, %#v) = %x, %v; want %x", g.typ, o, g.value, enc, err, wire)
			}
			if covered[g.typ] == nil {
				covered[g.typ] = map[ByteOrder]bool{}
			}
			covered[g.typ][o] = true
		}
	}
	// Every type in every byte order it takes (a string has no words to swap).
	for typ := TypeBool; typ <= TypeString; typ++ {
		for _, o := range []ByteOrder{ABCD, CDAB, BADC, DCBA} {
			if typ == TypeString && (o == CDAB || o == DCBA) {
				continue
			}
			if !covered[typ][o] {
				t.Errorf("no golden vector for %s %s", typ, o)
			}
		}
	}
}

func TestDecodeEdges(t *testing.T) {
	// Any non-zero register is a true bool.
	if v, _ := Decode(TypeBool, ABCD, []byte{0, 2}); !v.Equal(bridge.Bool(true)) {
		t.Errorf("bool 0x0002 = %#v", v)
	}
	// A string ends at its first NUL; bytes that are not UTF-8 are replaced.
	if v, _ := Decode(TypeString, ABCD, []byte{'h', 'i', 0, 'x'}); !v.Equal(bridge.String("hi")) {
		t.Errorf("string with NUL = %#v", v)
	}
	if v, _ := Decode(TypeString, ABCD, []byte{'a', 0xff}); !v.Equal(bridge.String("a\uFFFD")) {
		t.Errorf("string with 0xff = %#v", v)
	}
	for _, c := range []struct {
		typ  Type
		wire []byte
	}{{TypeInt32, []byte{1, 2}}, {TypeFloat64, make([]byte, 6)}, {TypeString, []byte{1}}, {TypeString, nil}, {0, []byte{0, 0}}} {
		if _, err := Decode(c.typ, ABCD, c.wire); err == nil {
			t.Errorf("Decode(%s, %x): no error", c.typ, c.wire)
		}
	}
}

// A float32 reads as its shortest decimal, and writes back to the same bits.
func TestFloat32Widening(t *testing.T) {
	for _, f := range []float32{0.1, 123.456, -1e-7, 3.4028235e38, 1.17549435e-38, 16777217} {
		wire, _ := Encode(TypeFloat32, ABCD, bridge.Double(float64(f)), 0)
		v, _ := Decode(TypeFloat32, ABCD, wire)
		d, _ := v.AsDouble()
		if want, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64); d != want {
			t.Errorf("%v reads as %v", f, d)
		}
		if again, _ := Encode(TypeFloat32, ABCD, v, 0); !bytes.Equal(again, wire) {
			t.Errorf("%v: %x written back as %x", f, wire, again)
		}
	}
	for _, bits := range []uint32{0x7F800000, 0xFF800000, 0x7FC00000} {
		wire := []byte{byte(bits >> 24), byte(bits >> 16), byte(bits >> 8), byte(bits)}
		v, err := Decode(TypeFloat32, ABCD, wire)
		d, _ := v.AsDouble()
		if err != nil || float32(d) != math.Float32frombits(bits) && !math.IsNaN(d) {
			t.Errorf("%08x reads as %v, %v", bits, d, err)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, c := range []struct {
		typ Type
		v   bridge.Value
	}{
		{TypeInt16, bridge.Int(40000)},
		{TypeInt16, bridge.Int(-40000)},
		{TypeUint16, bridge.Int(-1)},
		{TypeUint16, bridge.Uint(65536)},
		{TypeInt32, bridge.Double(1.5)},
		{TypeUint32, bridge.Double(-1)},
		{TypeInt64, bridge.Uint(math.MaxUint64)},
		{TypeUint64, bridge.String("1")},
		{TypeFloat32, bridge.Double(1e39)},
		{TypeFloat32, bridge.Bool(true)},
		{TypeBool, bridge.Int(2)},
		{TypeBool, bridge.Double(1)},
		{TypeString, bridge.Int(1)},
		{TypeString, bridge.String("too long")},
	} {
		if b, err := Encode(c.typ, ABCD, c.v, 2); !errors.Is(err, ErrValue) {
			t.Errorf("Encode(%s, %#v) = %x, %v; want ErrValue", c.typ, c.v, b, err)
		}
	}
	// Integral doubles and other integer kinds in range are taken.
	for _, c := range []struct {
		typ  Type
		v    bridge.Value
		wire string
	}{
		{TypeInt16, bridge.Double(-2), "fffe"},
		{TypeUint16, bridge.Int(65535), "ffff"},
		{TypeInt64, bridge.Uint(1), "0000000000000001"},
		{TypeBool, bridge.Int(1), "0001"},
		{TypeFloat32, bridge.Int(2), "40000000"},
	} {
		b, err := Encode(c.typ, ABCD, c.v, 0)
		if err != nil || hex.EncodeToString(b) != c.wire {
			t.Errorf("Encode(%s, %#v) = %x, %v; want %s", c.typ, c.v, b, err, c.wire)
		}
	}
}

func TestParseNames(t *testing.T) {
	for typ := TypeBool; typ <= TypeString; typ++ {
		if got, err := ParseType(typ.String()); err != nil || got != typ {
			t.Errorf("ParseType(%q) = %v, %v", typ.String(), got, err)
		}
	}
	if _, err := ParseType("float"); err == nil || !strings.Contains(err.Error(), `unknown type "float"`) {
		t.Errorf("ParseType(float) = %v", err)
	}
	for _, o := range []ByteOrder{ABCD, CDAB, BADC, DCBA} {
		if got, err := ParseByteOrder(o.String()); err != nil || got != o {
			t.Errorf("ParseByteOrder(%q) = %v, %v", o.String(), got, err)
		}
	}
	if o, err := ParseByteOrder(""); err != nil || o != ABCD {
		t.Errorf("the default byte order is %v, %v", o, err)
	}
	if _, err := ParseByteOrder("abcd"); err == nil {
		t.Error("byte orders are upper case")
	}
}

// TestScale: raw × scale + offset on the way in, reversed (and rounded for
// integers) on the way out.
func TestScale(t *testing.T) {
	scale, offset := 0.1, -40.0
	p, errs := compilePoint(PointConfig{Name: "t", Register: "holding", Address: ptr(0), Type: "int16", Scale: &scale, Offset: &offset, Writable: true}, MaxReadRegisters)
	if errs != nil {
		t.Fatal(errs)
	}
	v, err := p.decode([]byte{0x01, 0x90}, 0) // 400
	if f, _ := v.AsDouble(); err != nil || math.Abs(f-0) > 1e-9 {
		t.Errorf("400 × 0.1 - 40 = %#v, %v", v, err)
	}
	b, err := p.encode(bridge.Double(21.5)) // (21.5 + 40) / 0.1 = 615
	if err != nil || hex.EncodeToString(b) != "0267" {
		t.Errorf("encode 21.5 = %x, %v; want 0267", b, err)
	}
	if _, err := p.encode(bridge.Double(4000)); !errors.Is(err, ErrValue) {
		t.Errorf("encode 4000 (raw 40400, beyond int16): %v", err)
	}
	// The binary noise of the arithmetic does not show.
	if v, _ := p.decode([]byte{0x01, 0x93}, 0); !v.Equal(bridge.Double(0.3)) { // 403 × 0.1 − 40
		t.Errorf("403 × 0.1 - 40 = %#v", v)
	}
	for _, c := range []struct{ x, mag, want float64 }{
		{40.300000000000004, 40.3, 40.3}, {0.30000000000000004, 0.3, 0.3}, {1e20 + 1, 1e20, 1e20},
		{123456789012345678, 123456789012345678, 123456789012346000}, {-2.5e-300, 2.5e-300, -2.5e-300}, {0, 1, 0},
	} {
		if got := roundTo(c.x, c.mag); got != c.want {
			t.Errorf("roundTo(%v, %v) = %v, want %v", c.x, c.mag, got, c.want)
		}
	}
	// An offset alone makes a double too.
	p, _ = compilePoint(PointConfig{Name: "u", Register: "input", Address: ptr(3), Type: "uint16", Offset: &offset}, MaxReadRegisters)
	if v, _ := p.decode([]byte{0, 0, 0, 0, 0, 0, 0, 50}, 0); !v.Equal(bridge.Double(10)) {
		t.Errorf("50 - 40 = %#v", v)
	}
}

func ptr[T any](v T) *T { return &v }
