package bridge

import (
	"bytes"
	"math"
	"testing"
)

func TestValueKinds(t *testing.T) {
	tests := []struct {
		name   string
		v      Value
		kind   Kind
		str    string
		float  float64
		fok    bool
		goStr  string
		isZero bool
	}{
		{"none", Value{}, KindNone, "", 0, false, "none()", true},
		{"double", Double(21.5), KindDouble, "21.5", 21.5, true, "double(21.5)", false},
		{"double shortest", Double(0.1), KindDouble, "0.1", 0.1, true, "double(0.1)", false},
		{"double large", Double(1e21), KindDouble, "1e+21", 1e21, true, "double(1e+21)", false},
		{"double negative zero", Double(math.Copysign(0, -1)), KindDouble, "-0", 0, true, "double(-0)", false},
		{"double inf", Double(math.Inf(1)), KindDouble, "+Inf", math.Inf(1), true, "double(+Inf)", false},
		{"int", Int(-42), KindInt, "-42", -42, true, "int(-42)", false},
		{"int min", Int(math.MinInt64), KindInt, "-9223372036854775808", math.MinInt64, true, "int(-9223372036854775808)", false},
		{"uint", Uint(42), KindUint, "42", 42, true, "uint(42)", false},
		{"uint max", Uint(math.MaxUint64), KindUint, "18446744073709551615", math.MaxUint64, true, "uint(18446744073709551615)", false},
		{"bool true", Bool(true), KindBool, "true", 1, true, "bool(true)", false},
		{"bool false", Bool(false), KindBool, "false", 0, true, "bool(false)", false},
		{"string", String("héllo"), KindString, "héllo", 0, false, "string(héllo)", false},
		{"empty string", String(""), KindString, "", 0, false, "string()", false},
		{"bytes", Bytes([]byte{0, 1, 0xff}), KindBytes, "AAH/", 0, false, `bytes("\x00\x01\xff")`, false},
		{"empty bytes", Bytes(nil), KindBytes, "", 0, false, `bytes("")`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Kind(); got != tt.kind {
				t.Errorf("Kind() = %v, want %v", got, tt.kind)
			}
			if got := tt.v.IsZero(); got != tt.isZero {
				t.Errorf("IsZero() = %v, want %v", got, tt.isZero)
			}
			if got := tt.v.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.v.GoString(); got != tt.goStr {
				t.Errorf("GoString() = %q, want %q", got, tt.goStr)
			}
			f, ok := tt.v.Float()
			if ok != tt.fok || f != tt.float {
				t.Errorf("Float() = %v, %v; want %v, %v", f, ok, tt.float, tt.fok)
			}
			// Exactly the accessor of its own kind reports true.
			_, isDouble := tt.v.AsDouble()
			_, isInt := tt.v.AsInt()
			_, isUint := tt.v.AsUint()
			_, isBool := tt.v.AsBool()
			_, isString := tt.v.AsString()
			_, isBytes := tt.v.AsBytes()
			got := map[Kind]bool{KindDouble: isDouble, KindInt: isInt, KindUint: isUint,
				KindBool: isBool, KindString: isString, KindBytes: isBytes}
			for k, ok := range got {
				if ok != (k == tt.kind) {
					t.Errorf("As%v reports %v for a %v", k, ok, tt.kind)
				}
			}
			if !tt.v.Equal(tt.v) {
				t.Errorf("%#v is not Equal to itself", tt.v)
			}
		})
	}
}

func TestValueAccessors(t *testing.T) {
	if f, ok := Double(-3.25).AsDouble(); !ok || f != -3.25 {
		t.Errorf("AsDouble = %v, %v", f, ok)
	}
	if i, ok := Int(math.MinInt64).AsInt(); !ok || i != math.MinInt64 {
		t.Errorf("AsInt = %v, %v", i, ok)
	}
	if u, ok := Uint(math.MaxUint64).AsUint(); !ok || u != math.MaxUint64 {
		t.Errorf("AsUint = %v, %v", u, ok)
	}
	if b, ok := Bool(true).AsBool(); !ok || !b {
		t.Errorf("AsBool(true) = %v, %v", b, ok)
	}
	if b, ok := Bool(false).AsBool(); !ok || b {
		t.Errorf("AsBool(false) = %v, %v", b, ok)
	}
	if s, ok := String("x").AsString(); !ok || s != "x" {
		t.Errorf("AsString = %q, %v", s, ok)
	}
	if f, ok := Double(math.NaN()).Float(); !ok || !math.IsNaN(f) {
		t.Errorf("Float of NaN = %v, %v", f, ok)
	}
	if b, ok := Int(7).AsBytes(); ok || b != nil {
		t.Errorf("AsBytes of an int = %v, %v", b, ok)
	}
}

// A bytes Value owns its contents: neither the constructor's argument nor what
// AsBytes returns can change it.
func TestValueBytesAreCopied(t *testing.T) {
	in := []byte("abc")
	v := Bytes(in)
	in[0] = 'X'
	got, ok := v.AsBytes()
	if !ok || !bytes.Equal(got, []byte("abc")) {
		t.Fatalf("AsBytes = %q, %v after changing the argument", got, ok)
	}
	got[1] = 'Y'
	if again, _ := v.AsBytes(); !bytes.Equal(again, []byte("abc")) {
		t.Fatalf("AsBytes = %q after changing an earlier result", again)
	}
}

func TestValueEqual(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		a, b Value
		want bool
	}{
		{Value{}, Value{}, true},
		{Double(1), Double(1), true},
		{Double(1), Double(2), false},
		{Double(nan), Double(nan), true}, // same bits: a repeated NaN is no change
		{Int(1), Int(1), true},
		{Int(1), Int(2), false},
		{Int(1), Uint(1), false},
		{Int(1), Double(1), false},
		{Uint(1), Bool(true), false},
		{Int(0), Bool(false), false},
		{Bool(true), Bool(true), true},
		{Bool(true), Bool(false), false},
		{String("a"), String("a"), true},
		{String("a"), String("b"), false},
		{String("a"), Bytes([]byte("a")), false},
		{Bytes([]byte("a")), Bytes([]byte("a")), true},
		{Bytes(nil), Bytes([]byte{}), true},
		{Bytes(nil), Value{}, false},
		{String(""), Value{}, false},
		{Int(0), Value{}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%#v.Equal(%#v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Equal(tt.a); got != tt.want {
			t.Errorf("%#v.Equal(%#v) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{KindNone: "none", KindDouble: "double", KindInt: "int", KindUint: "uint",
		KindBool: "bool", KindString: "string", KindBytes: "bytes", Kind(99): "none"}
	for k, s := range want {
		if got := k.String(); got != s {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, s)
		}
	}
}
