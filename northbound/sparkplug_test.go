package northbound_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/mosquittotest"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/northbound"
	"github.com/edgegate/edgegate/protocols/sparkplug"
	spb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// spHost records what a Sparkplug host application would see.
type spHost struct {
	c  mqtt.Client
	mu sync.Mutex
	in []spMsg
}

type spMsg struct {
	topic sparkplug.Topic
	p     *sparkplug.Payload
}

func newSpHost(t *testing.T, b *mosquittotest.Broker) *spHost {
	t.Helper()
	h := &spHost{}
	// A persistent session that reconnects: what the node publishes while the
	// host is away after a broker restart waits for it.
	h.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("host").SetOrderMatters(true).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(20 * time.Millisecond).SetMaxReconnectInterval(100 * time.Millisecond).SetResumeSubs(true))
	if tok := h.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { h.c.Disconnect(0) })
	if tok := h.c.Subscribe("spBv1.0/stores/+/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		tp, err := sparkplug.ParseTopic(m.Topic())
		p, perr := sparkplug.Decode(m.Payload(), 0)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil || perr != nil {
			t.Errorf("%s: %v %v", m.Topic(), err, perr)
			return
		}
		if tp.Type == sparkplug.NCMD || tp.Type == sparkplug.DCMD {
			return // the host's own
		}
		h.in = append(h.in, spMsg{tp, p})
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return h
}

// since returns what arrived from index i on, once there are at least n.
func (h *spHost) wait(t *testing.T, from, n int) []spMsg {
	t.Helper()
	testwait.For(t, 10*time.Second, fmt.Sprintf("%d Sparkplug messages", n), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.in) >= from+n
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]spMsg(nil), h.in[from:]...)
}

// kinds says, per message, its type, device, seq and metrics (name or alias,
// historical mark).
func kinds(ms []spMsg) string {
	var out []string
	for _, m := range ms {
		s := string(m.topic.Type)
		if m.topic.Device != "" {
			s += " " + m.topic.Device
		}
		var names []string
		for _, x := range m.p.Metrics {
			n := x.Name
			if n == "" {
				n = fmt.Sprintf("#%d", x.Alias)
			}
			if x.IsHistorical {
				n += "(h)"
			}
			names = append(names, n)
		}
		out = append(out, fmt.Sprintf("%s seq %d [%s]", s, m.p.Seq, strings.Join(names, " ")))
	}
	return strings.Join(out, "; ")
}

