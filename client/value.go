package client

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
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

// Value is a point's typed value: exactly one of double, int, uint, bool, string or
// bytes, or none for the zero Value. It wraps the wire form, which it never
// changes, and is cheap to copy.
type Value struct{ v *pb.Value }

// Constructors for Write.
func Double(f float64) Value { return Value{&pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: f}}} }
func Int(i int64) Value      { return Value{&pb.Value{Kind: &pb.Value_IntValue{IntValue: i}}} }
func Uint(u uint64) Value    { return Value{&pb.Value{Kind: &pb.Value_UintValue{UintValue: u}}} }
func Bool(b bool) Value      { return Value{&pb.Value{Kind: &pb.Value_BoolValue{BoolValue: b}}} }
func String(s string) Value  { return Value{&pb.Value{Kind: &pb.Value_StringValue{StringValue: s}}} }

// Bytes returns a value holding a copy of b.
func Bytes(b []byte) Value {
	return Value{&pb.Value{Kind: &pb.Value_BytesValue{BytesValue: append([]byte(nil), b...)}}}
}

// ValueOf wraps a wire value (nil is the zero Value).
func ValueOf(v *pb.Value) Value { return Value{v} }

// Proto is the wire form (nil for the zero Value). Treat it as read-only.
func (v Value) Proto() *pb.Value { return v.v }

// Kind says which field is set.
func (v Value) Kind() Kind {
	switch v.v.GetKind().(type) {
	case *pb.Value_DoubleValue:
		return KindDouble
	case *pb.Value_IntValue:
		return KindInt
	case *pb.Value_UintValue:
		return KindUint
	case *pb.Value_BoolValue:
		return KindBool
	case *pb.Value_StringValue:
		return KindString
	case *pb.Value_BytesValue:
		return KindBytes
	}
	return KindNone
}

// IsZero reports whether no kind is set.
func (v Value) IsZero() bool { return v.Kind() == KindNone }

// Float64 returns a double, int or uint value as a float64 (an int beyond 2^53
// loses precision, as any conversion would). ok is false for bool, string, bytes
// and none: a temperature that arrives as 21 or 21.5 reads the same.
func (v Value) Float64() (f float64, ok bool) {
	switch k := v.v.GetKind().(type) {
	case *pb.Value_DoubleValue:
		return k.DoubleValue, true
	case *pb.Value_IntValue:
		return float64(k.IntValue), true
	case *pb.Value_UintValue:
		return float64(k.UintValue), true
	}
	return 0, false
}

// Int64 returns an int value, a uint value that fits, or a double that is a whole
// number in range. ok is false otherwise.
func (v Value) Int64() (i int64, ok bool) {
	switch k := v.v.GetKind().(type) {
	case *pb.Value_IntValue:
		return k.IntValue, true
	case *pb.Value_UintValue:
		if k.UintValue <= math.MaxInt64 {
			return int64(k.UintValue), true
		}
	case *pb.Value_DoubleValue:
		f := k.DoubleValue
		if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
			return int64(f), true
		}
	}
	return 0, false
}

// Uint64 returns a uint value, an int value that is not negative, or a double that
// is a whole number in range. ok is false otherwise.
func (v Value) Uint64() (u uint64, ok bool) {
	switch k := v.v.GetKind().(type) {
	case *pb.Value_UintValue:
		return k.UintValue, true
	case *pb.Value_IntValue:
		if k.IntValue >= 0 {
			return uint64(k.IntValue), true
		}
	case *pb.Value_DoubleValue:
		f := k.DoubleValue
		if f == math.Trunc(f) && f >= 0 && f < 1<<64 {
			return uint64(f), true
		}
	}
	return 0, false
}

// Bool returns a bool value; ok is false for every other kind (a coil is a bool,
// a register that holds 0 or 1 is a number: the gateway says which).
func (v Value) Bool() (b bool, ok bool) {
	k, ok := v.v.GetKind().(*pb.Value_BoolValue)
	if !ok {
		return false, false
	}
	return k.BoolValue, true
}

// Text returns a string value; ok is false for every other kind. String formats
// any kind.
func (v Value) Text() (s string, ok bool) {
	k, ok := v.v.GetKind().(*pb.Value_StringValue)
	if !ok {
		return "", false
	}
	return k.StringValue, true
}

