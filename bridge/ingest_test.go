package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestIngestRefusesInvalid(t *testing.T) {
	long := strings.Repeat("x", MaxNameLen+1)
	tests := []struct {
		name string
		m    *Message
		want string
	}{
		{"empty device", reading("", "p", Int(1)), "empty device"},
		{"empty point", reading("d", "", Int(1)), "empty point"},
		{"device too long", reading(long, "p", Int(1)), "longer than 256 bytes"},
		{"point too long", reading("d", long, Int(1)), "longer than 256 bytes"},
		{"device not UTF-8", reading("d\xff", "p", Int(1)), "not UTF-8"},
		{"point not UTF-8", reading("d", "\xc3\x28", Int(1)), "not UTF-8"},
		{"no value", reading("d", "p", Value{}), "no value"},
		{"string value not UTF-8", reading("d", "p", String("\xff")), "string value is not UTF-8"},
		{"label key not UTF-8", &Message{Device: "d", Point: "p", Value: Int(1), Labels: map[string]string{"\xff": "v"}}, "label is not UTF-8"},
		{"label value not UTF-8", &Message{Device: "d", Point: "p", Value: Int(1), Labels: map[string]string{"k": "\xff"}}, "label is not UTF-8"},
		{"unit not UTF-8", &Message{Device: "d", Point: "p", Value: Int(1), Unit: "\xb0C"}, "unit is not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := NewHub(HubConfig{}, reg)
			defer h.Close()
			in := h.Ingest(ProtocolMQTT)
			s := subscribe(t, h, SubscribeOptions{})
			for _, batch := range [][]*Message{
				{tt.m},
				{reading("ok", "p", Int(1)), tt.m, reading("ok", "q", Int(1))},
			} {
				err := in.Publish(context.Background(), batch...)
				if !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("Publish: %v, want ErrInvalidMessage", err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q does not say %q", err, tt.want)
				}
			}
			if h.LastSequence() != 0 || len(h.LatestAll()) != 0 || len(h.Devices(nil)) != 0 || len(poll(t, s)) != 0 {
				t.Fatalf("a refused message left a trace: last %d, cache %d, devices %v",
					h.LastSequence(), len(h.LatestAll()), h.Devices(nil))
			}
			if v, _ := metricValue(t, reg, "edgegate_messages_rejected_total", map[string]string{"protocol": "mqtt", "reason": "invalid"}); v != 2 {
				t.Errorf("edgegate_messages_rejected_total{reason=invalid} = %v, want 2", v)
			}
		})
	}
}

func TestIngestAcceptsLimits(t *testing.T) {
	h := newHub(t, HubConfig{})
	in := h.Ingest(ProtocolMQTT)
	max := strings.Repeat("é", MaxNameLen/2) // 256 bytes
	mustPublish(t, in, reading(max, max, Int(1)),
		reading("d", "p", String("")), reading("d", "q", Bytes([]byte{0xff})), reading("d", "r", Bool(false)))
	if h.LastSequence() != 4 {
		t.Fatalf("LastSequence = %d, want 4", h.LastSequence())
	}
}

// A batch that would overflow the registry, or that names a device of another
// protocol, is refused whole: nothing is published and the registry is unchanged.
func TestIngestBatchAllOrNothing(t *testing.T) {
	h := newHub(t, HubConfig{MaxDevices: 3, MaxPointsPerDevice: 2})
	mq, co := h.Ingest(ProtocolMQTT), h.Ingest(ProtocolCoAP)
	mustPublish(t, mq, reading("a", "x", Int(1)))
	mustPublish(t, co, reading("c", "x", Int(1)))
	before := h.Devices(nil)

	tests := []struct {
		name  string
		batch []*Message
		want  error
	}{
		{"two new devices, room for one", []*Message{reading("b", "x", Int(1)), reading("b2", "x", Int(1))}, ErrTooManyDevices},
		{"two new points, room for one", []*Message{reading("a", "y", Int(1)), reading("a", "z", Int(1))}, ErrTooManyPoints},
		{"new device with too many points", []*Message{reading("b", "x", Int(1)), reading("b", "y", Int(1)), reading("b", "z", Int(1))}, ErrTooManyPoints},
		{"device of another protocol", []*Message{reading("a", "y", Int(1)), reading("b", "x", Int(1)), reading("c", "x", Int(1))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mq.Publish(context.Background(), tt.batch...)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Publish: %v, want %v", err, tt.want)
			}
			if h.LastSequence() != 2 {
				t.Fatalf("LastSequence = %d: part of a refused batch was published", h.LastSequence())
			}
			if after := h.Devices(nil); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("a refused batch changed the registry:\n%v\nwas\n%v", after, before)
			}
		})
	}

	// A point named twice in one batch counts once; a known point costs nothing.
	mustPublish(t, mq, reading("a", "y", Int(1)), reading("a", "y", Int(2)), reading("a", "x", Int(3)))
	mustPublish(t, mq, reading("b", "x", Int(1)), reading("b", "y", Int(1)))
	d := h.Devices(nil)
	if got := fmt.Sprintf("%s%v:%d %s%v:%d", d[0].ID, d[0].Points, d[0].Messages, d[1].ID, d[1].Points, d[1].Messages); got != "a[x y]:4 b[x y]:2" {
		t.Fatalf("registry: %s", got)
	}
	if err := mq.Publish(context.Background(), reading("e", "x", Int(1))); !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("a fourth device: %v, want ErrTooManyDevices", err)
	}
}

