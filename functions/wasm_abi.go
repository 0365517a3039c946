package functions

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/grpcapi"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
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

// toProto is the wire form of a message as functions see it: before the hub, so
// without sequence and gateway time.
func toProto(m *bridge.Message) *pb.Message {
	out := &pb.Message{
		Sequence: m.Sequence,
		Device:   m.Device,
		Point:    m.Point,
		Protocol: pb.Protocol(m.Protocol),
		Value:    grpcapi.ValueToProto(m.Value),
		Quality:  pb.Quality(m.Quality),
		Unit:     m.Unit,
		Labels:   m.Labels,
		Priority: pb.Priority(m.Priority),
	}
	if !m.SourceTime.IsZero() {
		out.SourceTime = timestamppb.New(m.SourceTime)
	}
	if !m.GatewayTime.IsZero() {
		out.GatewayTime = timestamppb.New(m.GatewayTime)
	}
	return out
}

// encodeBatch appends the Batch of msgs to b.
func encodeBatch(b []byte, msgs []*bridge.Message) ([]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	for _, m := range msgs {
		p := toProto(m)
		b = protowire.AppendTag(b, fieldMessages, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(opts.Size(p)))
		var err error
		if b, err = opts.MarshalAppend(b, p); err != nil {
			return nil, fmt.Errorf("device %q point %q: %w", m.Device, m.Point, err)
		}
	}
	return b, nil
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
	v, err := grpcapi.ValueFromProto(p.Value)
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
	v, err := grpcapi.ValueFromProto(p.Value)
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
