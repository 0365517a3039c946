package opcua

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/edgegate/edgegate/bridge"
)

// Quality maps a status code onto a quality by its severity bits (Part 4 §7.39):
// 00 Good, 01 Uncertain, 10 and 11 Bad.
func Quality(s ua.StatusCode) bridge.Quality {
	switch uint32(s) >> 30 {
	case 0:
		return bridge.QualityGood
	case 1:
		return bridge.QualityUncertain
	}
	return bridge.QualityBad
}

// errNoValue is a data value that carries no value (a Bad status usually).
var errNoValue = errors.New("no value")

// ToValue maps an OPC UA value onto a bridge Value. The mapping, documented in
// doc.go:
//
//	Boolean                                  bool
//	SByte Int16 Int32 Int64                   int
//	Byte UInt16 UInt32 UInt64 StatusCode      uint
//	Float Double                              double
//	String XmlElement                         string
//	LocalizedText                             string (the text)
//	QualifiedName                             string ("ns:name")
//	NodeId ExpandedNodeId Guid                string (their text form)
//	DateTime                                  string (RFC 3339, UTC, nanoseconds)
//	ByteString, array of Byte                 bytes
//	any other array, matrix                   string: JSON array (nested for matrices)
//	ExtensionObject (structure)               string: JSON object {"type": node id, "value": fields}
//	DataValue, DiagnosticInfo, Variant        string: JSON
//
// It fails for a variant without a value.
func ToValue(v *ua.Variant) (bridge.Value, error) {
	if v == nil || v.Type() == ua.TypeIDNull || v.Value() == nil {
		return bridge.Value{}, errNoValue
	}
	if v.ArrayLength() > 0 || len(v.ArrayDimensions()) > 0 || isSlice(v.Value()) {
		if b, ok := v.Value().([]byte); ok {
			return bridge.Bytes(b), nil
		}
		j, err := json.Marshal(jsonOf(v.Value()))
		if err != nil {
			return bridge.Value{}, err
		}
		return bridge.String(string(j)), nil
	}
	switch x := v.Value().(type) {
	case bool:
		return bridge.Bool(x), nil
	case int8:
		return bridge.Int(int64(x)), nil
	case int16:
		return bridge.Int(int64(x)), nil
	case int32:
		return bridge.Int(int64(x)), nil
	case int64:
		return bridge.Int(x), nil
	case uint8:
		return bridge.Uint(uint64(x)), nil
	case uint16:
		return bridge.Uint(uint64(x)), nil
	case uint32:
		return bridge.Uint(uint64(x)), nil
	case uint64:
		return bridge.Uint(x), nil
	case ua.StatusCode:
		return bridge.Uint(uint64(x)), nil
	case float32:
		return bridge.Double(float64(x)), nil
	case float64:
		return bridge.Double(x), nil
	case []byte:
		return bridge.Bytes(x), nil
	}
	j := jsonOf(v.Value())
	if s, ok := j.(string); ok {
		return bridge.String(s), nil
	}
	b, err := json.Marshal(j)
	if err != nil {
		return bridge.Value{}, err
	}
	return bridge.String(string(b)), nil
}

func isSlice(v any) bool {
	switch v.(type) {
	case []byte:
		return false
	}
	return strings.HasPrefix(fmt.Sprintf("%T", v), "[]")
}

// jsonOf turns a decoded OPC UA value into something encoding/json writes as the
// documented mapping: text forms for ids and texts, base64 for byte strings.
func jsonOf(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case float32:
		return finite(float64(x))
	case float64:
		return finite(x)
	case string:
		return x
	case ua.XMLElement:
		return string(x)
	case *ua.LocalizedText:
		if x == nil {
			return nil
		}
		return x.Text
	case *ua.QualifiedName:
		if x == nil {
			return nil
		}
		return strconv.Itoa(int(x.NamespaceIndex)) + ":" + x.Name
	case *ua.NodeID:
		if x == nil {
			return nil
		}
		return x.String()
	case *ua.ExpandedNodeID:
		if x == nil {
			return nil
		}
		return x.String()
	case *ua.GUID:
		if x == nil {
			return nil
		}
		return x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case ua.StatusCode:
		return uint32(x)
	case *ua.Variant:
		if x == nil {
			return nil
		}
		return jsonOf(x.Value())
	case *ua.DataValue:
		if x == nil {
			return nil
		}
		m := map[string]any{"status": uint32(x.Status)}
		if x.Value != nil {
			m["value"] = jsonOf(x.Value.Value())
		}
		if !x.SourceTimestamp.IsZero() {
			m["source_time"] = jsonOf(x.SourceTimestamp)
		}
		return m
	case *ua.ExtensionObject:
		if x == nil {
			return nil
		}
		m := map[string]any{}
		if x.TypeID != nil {
			m["type"] = x.TypeID.String()
		}
		if x.Value != nil {
			m["value"] = x.Value // exported fields, by encoding/json
		}
		return m
	case *ua.DiagnosticInfo:
		return x
	}
	// Slices of any of the above, and matrices (slices of slices).
	if s, ok := sliceOf(v); ok {
		out := make([]any, len(s))
		for i, e := range s {
			out[i] = jsonOf(e)
		}
		return out
	}
	return v
}

