package mqtt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edgegate/edgegate/bridge"
)

func TestPublish311TypedValues(t *testing.T) {
	e := start(t, testConfig())
	c := mustClient3(t, e.addr(), "", "", "")
	cases := []struct {
		point, payload string
		want           bridge.Value
	}{
		{"temp", "21.5", bridge.Double(21.5)},
		{"count", "42", bridge.Int(42)},
		{"big", "18446744073709551615", bridge.Uint(18446744073709551615)},
		{"open", "true", bridge.Bool(true)},
		{"state", `"running"`, bridge.String("running")},
		{"note", "hello world", bridge.String("hello world")},
		{"raw", "\xff\xfe", bridge.Bytes([]byte{0xff, 0xfe})},
	}
	for i, c3 := range cases {
		publish3(t, c, "devices/boiler-1/"+c3.point, byte(i%3), c3.payload)
	}
	got := e.next(len(cases))
	for i, m := range got {
		want := cases[i]
		if m.Device != "boiler-1" || m.Point != want.point || !m.Value.Equal(want.want) {
			t.Errorf("message %d: %s/%s = %#v, want boiler-1/%s = %#v", i, m.Device, m.Point, m.Value, want.point, want.want)
		}
		if m.Protocol != bridge.ProtocolMQTT || m.Labels[labelTopic] != "devices/boiler-1/"+want.point {
			t.Errorf("message %d: protocol %v labels %v", i, m.Protocol, m.Labels)
		}
	}
}

