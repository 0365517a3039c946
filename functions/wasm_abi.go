package functions

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The WebAssembly ABI's wire forms (docs/functions.md; examples/functions/abi.proto):
//
//	message Batch  { repeated edgegate.v1.Message messages = 1; }
//	message Output {
//	  repeated edgegate.v1.Message messages = 1;      // added, each after the batch
//	  repeated edgegate.v1.WriteRequest writes = 2;   // only with allow_writes
//	  repeated uint32 drop = 3;                        // indexes into the batch
//	  string error = 4;                                // the batch failed
//	}
const (
	fieldMessages = 1
	fieldWrites   = 2
	fieldDrop     = 3
	fieldError    = 4
)

// encodeBatch appends the Batch of msgs to b. It writes the wire format directly
// (what proto.Marshal of pbconv.ToProto(m) writes, without its reflection and
// allocations: this is the hot path of every WebAssembly function).
func encodeBatch(b []byte, msgs []*bridge.Message) []byte {
	for _, m := range msgs {
		b = protowire.AppendTag(b, fieldMessages, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(messageSize(m)))
		b = appendMessage(b, m)
	}
	return b
}

// The field numbers of edgegate.v1.Message, Value and google.protobuf.Timestamp.
const (
	msgSequence    = 1
	msgDevice      = 2
	msgPoint       = 3
	msgProtocol    = 4
	msgValue       = 5
	msgQuality     = 6
	msgSourceTime  = 7
	msgGatewayTime = 8
	msgUnit        = 9
	msgLabels      = 10
	msgPriority    = 11
)

func appendMessage(b []byte, m *bridge.Message) []byte {
	b = appendVarintField(b, msgSequence, m.Sequence)
	b = appendStringField(b, msgDevice, m.Device)
	b = appendStringField(b, msgPoint, m.Point)
	b = appendVarintField(b, msgProtocol, uint64(m.Protocol))
	if vs := valueSize(m.Value); vs > 0 {
		b = protowire.AppendTag(b, msgValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(vs))
		b = appendValue(b, m.Value)
	}
	b = appendVarintField(b, msgQuality, uint64(m.Quality))
	b = appendTimeField(b, msgSourceTime, m.SourceTime)
	b = appendTimeField(b, msgGatewayTime, m.GatewayTime)
	b = appendStringField(b, msgUnit, m.Unit)
	for k, v := range m.Labels {
		b = protowire.AppendTag(b, msgLabels, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(labelSize(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return appendVarintField(b, msgPriority, uint64(m.Priority))
}

func messageSize(m *bridge.Message) int {
	n := varintFieldSize(msgSequence, m.Sequence) + stringFieldSize(m.Device) + stringFieldSize(m.Point) +
		varintFieldSize(msgProtocol, uint64(m.Protocol)) + varintFieldSize(msgQuality, uint64(m.Quality)) +
		timeFieldSize(m.SourceTime) + timeFieldSize(m.GatewayTime) + stringFieldSize(m.Unit) +
		varintFieldSize(msgPriority, uint64(m.Priority))
	if vs := valueSize(m.Value); vs > 0 {
		n += 1 + protowire.SizeBytes(vs)
	}
	for k, v := range m.Labels {
		n += 1 + protowire.SizeBytes(labelSize(k, v))
	}
	return n
}

func labelSize(k, v string) int { return 2 + protowire.SizeBytes(len(k)) + protowire.SizeBytes(len(v)) }

// appendValue writes the Value's one field; like protobuf, a zero number is
// still written, since a oneof member is present even when zero.
func appendValue(b []byte, v bridge.Value) []byte {
	switch v.Kind() {
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(f))
	case bridge.KindInt:
		i, _ := v.AsInt()
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(i))
	case bridge.KindUint:
		u, _ := v.AsUint()
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, u)
	case bridge.KindBool:
		x, _ := v.AsBool()
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(x))
	case bridge.KindString:
		s, _ := v.AsString()
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		return protowire.AppendString(b, s)
	case bridge.KindBytes:
		raw, _ := v.AsBytes()
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		return protowire.AppendBytes(b, raw)
	}
	return b
}

