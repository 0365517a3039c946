package modbus_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/modbus"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

func set(t *testing.T, s *sim.Server, unit uint8, p sim.Point, v bridge.Value) {
	t.Helper()
	if err := s.Set(unit, p, v); err != nil {
		t.Fatalf("sim: set %+v: %v", p, err)
	}
}

// TestPoll reads every table and several types from a real Modbus TCP server.
func TestPoll(t *testing.T) {
	s := newSim(t, sim.Options{})
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 0, Type: "float32"}, bridge.Double(21.5))
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 10, Type: "uint16"}, bridge.Uint(215))
	set(t, s, 1, sim.Point{Register: sim.Input, Address: 5, Type: "int32", ByteOrder: "CDAB"}, bridge.Int(-123456))
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 100, Type: "string", Length: 4}, bridge.String("EG-7"))
	set(t, s, 1, sim.Point{Register: sim.Coil, Address: 3}, bridge.Bool(true))
	set(t, s, 1, sim.Point{Register: sim.DiscreteInput, Address: 9}, bridge.Bool(true))
	set(t, s, 1, sim.Point{Register: sim.Input, Address: 20, Type: "float64", ByteOrder: "DCBA"}, bridge.Double(math.Pi))

	setpoint := pc("setpoint", "holding", 10, "uint16")
	setpoint.Scale = ptr(0.1)
	temp := pc("temperature", "holding", 0, "float32")
	temp.Unit = "°C"
	energy := pc("energy", "input", 5, "int32")
	energy.ByteOrder = "CDAB"
	model := pc("model", "holding", 100, "string")
	model.Length = 4
	alarm := pc("alarm", "coil", 3, "")
	alarm.Priority = "critical"
	pi := pc("pi", "input", 20, "float64")
	pi.ByteOrder = "DCBA"
	e := start(t, testConfig(device("boiler-1", s.Addr(), 1, temp, setpoint, energy, model, alarm, pc("door", "discrete_input", 9, "bool"), pi)))

	want := map[string]bridge.Value{
		"temperature": bridge.Double(21.5), "setpoint": bridge.Double(21.5), "energy": bridge.Int(-123456),
		"model": bridge.String("EG-7"), "alarm": bridge.Bool(true), "door": bridge.Bool(true), "pi": bridge.Double(math.Pi),
	}
	got := map[string]*bridge.Message{}
	for len(got) < len(want) {
		m := e.next("a reading", func(m *bridge.Message) bool { return m.Device == "boiler-1" })
		got[m.Point] = m
	}
	for name, v := range want {
		m := got[name]
		if !m.Value.Equal(v) && !(v.Kind() == bridge.KindDouble && closeTo(m.Value, v)) {
			t.Errorf("%s = %#v, want %#v", name, m.Value, v)
		}
		if m.Quality != bridge.QualityGood || m.Protocol != bridge.ProtocolModbus {
			t.Errorf("%s: quality %v protocol %v", name, m.Quality, m.Protocol)
		}
	}
	if m := got["temperature"]; m.Unit != "°C" || m.Labels["register"] != "holding" || m.Labels["address"] != "0" {
		t.Errorf("temperature: unit %q labels %v", m.Unit, m.Labels)
	}
	if got["alarm"].Priority != bridge.PriorityCritical {
		t.Errorf("alarm priority %v", got["alarm"].Priority)
	}
	waitFor(t, "the device to be connected", func() bool { return e.device("boiler-1").State == bridge.StateConnected })
	if d := e.device("boiler-1"); len(d.Points) != 7 || d.LastError != "" {
		t.Errorf("ListDevices: %+v", d)
	}
}

func closeTo(a, b bridge.Value) bool {
	x, _ := a.Float()
	y, _ := b.Float()
	return math.Abs(x-y) < 1e-9
}

