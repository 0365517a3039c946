// Command anomaly is an example edge function in WebAssembly: it learns each
// point's usual level and spread as readings pass (an exponentially weighted mean
// and variance) and, when a reading is more than Threshold deviations away from
// what it learned, adds a message `<point>_anomaly` with the deviation (a z-score)
// at high priority. The readings themselves go on unchanged.
//
// It shows what CEL cannot do: keep state from one message to the next. Build it
// with `make functions-example` (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared), and
// see docs/functions.md for the ABI. It uses only the standard library: this file
// reads and writes the protobuf wire format by hand, which is short for the few
// fields it needs (any protobuf library does the same).
package main

import (
	"encoding/binary"
	"errors"
	"math"
)

// Tuning. Alpha is the weight of a new reading in the running mean and variance;
// a point is judged only after Warmup readings.
const (
	Threshold = 4.0
	Alpha     = 0.05
	Warmup    = 20
	// MaxPoints bounds the state: points beyond it are not tracked.
	MaxPoints = 10_000
)

// stats is what the detector knows of one point.
type stats struct {
	n        int
	mean, vr float64
}

// Detector is the module's state, kept between batches for as long as the
// instance lives (the gateway starts a fresh instance after a failure).
type Detector struct {
	points map[string]*stats
	key    []byte // reused: looking a point up allocates nothing
	out    []byte
}

// NewDetector returns an empty detector.
func NewDetector() *Detector { return &Detector{points: map[string]*stats{}} }

// reading is the part of an edgegate.v1.Message the detector reads. device and
// point alias the batch: a garbage collector is slow in WebAssembly, so the hot
// path allocates nothing.
type reading struct {
	device, point []byte
	value         float64
	numeric       bool
}

// Process reads a Batch and returns an Output (both in docs/functions.md); the
// result is valid until the next call.
func (d *Detector) Process(batch []byte) ([]byte, error) {
	d.out = d.out[:0]
	err := eachField(batch, func(num int, wire int, v []byte, _ uint64) error {
		if num != 1 || wire != wireBytes { // Batch.messages
			return nil
		}
		r, err := readMessage(v)
		if err != nil {
			return err
		}
		if r.numeric {
			d.observe(r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d.out, nil
}

func (d *Detector) observe(r reading) {
	d.key = append(append(append(d.key[:0], r.device...), 0), r.point...)
	s := d.points[string(d.key)] // no allocation: the compiler sees through it
	if s == nil {
		if len(d.points) >= MaxPoints {
			return
		}
		s = &stats{mean: r.value}
		d.points[string(d.key)] = s
	}
	if s.n >= Warmup && s.vr > 0 {
		if z := (r.value - s.mean) / math.Sqrt(s.vr); math.Abs(z) > Threshold {
			d.out = appendAnomaly(d.out, r, z)
		}
	}
	// Exponentially weighted mean and variance (West, 1979).
	diff := r.value - s.mean
	incr := Alpha * diff
	s.mean += incr
	s.vr = (1 - Alpha) * (s.vr + diff*incr)
	s.n++
}

// appendAnomaly appends Output.messages: {device, point: <point>_anomaly,
// value: {double_value: z}, priority: PRIORITY_HIGH}.
func appendAnomaly(b []byte, r reading, z float64) []byte {
	var m []byte
	m = appendBytes(m, 2, r.device)
	m = appendTag(m, 3, wireBytes)
	m = binary.AppendUvarint(m, uint64(len(r.point)+len("_anomaly")))
	m = append(append(m, r.point...), "_anomaly"...)
	var v []byte
	v = appendTag(v, 1, wireFixed64)
	v = binary.LittleEndian.AppendUint64(v, math.Float64bits(z))
	m = appendBytes(m, 5, v)
	m = appendTag(m, 11, wireVarint)
	m = binary.AppendUvarint(m, 3) // PRIORITY_HIGH
	return appendBytes(b, 1, m)
}

// readMessage reads device (2), point (3) and value (5) of an edgegate.v1.Message.
func readMessage(b []byte) (reading, error) {
	var r reading
	err := eachField(b, func(num int, wire int, v []byte, x uint64) error {
		switch {
		case num == 2 && wire == wireBytes:
			r.device = v
		case num == 3 && wire == wireBytes:
			r.point = v
		case num == 5 && wire == wireBytes:
			return eachField(v, func(num int, wire int, _ []byte, x uint64) error {
				switch {
				case num == 1 && wire == wireFixed64: // double_value
					r.value, r.numeric = math.Float64frombits(x), true
				case num == 2 && wire == wireVarint: // int_value
					r.value, r.numeric = float64(int64(x)), true
				case num == 3 && wire == wireVarint: // uint_value
					r.value, r.numeric = float64(x), true
				}
				return nil
			})
		}
		return nil
	})
	return r, err
}

// The protobuf wire format, as much as the detector needs.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var errWire = errors.New("malformed protobuf")

// eachField calls fn for each field of a protobuf message: v for length-delimited
// fields, x for varints and fixed-width numbers.
func eachField(b []byte, fn func(num, wire int, v []byte, x uint64) error) error {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 || tag>>3 == 0 {
			return errWire
		}
		b = b[n:]
		num, wire := int(tag>>3), int(tag&7)
		var v []byte
		var x uint64
		switch wire {
		case wireVarint:
			if x, n = binary.Uvarint(b); n <= 0 {
				return errWire
			}
			b = b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return errWire
			}
			x, b = binary.LittleEndian.Uint64(b), b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return errWire
			}
			x, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errWire
			}
			v, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return errWire
		}
		if err := fn(num, wire, v, x); err != nil {
			return err
		}
	}
	return nil
}

func appendTag(b []byte, num, wire int) []byte {
	return binary.AppendUvarint(b, uint64(num)<<3|uint64(wire))
}

func appendBytes(b []byte, num int, v []byte) []byte {
	b = appendTag(b, num, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, num int, s string) []byte {
	b = appendTag(b, num, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