// Concurrent batches racing for the last free slots of the registry: each batch is
// accepted or refused whole.
func TestIngestLimitsConcurrent(t *testing.T) {
	h := newHub(t, HubConfig{MaxDevices: 10})
	in := h.Ingest(ProtocolMQTT)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				batch := []*Message{
					reading(fmt.Sprintf("g%d-%d-a", g, i), "p", Int(1)),
					reading(fmt.Sprintf("g%d-%d-b", g, i), "p", Int(1)),
				}
				err := in.Publish(context.Background(), batch...)
				if err != nil && !errors.Is(err, ErrTooManyDevices) {
					t.Error(err)
				}
				if err == nil {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if accepted != 5 || len(h.Devices(nil)) != 10 || h.LastSequence() != 10 {
		t.Fatalf("%d batches accepted, %d devices, last sequence %d; want 5, 10, 10",
			accepted, len(h.Devices(nil)), h.LastSequence())
	}
	for _, d := range h.Devices(nil) {
		if d.Messages != 1 || !strings.HasSuffix(d.ID, "-a") && !strings.HasSuffix(d.ID, "-b") {
			t.Fatalf("device %+v", d)
		}
	}
}

func TestRegistryLimitsOutsidePublish(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{MaxDevices: 1, MaxPointsPerDevice: 2}, reg)
	defer h.Close()
	in := h.Ingest(ProtocolModbus)
	if err := in.Declare("a", "x", "y"); err != nil {
		t.Fatal(err)
	}
	if err := in.Declare("b", "x"); !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("Declare of a second device: %v, want ErrTooManyDevices", err)
	}
	// Declaring known points again is no growth.
	if err := in.Declare("a", "y", "x"); err != nil {
		t.Fatalf("Declare of known points on a full device: %v", err)
	}
	if err := in.Declare("a", "x", "z"); !errors.Is(err, ErrTooManyPoints) {
		t.Fatalf("Declare of a third point: %v, want ErrTooManyPoints", err)
	}
	if err := mq(h).Publish(context.Background(), reading("b", "x", Int(1))); !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("Publish: %v, want ErrTooManyDevices", err)
	}
	in.State("b", StateConnected, nil)
	in.Invalid("b", errors.New("garbage"))
	if d := h.Devices(nil); len(d) != 1 || d[0].ID != "a" || fmt.Sprint(d[0].Points) != "[x y]" {
		t.Fatalf("registry: %+v", d)
	}
	if v, _ := metricValue(t, reg, "edgegate_decode_errors_unattributed_total", map[string]string{"protocol": "modbus"}); v != 1 {
		t.Errorf("edgegate_decode_errors_unattributed_total = %v, want 1", v)
	}
	if v, _ := metricValue(t, reg, "edgegate_messages_rejected_total", map[string]string{"protocol": "mqtt", "reason": "limit"}); v != 1 {
		t.Errorf("edgegate_messages_rejected_total{reason=limit} = %v, want 1", v)
	}
}

func mq(h *Hub) *Ingest { return h.Ingest(ProtocolMQTT) }

