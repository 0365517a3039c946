package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)

func TestPointNamesCycle(t *testing.T) {
	d := newDevice("sim-1", 7, 1, 0)
	var names []string
	for _, p := range d.points {
		names = append(names, p.name)
	}
	want := "temperature counter alarm humidity pressure temperature_2 counter_2"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("points = %s, want %s", got, want)
	}
}

func TestSameSeedSameReadings(t *testing.T) {
	a, b := newDevice("d", 5, 42, 3), newDevice("d", 5, 42, 3)
	c := newDevice("d", 5, 42, 4)
	differs := false
	for range 50 {
		ra, rb, rc := a.nextReading(formJSON, t0), b.nextReading(formJSON, t0), c.nextReading(formJSON, t0)
		if string(ra.payload) != string(rb.payload) || ra.topic != rb.topic {
			t.Fatalf("same seed, different readings: %s %s", ra.payload, rb.payload)
		}
		differs = differs || string(ra.payload) != string(rc.payload)
	}
	if !differs {
		t.Fatal("another device index gave the same readings")
	}
}

// decodeReading decodes the JSON form the way a subscriber would.
func decodeReading(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return m
}

func TestJSONReadingsRoundRobin(t *testing.T) {
	d := newDevice("sim-7", 3, 1, 0)
	wantTopics := []string{"devices/sim-7/temperature", "devices/sim-7/counter", "devices/sim-7/alarm", "devices/sim-7/temperature"}
	for i, want := range wantTopics {
		r := d.nextReading(formJSON, t0)
		if r.topic != want {
			t.Fatalf("reading %d: topic %s, want %s", i, r.topic, want)
		}
		m := decodeReading(t, r.payload)
		if m["ts"] != "2026-05-01T12:00:00.123456789Z" {
			t.Fatalf("ts = %v", m["ts"])
		}
		switch i % 3 {
		case 0:
			if _, ok := m["value"].(float64); !ok || m["unit"] != "°C" {
				t.Fatalf("temperature reading %s", r.payload)
			}
		case 1:
			if _, ok := m["unit"]; ok {
				t.Fatalf("counter has a unit: %s", r.payload)
			}
			v, _, _ := strings.Cut(strings.TrimPrefix(string(r.payload), `{"value":`), ",")
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				t.Fatalf("counter is not an integer: %s", r.payload)
			}
		case 2:
			if _, ok := m["value"].(bool); !ok {
				t.Fatalf("alarm is not a bool: %s", r.payload)
			}
		}
	}
}

func TestNumberReadings(t *testing.T) {
	d := newDevice("d", 3, 1, 0)
	for i := range 30 {
		r := d.nextReading(formNumber, t0)
		s := string(r.payload)
		switch i % 3 {
		case 0:
			if _, err := strconv.ParseFloat(s, 64); err != nil || !strings.Contains(s, ".") {
				t.Fatalf("temperature %q is not a decimal", s)
			}
		case 1:
			if _, err := strconv.ParseInt(s, 10, 64); err != nil {
				t.Fatalf("counter %q is not an integer", s)
			}
		case 2:
			if s != "true" && s != "false" {
				t.Fatalf("alarm %q is not a bool", s)
			}
		}
	}
}

func TestCounterIncreases(t *testing.T) {
	d := newDevice("d", 2, 9, 0)
	last := int64(-1)
	for range 100 {
		d.nextReading(formNumber, t0) // temperature
		r := d.nextReading(formNumber, t0)
		n, err := strconv.ParseInt(string(r.payload), 10, 64)
		if err != nil || n <= last {
			t.Fatalf("counter %s after %d", r.payload, last)
		}
		last = n
	}
}

func TestWalksStayInRange(t *testing.T) {
	d := newDevice("d", 5, 5, 0)
	for range 100000 {
		d.nextReading(formNumber, t0)
	}
	for _, p := range d.points {
		switch p.kind {
		case kindTemperature:
			if p.num < 10 || p.num > 32 {
				t.Errorf("temperature wandered to %v", p.num)
			}
		case kindHumidity:
			if p.num < 0 || p.num > 100 {
				t.Errorf("humidity at %v", p.num)
			}
		case kindPressure:
			if p.num < 990 || p.num > 1040 {
				t.Errorf("pressure wandered to %v", p.num)
			}
		}
	}
}