// TestSparkplugEdgeNode: births with every matched point, the backlog as
// historical DDATA by alias, a new DBIRTH when a device gains a point, a rebirth
// on an NCMD, a DCMD as a write, the NDEATH with the session's bdSeq at a stop.
func TestSparkplugEdgeNode(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSite(t, t.TempDir())
	s.publish(4, 0) // fryer-1 temp, fryer-2 temp, fryer-1 oil, fryer-2 oil: before the session
	h := newSpHost(t, b)
	cfg := testConfig(b.URL())
	cfg.Topic = ""
	cfg.Format = northbound.FormatSparkplug
	cfg.Sparkplug = &northbound.Sparkplug{Group: "stores"}
	cfg.AcceptCommands = true
	l := s.link(cfg)
	stop := run(t, l)

	got := h.wait(t, 0, 7)
	want := "NBIRTH seq 0 [bdSeq Node Control/Rebirth]; DBIRTH fryer-1 seq 1 [oil temp]; DBIRTH fryer-2 seq 2 [oil temp]; " +
		"DDATA fryer-1 seq 3 [#1(h)]; DDATA fryer-2 seq 4 [#2(h)]; DDATA fryer-1 seq 5 [#3(h)]; DDATA fryer-2 seq 6 [#4(h)]"
	if k := kinds(got[:7]); k != want {
		t.Errorf("session start:\n got %s\nwant %s", k, want)
	}
	if got[0].topic.EdgeNode != gatewayID || got[0].topic.Group != "stores" {
		t.Errorf("NBIRTH topic %+v", got[0].topic)
	}
	if v, _ := got[0].p.Metrics[0].Decoded(); v.String() != "0" {
		t.Errorf("bdSeq %v", v)
	}

	// A point the device did not have: a new DBIRTH first.
	m := &bridge.Message{Device: "fryer-1", Point: "level", Value: bridge.Double(0.5)}
	if err := s.ingest.Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	got = h.wait(t, 7, 2)
	if k := kinds(got[:2]); k != "DBIRTH fryer-1 seq 7 [level oil temp]; DDATA fryer-1 seq 8 [#5]" {
		t.Errorf("new point: %s", k)
	}

	// A rebirth request.
	if tok := h.c.Publish("spBv1.0/stores/NCMD/"+gatewayID, 1, false, sparkplug.RebirthRequest(time.Now())); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	got = h.wait(t, 9, 3)
	if k := kinds(got[:3]); !strings.HasPrefix(k, "NBIRTH seq 0 [bdSeq Node Control/Rebirth]; DBIRTH fryer-1 seq 1 [level oil temp]; DBIRTH fryer-2 seq 2 [oil temp]") {
		t.Errorf("rebirth: %s", k)
	}
	alias := uint64(0)
	for _, x := range got[1].p.Metrics {
		if x.Name == "temp" {
			alias = x.Alias
		}
	}

	// A DCMD by alias is a write of fryer-1's temp.
	cmd, err := sparkplug.Encode(&sparkplug.Payload{Timestamp: time.Now(), Metrics: []sparkplug.Metric{
		{Alias: alias, HasAlias: true, Datatype: spb.DataType_Int64, Value: bridge.Int(42)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if tok := h.c.Publish("spBv1.0/stores/DCMD/"+gatewayID+"/fryer-1", 1, false, cmd); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testwait.For(t, 10*time.Second, "the DCMD's write", func() bool { return len(s.writer.list()) == 1 })
	if w := s.writer.list(); w[0] != "fryer-1/temp=42" {
		t.Errorf("writes %q", w)
	}

	// A device the hub sees disconnected: DDEATH; its next reading births it again.
	n := len(h.wait(t, 0, 12))
	s.ingest.State("fryer-2", bridge.StateDisconnected, nil)
	got = h.wait(t, n, 1)
	if k := kinds(got[:1]); k != "DDEATH fryer-2 seq 3 []" {
		t.Errorf("disconnected: %s", k)
	}
	s.ingest.State("fryer-2", bridge.StateConnected, nil)
	m = &bridge.Message{Device: "fryer-2", Point: "oil", Value: bridge.Int(170)}
	if err := s.ingest.Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	got = h.wait(t, n+1, 2)
	if k := kinds(got[:2]); k != "DBIRTH fryer-2 seq 4 [oil temp]; DDATA fryer-2 seq 5 [#"+fmt.Sprint(got[0].p.Metrics[0].Alias)+"]" {
		t.Errorf("back: %s", k)
	}

	// A clean stop: NDEATH with the session's bdSeq.
	n = len(h.wait(t, 0, n+3))
	stop()
	got = h.wait(t, n, 1)
	if got[0].topic.Type != sparkplug.NDEATH {
		t.Errorf("at the stop: %s", kinds(got))
	} else if v, _ := got[0].p.Metrics[0].Decoded(); v.String() != "0" {
		t.Errorf("NDEATH bdSeq %v", v)
	}
}

// TestSparkplugBrokerRestart: after the broker comes back, a new session
// (bdSeq one more) births again and sends what was published meanwhile as
// historical DDATA, in order.
func TestSparkplugBrokerRestart(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSite(t, t.TempDir())
	h := newSpHost(t, b)
	cfg := testConfig(b.URL())
	cfg.Topic = ""
	cfg.Format = northbound.FormatSparkplug
	cfg.Sparkplug = &northbound.Sparkplug{Group: "stores"}
	l := s.link(cfg)
	run(t, l)
	s.publish(2, 0)
	h.wait(t, 0, 5) // NBIRTH, DBIRTH fryer-1, DDATA, DBIRTH fryer-2, DDATA
	b.Stop()
	testwait.For(t, 10*time.Second, "the link to notice the outage", func() bool { return !l.Status().Connected })
	s.publish(4, 10)
	b.Start()
	// The host's persistent session gets what mosquitto had in flight to it
	// again, and the lost session's will (NDEATH, bdSeq 0), perhaps twice; then
	// the new session, from its NBIRTH with bdSeq 1.
	isNew := func(m spMsg) bool {
		if m.topic.Type != sparkplug.NBIRTH {
			return false
		}
		v, _ := m.p.Metrics[0].Decoded()
		bd, _ := v.AsUint()
		return bd >= 1
	}
	var got []spMsg
	testwait.For(t, 10*time.Second, "the new session's births and data", func() bool {
		all := h.wait(t, 5, 0)
		for i, m := range all {
			if isNew(m) {
				got = all[i:]
				return len(got) >= 7
			}
		}
		return false
	})
	want := "NBIRTH seq 0 [bdSeq Node Control/Rebirth]; DBIRTH fryer-1 seq 1 [oil temp]; DBIRTH fryer-2 seq 2 [oil temp]; " +
		"DDATA fryer-1 seq 3 [#1(h)]; DDATA fryer-2 seq 4 [#2(h)]; DDATA fryer-1 seq 5 [#3(h)]; DDATA fryer-2 seq 6 [#4(h)]"
	if k := kinds(got[:7]); k != want {
		t.Errorf("after the restart:\n got %s\nwant %s", k, want)
	}
	var deaths []string
	for _, m := range h.wait(t, 5, 0) {
		if isNew(m) {
			break
		}
		if m.topic.Type == sparkplug.NDEATH {
			v, _ := m.p.Metrics[0].Decoded()
			deaths = append(deaths, v.String())
		}
	}
	t.Logf("before the new session: NDEATH with bdSeq %v", deaths)
	if len(deaths) == 0 || deaths[0] != "0" {
		t.Errorf("the lost session's NDEATH: %v", deaths)
	}
}

// cutter is a TCP proxy in front of the broker whose connections the test can
// cut, as a network that fails would: no DISCONNECT reaches the broker.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		c.cut()
	})
	return c
}

func (c *cutter) url() string { return "tcp://" + c.ln.Addr().String() }

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// TestSparkplugWill: when the link's connection fails, the broker publishes
// its will, the NDEATH with the session's bdSeq; the link's next session
// births with the next bdSeq.
func TestSparkplugWill(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSite(t, "")
	h := newSpHost(t, b)
	p := newCutter(t, b.Addr())
	cfg := testConfig(p.url())
	cfg.Topic = ""
	cfg.Format = northbound.FormatSparkplug
	cfg.Sparkplug = &northbound.Sparkplug{Group: "stores"}
	cfg.MQTT.KeepAlive = time.Second // mosquitto notices a silent peer within 1.5 keep-alives
	l := s.link(cfg)
	run(t, l)
	h.wait(t, 0, 1) // NBIRTH
	p.cut()
	bdSeq := func(m spMsg) string { v, _ := m.p.Metrics[0].Decoded(); return v.String() }
	var death, birth bool
	testwait.For(t, 10*time.Second, "the will and a new birth", func() bool {
		for _, m := range h.wait(t, 1, 0) {
			switch {
			case m.topic.Type == sparkplug.NDEATH && bdSeq(m) == "0":
				death = true
			case m.topic.Type == sparkplug.NBIRTH && bdSeq(m) != "0":
				birth = true
			}
		}
		return death && birth
	})
}