// TestCoalescing counts the requests: ten contiguous registers and nearly
// contiguous coils take one request each per poll.
func TestCoalescing(t *testing.T) {
	s := newSim(t, sim.Options{})
	var points []modbus.PointConfig
	for i := range 10 {
		points = append(points, pc("r"+string(rune('0'+i)), "holding", i, "uint16"))
	}
	points = append(points, pc("c0", "coil", 0, ""), pc("c5", "coil", 5, ""), pc("c40", "coil", 40, ""))
	points = append(points, pc("far", "holding", 500, "uint16")) // beyond max_gap: a request of its own
	e := start(t, testConfig(device("d", s.Addr(), 1, points...)))
	e.polls("d", 5)
	e.stop()
	// polls_total counts the polls that ran to the end; the stop may have cut one
	// short after some of its requests.
	polls := e.metric("edgegate_modbus_polls_total", "device", "d")
	h, c := float64(s.RequestsOf(0x03)), float64(s.RequestsOf(0x01))
	if h < 2*polls || h > 2*polls+2 || c < polls || c > polls+1 || s.Requests() != uint64(h+c) {
		t.Errorf("%v polls made %v holding and %v coil reads (%d requests); want %v and %v", polls, h, c, s.Requests(), 2*polls, polls)
	}
	if r := e.metric("edgegate_modbus_requests_total", "device", "d"); r != float64(s.Requests()) {
		t.Errorf("requests_total %v, the device saw %d", r, s.Requests())
	}
}

// TestReportByException: an unchanged value is published once, then again only
// after the heartbeat; a change within the deadband is not published.
func TestReportByException(t *testing.T) {
	s := newSim(t, sim.Options{})
	p := sim.Point{Register: sim.Holding, Address: 0, Type: "int16"}
	q := sim.Point{Register: sim.Holding, Address: 1, Type: "int16"}
	set(t, s, 1, p, bridge.Int(100))
	set(t, s, 1, q, bridge.Int(100))
	level := pc("level", "holding", 0, "int16")
	level.Deadband = 5
	e := start(t, testConfig(device("tank", s.Addr(), 1, level, pc("exact", "holding", 1, "int16"))))
	first := e.point("tank", "level", bridge.QualityGood)
	e.point("tank", "exact", bridge.QualityGood)
	e.polls("tank", 5)
	set(t, s, 1, p, bridge.Int(104)) // within the deadband
	set(t, s, 1, q, bridge.Int(101)) // any change of a point without one
	m := e.point("tank", "exact", bridge.QualityGood)
	if !m.Value.Equal(bridge.Int(101)) {
		t.Errorf("exact = %#v", m.Value)
	}
	e.polls("tank", 5)
	if l, _ := e.hub.Latest("tank", "level"); l.Sequence != first.Sequence {
		t.Errorf("a change within the deadband was published: %#v", l.Value)
	}
	set(t, s, 1, p, bridge.Int(95)) // 5 from the last published value
	if m := e.point("tank", "level", bridge.QualityGood); !m.Value.Equal(bridge.Int(95)) {
		t.Errorf("level = %#v", m.Value)
	}
	if n := e.metric("edgegate_modbus_polls_total", "device", "tank"); n < 10 {
		t.Errorf("only %v polls", n)
	}
}

func TestHeartbeat(t *testing.T) {
	s := newSim(t, sim.Options{})
	cfg := testConfig(device("hb", s.Addr(), 1, pc("v", "holding", 0, "uint16")))
	cfg.Devices[0].Heartbeat = 60 * 1e6 // 60ms: three polls
	e := start(t, cfg)
	a := e.point("hb", "v", bridge.QualityGood)
	b := e.point("hb", "v", bridge.QualityGood)
	if !a.Value.Equal(b.Value) || b.Sequence <= a.Sequence {
		t.Errorf("heartbeat: %#v then %#v", a.Value, b.Value)
	}
}