// BytesValue returns a copy of a bytes value; ok is false for every other kind.
func (v Value) BytesValue() (b []byte, ok bool) {
	k, ok := v.v.GetKind().(*pb.Value_BytesValue)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), k.BytesValue...), true
}

// String formats any value for people: numbers in Go's shortest form, bytes in
// base64, none as the empty string.
func (v Value) String() string {
	switch k := v.v.GetKind().(type) {
	case *pb.Value_DoubleValue:
		return strconv.FormatFloat(k.DoubleValue, 'g', -1, 64)
	case *pb.Value_IntValue:
		return strconv.FormatInt(k.IntValue, 10)
	case *pb.Value_UintValue:
		return strconv.FormatUint(k.UintValue, 10)
	case *pb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	case *pb.Value_StringValue:
		return k.StringValue
	case *pb.Value_BytesValue:
		return base64.StdEncoding.EncodeToString(k.BytesValue)
	}
	return ""
}

// The enums are the wire's, so that their names are the contract's.
type (
	Protocol    = pb.Protocol
	Quality     = pb.Quality
	Priority    = pb.Priority
	DeviceState = pb.DeviceState
)

const (
	ProtocolMQTT   = pb.Protocol_PROTOCOL_MQTT
	ProtocolCoAP   = pb.Protocol_PROTOCOL_COAP
	ProtocolOPCUA  = pb.Protocol_PROTOCOL_OPCUA
	ProtocolModbus = pb.Protocol_PROTOCOL_MODBUS

	QualityGood      = pb.Quality_QUALITY_GOOD
	QualityUncertain = pb.Quality_QUALITY_UNCERTAIN
	QualityBad       = pb.Quality_QUALITY_BAD

	PriorityLow      = pb.Priority_PRIORITY_LOW
	PriorityNormal   = pb.Priority_PRIORITY_NORMAL
	PriorityHigh     = pb.Priority_PRIORITY_HIGH
	PriorityCritical = pb.Priority_PRIORITY_CRITICAL

	StateConnected    = pb.DeviceState_DEVICE_STATE_CONNECTED
	StateDisconnected = pb.DeviceState_DEVICE_STATE_DISCONNECTED
	StateError        = pb.DeviceState_DEVICE_STATE_ERROR
	StateConnecting   = pb.DeviceState_DEVICE_STATE_CONNECTING
)

// Message is one reading of one point of one device.
type Message struct {
	// Sequence is gateway-assigned, strictly increasing and never reused: a
	// subscription delivers each once, in order.
	Sequence    uint64
	Device      string
	Point       string
	Protocol    Protocol
	Value       Value
	Quality     Quality
	SourceTime  time.Time // zero when the device gave none
	GatewayTime time.Time
	Unit        string
	Labels      map[string]string
	Priority    Priority
}

// Good reports whether the value can be trusted.
func (m *Message) Good() bool { return m.Quality == QualityGood }

// MessageOf converts the wire form.
func MessageOf(p *pb.Message) *Message {
	m := &Message{
		Sequence: p.GetSequence(),
		Device:   p.GetDevice(),
		Point:    p.GetPoint(),
		Protocol: p.GetProtocol(),
		Value:    Value{p.GetValue()},
		Quality:  p.GetQuality(),
		Unit:     p.GetUnit(),
		Labels:   p.GetLabels(),
		Priority: p.GetPriority(),
	}
	if t := p.GetSourceTime(); t != nil {
		m.SourceTime = t.AsTime()
	}
	if t := p.GetGatewayTime(); t != nil {
		m.GatewayTime = t.AsTime()
	}
	return m
}

// Device is one device the gateway knows.
type Device struct {
	ID         string
	Protocol   Protocol
	State      DeviceState
	StateSince time.Time
	LastSeen   time.Time // zero when never seen
	LastError  string
	Messages   uint64 // accepted from the device
	Errors     uint64 // payloads that did not decode
	Writes     uint64 // sent to the device
	Points     []string
}

func deviceOf(p *pb.Device) Device {
	d := Device{
		ID: p.GetId(), Protocol: p.GetProtocol(), State: p.GetState(), LastError: p.GetLastError(),
		Messages: p.GetMessages(), Errors: p.GetErrors(), Writes: p.GetWrites(), Points: p.GetPoints(),
	}
	if t := p.GetStateSince(); t != nil {
		d.StateSince = t.AsTime()
	}
	if t := p.GetLastSeen(); t != nil {
		d.LastSeen = t.AsTime()
	}
	return d
}
