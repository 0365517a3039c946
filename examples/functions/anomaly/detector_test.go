package main

import (
	"encoding/binary"
	"math"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// message encodes an edgegate.v1.Message with a double value, as Batch.messages.
func message(b []byte, device, point string, v float64) []byte {
	var m []byte
	m = appendString(m, 2, device)
	m = appendString(m, 3, point)
	var val []byte
	val = appendTag(val, 1, wireFixed64)
	val = binary.LittleEndian.AppendUint64(val, math.Float64bits(v))
	m = appendBytes(m, 5, val)
	return appendBytes(b, 1, m)
}

func anomalies(t *testing.T, out []byte) []reading {
	t.Helper()
	var got []reading
	err := eachField(out, func(num, wire int, v []byte, _ uint64) error {
		if num != 1 || wire != wireBytes {
			t.Fatalf("unexpected output field %d", num)
		}
		r, err := readMessage(v)
		got = append(got, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDetector(t *testing.T) {
	d := NewDetector()
	var batch []byte
	for i := range 100 {
		batch = message(batch, "fryer-1", "oil_temp", 180+float64(i%3)) // 180, 181, 182, ...
	}
	out, err := d.Process(batch)
	if err != nil {
		t.Fatal(err)
	}
	if got := anomalies(t, out); len(got) != 0 {
		t.Fatalf("steady readings: got anomalies %+v", got)
	}
	out, err = d.Process(message(message(nil, "fryer-1", "oil_temp", 181), "fryer-1", "oil_temp", 240))
	if err != nil {
		t.Fatal(err)
	}
	got := anomalies(t, out)
	if len(got) != 1 || string(got[0].device) != "fryer-1" || string(got[0].point) != "oil_temp_anomaly" || got[0].value < Threshold {
		t.Fatalf("a jump to 240: got %+v, want one oil_temp_anomaly above %v", got, Threshold)
	}
}

func TestDetectorRefusesMalformed(t *testing.T) {
	for _, b := range [][]byte{{0x0a, 0x05, 0x01}, {0x0a}, {0x00}, {0x0f}} {
		if _, err := NewDetector().Process(b); err == nil {
			t.Errorf("%x: no error", b)
		}
	}
}

func FuzzProcess(f *testing.F) {
	f.Add(message(nil, "fryer-1", "oil_temp", 180))
	f.Add([]byte{0x0a, 0x02, 0x2a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDetector()
		if _, err := d.Process(b); err != nil {
			return
		}
		if len(d.points) > MaxPoints {
			t.Fatalf("%d points tracked", len(d.points))
		}
	})
}
