package coap

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/payload"
)

// format is a content format (RFC 7252 section 12.3), or formatNone for a request
// without the option.
type format int32

// The content formats the adapter reads and writes.
const (
	formatNone   format = -1
	formatText   format = 0  // a number, true/false, text, or JSON (as MQTT payloads)
	formatOctets format = 42 // bytes, as they are
	formatJSON   format = 50
	formatCBOR   format = 60
)

func (f format) media() message.MediaType { return message.MediaType(f) }

// formatOf reads a request's Content-Format (id message.ContentFormat) or Accept.
func formatOf(v message.MediaType, err error) format {
	if err != nil {
		return formatNone
	}
	return format(v)
}

// errUnsupportedFormat is answered 4.15 Unsupported Content-Format.
var errUnsupportedFormat = errors.New("unsupported content format")

// decodePoint decodes the payload of one point by its content format. Without a
// Content-Format option, and for text/plain, the payload is read as MQTT payloads are
// (a bare number, true or false, text, or JSON). application/json must be JSON;
// application/cbor is CBOR; application/octet-stream is bytes.
func decodePoint(d payload.Decoder, cf format, raw []byte) (payload.Reading, error) {
	switch cf {
	case formatNone, formatText:
		return d.Decode(raw)
	case formatJSON:
		if !json.Valid(raw) {
			return payload.Reading{}, fmt.Errorf("%w: application/json payload is not JSON", payload.ErrInvalidPayload)
		}
		return d.Decode(raw)
	case formatCBOR:
		return d.DecodeCBOR(raw)
	case formatOctets:
		if max := d.MaxSize; max > 0 && len(raw) > max {
			return payload.Reading{}, fmt.Errorf("%w: %w: %d bytes", payload.ErrInvalidPayload, payload.ErrTooLarge, len(raw))
		}
		return payload.Reading{Value: bridge.Bytes(raw), Quality: bridge.QualityGood}, nil
	}
	return payload.Reading{}, fmt.Errorf("%w %d", errUnsupportedFormat, cf)
}

// decodeObject decodes an object of several points (JSON, or CBOR by content format).
func decodeObject(d payload.Decoder, cf format, raw []byte) ([]payload.Reading, error) {
	switch cf {
	case formatNone, formatText, formatJSON:
		return d.DecodeObject(raw)
	case formatCBOR:
		return d.DecodeObjectCBOR(raw)
	}
	return nil, fmt.Errorf("%w %d for an object of points (want JSON or CBOR)", errUnsupportedFormat, cf)
}

// acceptable reports whether the adapter can answer in a format a request accepts.
func acceptable(cf format) bool {
	switch cf {
	case formatNone, formatText, formatJSON, formatCBOR:
		return true
	}
	return false
}

// reading is one point's value as the adapter answers it.
type reading struct {
	point string
	value bridge.Value
	ts    time.Time // source time, or gateway time when the device gave none
	unit  string
}

// encodeValue is the payload of one point: the value alone. Text is Value.String()
// (bytes as they are, application/octet-stream); JSON is a JSON value; CBOR a CBOR
// item. It returns the content format used.
func encodeValue(accept format, v bridge.Value) (format, []byte) {
	switch accept {
	case formatJSON:
		return formatJSON, payload.AppendJSON(nil, v)
	case formatCBOR:
		return formatCBOR, payload.AppendCBOR(nil, v)
	}
	if b, ok := v.AsBytes(); ok {
		return formatOctets, b
	}
	return formatText, []byte(v.String())
}

// encodeReading is a GET's answer for one point: the value alone as text, or a
// reading object {"value", "ts", "unit"} in JSON or CBOR, the same form a device may
// send.
func encodeReading(accept format, r reading) (format, []byte) {
	switch accept {
	case formatJSON:
		b := append([]byte(`{"value":`), payload.AppendJSON(nil, r.value)...)
		if !r.ts.IsZero() {
			b = append(b, `,"ts":`...)
			b = payload.AppendJSONString(b, r.ts.UTC().Format(time.RFC3339Nano))
		}
		if r.unit != "" {
			b = append(b, `,"unit":`...)
			b = payload.AppendJSONString(b, r.unit)
		}
		return formatJSON, append(b, '}')
	case formatCBOR:
		n := 1
		if !r.ts.IsZero() {
			n++
		}
		if r.unit != "" {
			n++
		}
		b := payload.AppendCBORMapHead(nil, n)
		b = payload.AppendCBORText(b, "value")
		b = payload.AppendCBOR(b, r.value)
		if !r.ts.IsZero() {
			b = payload.AppendCBORText(b, "ts")
			b = payload.AppendCBORText(b, r.ts.UTC().Format(time.RFC3339Nano))
		}
		if r.unit != "" {
			b = payload.AppendCBORText(b, "unit")
			b = payload.AppendCBORText(b, r.unit)
		}
		return formatCBOR, b
	}
	return encodeValue(accept, r.value)
}

// encodeObject is an object of points {"name": value, ...} in JSON (the default,
// also for text/plain) or CBOR.
func encodeObject(accept format, rs []reading) (format, []byte) {
	if accept == formatCBOR {
		b := payload.AppendCBORMapHead(nil, len(rs))
		for _, r := range rs {
			b = payload.AppendCBORText(b, r.point)
			b = payload.AppendCBOR(b, r.value)
		}
		return formatCBOR, b
	}
	b := []byte{'{'}
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = payload.AppendJSONString(b, r.point)
		b = append(b, ':')
		b = payload.AppendJSON(b, r.value)
	}
	return formatJSON, append(b, '}')
}