func TestDeviceOfTwoProtocols(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{}, reg)
	defer h.Close()
	mqtt, coap := h.Ingest(ProtocolMQTT), h.Ingest(ProtocolCoAP)
	mustPublish(t, mqtt, reading("sensor-1", "t", Int(1)))
	err := coap.Publish(context.Background(), reading("sensor-1", "t", Int(2)))
	if err == nil || !strings.Contains(err.Error(), `device "sensor-1" already belongs to mqtt, not coap`) {
		t.Fatalf("Publish from a second protocol: %v", err)
	}
	if err := coap.Declare("sensor-1", "u"); err == nil {
		t.Fatal("Declare from a second protocol succeeded")
	}
	if h.LastSequence() != 1 {
		t.Fatal("the second protocol's message was published")
	}
	if m, _ := h.Latest("sensor-1", "t"); !m.Value.Equal(Int(1)) {
		t.Fatalf("the cache holds %#v", m.Value)
	}
	if d := h.Devices(nil); len(d) != 1 || d[0].Protocol != ProtocolMQTT || fmt.Sprint(d[0].Points) != "[t]" {
		t.Fatalf("registry: %+v", d)
	}
	if v, _ := metricValue(t, reg, "edgegate_messages_rejected_total", map[string]string{"protocol": "coap", "reason": "conflict"}); v != 1 {
		t.Errorf("edgegate_messages_rejected_total{reason=conflict} = %v, want 1", v)
	}
}

func TestDeviceState(t *testing.T) {
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{Now: clock.Now}, reg)
	defer h.Close()
	in := h.Ingest(ProtocolOPCUA)
	gauge := func(state string) float64 {
		v, _ := metricValue(t, reg, "edgegate_devices", map[string]string{"protocol": "opcua", "state": state})
		return v
	}
	info := func() DeviceInfo {
		d := h.Devices(nil)
		if len(d) != 1 {
			t.Fatalf("%d devices", len(d))
		}
		return d[0]
	}

	t0 := clock.Now()
	in.State("line-1", StateConnecting, nil)
	if d := info(); d.State != StateConnecting || !d.StateSince.Equal(t0) || !d.LastSeen.IsZero() {
		t.Fatalf("connecting: %+v", d)
	}
	t1 := clock.Advance(time.Second)
	in.State("line-1", StateConnected, nil)
	if d := info(); d.State != StateConnected || !d.StateSince.Equal(t1) || !d.LastSeen.Equal(t1) {
		t.Fatalf("connected: %+v", d)
	}
	t2 := clock.Advance(time.Second)
	in.State("line-1", StateConnected, nil) // no change of state: since stays
	if d := info(); !d.StateSince.Equal(t1) || !d.LastSeen.Equal(t2) {
		t.Fatalf("connected again: %+v", d)
	}
	t3 := clock.Advance(time.Second)
	mustPublish(t, in, reading("line-1", "temperature", Double(20)))
	if d := info(); !d.LastSeen.Equal(t3) || d.Messages != 1 {
		t.Fatalf("after a reading: %+v", d)
	}
	t4 := clock.Advance(time.Second)
	in.State("line-1", StateError, errors.New("connection reset"))
	if d := info(); d.State != StateError || !d.StateSince.Equal(t4) || d.LastError != "connection reset" || !d.LastSeen.Equal(t3) {
		t.Fatalf("error: %+v", d)
	}
	if gauge("connected") != 0 || gauge("error") != 1 || gauge("connecting") != 0 {
		t.Errorf("edgegate_devices: connected %v error %v connecting %v", gauge("connected"), gauge("error"), gauge("connecting"))
	}
	t5 := clock.Advance(time.Second)
	in.State("line-1", StateDisconnected, nil)
	if d := info(); d.State != StateDisconnected || !d.StateSince.Equal(t5) || d.LastError != "connection reset" {
		t.Fatalf("disconnected: %+v", d)
	}
	if gauge("error") != 0 || gauge("disconnected") != 1 {
		t.Errorf("edgegate_devices: error %v disconnected %v", gauge("error"), gauge("disconnected"))
	}
	in.State("line-1", StateConnected, nil)
	if d := info(); d.State != StateConnected || d.LastError != "" {
		t.Fatalf("recovered: %+v", d)
	}
}