func valueSize(v bridge.Value) int {
	switch v.Kind() {
	case bridge.KindDouble:
		return 1 + 8
	case bridge.KindInt:
		i, _ := v.AsInt()
		return 1 + protowire.SizeVarint(uint64(i))
	case bridge.KindUint:
		u, _ := v.AsUint()
		return 1 + protowire.SizeVarint(u)
	case bridge.KindBool:
		return 2
	case bridge.KindString:
		s, _ := v.AsString()
		return 1 + protowire.SizeBytes(len(s))
	case bridge.KindBytes:
		raw, _ := v.AsBytes()
		return 1 + protowire.SizeBytes(len(raw))
	}
	return 0
}

// Proto3 leaves out fields with zero values.
func appendVarintField(b []byte, num protowire.Number, x uint64) []byte {
	if x == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, x)
}

func varintFieldSize(_ protowire.Number, x uint64) int {
	if x == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(x)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func stringFieldSize(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func appendTimeField(b []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timeSize(t)))
	b = appendVarintField(b, 1, uint64(t.Unix()))
	return appendVarintField(b, 2, uint64(int64(t.Nanosecond())))
}

func timeSize(t time.Time) int {
	return varintFieldSize(1, uint64(t.Unix())) + varintFieldSize(2, uint64(int64(t.Nanosecond())))
}

func timeFieldSize(t time.Time) int {
	if t.IsZero() {
		return 0
	}
	return 1 + protowire.SizeBytes(timeSize(t))
}

// output is a decoded Output.
type output struct {
	messages []*bridge.Message // device, point, value set; labels not yet stamped
	writes   []write
	drop     []uint32
	err      string
}

type write struct {
	device, point string
	value         bridge.Value
}

// Bounds of one Output, beyond those of the module's memory.
const (
	maxOutMessages = 10_000
	maxOutWrites   = 1_000
	maxOutDrops    = maxWASMMaxBatch
	maxOutError    = 1024
)

var errOutput = errors.New("invalid output")

// decodeOutput reads an Output. It refuses what the gateway could not publish (a
// message without device, point or value, names too long or not UTF-8) so that one
// bad message cannot make the hub refuse the device's whole batch.
func decodeOutput(b []byte) (*output, error) {
	out := &output{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", errOutput, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldMessages && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: messages: %v", errOutput, protowire.ParseError(n))
			}
			b = b[n:]
			if len(out.messages) == maxOutMessages {
				return nil, fmt.Errorf("%w: more than %d messages", errOutput, maxOutMessages)
			}
			m, err := messageFromWire(v)
			if err != nil {
				return nil, fmt.Errorf("%w: messages[%d]: %v", errOutput, len(out.messages), err)
			}
			out.messages = append(out.messages, m)
		case num == fieldWrites && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: writes: %v", errOutput, protowire.ParseError(n))
			}
			b = b[n:]
			if len(out.writes) == maxOutWrites {
				return nil, fmt.Errorf("%w: more than %d writes", errOutput, maxOutWrites)
			}
			w, err := writeFromWire(v)
			if err != nil {
				return nil, fmt.Errorf("%w: writes[%d]: %v", errOutput, len(out.writes), err)
			}
			out.writes = append(out.writes, w)
		case num == fieldDrop && typ == protowire.BytesType: // packed, the proto3 default
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: drop: %v", errOutput, protowire.ParseError(n))
			}
			b = b[n:]
			for len(v) > 0 {
				x, n := protowire.ConsumeVarint(v)
				if n < 0 {
					return nil, fmt.Errorf("%w: drop: %v", errOutput, protowire.ParseError(n))
				}
				v = v[n:]
				if err := out.addDrop(x); err != nil {
					return nil, err
				}
			}
		case num == fieldDrop && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: drop: %v", errOutput, protowire.ParseError(n))
			}
			b = b[n:]
			if err := out.addDrop(x); err != nil {
				return nil, err
			}
		case num == fieldError && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: error: %v", errOutput, protowire.ParseError(n))
			}
			b = b[n:]
			if len(v) > maxOutError {
				v = v[:maxOutError]
			}
			out.err = string(v)
			if !utf8.ValidString(out.err) {
				out.err = fmt.Sprintf("%q", out.err)
			}
		case num == fieldMessages || num == fieldWrites || num == fieldDrop || num == fieldError:
			return nil, fmt.Errorf("%w: field %d has wire type %d", errOutput, num, typ)
		default: // unknown fields are skipped, as protobuf does
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("%w: field %d: %v", errOutput, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return out, nil
}

