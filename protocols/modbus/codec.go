package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
)

// Type is how a point's registers are read as a value.
type Type uint8

const (
	TypeBool Type = iota + 1
	TypeInt16
	TypeUint16
	TypeInt32
	TypeUint32
	TypeInt64
	TypeUint64
	TypeFloat32
	TypeFloat64
	TypeString
)

var typeNames = [...]string{
	TypeBool: "bool", TypeInt16: "int16", TypeUint16: "uint16", TypeInt32: "int32", TypeUint32: "uint32",
	TypeInt64: "int64", TypeUint64: "uint64", TypeFloat32: "float32", TypeFloat64: "float64", TypeString: "string",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType reads a config type name.
func ParseType(s string) (Type, error) {
	for t, name := range typeNames {
		if name != "" && name == s {
			return Type(t), nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (known: bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string)", s)
}

// Registers is how many 16-bit registers a value of the type takes; 0 for a string,
// whose length is configured.
func (t Type) Registers() int {
	switch t {
	case TypeBool, TypeInt16, TypeUint16:
		return 1
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	}
	return 0
}

// ByteOrder says how a value's bytes lie in its registers. The letters name the
// value's bytes from the most significant (A) as they appear on the wire, register
// after register, each register high byte first as the protocol sends it:
//
//	ABCD  big-endian: registers most significant first, bytes as sent (the default)
//	CDAB  registers least significant first ("word swap"), bytes as sent
//	BADC  registers most significant first, the two bytes of each swapped
//	DCBA  little-endian: registers least significant first, bytes swapped
//
// For 64-bit values the pattern extends (CDAB is GHEFCDAB); for 16-bit values CDAB is
// ABCD and DCBA is BADC. A string has no words: ABCD or BADC only.
type ByteOrder uint8

const (
	ABCD ByteOrder = iota
	CDAB
	BADC
	DCBA
)

var orderNames = [...]string{ABCD: "ABCD", CDAB: "CDAB", BADC: "BADC", DCBA: "DCBA"}

func (o ByteOrder) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return fmt.Sprintf("ByteOrder(%d)", uint8(o))
}

// ParseByteOrder reads a config byte order; the empty string is ABCD.
func ParseByteOrder(s string) (ByteOrder, error) {
	if s == "" {
		return ABCD, nil
	}
	for o, name := range orderNames {
		if name == s {
			return ByteOrder(o), nil
		}
	}
	return 0, fmt.Errorf("unknown byte order %q (known: ABCD, CDAB, BADC, DCBA)", s)
}

func (o ByteOrder) wordSwap() bool { return o == CDAB || o == DCBA }
func (o ByteOrder) byteSwap() bool { return o == BADC || o == DCBA }

// toBigEndian rewrites wire bytes (whole registers) in place into the value's bytes,
// most significant first. It is its own inverse.
func (o ByteOrder) toBigEndian(b []byte) {
	if o.byteSwap() {
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
	if o.wordSwap() {
		for i, j := 0, len(b)-2; i < j; i, j = i+2, j-2 {
			b[i], b[i+1], b[j], b[j+1] = b[j], b[j+1], b[i], b[i+1]
		}
	}
}

// ErrValue is wrapped by every refusal of a value to encode.
var ErrValue = errors.New("value does not fit the point")

// Decode reads a value of type t from its registers' bytes as they are on the wire
// (two bytes per register, high byte first). A bool register is true when not zero;
// a string ends at its first NUL, and bytes that are not UTF-8 become U+FFFD. A
// float32 becomes the double of its shortest decimal form (0.1, not
// 0.10000000149011612): the number the device's float32 stands for.
func Decode(t Type, o ByteOrder, wire []byte) (bridge.Value, error) {
	n := t.Registers()
	if t == TypeString {
		if len(wire) == 0 || len(wire)%2 != 0 {
			return bridge.Value{}, fmt.Errorf("a string needs whole registers, got %d bytes", len(wire))
		}
		n = len(wire) / 2
	}
	if n == 0 {
		return bridge.Value{}, fmt.Errorf("unknown type %d", t)
	}
	if len(wire) != 2*n {
		return bridge.Value{}, fmt.Errorf("%s needs %d bytes, got %d", t, 2*n, len(wire))
	}
	var buf [8]byte
	var b []byte
	if t == TypeString {
		b = make([]byte, len(wire))
	} else {
		b = buf[:len(wire)]
	}
	copy(b, wire)
	o.toBigEndian(b)
	switch t {
	case TypeBool:
		return bridge.Bool(binary.BigEndian.Uint16(b) != 0), nil
	case TypeInt16:
		return bridge.Int(int64(int16(binary.BigEndian.Uint16(b)))), nil
	case TypeUint16:
		return bridge.Uint(uint64(binary.BigEndian.Uint16(b))), nil
	case TypeInt32:
		return bridge.Int(int64(int32(binary.BigEndian.Uint32(b)))), nil
	case TypeUint32:
		return bridge.Uint(uint64(binary.BigEndian.Uint32(b))), nil
	case TypeInt64:
		return bridge.Int(int64(binary.BigEndian.Uint64(b))), nil
	case TypeUint64:
		return bridge.Uint(binary.BigEndian.Uint64(b)), nil
	case TypeFloat32:
		return bridge.Double(widen(math.Float32frombits(binary.BigEndian.Uint32(b)))), nil
	case TypeFloat64:
		return bridge.Double(math.Float64frombits(binary.BigEndian.Uint64(b))), nil
	case TypeString:
		if i := strings.IndexByte(string(b), 0); i >= 0 {
			b = b[:i]
		}
		s := string(b)
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		return bridge.String(s), nil
	}
	return bridge.Value{}, fmt.Errorf("unknown type %d", t)
}

// Encode writes v as a value of type t into registers' bytes as they go on the wire.
// regs is the number of registers of a string (padded with NULs); other types ignore
// it. Integers take any integral value in range (a double only when it has no
// fraction), floats any number, bools a bool or 0 or 1, strings a string.
func Encode(t Type, o ByteOrder, v bridge.Value, regs int) ([]byte, error) {
	var b []byte
	switch t {
	case TypeBool:
		on, err := asBool(v)
		if err != nil {
			return nil, err
		}
		b = []byte{0, 0}
		if on {
			b[1] = 1
		}
	case TypeInt16, TypeInt32, TypeInt64:
		bits := 16 * t.Registers()
		i, err := asInt(v, bits)
		if err != nil {
			return nil, err
		}
		b = make([]byte, 8)
		binary.BigEndian.PutUint64(b, uint64(i))
		b = b[8-bits/8:]
	case TypeUint16, TypeUint32, TypeUint64:
		bits := 16 * t.Registers()
		u, err := asUint(v, bits)
		if err != nil {
			return nil, err
		}
		b = make([]byte, 8)
		binary.BigEndian.PutUint64(b, u)
		b = b[8-bits/8:]
	case TypeFloat32:
		f, ok := v.Float()
		if !ok || v.Kind() == bridge.KindBool {
			return nil, fmt.Errorf("%w: %s is not a number", ErrValue, v.Kind())
		}
		if !math.IsInf(f, 0) && math.IsInf(float64(float32(f)), 0) {
			return nil, fmt.Errorf("%w: %v is out of the range of a float32", ErrValue, f)
		}
		b = binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(f)))
	case TypeFloat64:
		f, ok := v.Float()
		if !ok || v.Kind() == bridge.KindBool {
			return nil, fmt.Errorf("%w: %s is not a number", ErrValue, v.Kind())
		}
		b = binary.BigEndian.AppendUint64(nil, math.Float64bits(f))
	case TypeString:
		s, ok := v.AsString()
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a string", ErrValue, v.Kind())
		}
		if regs < 1 || len(s) > 2*regs {
			return nil, fmt.Errorf("%w: %d bytes do not fit in %d registers", ErrValue, len(s), regs)
		}
		b = make([]byte, 2*regs)
		copy(b, s)
	default:
		return nil, fmt.Errorf("unknown type %d", t)
	}
	o.toBigEndian(b)
	return b, nil
}