// finite keeps JSON valid: NaN and infinities become strings.
func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return f
}

func sliceOf(v any) ([]any, bool) {
	switch x := v.(type) {
	case []bool:
		return anys(x), true
	case []int8:
		return anys(x), true
	case []int16:
		return anys(x), true
	case []int32:
		return anys(x), true
	case []int64:
		return anys(x), true
	case []uint16:
		return anys(x), true
	case []uint32:
		return anys(x), true
	case []uint64:
		return anys(x), true
	case []float32:
		return anys(x), true
	case []float64:
		return anys(x), true
	case []string:
		return anys(x), true
	case []time.Time:
		return anys(x), true
	case [][]byte:
		return anys(x), true
	case []*ua.GUID:
		return anys(x), true
	case []*ua.NodeID:
		return anys(x), true
	case []*ua.ExpandedNodeID:
		return anys(x), true
	case []ua.StatusCode:
		return anys(x), true
	case []*ua.QualifiedName:
		return anys(x), true
	case []*ua.LocalizedText:
		return anys(x), true
	case []*ua.ExtensionObject:
		return anys(x), true
	case []*ua.DataValue:
		return anys(x), true
	case []*ua.Variant:
		return anys(x), true
	case []ua.XMLElement:
		return anys(x), true
	case []any:
		return x, true
	}
	return nil, false
}

func anys[T any](s []T) []any {
	out := make([]any, len(s))
	for i, e := range s {
		out[i] = e
	}
	return out
}

// builtinOf is the built-in type a DataType node stands for: the built-in types'
// own ids, and the abstract and derived types servers commonly use for variables.
func builtinOf(dt *ua.NodeID) (ua.TypeID, bool) {
	if dt == nil || dt.Namespace() != 0 || dt.Type() == ua.NodeIDTypeString || dt.Type() == ua.NodeIDTypeGUID || dt.Type() == ua.NodeIDTypeByteString {
		return 0, false
	}
	n := dt.IntID()
	if n >= 1 && n <= 21 {
		return ua.TypeID(n), true
	}
	switch n {
	case id.Duration:
		return ua.TypeIDDouble, true
	case id.UtcTime:
		return ua.TypeIDDateTime, true
	case id.LocaleID, id.NumericRange:
		return ua.TypeIDString, true
	case id.Counter, id.IntegerID, id.Index:
		return ua.TypeIDUint32, true
	case id.Enumeration:
		return ua.TypeIDInt32, true
	case id.Number:
		return ua.TypeIDDouble, true
	case id.Integer:
		return ua.TypeIDInt64, true
	case id.UInteger, id.BitFieldMaskDataType:
		return ua.TypeIDUint64, true
	case id.Image, id.ImageBMP, id.ImageGIF, id.ImageJPG, id.ImagePNG, id.ApplicationInstanceCertificate:
		return ua.TypeIDByteString, true
	}
	return 0, false
}

// errConvert is wrapped by every value that cannot be written as the node's type.
var errConvert = errors.New("cannot convert")

