package payload

import (
	"strings"
	"testing"
)

// benchReading is the shape edgebench publishes: an integer value, a source time
// with a nine-digit fraction and a unit that pads it to 256 bytes.
var benchReading = []byte(`{"value":123456,"ts":"2024-05-01T12:00:00.123456789Z","unit":"` +
	strings.Repeat("x", 256-len(`{"value":123456,"ts":"2024-05-01T12:00:00.123456789Z","unit":""}`)) + `"}`)

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name string
		raw  []byte
	}{
		{"number", []byte("21.5")},
		{"reading", benchReading},
		{"reading escaped", []byte(`{"value":"a\"b","ts":"2024-05-01T12:00:00Z","unit":"\u00b0C"}`)},
	}
	var d Decoder
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.raw)))
			for b.Loop() {
				if _, err := d.Decode(c.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeObject(b *testing.B) {
	raw := []byte(`{"temp": 21.5, "hum": {"value": 40, "unit": "%"}, "ok": true, "ts": "2024-05-01T12:00:00Z"}`)
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := d.DecodeObject(raw); err != nil {
			b.Fatal(err)
		}
	}
}