// TestBusy: "server busy" is retried after a wait, and the poll succeeds; a device
// busy beyond the retries is in error until it answers again.
func TestBusy(t *testing.T) {
	s := newSim(t, sim.Options{})
	cfg := testConfig(device("b", s.Addr(), 1, pc("v", "holding", 0, "uint16")))
	cfg.BusyRetries = 3
	e := start(t, cfg)
	e.point("b", "v", bridge.QualityGood)
	s.SetBusy(2)
	e.polls("b", 3)
	if n := e.metric("edgegate_modbus_busy_retries_total", "device", "b"); n != 2 {
		t.Errorf("busy retries %v, want 2", n)
	}
	if d := e.device("b"); d.State != bridge.StateConnected {
		t.Errorf("after retries: %v %s", d.State, d.LastError)
	}
	s.SetBusy(1 << 30)
	e.point("b", "v", bridge.QualityBad)
	waitFor(t, "the device in error", func() bool { return e.device("b").State == bridge.StateError })
	if d := e.device("b"); !strings.Contains(d.LastError, "busy") {
		t.Errorf("last error %q", d.LastError)
	}
	if n := e.metric("edgegate_modbus_device_state", "device", "b"); n != float64(bridge.StateError) {
		t.Errorf("device_state = %v", n)
	}
	if n := e.metric("edgegate_modbus_poll_errors_total", "device", "b", "class", "busy"); n < 1 {
		t.Errorf("poll_errors_total{class=busy} = %v", n)
	}
	s.SetBusy(0)
	e.point("b", "v", bridge.QualityGood)
	waitFor(t, "the device connected again", func() bool { return e.device("b").State == bridge.StateConnected })
}

// TestIllegalAddress: a point the device refuses is BAD; the others of the same
// request are read alone from then on and stay GOOD.
func TestIllegalAddress(t *testing.T) {
	s := newSim(t, sim.Options{})
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 0}, bridge.Uint(10))
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 2}, bridge.Uint(12))
	if err := s.Refuse(1, sim.Holding, 1); err != nil {
		t.Fatal(err)
	}
	e := start(t, testConfig(device("d", s.Addr(), 1,
		pc("a", "holding", 0, "uint16"), pc("b", "holding", 1, "uint16"), pc("c", "holding", 2, "uint16"),
		pc("d", "holding", 3, "uint16"), pc("beyond", "holding", 2000, "uint16"))))
	got := map[string]*bridge.Message{}
	for len(got) < 3 {
		m := e.next("the first readings", func(m *bridge.Message) bool { return got[m.Point] == nil })
		got[m.Point] = m
	}
	for _, name := range []string{"a", "c", "d"} {
		if got[name] == nil || got[name].Quality != bridge.QualityGood {
			t.Errorf("%s: %v, want a GOOD reading", name, got[name])
		}
	}
	if !got["a"].Value.Equal(bridge.Uint(10)) {
		t.Errorf("a = %#v", got["a"].Value)
	}
	// Polling goes on: a change of another point is published.
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 2}, bridge.Uint(13))
	if m := e.point("d", "c", bridge.QualityGood); !m.Value.Equal(bridge.Uint(13)) {
		t.Errorf("c = %#v", m.Value)
	}
	// The refused points never had a value: they are counted BAD (below) but not
	// published, as a BAD 0 would be read as a reading of 0.
	for _, m := range append(append([]*bridge.Message(nil), e.buf...), e.hub.LatestAll()...) {
		if m.Point == "b" || m.Point == "beyond" {
			t.Errorf("a point that never had a value was published: %v", m)
		}
	}
	d := e.device("d")
	if d.State != bridge.StateConnected || !strings.Contains(d.LastError, "illegal data address") {
		t.Errorf("device: %v %q", d.State, d.LastError)
	}
	if n := e.metric("edgegate_modbus_points_bad", "device", "d"); n != 2 {
		t.Errorf("points_bad = %v", n)
	}
	// A refused point is not asked again before bad_point_retry, and the points
	// around it are read without it: each poll reads a, and c with d.
	e.polls("d", 3)
	before := s.Requests()
	e.polls("d", 4)
	if n := s.Requests() - before; n < 6 || n > 10 {
		t.Errorf("%d requests in 4 polls, want 2 a poll (a; c and d)", n)
	}
}