func TestInvalidPayloads(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{}, reg)
	defer h.Close()
	in := h.Ingest(ProtocolCoAP)
	in.Invalid("sensor-7", errors.New("bad CBOR"))
	in.Invalid("sensor-7", errors.New("bad JSON"))
	in.Invalid("sensor-7", nil) // counted, and the last error kept
	d := h.Devices(nil)
	if len(d) != 1 || d[0].Errors != 3 || d[0].LastError != "bad JSON" || d[0].Messages != 0 || d[0].Protocol != ProtocolCoAP {
		t.Fatalf("registry: %+v", d)
	}
	if v, _ := metricValue(t, reg, "edgegate_decode_errors_total", map[string]string{"device": "sensor-7", "protocol": "coap"}); v != 3 {
		t.Errorf("edgegate_decode_errors_total = %v, want 3", v)
	}
	if h.LastSequence() != 0 {
		t.Error("an invalid payload was published")
	}
}

func TestDeclareAndDevices(t *testing.T) {
	h := newHub(t, HubConfig{})
	mb, mqtt := h.Ingest(ProtocolModbus), h.Ingest(ProtocolMQTT)
	if err := mb.Declare("boiler-1", "temperature", "setpoint", "alarm"); err != nil {
		t.Fatal(err)
	}
	if err := mb.Declare("boiler-0"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"fryer-2", "fryer-10", "fryer-1"} {
		mustPublish(t, mqtt, reading(id, "oil_temp", Double(180)), reading(id, "basket", Bool(true)))
	}
	if !h.HasPoint("boiler-1", "setpoint") || h.HasPoint("boiler-1", "pressure") || h.HasPoint("nobody", "setpoint") {
		t.Error("HasPoint")
	}
	list := func(f Filter) string {
		m, err := f.Compile()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range h.Devices(m) {
			out = append(out, fmt.Sprintf("%s(%s,%d)%v", d.ID, d.Protocol, d.Messages, d.Points))
		}
		return strings.Join(out, " ")
	}
	tests := []struct {
		f    Filter
		want string
	}{
		{Filter{}, "boiler-0(modbus,0)[] boiler-1(modbus,0)[alarm setpoint temperature] fryer-1(mqtt,2)[basket oil_temp] fryer-10(mqtt,2)[basket oil_temp] fryer-2(mqtt,2)[basket oil_temp]"},
		{Filter{Devices: []string{"fryer-?"}}, "fryer-1(mqtt,2)[basket oil_temp] fryer-2(mqtt,2)[basket oil_temp]"},
		{Filter{Protocols: []Protocol{ProtocolModbus}}, "boiler-0(modbus,0)[] boiler-1(modbus,0)[alarm setpoint temperature]"},
		{Filter{Devices: []string{"boiler-1", "fryer-10"}}, "boiler-1(modbus,0)[alarm setpoint temperature] fryer-10(mqtt,2)[basket oil_temp]"},
		{Filter{Devices: []string{"oven-*"}}, ""},
	}
	for _, tt := range tests {
		if got := list(tt.f); got != tt.want {
			t.Errorf("Devices(%+v):\n got %s\nwant %s", tt.f, got, tt.want)
		}
	}
	// nil matches all, too.
	if n := len(h.Devices(nil)); n != 5 {
		t.Errorf("Devices(nil): %d devices", n)
	}
	// The snapshot is the caller's.
	d := h.Devices(nil)
	d[1].Points[0] = "changed"
	if h.Devices(nil)[1].Points[0] != "alarm" {
		t.Error("changing a snapshot changed the registry")
	}
}

type writeCall struct {
	device, point string
	v             Value
}

type fakeAdapter struct {
	mu     sync.Mutex
	writes []writeCall
	err    error
}

func (a *fakeAdapter) Write(ctx context.Context, device, point string, v Value) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.writes = append(a.writes, writeCall{device, point, v})
	return nil
}

func (a *fakeAdapter) Read(ctx context.Context, device, point string) (*Message, error) {
	if a.err != nil {
		return nil, a.err
	}
	return &Message{Device: device, Point: point, Value: String("from the device")}, nil
}

var (
	_ Writer = (*fakeAdapter)(nil)
	_ Reader = (*fakeAdapter)(nil)
)

