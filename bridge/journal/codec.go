package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
)

// ErrCorrupt is wrapped by every error about bytes that are not a valid record.
var ErrCorrupt = errors.New("corrupt journal record")

// The body of a record, little-endian:
//
//	seq u64 | gateway_time i64 (unix ns) | protocol u8 | quality u8 | priority u8 | kind u8 |
//	source_time varint (unix ns, 0 = none) | device str | point str | unit str |
//	value (8 bytes for numbers and bools, str for strings and bytes) |
//	labels uvarint count, then key str, value str each
//
// where str is a uvarint length and that many bytes. The codec is ours rather than
// protobuf's so that the journal does not depend on the wire API and can evolve
// separately; the record header carries a version byte for that.

// appendBody encodes m onto b.
func appendBody(b []byte, m *bridge.Message) []byte {
	b = binary.LittleEndian.AppendUint64(b, m.Sequence)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.GatewayTime.UnixNano()))
	b = append(b, byte(m.Protocol), byte(m.Quality), byte(m.Priority), byte(m.Value.Kind()))
	var src int64
	if !m.SourceTime.IsZero() {
		src = m.SourceTime.UnixNano()
	}
	b = binary.AppendVarint(b, src)
	b = appendStr(b, m.Device)
	b = appendStr(b, m.Point)
	b = appendStr(b, m.Unit)
	switch m.Value.Kind() {
	case bridge.KindDouble:
		f, _ := m.Value.AsDouble()
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	case bridge.KindInt:
		i, _ := m.Value.AsInt()
		b = binary.LittleEndian.AppendUint64(b, uint64(i))
	case bridge.KindUint:
		u, _ := m.Value.AsUint()
		b = binary.LittleEndian.AppendUint64(b, u)
	case bridge.KindBool:
		v, _ := m.Value.AsBool()
		var u uint64
		if v {
			u = 1
		}
		b = binary.LittleEndian.AppendUint64(b, u)
	case bridge.KindString:
		s, _ := m.Value.AsString()
		b = appendStr(b, s)
	case bridge.KindBytes:
		s, _ := m.Value.AsBytes()
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Labels)))
	for k, v := range m.Labels {
		b = appendStr(b, k)
		b = appendStr(b, v)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail("short fixed field")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) u8() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("short byte field")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("string longer than its record")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	v := d.raw()
	if d.err == nil && !utf8.Valid(v) {
		d.fail("string is not UTF-8")
	}
	return string(v)
}

// decodeBody is the inverse of appendBody. It refuses anything appendBody could not
// have written, so that a record that passes its checksum by chance is still not
// served as nonsense.
func decodeBody(b []byte) (*bridge.Message, error) {
	d := &decoder{b: b}
	m := &bridge.Message{}
	m.Sequence = d.u64()
	m.GatewayTime = time.Unix(0, int64(d.u64()))
	proto, quality, priority, kind := d.u8(), d.u8(), d.u8(), d.u8()
	if src := d.varint(); src != 0 {
		m.SourceTime = time.Unix(0, src)
	}
	m.Device, m.Point, m.Unit = d.str(), d.str(), d.str()
	switch bridge.Kind(kind) {
	case bridge.KindDouble:
		m.Value = bridge.Double(math.Float64frombits(d.u64()))
	case bridge.KindInt:
		m.Value = bridge.Int(int64(d.u64()))
	case bridge.KindUint:
		m.Value = bridge.Uint(d.u64())
	case bridge.KindBool:
		switch d.u64() {
		case 0:
			m.Value = bridge.Bool(false)
		case 1:
			m.Value = bridge.Bool(true)
		default:
			d.fail("bool is neither 0 nor 1")
		}
	case bridge.KindString:
		m.Value = bridge.String(d.str())
	case bridge.KindBytes:
		m.Value = bridge.Bytes(d.raw())
	default:
		d.fail("unknown value kind")
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/2 {
		d.fail("more labels than bytes")
	}
	if d.err == nil && n > 0 {
		m.Labels = make(map[string]string, n)
		for range n {
			k := d.str()
			m.Labels[k] = d.str()
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err == nil && (proto > 4 || quality > 3 || priority > 4 || m.Device == "" || m.Point == "") {
		d.fail("field out of range")
	}
	if d.err != nil {
		return nil, d.err
	}
	m.Protocol, m.Quality, m.Priority = bridge.Protocol(proto), bridge.Quality(quality), bridge.Priority(priority)
	return m, nil
}
