package mqtt

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/payload"
	"github.com/edgegate/edgegate/protocols/sparkplug"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// spHost is the Sparkplug B host application inside the broker (mqtt.sparkplug,
// docs/sparkplug.md): it keeps what each edge node's births declared (metric names,
// datatypes, aliases, the last values), checks each node's sequence numbers, and turns
// payloads into the bridge's messages. It decides; the hook acts (sparkplug_hook.go):
// it submits the messages through the same path and late acknowledgement as any
// reading, records device states and publishes rebirth requests.
//
// Device ids are {edge_node} for a node's own metrics and {edge_node}.{device} for a
// device's; a metric name's '/' becomes '.' in the point name. The group is a label
// (sparkplug_group), not part of the id: two groups with the same edge node id share
// its devices in the bridge (the Sparkplug specification makes an edge node id unique
// within its group only; docs/sparkplug.md says so).
//
// Everything an edge node can make it hold is bounded: metrics per payload (checked
// before decoding them), metrics per node (its births and its devices' together, each
// device counting one), and nodes tracked.
type spHost struct {
	cfg SparkplugConfig
	m   *spMetrics

	mu      sync.Mutex
	nodes   map[spNodeKey]*spNode
	devices map[string]*spDevice // by bridge device id: every device of a tracked node
}

type spNodeKey struct{ group, node string }

type spNode struct {
	key         spNodeKey
	born        bool
	seq         uint64 // of the node's last message
	bdSeq       uint64 // from the NBIRTH's bdSeq metric
	hasBdSeq    bool
	aliases     map[uint64]*spMetric
	count       int                  // declared metrics and devices, against max_aliases_per_node
	devices     map[string]*spDevice // by Sparkplug device name; "" is the node itself
	lastRebirth time.Time
}

type spDevice struct {
	id      string // bridge device id
	name    string // Sparkplug device name, "" for the node
	node    *spNode
	born    bool
	metrics map[string]*spMetric // by Sparkplug metric name
	byPoint map[string]*spMetric // only the ingested ones
}

type spMetric struct {
	dev      *spDevice
	name     string // as in the BIRTH
	point    string // empty: declared but not ingested (a name or type the bridge cannot carry)
	dt       sparkplug.DataType
	alias    uint64
	hasAlias bool
	last     bridge.Value
	labels   map[string]string // read-only, shared by the metric's messages
	unit     string
	priority bridge.Priority
}

// Rebirth reasons, the values of the reason label of rebirth_requests_total.
const (
	rebirthSeqGap       = "seq_gap"       // a message's seq is not the one after the last
	rebirthNoBirth      = "no_birth"      // a DATA (or DBIRTH, DDEATH) before its NBIRTH, or a DDATA before its DBIRTH
	rebirthUnknownAlias = "unknown_alias" // a DATA metric whose alias or name no BIRTH declared
)

// Labels of every Sparkplug message.
const (
	labelSparkplugGroup  = "sparkplug_group"
	labelSparkplugMetric = "sparkplug_metric"
)

// bdSeqMetric is the birth/death sequence metric of NBIRTH and NDEATH.
const bdSeqMetric = "bdSeq"

// spOutcome is what the hook is to do with one Sparkplug message.
type spOutcome struct {
	device  string            // the bridge device id the topic names, for logs and Invalid
	msgs    []*bridge.Message // to submit, in order
	born    []string          // device ids born: connected
	dead    []string          // device ids dead: disconnected (their BAD messages are in msgs)
	rebirth string            // a rebirth request to publish now, for this reason
	invalid error             // the payload is bad (wraps sparkplug.ErrInvalidPayload)
	refused error             // a bound refused it
}

func newSpHost(cfg SparkplugConfig, m *spMetrics) *spHost {
	h := &spHost{cfg: cfg, m: m, nodes: make(map[spNodeKey]*spNode), devices: make(map[string]*spDevice)}
	return h
}

// deviceID is the bridge device id of a topic's node or device.
func deviceID(node, device string) string {
	if device == "" {
		return node
	}
	return node + "." + device
}

// pointName is the bridge point name of a Sparkplug metric name.
func pointName(metric string) string { return strings.ReplaceAll(metric, "/", ".") }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sparkplug.ErrInvalidPayload}, args...)...)
}