func TestObjectReading(t *testing.T) {
	d := newDevice("sim-1", 4, 1, 0)
	r := d.nextReading(formObject, t0)
	if r.topic != "devices/sim-1" {
		t.Fatalf("topic %s", r.topic)
	}
	m := decodeReading(t, r.payload)
	for _, k := range []string{"temperature", "counter", "alarm", "humidity", "ts"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s missing from %s", k, r.payload)
		}
	}
	if tm, ok := m["temperature"].(map[string]any); !ok || tm["unit"] != "°C" {
		t.Fatalf("temperature is not a reading object with its unit: %s", r.payload)
	}
	if len(m) != 5 {
		t.Fatalf("%d keys in %s", len(m), r.payload)
	}
}

func TestWriteLiteral(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{in: "42.5", want: "42.5"},
		{in: " 7\n", want: "7"},
		{in: "18446744073709551615", want: "18446744073709551615"},
		{in: "-1e3", want: "-1e3"},
		{in: "true", want: "true"},
		{in: `"open"`, want: `"open"`},
		{in: "open", want: `"open"`},
		{in: "12 V", want: `"12 V"`},
		{in: `{"value": 21.5}`, want: "21.5"},
		{in: `{"value": false, "ts": "2026-01-01T00:00:00Z"}`, want: "false"},
		{in: `{"value": "a\"b"}`, want: `"a\"b"`},
		{in: "", err: true},
		{in: "null", err: true},
		{in: "[1,2]", err: true},
		{in: `{"v": 1}`, err: true},
		{in: `{"value": {"x": 1}}`, err: true},
		{in: `{"value": 1`, err: true},
		{in: strings.Repeat("9", maxWriteSize+1), err: true},
		{in: "\xff\xfe", err: true},
	} {
		got, err := writeLiteral([]byte(tc.in))
		if tc.err {
			if err == nil {
				t.Errorf("writeLiteral(%q) = %s, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("writeLiteral(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestApplyWrite(t *testing.T) {
	d := newDevice("sim-2", 2, 1, 0)
	r, err := d.applyWrite("devices/sim-2/temperature/set", []byte("30"), formJSON, t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.topic != "devices/sim-2/temperature" || decodeReading(t, r.payload)["value"] != 30.0 {
		t.Fatalf("report of the write: %s %s", r.topic, r.payload)
	}
	// The point holds the written value from then on.
	for range 4 {
		r := d.nextReading(formNumber, t0)
		if r.topic == "devices/sim-2/temperature" && string(r.payload) != "30" {
			t.Fatalf("temperature after the write: %s", r.payload)
		}
	}
	// A write to a point the device lacks creates it.
	r, err = d.applyWrite("devices/sim-2/setpoint/set", []byte(`{"value": 5}`), formNumber, t0)
	if err != nil || r.topic != "devices/sim-2/setpoint" || string(r.payload) != "5" {
		t.Fatalf("new point: %s %s %v", r.topic, r.payload, err)
	}
	if len(d.points) != 3 {
		t.Fatalf("%d points after creating one", len(d.points))
	}
	r, err = d.applyWrite("devices/sim-2/mode/set", []byte("auto"), formObject, t0)
	if err != nil || r.topic != "devices/sim-2" || decodeReading(t, r.payload)["mode"] == nil {
		t.Fatalf("object form: %s %s %v", r.topic, r.payload, err)
	}

	for _, topic := range []string{"devices/sim-3/x/set", "devices/sim-2/x", "devices/sim-2/a/b/set", "devices/sim-2//set"} {
		if _, err := d.applyWrite(topic, []byte("1"), formJSON, t0); !errors.Is(err, errBadWrite) {
			t.Errorf("write on %s: %v, want errBadWrite", topic, err)
		}
	}
	if _, err := d.applyWrite("devices/sim-2/x/set", []byte("[]"), formJSON, t0); !errors.Is(err, errBadWrite) {
		t.Errorf("array write: %v", err)
	}
}

func TestApplyWriteBoundsPoints(t *testing.T) {
	d := newDevice("d", maxPoints-1, 1, 0)
	if _, err := d.applyWrite("devices/d/extra/set", []byte("1"), formJSON, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.applyWrite("devices/d/one-more/set", []byte("1"), formJSON, t0); !errors.Is(err, errBadWrite) {
		t.Fatalf("point beyond the bound: %v", err)
	}
	// An existing point still takes writes.
	if _, err := d.applyWrite("devices/d/extra/set", []byte("2"), formJSON, t0); err != nil {
		t.Fatal(err)
	}
}