func (o *output) addDrop(x uint64) error {
	if x >= maxWASMMaxBatch {
		return fmt.Errorf("%w: drop: index %d is out of range", errOutput, x)
	}
	if len(o.drop) == maxOutDrops {
		return fmt.Errorf("%w: more than %d drops", errOutput, maxOutDrops)
	}
	o.drop = append(o.drop, uint32(x))
	return nil
}

func messageFromWire(b []byte) (*bridge.Message, error) {
	var p pb.Message
	if err := proto.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	if err := checkNames(p.Device, p.Point); err != nil {
		return nil, err
	}
	v, err := pbconv.ValueFromProto(p.Value)
	if err != nil {
		return nil, fmt.Errorf("device %q point %q: %w", p.Device, p.Point, err)
	}
	m := &bridge.Message{
		Device:   p.Device,
		Point:    p.Point,
		Value:    v,
		Unit:     p.Unit,
		Labels:   p.Labels,
		Quality:  bridge.Quality(p.Quality),
		Priority: bridge.Priority(p.Priority),
	}
	if m.Quality < bridge.QualityUnspecified || m.Quality > bridge.QualityBad {
		return nil, fmt.Errorf("device %q point %q: unknown quality %d", p.Device, p.Point, p.Quality)
	}
	if m.Priority < bridge.PriorityUnspecified || m.Priority > bridge.PriorityCritical {
		return nil, fmt.Errorf("device %q point %q: unknown priority %d", p.Device, p.Point, p.Priority)
	}
	if len(m.Unit) > bridge.MaxNameLen {
		return nil, fmt.Errorf("device %q point %q: unit longer than %d bytes", p.Device, p.Point, bridge.MaxNameLen)
	}
	if p.SourceTime != nil {
		if err := p.SourceTime.CheckValid(); err != nil {
			return nil, fmt.Errorf("device %q point %q: source_time: %w", p.Device, p.Point, err)
		}
		m.SourceTime = p.SourceTime.AsTime()
	}
	return m, nil
}

func writeFromWire(b []byte) (write, error) {
	var p pb.WriteRequest
	if err := proto.Unmarshal(b, &p); err != nil {
		return write{}, err
	}
	if err := checkNames(p.Device, p.Point); err != nil {
		return write{}, err
	}
	v, err := pbconv.ValueFromProto(p.Value)
	if err != nil {
		return write{}, fmt.Errorf("device %q point %q: %w", p.Device, p.Point, err)
	}
	return write{device: p.Device, point: p.Point, value: v}, nil
}

// checkNames applies the bridge's rules for names (protobuf has already checked
// that strings are UTF-8).
func checkNames(device, point string) error {
	switch {
	case device == "":
		return errors.New("no device")
	case point == "":
		return fmt.Errorf("device %q: no point", device)
	case len(device) > bridge.MaxNameLen || len(point) > bridge.MaxNameLen:
		return fmt.Errorf("device or point name longer than %d bytes", bridge.MaxNameLen)
	}
	return nil
}