// FromValue converts a bridge Value to a variant of the built-in type t, checking
// ranges: a write never silently truncates.
func FromValue(v bridge.Value, t ua.TypeID) (*ua.Variant, error) {
	bad := func(why string) (*ua.Variant, error) {
		return nil, fmt.Errorf("%w %s value %s to %s: %s", errConvert, v.Kind(), v.String(), t, why)
	}
	var out any
	switch t {
	case ua.TypeIDBoolean:
		switch v.Kind() {
		case bridge.KindBool:
			out, _ = v.AsBool()
		case bridge.KindInt, bridge.KindUint:
			f, _ := v.Float()
			if f != 0 && f != 1 {
				return bad("only 0 and 1 are booleans")
			}
			out = f == 1
		case bridge.KindString:
			s, _ := v.AsString()
			b, err := strconv.ParseBool(s)
			if err != nil {
				return bad("not true or false")
			}
			out = b
		default:
			return bad("not a boolean")
		}
	case ua.TypeIDSByte, ua.TypeIDInt16, ua.TypeIDInt32, ua.TypeIDInt64:
		i, err := asInt(v)
		if err != nil {
			return bad(err.Error())
		}
		bits := map[ua.TypeID]uint{ua.TypeIDSByte: 8, ua.TypeIDInt16: 16, ua.TypeIDInt32: 32, ua.TypeIDInt64: 64}[t]
		if bits < 64 && (i < -(1<<(bits-1)) || i > 1<<(bits-1)-1) {
			return bad("out of range")
		}
		switch t {
		case ua.TypeIDSByte:
			out = int8(i)
		case ua.TypeIDInt16:
			out = int16(i)
		case ua.TypeIDInt32:
			out = int32(i)
		default:
			out = i
		}
	case ua.TypeIDByte, ua.TypeIDUint16, ua.TypeIDUint32, ua.TypeIDUint64:
		u, err := asUint(v)
		if err != nil {
			return bad(err.Error())
		}
		bits := map[ua.TypeID]uint{ua.TypeIDByte: 8, ua.TypeIDUint16: 16, ua.TypeIDUint32: 32, ua.TypeIDUint64: 64}[t]
		if bits < 64 && u > 1<<bits-1 {
			return bad("out of range")
		}
		switch t {
		case ua.TypeIDByte:
			out = uint8(u)
		case ua.TypeIDUint16:
			out = uint16(u)
		case ua.TypeIDUint32:
			out = uint32(u)
		default:
			out = u
		}
	case ua.TypeIDFloat, ua.TypeIDDouble:
		f, ok := v.Float()
		if v.Kind() == bridge.KindBool {
			ok = false
		}
		if !ok {
			s, isStr := v.AsString()
			var err error
			if f, err = strconv.ParseFloat(strings.TrimSpace(s), 64); !isStr || err != nil {
				return bad("not a number")
			}
		}
		if t == ua.TypeIDFloat {
			if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
				return bad("out of the range of a Float")
			}
			out = float32(f)
		} else {
			out = f
		}
	case ua.TypeIDString:
		out = v.String()
	case ua.TypeIDXMLElement:
		out = ua.XMLElement(v.String())
	case ua.TypeIDLocalizedText:
		out = ua.NewLocalizedText(v.String())
	case ua.TypeIDByteString:
		if b, ok := v.AsBytes(); ok {
			out = b
		} else if s, ok := v.AsString(); ok {
			out = []byte(s)
		} else {
			return bad("not bytes")
		}
	case ua.TypeIDDateTime:
		s, ok := v.AsString()
		if !ok {
			return bad("a DateTime is written as an RFC 3339 string")
		}
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad(err.Error())
		}
		out = tm
	case ua.TypeIDStatusCode:
		u, err := asUint(v)
		if err != nil || u > math.MaxUint32 {
			return bad("not a 32-bit status code")
		}
		out = ua.StatusCode(u)
	case ua.TypeIDGUID:
		g := ua.NewGUID(v.String())
		if g == nil {
			return bad("not a GUID")
		}
		out = g
	case ua.TypeIDNodeID:
		n, err := ua.ParseNodeID(v.String())
		if err != nil {
			return bad(err.Error())
		}
		out = n
	default:
		return bad("writing this type is not supported")
	}
	return ua.NewVariant(out)
}

func asInt(v bridge.Value) (int64, error) {
	switch v.Kind() {
	case bridge.KindInt:
		i, _ := v.AsInt()
		return i, nil
	case bridge.KindUint:
		u, _ := v.AsUint()
		if u > math.MaxInt64 {
			return 0, errors.New("out of range")
		}
		return int64(u), nil
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, errors.New("not a whole number in range")
		}
		return int64(f), nil
	case bridge.KindBool:
		b, _ := v.AsBool()
		if b {
			return 1, nil
		}
		return 0, nil
	case bridge.KindString:
		s, _ := v.AsString()
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	}
	return 0, errors.New("not a number")
}

func asUint(v bridge.Value) (uint64, error) {
	switch v.Kind() {
	case bridge.KindUint:
		u, _ := v.AsUint()
		return u, nil
	case bridge.KindInt:
		i, _ := v.AsInt()
		if i < 0 {
			return 0, errors.New("negative")
		}
		return uint64(i), nil
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		if f != math.Trunc(f) || f < 0 || f >= math.MaxUint64 {
			return 0, errors.New("not a whole number in range")
		}
		return uint64(f), nil
	case bridge.KindBool:
		b, _ := v.AsBool()
		if b {
			return 1, nil
		}
		return 0, nil
	case bridge.KindString:
		s, _ := v.AsString()
		return strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	}
	return 0, errors.New("not a number")
}
