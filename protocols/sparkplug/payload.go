package sparkplug

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// DataType is a Sparkplug metric datatype (sparkplugpb.DataType).
type DataType = pb.DataType

// DefaultMaxMetrics is Decode's bound when it is given none.
const DefaultMaxMetrics = 1024

// Errors. Every error of Decode wraps ErrInvalidPayload; one for too many metrics
// also wraps ErrTooManyMetrics. A Metric's Decoded or DecodedAs error wraps
// ErrUnsupportedType for a datatype without a scalar value, ErrInvalidPayload
// otherwise.
var (
	ErrInvalidPayload  = errors.New("invalid Sparkplug B payload")
	ErrTooManyMetrics  = errors.New("too many metrics")
	ErrUnsupportedType = errors.New("datatype has no scalar value")
)

// Payload is a Sparkplug B payload, decoded or to encode.
type Payload struct {
	Timestamp time.Time // zero: absent
	Seq       uint64
	HasSeq    bool // Seq was present (decoded) or is to be sent (Encode)
	Metrics   []Metric
}

// Metric is one metric of a payload.
type Metric struct {
	Name     string // empty: absent (a DATA metric named by its alias)
	Alias    uint64
	HasAlias bool
	// Datatype as in the payload; Unknown when it was left out (allowed in DATA).
	// For Encode, Unknown means: inferred from Value's kind.
	Datatype     DataType
	Timestamp    time.Time // zero: absent
	IsNull       bool
	IsHistorical bool
	IsTransient  bool
	// Value is what Encode sends (ignored when IsNull). Decode leaves it zero:
	// call Decoded or DecodedAs, which know the datatype.
	Value bridge.Value

	raw *pb.Payload_Metric // Decode's, for DecodedAs
}

// Decode decodes a Sparkplug B payload with at most maxMetrics metrics (0 means
// DefaultMaxMetrics); the count is checked before anything is allocated for them. It
// checks the wire format only: names, aliases and values are the caller's to judge
// (a BIRTH needs names and datatypes, a DATA may send aliases alone).
func Decode(b []byte, maxMetrics int) (*Payload, error) {
	if maxMetrics <= 0 {
		maxMetrics = DefaultMaxMetrics
	}
	if n, err := countMetrics(b); err != nil {
		return nil, err
	} else if n > maxMetrics {
		return nil, fmt.Errorf("%w: %w: %d metrics, limit %d", ErrInvalidPayload, ErrTooManyMetrics, n, maxMetrics)
	}
	var p pb.Payload
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	out := &Payload{Seq: p.GetSeq(), HasSeq: p.Seq != nil, Metrics: make([]Metric, len(p.Metrics))}
	if p.Timestamp != nil {
		out.Timestamp = msTime(p.GetTimestamp())
	}
	for i, m := range p.Metrics {
		if m == nil {
			continue
		}
		out.Metrics[i] = Metric{
			Name:         m.GetName(),
			Alias:        m.GetAlias(),
			HasAlias:     m.Alias != nil,
			Datatype:     DataType(m.GetDatatype()),
			IsNull:       m.GetIsNull(),
			IsHistorical: m.GetIsHistorical(),
			IsTransient:  m.GetIsTransient(),
			raw:          m,
		}
		if m.Timestamp != nil {
			out.Metrics[i].Timestamp = msTime(m.GetTimestamp())
		}
	}
	return out, nil
}

// countMetrics counts the top-level metrics field (2) without decoding them.
func countMetrics(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, fmt.Errorf("%w: %w", ErrInvalidPayload, protowire.ParseError(l))
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return 0, fmt.Errorf("%w: %w", ErrInvalidPayload, protowire.ParseError(l))
		}
		b = b[l:]
		if num == 2 {
			n++
		}
	}
	return n, nil
}