func TestPublishV5SourceTimeAndObject(t *testing.T) {
	e := start(t, testConfig())
	c := mustClient5(t, e.addr(), "", "", "")
	if _, err := c.publish(t, "devices/fryer-2/oil_temp", 1, `{"value": 180.5, "ts": "2024-05-01T12:00:00Z", "unit": "°C"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.publish(t, "devices/fryer-2", 2, `{"ts": "2024-05-01T12:00:01Z", "temp": 21.5, "hum": {"value": 40, "unit": "%", "quality": "uncertain"}}`); err != nil {
		t.Fatal(err)
	}
	got := e.next(3)
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if m := got[0]; m.Point != "oil_temp" || !m.Value.Equal(bridge.Double(180.5)) || !m.SourceTime.Equal(ts) || m.Unit != "°C" {
		t.Errorf("reading object: %+v", m)
	}
	if m := got[1]; m.Point != "temp" || !m.Value.Equal(bridge.Double(21.5)) || !m.SourceTime.Equal(ts.Add(time.Second)) {
		t.Errorf("object point temp: %+v", m)
	}
	if m := got[2]; m.Point != "hum" || !m.Value.Equal(bridge.Int(40)) || m.Unit != "%" || m.Quality != bridge.QualityUncertain {
		t.Errorf("object point hum: %+v", m)
	}
	if got[1].Sequence+1 != got[2].Sequence {
		t.Errorf("an object's points are not one batch: sequences %d, %d", got[1].Sequence, got[2].Sequence)
	}
	if got[1].Labels[labelTopic] != "devices/fryer-2" {
		t.Errorf("object topic label: %v", got[1].Labels)
	}
}

func TestConfiguredDevice(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "pos-1", Protocol: "mqtt", Labels: map[string]string{"site": "0042"},
		Points: []PointConfig{{Name: "drawer", Priority: "critical"}, {Name: "temp", Unit: "°C"}}}}
	e := start(t, cfg)
	d := e.device("pos-1")
	if d.State != bridge.StateDisconnected || len(d.Points) != 2 {
		t.Fatalf("declared device: %+v", d)
	}
	c := mustClient3(t, e.addr(), "", "", "")
	publish3(t, c, "devices/pos-1/drawer", 1, "true")
	publish3(t, c, "devices/pos-1/temp", 1, "20")
	publish3(t, c, "devices/pos-1/temp", 1, `{"value": 68, "unit": "°F"}`)
	got := e.next(3)
	if m := got[0]; m.Priority != bridge.PriorityCritical || m.Labels["site"] != "0042" || m.Labels[labelTopic] != "devices/pos-1/drawer" {
		t.Errorf("drawer: priority %v labels %v", m.Priority, m.Labels)
	}
	if m := got[1]; m.Unit != "°C" || m.Priority != bridge.PriorityNormal {
		t.Errorf("temp: unit %q priority %v", m.Unit, m.Priority)
	}
	if m := got[2]; m.Unit != "°F" {
		t.Errorf("a unit in the payload wins over the configured one: %q", m.Unit)
	}
}

func TestTopicsOutsideTheMappingAreBrokered(t *testing.T) {
	e := start(t, testConfig())
	sub := mustClient5(t, e.addr(), "", "", "")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := mustClient3(t, e.addr(), "", "", "")
	publish3(t, pub, "other/app/topic", 1, "not a reading")
	publish3(t, pub, "devices/x/y/set", 1, "42")    // the write topic is never a reading
	publish3(t, pub, "devices/x/y/z", 1, "1")       // too deep for the pattern
	publish3(t, pub, "devices/boiler/temp", 1, "1") // a reading, and brokered too
	for _, want := range []string{"other/app/topic", "devices/x/y/set", "devices/x/y/z", "devices/boiler/temp"} {
		select {
		case p := <-sub.received:
			if p.Topic != want {
				t.Errorf("subscriber got %s, want %s", p.Topic, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("subscriber did not get %s", want)
		}
	}
	got := e.next(1)
	if got[0].Device != "boiler" || got[0].Point != "temp" {
		t.Errorf("the only reading should be boiler/temp, got %s/%s", got[0].Device, got[0].Point)
	}
}

func TestWrite(t *testing.T) {
	e := start(t, testConfig())
	dev := mustClient5(t, e.addr(), "valve-3", "", "")
	// The device is known to the hub once it has published.
	if _, err := dev.publish(t, "devices/valve-3/setpoint", 1, "10"); err != nil {
		t.Fatal(err)
	}
	e.next(1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := e.hub.Write(ctx, "valve-3", "setpoint", bridge.Double(12.5)); !errors.Is(err, ErrNoSubscriber) {
		t.Errorf("write with no subscriber: %v, want ErrNoSubscriber", err)
	}
	if _, err := dev.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/valve-3/+/set", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	values := []bridge.Value{bridge.Double(12.5), bridge.Int(-3), bridge.Bool(false), bridge.String("auto"), bridge.Bytes([]byte{0, 1, 2})}
	want := []string{"12.5", "-3", "false", "auto", "\x00\x01\x02"}
	for _, v := range values {
		if err := e.hub.Write(ctx, "valve-3", "setpoint", v); err != nil {
			t.Fatalf("write %#v: %v", v, err)
		}
	}
	for i, w := range want {
		select {
		case p := <-dev.received:
			if p.Topic != "devices/valve-3/setpoint/set" || string(p.Payload) != w {
				t.Errorf("write %d: got %s %q, want %q", i, p.Topic, p.Payload, w)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("write %d did not arrive", i)
		}
	}
	if err := e.a.Write(ctx, "valve-3", "a/b", bridge.Int(1)); err == nil {
		t.Error("write to a point name with a slash was accepted")
	}
	// Writes are not readings: the hub saw only the first publish.
	if d := e.device("valve-3"); d.Messages != 1 {
		t.Errorf("device has %d messages, want 1", d.Messages)
	}
}

func TestDeviceStates(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "sensor-9", Protocol: "mqtt"}}
	e := start(t, cfg)
	state := func(id string) bridge.DeviceState { return e.device(id).State }

	// A client whose id is a configured device connects it.
	c9, _, err := connect5(t, e.addr(), "sensor-9", "", "")
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("sensor-9 connected", func() bool { return state("sensor-9") == bridge.StateConnected })

	// A client that publishes for two devices speaks for both; another client shares one.
	a := mustClient5(t, e.addr(), "gw-a", "", "")
	b := mustClient5(t, e.addr(), "gw-b", "", "")
	for _, p := range []struct {
		c     *client5
		topic string
	}{{a, "devices/d1/x"}, {a, "devices/d2/x"}, {b, "devices/d2/y"}} {
		if _, err := p.c.publish(t, p.topic, 1, "1"); err != nil {
			t.Fatal(err)
		}
	}
	e.next(3)
	if state("d1") != bridge.StateConnected || state("d2") != bridge.StateConnected {
		t.Fatalf("states d1 %v d2 %v", state("d1"), state("d2"))
	}
	_ = a.Disconnect(&paho.Disconnect{})
	e.waitFor("d1 disconnected", func() bool { return state("d1") == bridge.StateDisconnected })
	if state("d2") != bridge.StateConnected {
		t.Errorf("d2 is %v although gw-b still speaks for it", state("d2"))
	}
	_ = b.Disconnect(&paho.Disconnect{})
	e.waitFor("d2 disconnected", func() bool { return state("d2") == bridge.StateDisconnected })
	_ = c9.Disconnect(&paho.Disconnect{})
	e.waitFor("sensor-9 disconnected", func() bool { return state("sensor-9") == bridge.StateDisconnected })
}

func TestSessionTakeoverKeepsDeviceConnected(t *testing.T) {
	e := start(t, testConfig())
	old := mustClient5(t, e.addr(), "same-id", "", "")
	if _, err := old.publish(t, "devices/t1/x", 1, "1"); err != nil {
		t.Fatal(err)
	}
	e.next(1)
	// The same client id connects again (a device rebooting): mochi takes the
	// session over and disconnects the old connection after the new one connected.
	fresh := mustClient5(t, e.addr(), "same-id", "", "")
	if _, err := fresh.publish(t, "devices/t1/x", 1, "2"); err != nil {
		t.Fatal(err)
	}
	e.next(1)
	select {
	case <-old.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the old connection was not closed")
	}
	if s := e.device("t1").State; s != bridge.StateConnected {
		t.Errorf("t1 is %v after a takeover, want connected", s)
	}
}

func TestBadPayloads(t *testing.T) {
	e := start(t, testConfig())
	other := mustClient3(t, e.addr(), "", "", "")
	c5 := mustClient5(t, e.addr(), "", "", "")
	c3 := mustClient3(t, e.addr(), "", "", "")

	// v5 QoS 1 and 2: a negative ack with 0x99, and the client goes on.
	resp, err := c5.publish(t, "devices/bad-1/temp", 1, `{"value": }`)
	if err == nil || resp == nil || resp.ReasonCode != 0x99 {
		t.Errorf("v5 QoS 1 bad payload: %+v, %v; want PUBACK 0x99", resp, err)
	}
	resp, err = c5.publish(t, "devices/bad-1/temp", 2, `[1, 2]`)
	if resp == nil || resp.ReasonCode != 0x99 {
		t.Errorf("v5 QoS 2 bad payload: %+v, %v; want PUBREC 0x99", resp, err)
	}
	if _, err := c5.publish(t, "devices/bad-1", 0, `{"a": null}`); err != nil {
		t.Errorf("v5 QoS 0 bad payload: %v", err)
	}
	// 3.1.1 has no negative ack: acknowledged and dropped.
	publish3(t, c3, "devices/bad-1/temp", 1, `{"value": 1, "unit": 5}`)
	publish3(t, c3, "devices/bad-1", 2, `21.5`)

	e.waitFor("5 bad payloads counted", func() bool { return e.counter(e.a.metrics.badPayloads) == 5 })
	if d := e.device("bad-1"); d.Errors != 5 || d.LastError == "" {
		t.Errorf("device bad-1: %d errors, last %q; want 5", d.Errors, d.LastError)
	}
	// Everyone goes on: the same clients and another one still publish.
	if _, err := c5.publish(t, "devices/bad-1/temp", 1, "1"); err != nil {
		t.Fatal(err)
	}
	publish3(t, c3, "devices/bad-1/temp", 1, "2")
	publish3(t, other, "devices/good/temp", 1, "3")
	got := e.next(3)
	for i, want := range []int64{1, 2, 3} {
		if v, _ := got[i].Value.AsInt(); v != want {
			t.Errorf("message %d after bad payloads: %#v", i, got[i].Value)
		}
	}
}

func TestBridgeLimitRefusal(t *testing.T) {
	cfg := testConfig()
	e := start(t, cfg)
	// Fill the hub's registry from the other side: a device the hub gives another protocol.
	if err := e.hub.Ingest(bridge.ProtocolCoAP).Declare("coap-dev", "x"); err != nil {
		t.Fatal(err)
	}
	c5 := mustClient5(t, e.addr(), "", "", "")
	resp, err := c5.publish(t, "devices/coap-dev/x", 1, "1")
	if err == nil || resp == nil || resp.ReasonCode < 0x80 {
		t.Errorf("publish for a device of another protocol: %+v, %v; want a negative PUBACK", resp, err)
	}
	if _, err := c5.publish(t, "devices/mine/x", 1, "1"); err != nil {
		t.Fatalf("the client cannot go on: %v", err)
	}
	if m := e.next(1)[0]; m.Device != "mine" {
		t.Errorf("got %s", m.Device)
	}
}

// rawConnectWill is a 3.1.1 CONNECT, clean session, with a QoS 1 will.
func rawConnectWill(id, topic, msg string) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02 | 0x04 | 0x08, 0, 30}
	body = append(body, str(id)...)
	body = append(body, str(topic)...)
	body = append(body, str(msg)...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func TestWillIsAReading(t *testing.T) {
	e := start(t, testConfig())
	conn, r := rawConn(t, e.addr())
	if _, err := conn.Write(rawConnectWill("w-1", "devices/w-1/online", "false")); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := readPacket(r); err != nil || typ != 0x20 || body[1] != 0 {
		t.Fatalf("CONNACK %#x %v: %v", typ, body, err)
	}
	_ = conn.Close() // without DISCONNECT: the will is published
	m := e.next(1)[0]
	if m.Device != "w-1" || m.Point != "online" || !m.Value.Equal(bridge.Bool(false)) {
		t.Errorf("will reading: %s/%s = %#v", m.Device, m.Point, m.Value)
	}
}

// TestLabelsPerTopic: the messages of a connection share a labels map while they
// come on one topic, and a message on another topic or after a reload has its own,
// with the topic and the device labels of its config.
func TestLabelsPerTopic(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "pos-1", Protocol: "mqtt", Labels: map[string]string{"site": "0042"}}}
	e := start(t, cfg)
	c := mustClient3(t, e.addr(), "", "", "")
	publish3(t, c, "devices/pos-1/temp", 1, "20")
	publish3(t, c, "devices/pos-1/temp", 1, "21")
	publish3(t, c, "devices/pos-1/hum", 1, "40")
	publish3(t, c, "devices/pos-1/temp", 1, "22")
	next := *cfg
	next.Devices = []DeviceConfig{{ID: "pos-1", Protocol: "mqtt", Labels: map[string]string{"site": "0043"}}}
	if err := e.a.Reconfigure(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	publish3(t, c, "devices/pos-1/temp", 1, "23")
	got := e.next(5)
	wants := []struct{ site, topic string }{
		{"0042", "devices/pos-1/temp"}, {"0042", "devices/pos-1/temp"}, {"0042", "devices/pos-1/hum"},
		{"0042", "devices/pos-1/temp"}, {"0043", "devices/pos-1/temp"},
	}
	for i, want := range wants {
		if l := got[i].Labels; len(l) != 2 || l["site"] != want.site || l[labelTopic] != want.topic {
			t.Errorf("message %d: labels %v, want site %s and topic %s", i, l, want.site, want.topic)
		}
	}
}