// widen converts a float32 to the double closest to its shortest decimal form,
// which encodes back to the same float32.
func widen(f float32) float64 {
	d := float64(f)
	if math.IsInf(d, 0) || math.IsNaN(d) {
		return d
	}
	if w, err := strconv.ParseFloat(strconv.FormatFloat(d, 'g', -1, 32), 64); err == nil {
		return w
	}
	return d
}

func asBool(v bridge.Value) (bool, error) {
	if b, ok := v.AsBool(); ok {
		return b, nil
	}
	if f, ok := v.Float(); ok && v.Kind() != bridge.KindDouble && (f == 0 || f == 1) {
		return f == 1, nil
	}
	return false, fmt.Errorf("%w: %s %s is not a bool (true, false, 0 or 1)", ErrValue, v.Kind(), v)
}

func asInt(v bridge.Value, bits int) (int64, error) {
	lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	if bits == 64 {
		lo, hi = math.MinInt64, math.MaxInt64
	}
	var i int64
	switch v.Kind() {
	case bridge.KindInt:
		i, _ = v.AsInt()
	case bridge.KindUint:
		u, _ := v.AsUint()
		if u > math.MaxInt64 {
			return 0, fmt.Errorf("%w: %d is out of the range of int%d", ErrValue, u, bits)
		}
		i = int64(u)
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
			return 0, fmt.Errorf("%w: %v is not an int%d", ErrValue, f, bits)
		}
		i = int64(f)
	default:
		return 0, fmt.Errorf("%w: %s is not a number", ErrValue, v.Kind())
	}
	if i < lo || i > hi {
		return 0, fmt.Errorf("%w: %d is out of the range of int%d", ErrValue, i, bits)
	}
	return i, nil
}

