package northbound

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/grpcapi"
	"github.com/edgegate/edgegate/protocols/sparkplug"
	spb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The sparkplug format makes the link a Sparkplug B edge node: the gateway is
// the node ({group}/{edge_node}), each device a Sparkplug device, each point a
// metric. Per connection (a Sparkplug session):
//
//   - The will is an NDEATH with the session's bdSeq; NBIRTH (seq 0) carries bdSeq
//     and Node Control/Rebirth, then a DBIRTH per device with every matched point
//     the hub knows a value of, each with an alias.
//   - Each message is a DDATA of one metric by alias (seq counting 0 to 255 over
//     the node's messages). A message from before the session started (the
//     backlog drained after an outage) is flagged is_historical.
//   - A device that gains a point, or whose point changes datatype, is born again
//     (a new DBIRTH with all its points). A device the hub sees disconnected gets
//     a DDEATH and is born again (all its points, the same aliases) with its next
//     message.
//   - An NCMD with Node Control/Rebirth true brings NBIRTH and every DBIRTH
//     again; a DCMD (with accept_commands) writes its metrics through
//     grpcapi.Write.
//   - A clean stop publishes the NDEATH itself.
type spNode struct {
	l       *Link
	group   string
	node    string
	bdSeq   uint64 // of the current session
	seq     uint64 // the next seq, 0 to 255
	live    uint64 // messages from here on are not historical
	devices map[string]*spDevice
	alias   uint64 // the last alias given
	checked time.Time

	// byAlias names the point of each alias of the current births, for DCMDs
	// (read by the commands' goroutine).
	amu     sync.Mutex
	byAlias map[uint64]string // alias → device + "\x00" + point
}

func (n *spNode) newAlias(device, point string) uint64 {
	n.alias++
	n.amu.Lock()
	n.byAlias[n.alias] = device + "\x00" + point
	n.amu.Unlock()
	return n.alias
}

// pointOf is the point of a device's alias, "" when there is none.
func (n *spNode) pointOf(device string, alias uint64) string {
	n.amu.Lock()
	defer n.amu.Unlock()
	d, p, _ := strings.Cut(n.byAlias[alias], "\x00")
	if d != device {
		return ""
	}
	return p
}

type spDevice struct {
	points map[string]*spPoint
	dead   bool // a DDEATH was sent: the next message births it again
}

type spPoint struct {
	alias uint64
	dt    spb.DataType
	last  *bridge.Message
}

// nextBdSeq counts sessions per link, for bdSeq (0 to 255).
func (l *Link) nextBdSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.bdSeq
	l.bdSeq = (l.bdSeq + 1) % 256
	return s
}

func newSpNode(l *Link) *spNode {
	return &spNode{
		l: l, group: l.cfg.Sparkplug.Group,
		node:  strings.ReplaceAll(l.cfg.Sparkplug.EdgeNode, "{gateway}", l.id),
		bdSeq: l.nextBdSeq(),
	}
}

func (n *spNode) topic(t sparkplug.MessageType, device string) string {
	return sparkplug.Topic{Group: n.group, Type: t, EdgeNode: n.node, Device: device}.String()
}

// will is the NDEATH the broker publishes when the connection is lost.
func (n *spNode) death() []byte {
	b, _ := sparkplug.Encode(&sparkplug.Payload{Timestamp: time.Now(), Metrics: []sparkplug.Metric{
		{Name: "bdSeq", Datatype: spb.DataType_UInt64, Value: bridge.Uint(n.bdSeq)},
	}})
	return b
}

func (n *spNode) nextSeq() uint64 {
	s := n.seq
	n.seq = (n.seq + 1) % 256
	return s
}