// msTime converts Sparkplug's milliseconds since the epoch; beyond int64 it is the
// zero time (absent) rather than a wrapped-around date.
func msTime(ms uint64) time.Time {
	if ms > math.MaxInt64/uint64(time.Millisecond) {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// Decoded is a decoded metric's value typed by its own datatype; see DecodedAs.
func (m *Metric) Decoded() (bridge.Value, error) { return m.DecodedAs(m.Datatype) }

// DecodedAs is the metric's value typed by dt (the datatype of its BIRTH, for a DATA
// metric that leaves it out), as in the package comment. A null metric (IsNull) has
// no value: DecodedAs returns the zero Value and no error. The integer types of 32
// bits and fewer are read from int_value, as the specification says, and also from
// long_value, where some edge nodes put them (Eclipse Tahu's JavaScript library puts
// a UInt32 there). A value field that does not fit dt (a string for an Int32, 300 for
// a UInt8) is an error wrapping
// ErrInvalidPayload; a datatype without a scalar value one wrapping
// ErrUnsupportedType.
func (m *Metric) DecodedAs(dt DataType) (bridge.Value, error) {
	if m.IsNull {
		return bridge.Value{}, nil
	}
	if m.raw == nil {
		return m.Value, nil // built by hand, not decoded
	}
	bad := func() (bridge.Value, error) {
		return bridge.Value{}, fmt.Errorf("%w: metric %q: %s value does not fit datatype %s", ErrInvalidPayload, m.Name, valueField(m.raw), dt)
	}
	r := m.raw
	switch dt {
	case pb.DataType_Int8, pb.DataType_Int16, pb.DataType_Int32:
		bits := map[DataType]uint{pb.DataType_Int8: 8, pb.DataType_Int16: 16, pb.DataType_Int32: 32}[dt]
		switch v := r.Value.(type) {
		case *pb.Payload_Metric_IntValue:
			if i, ok := signed(v.IntValue, bits); ok {
				return bridge.Int(i), nil
			}
		case *pb.Payload_Metric_LongValue:
			// Not the specification's field, but some edge nodes use it.
			if i := int64(v.LongValue); i >= -1<<(bits-1) && i < 1<<(bits-1) {
				return bridge.Int(i), nil
			}
		}
		return bad()
	case pb.DataType_UInt8, pb.DataType_UInt16, pb.DataType_UInt32:
		max := map[DataType]uint64{pb.DataType_UInt8: math.MaxUint8, pb.DataType_UInt16: math.MaxUint16, pb.DataType_UInt32: math.MaxUint32}[dt]
		var u uint64
		switch v := r.Value.(type) {
		case *pb.Payload_Metric_IntValue:
			u = uint64(v.IntValue)
		case *pb.Payload_Metric_LongValue:
			// Eclipse Tahu's JavaScript payload library (sparkplug-payload 1.0.3)
			// sends a UInt32 in long_value.
			u = v.LongValue
		default:
			return bad()
		}
		if u > max {
			return bad()
		}
		return bridge.Uint(u), nil
	case pb.DataType_Int64, pb.DataType_DateTime:
		v, ok := r.Value.(*pb.Payload_Metric_LongValue)
		if !ok {
			return bad()
		}
		return bridge.Int(int64(v.LongValue)), nil
	case pb.DataType_UInt64:
		v, ok := r.Value.(*pb.Payload_Metric_LongValue)
		if !ok {
			return bad()
		}
		return bridge.Uint(v.LongValue), nil
	case pb.DataType_Float:
		v, ok := r.Value.(*pb.Payload_Metric_FloatValue)
		if !ok {
			return bad()
		}
		return bridge.Double(float64(v.FloatValue)), nil
	case pb.DataType_Double:
		v, ok := r.Value.(*pb.Payload_Metric_DoubleValue)
		if !ok {
			return bad()
		}
		return bridge.Double(v.DoubleValue), nil
	case pb.DataType_Boolean:
		v, ok := r.Value.(*pb.Payload_Metric_BooleanValue)
		if !ok {
			return bad()
		}
		return bridge.Bool(v.BooleanValue), nil
	case pb.DataType_String, pb.DataType_Text, pb.DataType_UUID:
		v, ok := r.Value.(*pb.Payload_Metric_StringValue)
		if !ok {
			return bad()
		}
		if !utf8.ValidString(v.StringValue) {
			return bridge.Value{}, fmt.Errorf("%w: metric %q: string is not UTF-8", ErrInvalidPayload, m.Name)
		}
		return bridge.String(v.StringValue), nil
	case pb.DataType_Bytes, pb.DataType_File:
		v, ok := r.Value.(*pb.Payload_Metric_BytesValue)
		if !ok {
			return bad()
		}
		return bridge.Bytes(v.BytesValue), nil
	case pb.DataType_Unknown:
		return bridge.Value{}, fmt.Errorf("%w: metric %q: no datatype", ErrInvalidPayload, m.Name)
	}
	return bridge.Value{}, fmt.Errorf("%w: metric %q: %s", ErrUnsupportedType, m.Name, dt)
}

// signed reads a two's complement integer of bits bits from a uint32 field. Edge
// nodes send a negative Int8 as 0xFF (the low byte) or as 0xFFFFFFFF (sign-extended
// to 32 bits); both are read, anything else above the type's range is not.
func signed(u uint32, bits uint) (int64, bool) {
	if bits == 32 {
		return int64(int32(u)), true
	}
	lo := u & (1<<bits - 1)
	v := int64(lo)
	if lo&(1<<(bits-1)) != 0 {
		v -= 1 << bits
	}
	hi := u >> bits
	switch {
	case hi == 0:
		return v, true
	case hi == 1<<(32-bits)-1 && v < 0:
		return v, true // sign-extended
	}
	return 0, false
}

func valueField(m *pb.Payload_Metric) string {
	switch m.Value.(type) {
	case *pb.Payload_Metric_IntValue:
		return "an int_value"
	case *pb.Payload_Metric_LongValue:
		return "a long_value"
	case *pb.Payload_Metric_FloatValue:
		return "a float_value"
	case *pb.Payload_Metric_DoubleValue:
		return "a double_value"
	case *pb.Payload_Metric_BooleanValue:
		return "a boolean_value"
	case *pb.Payload_Metric_StringValue:
		return "a string_value"
	case *pb.Payload_Metric_BytesValue:
		return "a bytes_value"
	case *pb.Payload_Metric_DatasetValue:
		return "a dataset_value"
	case *pb.Payload_Metric_TemplateValue:
		return "a template_value"
	case *pb.Payload_Metric_ExtensionValue:
		return "an extension_value"
	}
	return "no"
}

// Scalar reports whether dt has a scalar value that Value and Encode handle.
func Scalar(dt DataType) bool {
	switch dt {
	case pb.DataType_Int8, pb.DataType_Int16, pb.DataType_Int32, pb.DataType_Int64,
		pb.DataType_UInt8, pb.DataType_UInt16, pb.DataType_UInt32, pb.DataType_UInt64,
		pb.DataType_Float, pb.DataType_Double, pb.DataType_Boolean,
		pb.DataType_String, pb.DataType_Text, pb.DataType_UUID, pb.DataType_DateTime,
		pb.DataType_Bytes, pb.DataType_File:
		return true
	}
	return false
}

// InferType is the datatype Encode uses for a value given without one.
func InferType(v bridge.Value) DataType {
	switch v.Kind() {
	case bridge.KindInt:
		return pb.DataType_Int64
	case bridge.KindUint:
		return pb.DataType_UInt64
	case bridge.KindDouble:
		return pb.DataType_Double
	case bridge.KindBool:
		return pb.DataType_Boolean
	case bridge.KindString:
		return pb.DataType_String
	case bridge.KindBytes:
		return pb.DataType_Bytes
	}
	return pb.DataType_Unknown
}

// Encode encodes a payload. Each metric's Value is converted to its Datatype
// (inferred from the value when Unknown): an integer must fit the type's range, a
// Float or Double takes any number, a Boolean a bool (or the integers 0 and 1), a
// string type a string, Bytes or File bytes. A value that does not convert is an
// error naming the metric; nothing is encoded then.
func Encode(p *Payload) ([]byte, error) {
	out := &pb.Payload{Metrics: make([]*pb.Payload_Metric, len(p.Metrics))}
	if !p.Timestamp.IsZero() {
		out.Timestamp = proto.Uint64(uint64(p.Timestamp.UnixMilli()))
	}
	if p.HasSeq {
		out.Seq = proto.Uint64(p.Seq)
	}
	for i := range p.Metrics {
		m := &p.Metrics[i]
		dt := m.Datatype
		if dt == pb.DataType_Unknown {
			dt = InferType(m.Value)
		}
		pm := &pb.Payload_Metric{Datatype: proto.Uint32(uint32(dt))}
		if m.Name != "" {
			pm.Name = proto.String(m.Name)
		}
		if m.HasAlias {
			pm.Alias = proto.Uint64(m.Alias)
		}
		if !m.Timestamp.IsZero() {
			pm.Timestamp = proto.Uint64(uint64(m.Timestamp.UnixMilli()))
		}
		if m.IsHistorical {
			pm.IsHistorical = proto.Bool(true)
		}
		if m.IsTransient {
			pm.IsTransient = proto.Bool(true)
		}
		if m.IsNull {
			pm.IsNull = proto.Bool(true)
		} else {
			v, err := encodeValue(m.Value, dt)
			if err != nil {
				return nil, fmt.Errorf("sparkplug: metric %q: %w", m.Name, err)
			}
			setValue(pm, v)
		}
		out.Metrics[i] = pm
	}
	return proto.Marshal(out)
}

// encodeValue converts v to dt's value field.
func encodeValue(v bridge.Value, dt DataType) (isMetricValue, error) {
	if v.IsZero() {
		return nil, errors.New("no value")
	}
	cannot := func() (isMetricValue, error) {
		return nil, fmt.Errorf("%s value %s does not convert to %s", v.Kind(), v.String(), dt)
	}
	switch dt {
	case pb.DataType_Int8, pb.DataType_Int16, pb.DataType_Int32, pb.DataType_Int64, pb.DataType_DateTime:
		i, ok := toInt(v)
		if !ok {
			return cannot()
		}
		switch dt {
		case pb.DataType_Int8:
			if i < math.MinInt8 || i > math.MaxInt8 {
				return cannot()
			}
		case pb.DataType_Int16:
			if i < math.MinInt16 || i > math.MaxInt16 {
				return cannot()
			}
		case pb.DataType_Int32:
			if i < math.MinInt32 || i > math.MaxInt32 {
				return cannot()
			}
		default:
			return &pb.Payload_Metric_LongValue{LongValue: uint64(i)}, nil
		}
		// Two's complement in 32 bits, as the specification asks.
		return &pb.Payload_Metric_IntValue{IntValue: uint32(int32(i))}, nil
	case pb.DataType_UInt8, pb.DataType_UInt16, pb.DataType_UInt32, pb.DataType_UInt64:
		u, ok := toUint(v)
		if !ok {
			return cannot()
		}
		limit := map[DataType]uint64{pb.DataType_UInt8: math.MaxUint8, pb.DataType_UInt16: math.MaxUint16,
			pb.DataType_UInt32: math.MaxUint32, pb.DataType_UInt64: math.MaxUint64}[dt]
		if u > limit {
			return cannot()
		}
		if dt == pb.DataType_UInt64 {
			return &pb.Payload_Metric_LongValue{LongValue: u}, nil
		}
		return &pb.Payload_Metric_IntValue{IntValue: uint32(u)}, nil
	case pb.DataType_Float, pb.DataType_Double:
		f, ok := v.Float()
		if !ok || v.Kind() == bridge.KindBool {
			return cannot()
		}
		if dt == pb.DataType_Float {
			return &pb.Payload_Metric_FloatValue{FloatValue: float32(f)}, nil
		}
		return &pb.Payload_Metric_DoubleValue{DoubleValue: f}, nil
	case pb.DataType_Boolean:
		if b, ok := v.AsBool(); ok {
			return &pb.Payload_Metric_BooleanValue{BooleanValue: b}, nil
		}
		if i, ok := toInt(v); ok && (i == 0 || i == 1) {
			return &pb.Payload_Metric_BooleanValue{BooleanValue: i == 1}, nil
		}
		return cannot()
	case pb.DataType_String, pb.DataType_Text, pb.DataType_UUID:
		s, ok := v.AsString()
		if !ok {
			return cannot()
		}
		return &pb.Payload_Metric_StringValue{StringValue: s}, nil
	case pb.DataType_Bytes, pb.DataType_File:
		b, ok := v.AsBytes()
		if !ok {
			return cannot()
		}
		return &pb.Payload_Metric_BytesValue{BytesValue: b}, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedType, dt)
}

// isMetricValue is one of the generated oneof wrappers of Payload_Metric.Value
// that encodeValue returns.
type isMetricValue any

// setValue puts an encodeValue result into the metric's oneof.
func setValue(pm *pb.Payload_Metric, v isMetricValue) {
	switch v := v.(type) {
	case *pb.Payload_Metric_IntValue:
		pm.Value = v
	case *pb.Payload_Metric_LongValue:
		pm.Value = v
	case *pb.Payload_Metric_FloatValue:
		pm.Value = v
	case *pb.Payload_Metric_DoubleValue:
		pm.Value = v
	case *pb.Payload_Metric_BooleanValue:
		pm.Value = v
	case *pb.Payload_Metric_StringValue:
		pm.Value = v
	case *pb.Payload_Metric_BytesValue:
		pm.Value = v
	}
}

// toInt is an integer value (Int, or Uint within int64, or a whole Double) as int64.
func toInt(v bridge.Value) (int64, bool) {
	switch v.Kind() {
	case bridge.KindInt:
		i, _ := v.AsInt()
		return i, true
	case bridge.KindUint:
		u, _ := v.AsUint()
		return int64(u), u <= math.MaxInt64
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 {
			return int64(f), true
		}
	}
	return 0, false
}

// toUint is a non-negative integer value as uint64.
func toUint(v bridge.Value) (uint64, bool) {
	switch v.Kind() {
	case bridge.KindUint:
		u, _ := v.AsUint()
		return u, true
	case bridge.KindInt:
		i, _ := v.AsInt()
		return uint64(i), i >= 0
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f == math.Trunc(f) && f >= 0 && f < math.MaxUint64 {
			return uint64(f), true
		}
	}
	return 0, false
}

// RebirthMetric is the NCMD metric that asks an edge node to publish its births
// again.
const RebirthMetric = "Node Control/Rebirth"

// RebirthRequest is the NCMD payload asking for a rebirth: the metric
// "Node Control/Rebirth", Boolean true, stamped now.
func RebirthRequest(now time.Time) []byte {
	b, _ := Encode(&Payload{Timestamp: now, Metrics: []Metric{{
		Name: RebirthMetric, Datatype: pb.DataType_Boolean, Value: bridge.Bool(true),
	}}})
	return b
}