// TestWrite writes every type in every byte order through the hub, and reads each
// back from the device's registers.
func TestWrite(t *testing.T) {
	s := newSim(t, sim.Options{})
	type wcase struct {
		typ, order string
		length     int
		v          bridge.Value
	}
	var cases []wcase
	vals := map[string]bridge.Value{
		"bool": bridge.Bool(true), "int16": bridge.Int(-1234), "uint16": bridge.Uint(54321),
		"int32": bridge.Int(-12345678), "uint32": bridge.Uint(3456789012), "int64": bridge.Int(-1234567890123),
		"uint64": bridge.Uint(12345678901234567890), "float32": bridge.Double(-21.5), "float64": bridge.Double(math.E),
		"string": bridge.String("pump-7"),
	}
	for _, typ := range []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"} {
		for _, order := range []string{"ABCD", "CDAB", "BADC", "DCBA"} {
			if typ == "string" && (order == "CDAB" || order == "DCBA") {
				continue
			}
			n := 0
			if typ == "string" {
				n = 4
			}
			cases = append(cases, wcase{typ, order, n, vals[typ]})
		}
	}
	var points []modbus.PointConfig
	addr := 0
	spoints := map[string]sim.Point{}
	for _, c := range cases {
		name := c.typ + "_" + c.order
		p := pc(name, "holding", addr, c.typ)
		p.ByteOrder, p.Length, p.Writable = c.order, c.length, true
		points = append(points, p)
		spoints[name] = sim.Point{Register: sim.Holding, Address: addr, Type: c.typ, ByteOrder: c.order, Length: c.length}
		addr += 8
	}
	scaled := pc("setpoint", "holding", 400, "uint16")
	scaled.Scale, scaled.Offset, scaled.Writable = ptr(0.1), ptr(-40.0), true
	coil := pc("pump", "coil", 7, "")
	coil.Writable = true
	points = append(points, scaled, coil, pc("ro", "holding", 500, "uint16"), pc("in", "input", 0, "uint16"))
	e := start(t, testConfig(device("plc", s.Addr(), 1, points...)))
	e.point("plc", "ro", bridge.QualityGood) // the device is up
	ctx := context.Background()

	for _, c := range cases {
		name := c.typ + "_" + c.order
		if err := e.hub.Write(ctx, "plc", name, c.v); err != nil {
			t.Errorf("write %s: %v", name, err)
			continue
		}
		if got, err := s.Get(1, spoints[name]); err != nil || !got.Equal(c.v) {
			t.Errorf("%s: the device holds %#v (%v), want %#v", name, got, err, c.v)
		}
	}
	// The scale is reversed: (21.5 + 40) / 0.1 = 615.
	if err := e.hub.Write(ctx, "plc", "setpoint", bridge.Double(21.5)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(1, sim.Point{Register: sim.Holding, Address: 400}); !got.Equal(bridge.Uint(615)) {
		t.Errorf("setpoint raw = %#v, want 615", got)
	}
	// And the next polls read it back.
	e.next("setpoint 21.5", func(m *bridge.Message) bool {
		return m.Point == "setpoint" && closeTo(m.Value, bridge.Double(21.5))
	})
	for _, on := range []bool{true, false, true} {
		if err := e.hub.Write(ctx, "plc", "pump", bridge.Bool(on)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(1, sim.Point{Register: sim.Coil, Address: 7}); !got.Equal(bridge.Bool(on)) {
			t.Errorf("coil = %#v, want %v", got, on)
		}
	}
	if s.RequestsOf(0x05) != 3 || s.RequestsOf(0x06) == 0 || s.RequestsOf(0x10) == 0 {
		t.Errorf("write functions used: 05 ×%d, 06 ×%d, 10 ×%d", s.RequestsOf(0x05), s.RequestsOf(0x06), s.RequestsOf(0x10))
	}

	// Refused writes send nothing.
	writes := func() uint64 {
		return s.RequestsOf(0x05) + s.RequestsOf(0x06) + s.RequestsOf(0x0F) + s.RequestsOf(0x10)
	}
	before := writes()
	for _, c := range []struct {
		point string
		v     bridge.Value
	}{
		{"ro", bridge.Uint(1)},                       // not writable
		{"in", bridge.Uint(1)},                       // an input register
		{"nope", bridge.Uint(1)},                     // unknown point
		{"int16_ABCD", bridge.Int(40000)},            // out of range
		{"uint16_ABCD", bridge.Double(1.5)},          // not an integer
		{"string_ABCD", bridge.String("0123456789")}, // too long for 4 registers
		{"pump", bridge.String("on")},
		{"setpoint", bridge.Double(1e9)},
	} {
		err := e.hub.Write(ctx, "plc", c.point, c.v)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("write %s = %#v: %v, want InvalidArgument", c.point, c.v, err)
		}
	}
	if err := e.a.Write(ctx, "other", "x", bridge.Int(1)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("write to an unknown device: %v", err)
	}
	if n := writes(); n != before {
		t.Errorf("%d writes reached the device", n-before)
	}

	// The device refusing a write is FailedPrecondition and keeps its cause.
	if err := s.Refuse(1, sim.Holding, 0); err != nil {
		t.Fatal(err)
	}
	err := e.hub.Write(ctx, "plc", "bool_ABCD", bridge.Bool(false))
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, modbus.ExceptionIllegalAddress) {
		t.Errorf("refused write: %v (%v)", err, status.Code(err))
	}
}