// births publishes NBIRTH and a DBIRTH per device with what the hub knows.
func (n *spNode) births(ctx context.Context, f *forwarder) error {
	n.seq = 0
	n.live = n.l.hub.LastSequence() + 1
	n.devices = map[string]*spDevice{}
	n.amu.Lock()
	n.byAlias = map[uint64]string{}
	n.amu.Unlock()
	b, err := sparkplug.Encode(&sparkplug.Payload{Timestamp: time.Now(), HasSeq: true, Seq: n.nextSeq(), Metrics: []sparkplug.Metric{
		{Name: "bdSeq", Datatype: spb.DataType_UInt64, Value: bridge.Uint(n.bdSeq)},
		{Name: sparkplug.RebirthMetric, Datatype: spb.DataType_Boolean, Value: bridge.Bool(false)},
	}})
	if err != nil {
		return err
	}
	if err := f.send(ctx, n.topic(sparkplug.NBIRTH, ""), b, 0); err != nil {
		return err
	}
	for _, m := range n.l.hub.LatestAll() {
		if !n.l.match.Match(m) {
			continue
		}
		d := n.devices[m.Device]
		if d == nil {
			d = &spDevice{points: map[string]*spPoint{}}
			n.devices[m.Device] = d
		}
		d.points[m.Point] = &spPoint{alias: n.newAlias(m.Device, m.Point), dt: sparkplug.InferType(m.Value), last: m}
	}
	names := make([]string, 0, len(n.devices))
	for d := range n.devices {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := n.dbirth(ctx, f, d); err != nil {
			return err
		}
	}
	return nil
}

// dbirth publishes a device's DBIRTH with all its points.
func (n *spNode) dbirth(ctx context.Context, f *forwarder, device string) error {
	d := n.devices[device]
	names := make([]string, 0, len(d.points))
	for p := range d.points {
		names = append(names, p)
	}
	sort.Strings(names)
	p := &sparkplug.Payload{Timestamp: time.Now(), HasSeq: true}
	for _, name := range names {
		pt := d.points[name]
		p.Metrics = append(p.Metrics, n.metric(name, pt, pt.last, false))
	}
	p.Seq = n.nextSeq()
	b, err := sparkplug.Encode(p)
	if err != nil {
		// Not possible with the types InferType gives; it must not stall the
		// link: the device stays unborn and its messages are skipped.
		n.l.log.Error("northbound: a DBIRTH does not encode; the device's messages are skipped", "name", n.l.cfg.Name, "device", device, "err", err)
		delete(n.devices, device)
		n.seq = p.Seq // not sent
		return nil
	}
	return f.send(ctx, n.topic(sparkplug.DBIRTH, device), b, 0)
}

func (n *spNode) metric(name string, pt *spPoint, m *bridge.Message, data bool) sparkplug.Metric {
	ts := m.SourceTime
	if ts.IsZero() {
		ts = m.GatewayTime
	}
	sm := sparkplug.Metric{Alias: pt.alias, HasAlias: true, Datatype: pt.dt, Timestamp: ts, Value: m.Value}
	if data {
		sm.IsHistorical = m.Sequence < n.live
	} else {
		sm.Name = name // a birth's values are the newest the hub has
	}
	return sm
}

// data publishes one message as a DDATA, birthing its device first when needed.
func (n *spNode) data(ctx context.Context, f *forwarder, m *bridge.Message) error {
	d := n.devices[m.Device]
	dt := sparkplug.InferType(m.Value)
	pt := (*spPoint)(nil)
	if d != nil {
		pt = d.points[m.Point]
	}
	if d == nil || d.dead || pt == nil || pt.dt != dt {
		if d == nil {
			d = &spDevice{points: map[string]*spPoint{}}
			n.devices[m.Device] = d
		}
		if pt == nil {
			pt = &spPoint{alias: n.newAlias(m.Device, m.Point)}
			d.points[m.Point] = pt
		}
		pt.dt, pt.last, d.dead = dt, m, false
		if err := n.dbirth(ctx, f, m.Device); err != nil {
			return err
		}
		if n.devices[m.Device] == nil {
			return nil // its DBIRTH did not encode
		}
	}
	pt.last = m
	seq := n.nextSeq()
	b, err := sparkplug.Encode(&sparkplug.Payload{Timestamp: time.Now(), HasSeq: true, Seq: seq,
		Metrics: []sparkplug.Metric{n.metric(m.Point, pt, m, true)}})
	if err != nil {
		n.seq = seq // not sent: no gap for the host to see
		n.l.log.Error("northbound: a message does not encode as Sparkplug; skipped", "name", n.l.cfg.Name, "seq", m.Sequence, "device", m.Device, "point", m.Point, "err", err)
		return nil
	}
	return f.send(ctx, n.topic(sparkplug.DDATA, m.Device), b, m.Sequence)
}