// handle decides what one message on an edge node topic means. lv gives the
// configured devices' labels, units and priorities.
func (h *spHost) handle(lv *live, t sparkplug.Topic, raw []byte, now time.Time) (o spOutcome) {
	h.m.messages.WithLabelValues(string(t.Type)).Inc()
	o.device = deviceID(t.EdgeNode, t.Device)
	if t.Type == sparkplug.NCMD || t.Type == sparkplug.DCMD {
		return o // commands to edge nodes: brokered, not readings
	}
	p, err := sparkplug.Decode(raw, h.cfg.MaxMetricsPerPayload)
	if err != nil {
		if errors.Is(err, sparkplug.ErrTooManyMetrics) {
			h.m.limits.WithLabelValues("max_metrics_per_payload").Inc()
		}
		o.invalid = err
		return o
	}
	if t.Type != sparkplug.NDEATH && (!p.HasSeq || p.Seq > 255) {
		o.invalid = invalidf("%s without a seq from 0 to 255", t.Type)
		return o
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key := spNodeKey{t.Group, t.EdgeNode}
	n := h.nodes[key]
	switch t.Type {
	case sparkplug.NBIRTH:
		h.nbirth(&o, lv, t, key, n, p)
		return o
	case sparkplug.NDEATH:
		h.ndeath(&o, n, p)
		return o
	}
	if n == nil || !n.born {
		h.askRebirth(&o, key, n, rebirthNoBirth, now)
		return o
	}
	if p.Seq != (n.seq+1)%256 {
		// Something was lost, or came out of order: the values still stand, but
		// what the node declared may have changed meanwhile.
		h.askRebirth(&o, key, n, rebirthSeqGap, now)
	}
	n.seq = p.Seq
	switch t.Type {
	case sparkplug.DBIRTH:
		h.dbirth(&o, lv, t, n, p)
	case sparkplug.NDATA:
		h.data(&o, n, n.devices[""], p, now)
	case sparkplug.DDATA:
		dev := n.devices[t.Device]
		if dev == nil || !dev.born {
			h.askRebirth(&o, key, n, rebirthNoBirth, now)
			return o
		}
		h.data(&o, n, dev, p, now)
	case sparkplug.DDEATH:
		if dev := n.devices[t.Device]; dev != nil && dev.born {
			h.death(&o, dev, p.Timestamp)
		}
	}
	return o
}

// askRebirth sets o.rebirth unless the node was asked less than rebirth_interval ago.
// An unknown node is tracked (unborn) to remember when it was asked, within
// max_nodes.
func (h *spHost) askRebirth(o *spOutcome, key spNodeKey, n *spNode, reason string, now time.Time) {
	if n == nil {
		if len(h.nodes) >= h.cfg.MaxNodes && !h.evictUnborn() {
			h.m.limits.WithLabelValues("max_nodes").Inc()
			h.m.rebirthLimited.Inc()
			return
		}
		n = &spNode{key: key, devices: map[string]*spDevice{}, aliases: map[uint64]*spMetric{}}
		h.nodes[key] = n
	}
	if !n.lastRebirth.IsZero() && now.Sub(n.lastRebirth) < h.cfg.RebirthInterval {
		h.m.rebirthLimited.Inc()
		return
	}
	n.lastRebirth = now
	o.rebirth = reason
	h.m.rebirths.WithLabelValues(reason).Inc()
}

// evictUnborn forgets one node that is not born (dead, or only ever seen sending
// DATA), to make room for another.
func (h *spHost) evictUnborn() bool {
	for k, n := range h.nodes {
		if !n.born {
			h.forgetDevices(n)
			delete(h.nodes, k)
			return true
		}
	}
	return false
}

// forgetDevices removes a node's devices from the id index.
func (h *spHost) forgetDevices(n *spNode) {
	for _, d := range n.devices {
		if h.devices[d.id] == d {
			delete(h.devices, d.id)
		}
	}
}

func (h *spHost) nbirth(o *spOutcome, lv *live, t sparkplug.Topic, key spNodeKey, n *spNode, p *sparkplug.Payload) {
	if n == nil {
		if len(h.nodes) >= h.cfg.MaxNodes && !h.evictUnborn() {
			h.m.limits.WithLabelValues("max_nodes").Inc()
			o.refused = fmt.Errorf("sparkplug: max_nodes (%d) edge nodes are tracked; node %q of group %q refused", h.cfg.MaxNodes, t.EdgeNode, t.Group)
			return
		}
		n = &spNode{key: key}
		h.nodes[key] = n
	}
	// A new birth replaces everything the node and its devices declared: their
	// DBIRTHs follow it.
	h.forgetDevices(n)
	last := n.lastRebirth
	*n = spNode{key: key, lastRebirth: last, devices: map[string]*spDevice{}, aliases: map[uint64]*spMetric{}}
	dev := h.birth(o, lv, t, n, "", p)
	if dev == nil {
		return
	}
	for _, m := range p.Metrics {
		if m.Name == bdSeqMetric {
			n.bdSeq, n.hasBdSeq = bdSeqOf(&m)
		}
	}
	n.born = true
	n.seq = p.Seq
}

func (h *spHost) dbirth(o *spOutcome, lv *live, t sparkplug.Topic, n *spNode, p *sparkplug.Payload) {
	h.birth(o, lv, t, n, t.Device, p)
}

// birth builds a device (name "" for the node) from a BIRTH, replacing the one
// before, and adds its readings to o. Nothing changes when the payload is refused.
func (h *spHost) birth(o *spOutcome, lv *live, t sparkplug.Topic, n *spNode, name string, p *sparkplug.Payload) *spDevice {
	old := n.devices[name]
	count := n.count + 1
	if old != nil {
		count -= 1 + len(old.metrics)
	}
	tooMany := func() *spDevice {
		h.m.limits.WithLabelValues("max_aliases_per_node").Inc()
		o.refused = fmt.Errorf("sparkplug: edge node %q declares more than max_aliases_per_node (%d) metrics and devices", t.EdgeNode, h.cfg.MaxAliasesPerNode)
		return nil
	}
	if count > h.cfg.MaxAliasesPerNode {
		return tooMany()
	}
	id := deviceID(t.EdgeNode, name)
	conf := lv.devices[id]
	dev := &spDevice{id: id, name: name, node: n, born: true,
		metrics: make(map[string]*spMetric, len(p.Metrics)), byPoint: make(map[string]*spMetric, len(p.Metrics))}
	aliases := map[uint64]*spMetric{}
	values := make([]bridge.Value, len(p.Metrics))
	metrics := make([]*spMetric, len(p.Metrics))
	for i := range p.Metrics {
		m := &p.Metrics[i]
		if m.Name == "" {
			o.invalid = invalidf("%s metric %d has no name", t.Type, i)
			return nil
		}
		if _, dup := dev.metrics[m.Name]; dup {
			o.invalid = invalidf("%s declares metric %q twice", t.Type, m.Name)
			return nil
		}
		if count >= h.cfg.MaxAliasesPerNode {
			return tooMany()
		}
		count++
		sm := &spMetric{dev: dev, name: m.Name, dt: m.Datatype, alias: m.Alias, hasAlias: m.HasAlias}
		if m.HasAlias {
			other := aliases[m.Alias]
			if other == nil {
				if cur := n.aliases[m.Alias]; cur != nil && cur.dev != old {
					other = cur
				}
			}
			if other != nil {
				o.invalid = invalidf("%s: alias %d of metric %q is already metric %q's", t.Type, m.Alias, m.Name, other.name)
				return nil
			}
			aliases[m.Alias] = sm
		}
		point := pointName(m.Name)
		switch {
		case payload.ValidName(point) != nil:
			h.m.skipped.WithLabelValues("name").Inc()
		case !sparkplug.Scalar(m.Datatype):
			h.m.skipped.WithLabelValues("type").Inc()
		default:
			v, err := m.Decoded()
			if err != nil {
				o.invalid = err
				return nil
			}
			sm.point = point
			pt := conf.points[point]
			sm.unit, sm.priority = pt.unit, pt.priority
			sm.labels = make(map[string]string, len(conf.labels)+2)
			for k, v := range conf.labels {
				sm.labels[k] = v
			}
			sm.labels[labelSparkplugGroup] = t.Group
			sm.labels[labelSparkplugMetric] = m.Name
			dev.byPoint[point] = sm
			values[i] = v
		}
		dev.metrics[m.Name] = sm
		metrics[i] = sm
	}
	// Commit.
	if old != nil {
		for a, sm := range n.aliases {
			if sm.dev == old {
				delete(n.aliases, a)
			}
		}
	}
	for a, sm := range aliases {
		n.aliases[a] = sm
	}
	n.count = count
	n.devices[name] = dev
	h.devices[id] = dev
	for i, sm := range metrics {
		if sm.point != "" {
			o.msgs = append(o.msgs, sm.reading(&p.Metrics[i], values[i], p.Timestamp))
		}
	}
	o.born = append(o.born, id)
	return dev
}

// data adds a DATA message's readings to o. A metric whose alias or name no BIRTH
// declared is skipped and asks for a rebirth; a value that does not fit its BIRTH's
// datatype makes the whole payload invalid.
func (h *spHost) data(o *spOutcome, n *spNode, dev *spDevice, p *sparkplug.Payload, now time.Time) {
	metrics := make([]*spMetric, len(p.Metrics))
	values := make([]bridge.Value, len(p.Metrics))
	unknown := false
	for i := range p.Metrics {
		m := &p.Metrics[i]
		var sm *spMetric
		switch {
		case m.Name != "":
			sm = dev.metrics[m.Name]
		case m.HasAlias:
			if a := n.aliases[m.Alias]; a != nil && a.dev == dev {
				sm = a
			}
		default:
			o.invalid = invalidf("metric %d has neither a name nor an alias", i)
			return
		}
		if sm == nil {
			unknown = true
			h.m.skipped.WithLabelValues("unknown_alias").Inc()
			continue
		}
		if sm.point == "" {
			continue
		}
		v, err := m.DecodedAs(sm.dt)
		if err != nil {
			o.invalid = err
			return
		}
		metrics[i], values[i] = sm, v
	}
	for i, sm := range metrics {
		if sm != nil {
			o.msgs = append(o.msgs, sm.reading(&p.Metrics[i], values[i], p.Timestamp))
		}
	}
	if unknown && o.rebirth == "" {
		h.askRebirth(o, n.key, n, rebirthUnknownAlias, now)
	}
}

// ndeath: the node and its devices die, unless the death's bdSeq is not the birth's
// (a will left over from an earlier connection).
func (h *spHost) ndeath(o *spOutcome, n *spNode, p *sparkplug.Payload) {
	if n == nil || !n.born {
		h.m.deathsIgnored.Inc()
		return
	}
	if n.hasBdSeq {
		var got uint64
		var ok bool
		for _, m := range p.Metrics {
			if m.Name == bdSeqMetric {
				got, ok = bdSeqOf(&m)
			}
		}
		if !ok || got != n.bdSeq {
			h.m.deathsIgnored.Inc()
			return
		}
	}
	for _, d := range n.devices {
		if d.born && d.name != "" {
			h.death(o, d, p.Timestamp)
		}
	}
	if d := n.devices[""]; d != nil && d.born {
		h.death(o, d, p.Timestamp)
	}
	n.born = false
}

// death marks a device dead: each of its points that has a value gets it again with
// quality BAD, until the next BIRTH. Its aliases stay reserved (DATA is refused
// until a BIRTH replaces them anyway).
func (h *spHost) death(o *spOutcome, dev *spDevice, ts time.Time) {
	dev.born = false
	for _, sm := range dev.metrics {
		if sm.point == "" || sm.last.IsZero() {
			continue
		}
		o.msgs = append(o.msgs, &bridge.Message{Device: dev.id, Point: sm.point, Value: sm.last, Quality: bridge.QualityBad,
			SourceTime: ts, Unit: sm.unit, Labels: sm.labels, Priority: sm.priority})
	}
	o.dead = append(o.dead, dev.id)
}

// reading is the message of one metric's value v (zero when the metric is null).
func (sm *spMetric) reading(m *sparkplug.Metric, v bridge.Value, payloadTime time.Time) *bridge.Message {
	q := bridge.QualityGood
	if m.IsNull || v.IsZero() {
		// No value: the last one (or the type's zero) with quality BAD.
		q, v = bridge.QualityBad, sm.last
		if v.IsZero() {
			v = zeroOf(sm.dt)
		}
	} else {
		sm.last = v
	}
	ts := m.Timestamp
	if ts.IsZero() {
		ts = payloadTime
	}
	return &bridge.Message{Device: sm.dev.id, Point: sm.point, Value: v, Quality: q, SourceTime: ts,
		Unit: sm.unit, Labels: sm.labels, Priority: sm.priority}
}

// zeroOf is a datatype's zero value, for a null metric without a value before.
func zeroOf(dt sparkplug.DataType) bridge.Value {
	switch dt {
	case pb.DataType_UInt8, pb.DataType_UInt16, pb.DataType_UInt32, pb.DataType_UInt64:
		return bridge.Uint(0)
	case pb.DataType_Float, pb.DataType_Double:
		return bridge.Double(0)
	case pb.DataType_Boolean:
		return bridge.Bool(false)
	case pb.DataType_String, pb.DataType_Text, pb.DataType_UUID:
		return bridge.String("")
	case pb.DataType_Bytes, pb.DataType_File:
		return bridge.Bytes(nil)
	}
	return bridge.Int(0)
}

// bdSeqOf reads a bdSeq metric, an Int64 by the specification (some nodes send a
// UInt64).
func bdSeqOf(m *sparkplug.Metric) (uint64, bool) {
	v, err := m.Decoded()
	if err != nil {
		return 0, false
	}
	if i, ok := v.AsInt(); ok && i >= 0 {
		return uint64(i), true
	}
	if u, ok := v.AsUint(); ok {
		return u, true
	}
	return 0, false
}

// errNotSparkplugDevice: Write falls through to a plain MQTT write.
var errNotSparkplugDevice = errors.New("not a Sparkplug device")

// command is the NCMD or DCMD that writes v to a point: the metric's name and
// datatype from its BIRTH.
func (h *spHost) command(device, point string, v bridge.Value, now time.Time) (string, []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	dev := h.devices[device]
	if dev == nil {
		return "", nil, errNotSparkplugDevice
	}
	sm := dev.byPoint[point]
	if sm == nil {
		return "", nil, fmt.Errorf("mqtt: sparkplug: write: %w: device %q has no metric %q in its BIRTH", bridge.ErrUnknownPoint, device, point)
	}
	if !dev.born || !dev.node.born {
		return "", nil, fmt.Errorf("mqtt: sparkplug: write: device %q is dead (no BIRTH since its DEATH)", device)
	}
	t := sparkplug.Topic{Group: dev.node.key.group, Type: sparkplug.NCMD, EdgeNode: dev.node.key.node}
	if dev.name != "" {
		t.Type, t.Device = sparkplug.DCMD, dev.name
	}
	body, err := sparkplug.Encode(&sparkplug.Payload{Timestamp: now, Metrics: []sparkplug.Metric{{
		Name: sm.name, Datatype: sm.dt, Value: v,
	}}})
	if err != nil {
		return "", nil, fmt.Errorf("mqtt: sparkplug: write to device %q point %q: %w", device, point, err)
	}
	return t.String(), body, nil
}

// nodeCount is how many edge nodes are tracked.
func (h *spHost) nodeCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.nodes)
}