func TestWriteAndReadRouting(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{}, reg)
	defer h.Close()
	ctx := context.Background()
	if err := h.Ingest(ProtocolModbus).Declare("boiler-1", "setpoint"); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, h.Ingest(ProtocolMQTT), reading("fryer-1", "setpoint", Double(180)))

	if err := h.Write(ctx, "nobody", "setpoint", Int(1)); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Write to an unknown device: %v, want ErrUnknownDevice", err)
	}
	if err := h.Write(ctx, "boiler-1", "setpoint", Int(1)); !errors.Is(err, ErrNoWriter) {
		t.Fatalf("Write without a writer: %v, want ErrNoWriter", err)
	}
	if _, err := h.ReadDevice(ctx, "nobody", "setpoint"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("ReadDevice of an unknown device: %v, want ErrUnknownDevice", err)
	}
	if _, err := h.ReadDevice(ctx, "boiler-1", "setpoint"); !errors.Is(err, ErrNoReader) {
		t.Fatalf("ReadDevice without a reader: %v, want ErrNoReader", err)
	}

	modbus, mqttA := &fakeAdapter{}, &fakeAdapter{}
	h.SetWriter(ProtocolModbus, modbus)
	h.SetReader(ProtocolModbus, modbus)
	h.SetWriter(ProtocolMQTT, mqttA)
	if err := h.Write(ctx, "boiler-1", "setpoint", Double(65)); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(ctx, "boiler-1", "setpoint", Double(66)); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(ctx, "fryer-1", "setpoint", Double(175)); err != nil {
		t.Fatal(err)
	}
	if len(modbus.writes) != 2 || len(mqttA.writes) != 1 {
		t.Fatalf("writes: modbus %v, mqtt %v", modbus.writes, mqttA.writes)
	}
	if w := modbus.writes[0]; w.device != "boiler-1" || w.point != "setpoint" || !w.v.Equal(Double(65)) {
		t.Errorf("modbus write %s/%s = %#v", w.device, w.point, w.v)
	}
	if w := mqttA.writes[0]; w.device != "fryer-1" || !w.v.Equal(Double(175)) {
		t.Errorf("mqtt write %s/%s = %#v", w.device, w.point, w.v)
	}
	m, err := h.ReadDevice(ctx, "boiler-1", "setpoint")
	if err != nil || m.Device != "boiler-1" || !m.Value.Equal(String("from the device")) {
		t.Fatalf("ReadDevice = %+v, %v", m, err)
	}
	if _, err := h.ReadDevice(ctx, "fryer-1", "setpoint"); !errors.Is(err, ErrNoReader) {
		t.Fatalf("ReadDevice of an mqtt device: %v, want ErrNoReader", err)
	}

	// An adapter's error comes back as it is, and is not counted as a write.
	refused := errors.New("illegal data value")
	modbus.err = refused
	if err := h.Write(ctx, "boiler-1", "setpoint", Double(1e9)); !errors.Is(err, refused) {
		t.Fatalf("Write refused by the adapter: %v", err)
	}
	if _, err := h.ReadDevice(ctx, "boiler-1", "setpoint"); !errors.Is(err, refused) {
		t.Fatalf("ReadDevice refused by the adapter: %v", err)
	}
	writes := map[string]uint64{}
	for _, d := range h.Devices(nil) {
		writes[d.ID] = d.Writes
	}
	if writes["boiler-1"] != 2 || writes["fryer-1"] != 1 {
		t.Fatalf("write counts: %v", writes)
	}
	if v, _ := metricValue(t, reg, "edgegate_writes_total", map[string]string{"device": "boiler-1", "protocol": "modbus"}); v != 2 {
		t.Errorf("edgegate_writes_total{device=boiler-1} = %v, want 2", v)
	}
}

func TestIngestLatest(t *testing.T) {
	h := NewHub(HubConfig{}, nil)
	defer h.Close()
	mq, mb := h.Ingest(ProtocolMQTT), h.Ingest(ProtocolModbus)
	if err := mq.Publish(context.Background(), &Message{Device: "d", Point: "p", Value: Int(7)}); err != nil {
		t.Fatal(err)
	}
	if m, ok := mq.Latest("d", "p"); !ok || !m.Value.Equal(Int(7)) {
		t.Fatalf("Latest = %v, %v", m, ok)
	}
	if _, ok := mb.Latest("d", "p"); ok {
		t.Fatal("another protocol's point was served")
	}
	if _, ok := mq.Latest("d", "q"); ok {
		t.Fatal("an unknown point was served")
	}
}