// deviceStates sends a DDEATH for each born device the hub now sees
// disconnected (at most once a second); its next message births it again.
func (n *spNode) deviceStates(ctx context.Context, f *forwarder) error {
	if time.Since(n.checked) < time.Second || len(n.devices) == 0 {
		return nil
	}
	n.checked = time.Now()
	for _, info := range n.l.hub.Devices(nil) {
		d := n.devices[info.ID]
		if d == nil || d.dead || info.State != bridge.StateDisconnected {
			continue
		}
		d.dead = true
		b, err := sparkplug.Encode(&sparkplug.Payload{Timestamp: time.Now(), HasSeq: true, Seq: n.nextSeq()})
		if err != nil {
			return err
		}
		if err := f.send(ctx, n.topic(sparkplug.DDEATH, info.ID), b, 0); err != nil {
			return err
		}
	}
	return nil
}

// spCommand handles an NCMD or DCMD (from paho's goroutine: it only queues).
func (l *Link) spCommand(msg mqtt.Message, rebirth chan<- struct{}, cmds chan<- mqtt.Message) {
	t, err := sparkplug.ParseTopic(msg.Topic())
	if err != nil {
		l.refuse(msg.Topic(), "topic", err)
		return
	}
	if t.Type == sparkplug.NCMD {
		p, err := sparkplug.Decode(msg.Payload(), 0)
		if err != nil {
			l.refuse(msg.Topic(), "payload", err)
			return
		}
		for _, m := range p.Metrics {
			if v, err := m.Decoded(); m.Name == sparkplug.RebirthMetric && err == nil {
				if b, ok := v.AsBool(); ok && b {
					select {
					case rebirth <- struct{}{}:
					default: // one is pending already
					}
				}
			}
		}
		return
	}
	if !l.cfg.AcceptCommands {
		l.refuse(msg.Topic(), "accept_commands", fmt.Errorf("writes are off for northbound %q", l.cfg.Name))
		return
	}
	select {
	case cmds <- msg:
	default:
		l.refuse(msg.Topic(), "queue full", fmt.Errorf("%d commands waiting", commandQueue))
	}
}

// spWrite runs a DCMD: each metric, named or by an alias of the current
// births, is a write of that point of the topic's device.
func (l *Link) spWrite(ctx context.Context, topic string, raw []byte, n *spNode) {
	t, err := sparkplug.ParseTopic(topic)
	if err != nil || t.Device == "" {
		l.refuse(topic, "topic", fmt.Errorf("not a DCMD topic"))
		return
	}
	p, err := sparkplug.Decode(raw, 0)
	if err != nil {
		l.refuse(topic, "payload", err)
		return
	}
	for _, m := range p.Metrics {
		name := m.Name
		if name == "" && m.HasAlias {
			name = n.pointOf(t.Device, m.Alias)
		}
		if name == "" {
			l.refuse(topic, "metric", fmt.Errorf("alias %d names no point of %q", m.Alias, t.Device))
			continue
		}
		v, err := m.Decoded()
		if err != nil {
			l.refuse(topic, "value", err)
			continue
		}
		l.write(ctx, topic, t.Device, name, v)
	}
}

// write runs one command's write through the gateway's write path and counts it.
func (l *Link) write(ctx context.Context, topic, device, point string, v bridge.Value) {
	wctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	err := grpcapi.Write(wctx, l.writer, device, point, v)
	switch status.Code(err) {
	case codes.OK:
		l.m.commands.WithLabelValues(l.cfg.Name, "accepted").Inc()
		l.log.Info("northbound: command written", "name", l.cfg.Name, "device", device, "point", point, "value", v.String())
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
		l.refuse(topic, "write", err)
	default:
		l.m.commands.WithLabelValues(l.cfg.Name, "failed").Inc()
		l.log.Warn("northbound: command failed", "name", l.cfg.Name, "device", device, "point", point, "err", err)
	}
}