// stateMessage is the Sparkplug 3.0 STATE payload.
func stateMessage(online bool, now time.Time) []byte {
	return []byte(`{"online":` + strconv.FormatBool(online) + `,"timestamp":` + strconv.FormatInt(now.UnixMilli(), 10) + `}`)
}

type spMetrics struct {
	messages       *prometheus.CounterVec
	badPayloads    prometheus.Counter
	rebirths       *prometheus.CounterVec
	rebirthLimited prometheus.Counter
	limits         *prometheus.CounterVec
	skipped        *prometheus.CounterVec
	deathsIgnored  prometheus.Counter
}

func newSpMetrics() *spMetrics {
	return &spMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_messages_total", Help: "Sparkplug B messages received on edge node topics, by message type.",
		}, []string{"type"}),
		badPayloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_bad_payloads_total", Help: "Sparkplug B messages refused as invalid (payload or topic).",
		}),
		rebirths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_rebirth_requests_total", Help: "Rebirth requests (NCMD Node Control/Rebirth) published, by reason.",
		}, []string{"reason"}),
		rebirthLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_rebirth_requests_suppressed_total", Help: "Rebirth requests not sent: the node was asked less than rebirth_interval ago, or max_nodes was reached.",
		}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_limit_exceeded_total", Help: "Sparkplug B messages refused by a bound, by its config key.",
		}, []string{"limit"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_metrics_skipped_total", Help: "Sparkplug B metrics not ingested: a name that is no point name, a type without a scalar value, an alias or name no BIRTH declared.",
		}, []string{"reason"}),
		deathsIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_sparkplug_deaths_ignored_total", Help: "NDEATH messages ignored: their bdSeq is not the NBIRTH's, or the node is not born.",
		}),
	}
}

func (m *spMetrics) collectors(h *spHost) []prometheus.Collector {
	return []prometheus.Collector{m.messages, m.badPayloads, m.rebirths, m.rebirthLimited, m.limits, m.skipped, m.deathsIgnored,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_sparkplug_nodes", Help: "Sparkplug B edge nodes tracked (born, dead, or asked for a birth).",
		}, func() float64 { return float64(h.nodeCount()) }),
	}
}