func TestReadOnDemand(t *testing.T) {
	s := newSim(t, sim.Options{})
	set(t, s, 1, sim.Point{Register: sim.Input, Address: 3, Type: "float32"}, bridge.Double(1.25))
	p := pc("flow", "input", 3, "float32")
	p.Unit = "m³/h"
	cfg := testConfig(device("m", s.Addr(), 1, p))
	cfg.PollInterval = 1e9 * 3600 // an hour: only the on-demand read reads
	e := start(t, cfg)
	m, err := e.hub.ReadDevice(context.Background(), "m", "flow")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Value.Equal(bridge.Double(1.25)) || m.Unit != "m³/h" || m.Quality != bridge.QualityGood {
		t.Errorf("read: %+v", m)
	}
	if _, err := e.a.Read(context.Background(), "m", "nope"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("read of an unknown point: %v", err)
	}
}

// TestNoDevices: a `modbus:` section without devices runs, idle, until stopped.
func TestNoDevices(t *testing.T) {
	e := start(t, testConfig())
	select {
	case err := <-e.done:
		t.Fatalf("Run returned before it was stopped: %v", err)
	default:
	}
	e.stop()
}

// TestGapRefused: a request refused because it spans a register the device does not
// have (no point is there) is split; every point stays GOOD, and the points on
// either side of the hole are read in one request each from then on.
func TestGapRefused(t *testing.T) {
	s := newSim(t, sim.Options{})
	if err := s.Refuse(1, sim.Holding, 2); err != nil {
		t.Fatal(err)
	}
	e := start(t, testConfig(device("g", s.Addr(), 1,
		pc("x0", "holding", 0, "uint16"), pc("x1", "holding", 1, "uint16"), pc("x3", "holding", 3, "uint16"), pc("x4", "holding", 4, "uint16"))))
	for _, p := range []string{"x0", "x1", "x3", "x4"} {
		e.point("g", p, bridge.QualityGood)
	}
	e.polls("g", 2)
	before := s.Requests()
	e.polls("g", 4)
	if n := s.Requests() - before; n < 6 || n > 10 {
		t.Errorf("%d requests in 4 polls, want 2 a poll (x0-x1 and x3-x4)", n)
	}
	if n := e.metric("edgegate_modbus_points_bad", "device", "g"); n != 0 {
		t.Errorf("points_bad = %v", n)
	}
}