func asUint(v bridge.Value, bits int) (uint64, error) {
	hi := uint64(1)<<bits - 1
	if bits == 64 {
		hi = math.MaxUint64
	}
	var u uint64
	switch v.Kind() {
	case bridge.KindUint:
		u, _ = v.AsUint()
	case bridge.KindInt:
		i, _ := v.AsInt()
		if i < 0 {
			return 0, fmt.Errorf("%w: %d is out of the range of uint%d", ErrValue, i, bits)
		}
		u = uint64(i)
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f != math.Trunc(f) || f < 0 || f >= 1<<64 {
			return 0, fmt.Errorf("%w: %v is not a uint%d", ErrValue, f, bits)
		}
		u = uint64(f)
	default:
		return 0, fmt.Errorf("%w: %s is not a number", ErrValue, v.Kind())
	}
	if u > hi {
		return 0, fmt.Errorf("%w: %d is out of the range of uint%d", ErrValue, u, bits)
	}
	return u, nil
}

// registerKind is one of the four Modbus data tables.
type registerKind uint8

const (
	kindCoil registerKind = iota + 1
	kindDiscreteInput
	kindInput
	kindHolding
)

func parseRegister(s string) (registerKind, bool) {
	switch s {
	case "coil":
		return kindCoil, true
	case "discrete_input":
		return kindDiscreteInput, true
	case "input":
		return kindInput, true
	case "holding":
		return kindHolding, true
	}
	return 0, false
}

func (k registerKind) String() string {
	switch k {
	case kindCoil:
		return "coil"
	case kindDiscreteInput:
		return "discrete_input"
	case kindInput:
		return "input"
	case kindHolding:
		return "holding"
	}
	return "unknown"
}

// bits reports a table of single bits (coils and discrete inputs).
func (k registerKind) bits() bool { return k == kindCoil || k == kindDiscreteInput }

func (k registerKind) writable() bool { return k == kindCoil || k == kindHolding }

// readFunction is the function code that reads the table.
func (k registerKind) readFunction() byte {
	switch k {
	case kindCoil:
		return fcReadCoils
	case kindDiscreteInput:
		return fcReadDiscreteInputs
	case kindInput:
		return fcReadInputRegisters
	}
	return fcReadHoldingRegisters
}
