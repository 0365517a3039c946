package bridge

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
)

// Kind says which field of a Value is set.
type Kind uint8

const (
	KindNone Kind = iota
	KindDouble
	KindInt
	KindUint
	KindBool
	KindString
	KindBytes
)

func (k Kind) String() string {
	switch k {
	case KindDouble:
		return "double"
	case KindInt:
		return "int"
	case KindUint:
		return "uint"
	case KindBool:
		return "bool"
	case KindString:
		return "string"
	case KindBytes:
		return "bytes"
	}
	return "none"
}

// Value is a typed value: exactly one of double, int, uint, bool, string or bytes,
// or none for the zero Value. It is small and copied by value.
type Value struct {
	kind Kind
	n    uint64 // double bits, int, uint or bool
	s    string // string, or bytes held as an immutable string
}

func Double(f float64) Value { return Value{kind: KindDouble, n: math.Float64bits(f)} }
func Int(i int64) Value      { return Value{kind: KindInt, n: uint64(i)} }
func Uint(u uint64) Value    { return Value{kind: KindUint, n: u} }
func String(s string) Value  { return Value{kind: KindString, s: s} }
func Bytes(b []byte) Value   { return Value{kind: KindBytes, s: string(b)} }
func Bool(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.n = 1
	}
	return v
}

func (v Value) Kind() Kind { return v.kind }

// IsZero reports whether no kind is set.
func (v Value) IsZero() bool { return v.kind == KindNone }

// AsDouble returns the double, or false when the value is of another kind.
func (v Value) AsDouble() (float64, bool) {
	return math.Float64frombits(v.n), v.kind == KindDouble
}
func (v Value) AsInt() (int64, bool)   { return int64(v.n), v.kind == KindInt }
func (v Value) AsUint() (uint64, bool) { return v.n, v.kind == KindUint }
func (v Value) AsBool() (bool, bool)   { return v.n != 0, v.kind == KindBool }
func (v Value) AsString() (string, bool) {
	return v.s, v.kind == KindString
}

// AsBytes returns a copy of the bytes, or false when the value is of another kind.
func (v Value) AsBytes() ([]byte, bool) {
	if v.kind != KindBytes {
		return nil, false
	}
	return []byte(v.s), true
}

// Float converts any numeric or bool value to a float64, for deadbands, scales and
// aggregates. It reports false for strings, bytes and none.
func (v Value) Float() (float64, bool) {
	switch v.kind {
	case KindDouble:
		return math.Float64frombits(v.n), true
	case KindInt:
		return float64(int64(v.n)), true
	case KindUint:
		return float64(v.n), true
	case KindBool:
		return float64(v.n), true
	}
	return 0, false
}

// Equal reports whether two values have the same kind and the same contents.
func (v Value) Equal(o Value) bool {
	if v.kind != o.kind {
		return false
	}
	if v.kind == KindString || v.kind == KindBytes {
		return v.s == o.s
	}
	return v.n == o.n
}

// String formats the value for people and for payloads: numbers in Go's shortest
// form, bytes in base64.
func (v Value) String() string {
	switch v.kind {
	case KindDouble:
		return strconv.FormatFloat(math.Float64frombits(v.n), 'g', -1, 64)
	case KindInt:
		return strconv.FormatInt(int64(v.n), 10)
	case KindUint:
		return strconv.FormatUint(v.n, 10)
	case KindBool:
		return strconv.FormatBool(v.n != 0)
	case KindString:
		return v.s
	case KindBytes:
		return base64.StdEncoding.EncodeToString([]byte(v.s))
	}
	return ""
}

// GoString helps test failures say which kind differs.
func (v Value) GoString() string {
	if v.kind == KindBytes {
		return fmt.Sprintf("bytes(%q)", bytes.Clone([]byte(v.s)))
	}
	return fmt.Sprintf("%s(%s)", v.kind, v.String())
}
