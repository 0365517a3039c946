package mqtt

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/sparkplug"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// inbox collects what a 3.1.1 client receives.
type inbox struct {
	mu  sync.Mutex
	got []paho3.Message
}

func (b *inbox) add(_ paho3.Client, m paho3.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, m)
}

// wait returns the first message on topic (and its position) once it came.
func (b *inbox) wait(t *testing.T, topic string, cond func(paho3.Message) bool) paho3.Message {
	t.Helper()
	var found paho3.Message
	waitFor(t, "a message on "+topic, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, m := range b.got {
			if m.Topic() == topic && (cond == nil || cond(m)) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

func subscribe3(t *testing.T, c paho3.Client, filter string, b *inbox) {
	t.Helper()
	tok := c.Subscribe(filter, 1, b.add)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

func spPayload(t *testing.T, p *sparkplug.Payload) []byte {
	t.Helper()
	b, err := sparkplug.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSparkplugThroughBroker: an edge node (paho, MQTT 3.1.1, NDEATH as its will)
// publishes births and data through the real embedded broker; the hub's stream gets
// typed values; a seq gap brings an NCMD rebirth request; a gateway write is a DCMD;
// the connection dropping publishes the NDEATH, which disconnects the devices and
// marks their points BAD.
func TestSparkplugThroughBroker(t *testing.T) {
	cfg := testConfig()
	cfg.Sparkplug.Enabled = true
	e := start(t, cfg)

	// A Sparkplug application sees the host's retained STATE.
	var app inbox
	subscribe3(t, mustClient3(t, e.addr(), "app", "", ""), "spBv1.0/STATE/+", &app)
	st := app.wait(t, "spBv1.0/STATE/edgegate", nil)
	if !st.Retained() || !strings.HasPrefix(string(st.Payload()), `{"online":true,"timestamp":`) {
		t.Fatalf("STATE: retained %v, %s", st.Retained(), st.Payload())
	}

	// The edge node, with its NDEATH as the will.
	death := spPayload(t, &sparkplug.Payload{Metrics: []sparkplug.Metric{{Name: "bdSeq", Datatype: pb.DataType_Int64, Value: bridge.Int(1)}}})
	var conn net.Conn
	var connMu sync.Mutex
	opts := paho3.NewClientOptions().AddBroker("tcp://"+e.addr()).SetClientID("edge-n1").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(waitTimeout).SetCleanSession(true).
		SetBinaryWill("spBv1.0/plant/NDEATH/n1", death, 1, false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho3.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, waitTimeout)
			connMu.Lock()
			conn = c
			connMu.Unlock()
			return c, err
		})
	node := paho3.NewClient(opts)
	if tok := node.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { node.Disconnect(0) })
	var cmds inbox
	subscribe3(t, node, "spBv1.0/plant/NCMD/n1", &cmds)
	subscribe3(t, node, "spBv1.0/plant/DCMD/n1/+", &cmds)

	ts := time.UnixMilli(1700000000000)
	publish3(t, node, "spBv1.0/plant/NBIRTH/n1", 1, spPayload(t, &sparkplug.Payload{Timestamp: ts, HasSeq: true, Seq: 0, Metrics: []sparkplug.Metric{
		{Name: "bdSeq", Datatype: pb.DataType_Int64, Value: bridge.Int(1)},
		{Name: "Temp", Alias: 1, HasAlias: true, Datatype: pb.DataType_Double, Value: bridge.Double(20.5)},
	}}))
	publish3(t, node, "spBv1.0/plant/DBIRTH/n1/pump", 1, spPayload(t, &sparkplug.Payload{Timestamp: ts, HasSeq: true, Seq: 1, Metrics: []sparkplug.Metric{
		{Name: "Motor/Speed", Alias: 2, HasAlias: true, Datatype: pb.DataType_Int16, Value: bridge.Int(-40)},
		{Name: "Running", Alias: 3, HasAlias: true, Datatype: pb.DataType_Boolean, Value: bridge.Bool(true)},
	}}))
	publish3(t, node, "spBv1.0/plant/DDATA/n1/pump", 1, spPayload(t, &sparkplug.Payload{Timestamp: ts.Add(time.Second), HasSeq: true, Seq: 2, Metrics: []sparkplug.Metric{
		{Alias: 2, HasAlias: true, Datatype: pb.DataType_Int16, Value: bridge.Int(1500)},
	}}))
	got := e.next(5)
	want := []struct {
		device, point string
		v             bridge.Value
	}{
		{"n1", "bdSeq", bridge.Int(1)}, {"n1", "Temp", bridge.Double(20.5)},
		{"n1.pump", "Motor.Speed", bridge.Int(-40)}, {"n1.pump", "Running", bridge.Bool(true)},
		{"n1.pump", "Motor.Speed", bridge.Int(1500)},
	}
	for i, w := range want {
		m := got[i]
		if m.Device != w.device || m.Point != w.point || !m.Value.Equal(w.v) || m.Quality != bridge.QualityGood ||
			m.Protocol != bridge.ProtocolMQTT || m.Labels[labelSparkplugGroup] != "plant" {
			t.Errorf("message %d: %s/%s = %#v (%v) labels %v; want %s/%s = %#v", i, m.Device, m.Point, m.Value, m.Quality, m.Labels, w.device, w.point, w.v)
		}
	}
	if !got[4].SourceTime.Equal(ts.Add(time.Second)) {
		t.Errorf("DDATA source time %v", got[4].SourceTime)
	}
	if s := e.device("n1.pump").State; s != bridge.StateConnected {
		t.Errorf("n1.pump is %v", s)
	}
	e.waitFor("3 acks written by the acker", func() bool { return e.counter(e.a.metrics.acks.written) >= 3 })

	// A seq gap: the node is asked for a rebirth.
	publish3(t, node, "spBv1.0/plant/NDATA/n1", 1, spPayload(t, &sparkplug.Payload{HasSeq: true, Seq: 9, Metrics: []sparkplug.Metric{
		{Alias: 1, HasAlias: true, Datatype: pb.DataType_Double, Value: bridge.Double(21)},
	}}))
	e.next(1)
	req := cmds.wait(t, "spBv1.0/plant/NCMD/n1", nil)
	p, err := sparkplug.Decode(req.Payload(), 0)
	if err != nil || len(p.Metrics) != 1 || p.Metrics[0].Name != sparkplug.RebirthMetric {
		t.Fatalf("rebirth request: %+v, %v", p, err)
	}
	if n := e.counter(e.a.sp.m.rebirths.WithLabelValues(rebirthSeqGap)); n != 1 {
		t.Errorf("rebirth requests for a seq gap: %v", n)
	}

	// A write to a device metric is a DCMD with the BIRTH's name and datatype.
	if err := e.hub.Write(context.Background(), "n1.pump", "Motor.Speed", bridge.Int(1200)); err != nil {
		t.Fatalf("write: %v", err)
	}
	cmd := cmds.wait(t, "spBv1.0/plant/DCMD/n1/pump", nil)
	if p, err = sparkplug.Decode(cmd.Payload(), 0); err != nil || len(p.Metrics) != 1 {
		t.Fatalf("DCMD: %+v, %v", p, err)
	}
	if v, err := p.Metrics[0].Decoded(); p.Metrics[0].Name != "Motor/Speed" || p.Metrics[0].Datatype != pb.DataType_Int16 || err != nil || !v.Equal(bridge.Int(1200)) {
		t.Errorf("DCMD metric %+v = %#v, %v", p.Metrics[0], v, err)
	}
	if err := e.hub.Write(context.Background(), "n1.pump", "Nope", bridge.Int(1)); err == nil {
		t.Error("a write to a metric no BIRTH declared was accepted")
	}

	// The connection drops: the broker publishes the NDEATH will.
	connMu.Lock()
	_ = conn.Close()
	connMu.Unlock()
	bad := e.next(4) // n1's bdSeq and Temp, n1.pump's Motor.Speed and Running
	for _, m := range bad {
		if m.Quality != bridge.QualityBad {
			t.Errorf("after NDEATH: %s/%s quality %v", m.Device, m.Point, m.Quality)
		}
	}
	e.waitFor("n1 and n1.pump disconnected", func() bool {
		return e.device("n1").State == bridge.StateDisconnected && e.device("n1.pump").State == bridge.StateDisconnected
	})
}

// TestSparkplugACL: the access lists apply to spBv1.0 topics like any other.
func TestSparkplugACL(t *testing.T) {
	cfg := testConfig()
	cfg.AllowAnonymous = false
	cfg.Users = []UserConfig{
		{Username: "n1", PasswordHash: hash(t, "pw"), Publish: []string{"spBv1.0/plant/+/n1", "spBv1.0/plant/+/n1/#"}},
	}
	cfg.Sparkplug.Enabled = true
	e := start(t, cfg)
	c := mustClient5(t, e.addr(), "", "n1", "pw")
	birth := func(node string) string {
		return string(spPayload(t, &sparkplug.Payload{HasSeq: true, Metrics: []sparkplug.Metric{
			{Name: "x", Datatype: pb.DataType_Int32, Value: bridge.Int(1)},
		}}))
	}
	resp, err := c.publish(t, "spBv1.0/plant/NBIRTH/n2", 1, birth("n2"))
	if err == nil || resp == nil || resp.ReasonCode != 0x87 {
		t.Errorf("NBIRTH of another node: %+v, %v; want PUBACK 0x87", resp, err)
	}
	if _, err := c.publish(t, "spBv1.0/plant/NBIRTH/n1", 1, birth("n1")); err != nil {
		t.Fatalf("own NBIRTH: %v", err)
	}
	if m := e.next(1)[0]; m.Device != "n1" {
		t.Errorf("got %s", m.Device)
	}
	// A bad payload is refused like a bad JSON one: PUBACK 0x99.
	resp, err = c.publish(t, "spBv1.0/plant/NDATA/n1", 1, "not protobuf")
	if err == nil || resp == nil || resp.ReasonCode != 0x99 {
		t.Errorf("bad payload: %+v, %v; want PUBACK 0x99", resp, err)
	}
	if n := e.counter(e.a.sp.m.badPayloads); n != 1 {
		t.Errorf("sparkplug bad payloads %v", n)
	}
}

// TestSparkplugAckAfterDisk: a QoS 1 Sparkplug publish is acknowledged only once its
// readings are on disk, like any reading (ack.go).
func TestSparkplugAckAfterDisk(t *testing.T) {
	cfg := testConfig()
	cfg.Sparkplug.Enabled = true
	e, j := durableEnv(t, cfg)
	node := mustClient3(t, e.addr(), "edge-n1", "", "")
	tok := node.Publish("spBv1.0/plant/NBIRTH/n1", 1, false, spPayload(t, &sparkplug.Payload{HasSeq: true, Metrics: []sparkplug.Metric{
		{Name: "Temp", Datatype: pb.DataType_Float, Value: bridge.Double(1.5)},
	}}))
	if m := e.next(1)[0]; m.Device != "n1" || !m.Value.Equal(bridge.Double(1.5)) {
		t.Fatalf("got %s/%s = %#v", m.Device, m.Point, m.Value)
	}
	// Visible, not yet durable: no PUBACK.
	if tok.WaitTimeout(200 * time.Millisecond) {
		t.Fatal("NBIRTH acknowledged before its reading was on disk")
	}
	j.release(0)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("NBIRTH not acknowledged once on disk: %v", tok.Error())
	}
}

// TestSparkplugStateOfflineAtStop: the host's retained STATE is online while the
// broker serves and offline once the gateway shuts down, delivered to a subscriber
// before the broker says goodbye.
func TestSparkplugStateOfflineAtStop(t *testing.T) {
	cfg := testConfig()
	cfg.Sparkplug.Enabled = true
	cfg.Sparkplug.HostID = "scada-1"
	ad, err := cfg.New(protocols.Env{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a := ad.(*Adapter)
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	defer hub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, hub.Ingest(bridge.ProtocolMQTT)) }()
	select {
	case <-a.Ready():
	case <-time.After(waitTimeout):
		t.Fatal("adapter not ready")
	}
	var app inbox
	c, err := client3(t, a.Addrs()[0].String(), "app", "", "")
	if err != nil {
		t.Fatal(err)
	}
	subscribe3(t, c, "spBv1.0/STATE/scada-1", &app)
	app.wait(t, "spBv1.0/STATE/scada-1", func(m paho3.Message) bool { return strings.Contains(string(m.Payload()), `"online":true`) })
	cancel()
	app.wait(t, "spBv1.0/STATE/scada-1", func(m paho3.Message) bool {
		return strings.HasPrefix(string(m.Payload()), `{"online":false,"timestamp":`)
	})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
}
