package mqtt

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
	"github.com/edgegate/edgegate/protocols/sparkplug"
	pb "github.com/edgegate/edgegate/protocols/sparkplug/sparkplugpb"
)

// spTest drives an spHost directly, without a broker.
type spTest struct {
	t   testing.TB
	h   *spHost
	lv  *live
	now time.Time
}

func newSpTest(t testing.TB, mod func(*SparkplugConfig)) *spTest {
	cfg := testConfig()
	cfg.Sparkplug.Enabled = true
	if mod != nil {
		mod(&cfg.Sparkplug)
	}
	lv, err := newLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &spTest{t: t, h: newSpHost(cfg.Sparkplug, newSpMetrics()), lv: lv, now: time.Unix(1700000000, 0)}
}

// send handles a payload on topic; the clock moves on a second each time.
func (s *spTest) send(topic string, p *sparkplug.Payload) spOutcome {
	s.t.Helper()
	tp, err := sparkplug.ParseTopic(topic)
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := sparkplug.Encode(p)
	if err != nil {
		s.t.Fatal(err)
	}
	s.now = s.now.Add(time.Second)
	return s.h.handle(s.lv, tp, b, s.now)
}

func seqd(seq uint64, ms ...sparkplug.Metric) *sparkplug.Payload {
	return &sparkplug.Payload{Timestamp: time.UnixMilli(1700000000000), Seq: seq, HasSeq: true, Metrics: ms}
}

func met(name string, alias uint64, dt sparkplug.DataType, v bridge.Value) sparkplug.Metric {
	return sparkplug.Metric{Name: name, Alias: alias, HasAlias: alias != 0, Datatype: dt, Value: v}
}

// byAlias is a DATA metric named by its alias only, its value encoded as datatype dt.
func byAlias(alias uint64, dt sparkplug.DataType, v bridge.Value) sparkplug.Metric {
	return sparkplug.Metric{Alias: alias, HasAlias: true, Datatype: dt, Value: v}
}

// births publishes the NBIRTH of node n1 (bdSeq 4, Temp alias 1) and the DBIRTH of
// its device pump (every scalar type, aliases 10 and up).
func (s *spTest) births() (spOutcome, spOutcome) {
	s.t.Helper()
	nb := s.send("spBv1.0/plant/NBIRTH/n1", seqd(0,
		met("bdSeq", 0, pb.DataType_Int64, bridge.Int(4)),
		met("Node Control/Rebirth", 0, pb.DataType_Boolean, bridge.Bool(false)),
		met("Temp", 1, pb.DataType_Float, bridge.Double(21.5)),
	))
	ts := time.UnixMilli(1699999999000)
	db := s.send("spBv1.0/plant/DBIRTH/n1/pump", seqd(1,
		met("Motor/Speed", 10, pb.DataType_Int16, bridge.Int(-300)),
		met("i8", 11, pb.DataType_Int8, bridge.Int(-5)),
		met("i32", 12, pb.DataType_Int32, bridge.Int(-70000)),
		met("i64", 13, pb.DataType_Int64, bridge.Int(-1<<40)),
		met("u8", 14, pb.DataType_UInt8, bridge.Uint(200)),
		met("u16", 15, pb.DataType_UInt16, bridge.Uint(60000)),
		met("u32", 16, pb.DataType_UInt32, bridge.Uint(4000000000)),
		met("u64", 17, pb.DataType_UInt64, bridge.Uint(1<<63)),
		met("f", 18, pb.DataType_Float, bridge.Double(0.5)),
		met("d", 19, pb.DataType_Double, bridge.Double(1e100)),
		met("b", 20, pb.DataType_Boolean, bridge.Bool(true)),
		met("s", 21, pb.DataType_String, bridge.String("run")),
		met("text", 22, pb.DataType_Text, bridge.String("long")),
		met("id", 23, pb.DataType_UUID, bridge.String("6f1c1b1e-6a0e-4d5e-9c1f-2b7e0f3a9d10")),
		sparkplug.Metric{Name: "when", Alias: 24, HasAlias: true, Datatype: pb.DataType_DateTime, Value: bridge.Int(1600000000000), Timestamp: ts},
		met("raw", 25, pb.DataType_Bytes, bridge.Bytes([]byte{0, 0xff})),
	))
	return nb, db
}

func TestSparkplugBirthsAndTypes(t *testing.T) {
	s := newSpTest(t, nil)
	nb, db := s.births()
	if nb.invalid != nil || nb.refused != nil || nb.rebirth != "" || len(nb.born) != 1 || nb.born[0] != "n1" {
		t.Fatalf("NBIRTH: %+v", nb)
	}
	if len(nb.msgs) != 3 {
		t.Fatalf("NBIRTH: %d messages, want 3", len(nb.msgs))
	}
	m := nb.msgs[2]
	if m.Device != "n1" || m.Point != "Temp" || !m.Value.Equal(bridge.Double(21.5)) || m.Quality != bridge.QualityGood ||
		!m.SourceTime.Equal(time.UnixMilli(1700000000000)) ||
		m.Labels[labelSparkplugGroup] != "plant" || m.Labels[labelSparkplugMetric] != "Temp" {
		t.Errorf("NBIRTH Temp: %+v", m)
	}
	if p := nb.msgs[1].Point; p != "Node Control.Rebirth" {
		t.Errorf("Node Control/Rebirth is point %q", p)
	}
	if db.invalid != nil || len(db.born) != 1 || db.born[0] != "n1.pump" || db.rebirth != "" {
		t.Fatalf("DBIRTH: %+v", db)
	}
	want := map[string]bridge.Value{
		"Motor.Speed": bridge.Int(-300), "i8": bridge.Int(-5), "i32": bridge.Int(-70000), "i64": bridge.Int(-1 << 40),
		"u8": bridge.Uint(200), "u16": bridge.Uint(60000), "u32": bridge.Uint(4000000000), "u64": bridge.Uint(1 << 63),
		"f": bridge.Double(0.5), "d": bridge.Double(1e100), "b": bridge.Bool(true), "s": bridge.String("run"),
		"text": bridge.String("long"), "id": bridge.String("6f1c1b1e-6a0e-4d5e-9c1f-2b7e0f3a9d10"),
		"when": bridge.Int(1600000000000), "raw": bridge.Bytes([]byte{0, 0xff}),
	}
	if len(db.msgs) != len(want) {
		t.Fatalf("DBIRTH: %d messages, want %d", len(db.msgs), len(want))
	}
	for _, m := range db.msgs {
		if m.Device != "n1.pump" || !m.Value.Equal(want[m.Point]) {
			t.Errorf("DBIRTH %s/%s = %#v, want %#v", m.Device, m.Point, m.Value, want[m.Point])
		}
		if err := payload.ValidName(m.Device); err != nil {
			t.Errorf("device id %q: %v", m.Device, err)
		}
		if err := payload.ValidName(m.Point); err != nil {
			t.Errorf("point %q: %v", m.Point, err)
		}
		if m.Point == "when" && !m.SourceTime.Equal(time.UnixMilli(1699999999000)) {
			t.Errorf("the metric's own timestamp is not the source time: %v", m.SourceTime)
		}
		if m.Point == "Motor.Speed" && m.Labels[labelSparkplugMetric] != "Motor/Speed" {
			t.Errorf("labels %v", m.Labels)
		}
	}

	// DATA by alias alone, typed by the BIRTH.
	o := s.send("spBv1.0/plant/DDATA/n1/pump", seqd(2, byAlias(10, pb.DataType_Int32, bridge.Int(7)), byAlias(14, pb.DataType_UInt32, bridge.Uint(9)),
		sparkplug.Metric{Name: "s", Value: bridge.String("stop")}))
	if o.invalid != nil || o.rebirth != "" || len(o.msgs) != 3 {
		t.Fatalf("DDATA: %+v", o)
	}
	if m := o.msgs[0]; m.Point != "Motor.Speed" || !m.Value.Equal(bridge.Int(7)) {
		t.Errorf("alias 10: %s = %#v", m.Point, m.Value)
	}
	if m := o.msgs[1]; m.Point != "u8" || !m.Value.Equal(bridge.Uint(9)) {
		t.Errorf("alias 14: %s = %#v", m.Point, m.Value)
	}
	if m := o.msgs[2]; m.Point != "s" || !m.Value.Equal(bridge.String("stop")) {
		t.Errorf("by name: %s = %#v", m.Point, m.Value)
	}
	o = s.send("spBv1.0/plant/NDATA/n1", seqd(3, byAlias(1, pb.DataType_Float, bridge.Double(22))))
	if len(o.msgs) != 1 || o.msgs[0].Device != "n1" || !o.msgs[0].Value.Equal(bridge.Double(22)) {
		t.Errorf("NDATA: %+v", o)
	}
	// A device's alias is not another device's (nor the node's).
	o = s.send("spBv1.0/plant/NDATA/n1", seqd(4, byAlias(10, pb.DataType_Int32, bridge.Int(1))))
	if len(o.msgs) != 0 || o.rebirth != rebirthUnknownAlias {
		t.Errorf("NDATA with a device's alias: %+v", o)
	}
}

func TestSparkplugSeqAndRebirth(t *testing.T) {
	s := newSpTest(t, func(c *SparkplugConfig) { c.RebirthInterval = 10 * time.Second })
	// DATA before any BIRTH: nothing ingested, a rebirth asked for.
	o := s.send("spBv1.0/plant/NDATA/n1", seqd(5, byAlias(1, pb.DataType_Float, bridge.Double(1))))
	if len(o.msgs) != 0 || o.rebirth != rebirthNoBirth {
		t.Fatalf("DATA before BIRTH: %+v", o)
	}
	// Again within rebirth_interval: not asked again.
	o = s.send("spBv1.0/plant/NDATA/n1", seqd(6, byAlias(1, pb.DataType_Float, bridge.Double(1))))
	if o.rebirth != "" || metricValue(t, s.h.m.rebirthLimited) != 1 {
		t.Fatalf("second DATA before BIRTH: %+v", o)
	}
	s.births()
	// The seq wraps from 255 to 0.
	for seq := uint64(2); seq < 260; seq++ {
		o = s.send("spBv1.0/plant/NDATA/n1", seqd(seq%256, byAlias(1, pb.DataType_Float, bridge.Double(float64(seq)))))
		if o.rebirth != "" || len(o.msgs) != 1 {
			t.Fatalf("seq %d: %+v", seq%256, o)
		}
	}
	// A gap: the values stand, a rebirth is asked for.
	s.now = s.now.Add(time.Minute)
	o = s.send("spBv1.0/plant/NDATA/n1", seqd(10, byAlias(1, pb.DataType_Float, bridge.Double(3))))
	if o.rebirth != rebirthSeqGap || len(o.msgs) != 1 {
		t.Fatalf("seq gap: %+v", o)
	}
	// The seq goes on from the message after the gap.
	if o = s.send("spBv1.0/plant/NDATA/n1", seqd(11, byAlias(1, pb.DataType_Float, bridge.Double(3)))); o.rebirth != "" {
		t.Fatalf("after the gap: %+v", o)
	}
	// An unknown alias: the other metrics are taken, a rebirth asked for.
	s.now = s.now.Add(time.Minute)
	o = s.send("spBv1.0/plant/DDATA/n1/pump", seqd(12, byAlias(99, pb.DataType_Int32, bridge.Int(1)), byAlias(10, pb.DataType_Int32, bridge.Int(2))))
	if o.rebirth != rebirthUnknownAlias || len(o.msgs) != 1 || o.msgs[0].Point != "Motor.Speed" {
		t.Fatalf("unknown alias: %+v", o)
	}
	// A DDATA of a device without a DBIRTH.
	s.now = s.now.Add(time.Minute)
	o = s.send("spBv1.0/plant/DDATA/n1/valve", seqd(13, byAlias(10, pb.DataType_Int32, bridge.Int(2))))
	if o.rebirth != rebirthNoBirth || len(o.msgs) != 0 {
		t.Fatalf("DDATA without DBIRTH: %+v", o)
	}
	for reason, want := range map[string]float64{rebirthNoBirth: 2, rebirthSeqGap: 1, rebirthUnknownAlias: 1} {
		if got := metricValue(t, s.h.m.rebirths.WithLabelValues(reason)); got != want {
			t.Errorf("rebirth requests %s = %v, want %v", reason, got, want)
		}
	}
}

func TestSparkplugDeath(t *testing.T) {
	s := newSpTest(t, nil)
	s.births()
	// A null metric: quality BAD, the last value.
	o := s.send("spBv1.0/plant/DDATA/n1/pump", seqd(2, sparkplug.Metric{Alias: 10, HasAlias: true, IsNull: true}))
	if len(o.msgs) != 1 || o.msgs[0].Quality != bridge.QualityBad || !o.msgs[0].Value.Equal(bridge.Int(-300)) {
		t.Fatalf("null metric: %+v", o.msgs)
	}
	// DDEATH: the device's points BAD, the device dead, the node alive.
	o = s.send("spBv1.0/plant/DDEATH/n1/pump", seqd(3))
	if len(o.dead) != 1 || o.dead[0] != "n1.pump" || len(o.msgs) != 16 {
		t.Fatalf("DDEATH: dead %v, %d messages", o.dead, len(o.msgs))
	}
	for _, m := range o.msgs {
		if m.Quality != bridge.QualityBad || m.Device != "n1.pump" {
			t.Errorf("DDEATH message %+v", m)
		}
	}
	if o = s.send("spBv1.0/plant/NDATA/n1", seqd(4, byAlias(1, pb.DataType_Float, bridge.Double(5)))); len(o.msgs) != 1 {
		t.Fatalf("NDATA after DDEATH: %+v", o)
	}
	if o = s.send("spBv1.0/plant/DDATA/n1/pump", seqd(5, byAlias(10, pb.DataType_Int32, bridge.Int(5)))); o.rebirth != rebirthNoBirth {
		t.Fatalf("DDATA after DDEATH: %+v", o)
	}
	// The device is born again.
	if o = s.send("spBv1.0/plant/DBIRTH/n1/pump", seqd(6, met("Motor/Speed", 10, pb.DataType_Int16, bridge.Int(1)))); len(o.born) != 1 {
		t.Fatalf("DBIRTH again: %+v", o)
	}
	// An NDEATH with another bdSeq (a will of an earlier connection) is ignored.
	o = s.send("spBv1.0/plant/NDEATH/n1", &sparkplug.Payload{Metrics: []sparkplug.Metric{met("bdSeq", 0, pb.DataType_Int64, bridge.Int(3))}})
	if len(o.dead) != 0 || len(o.msgs) != 0 || metricValue(t, s.h.m.deathsIgnored) != 1 {
		t.Fatalf("NDEATH of bdSeq 3: %+v", o)
	}
	o = s.send("spBv1.0/plant/NDEATH/n1", &sparkplug.Payload{Metrics: []sparkplug.Metric{met("bdSeq", 0, pb.DataType_UInt64, bridge.Uint(4))}})
	if len(o.dead) != 2 || o.dead[len(o.dead)-1] != "n1" {
		t.Fatalf("NDEATH: dead %v", o.dead)
	}
	bad := map[string]bool{}
	for _, m := range o.msgs {
		if m.Quality != bridge.QualityBad {
			t.Errorf("NDEATH message %+v", m)
		}
		bad[m.Device+"/"+m.Point] = true
	}
	if !bad["n1/Temp"] || !bad["n1.pump/Motor.Speed"] || len(o.msgs) != 4 {
		t.Errorf("NDEATH BAD points: %v", bad)
	}
	// Dead: DATA asks for a birth; a write is refused.
	s.now = s.now.Add(time.Minute)
	if o = s.send("spBv1.0/plant/NDATA/n1", seqd(7, byAlias(1, pb.DataType_Float, bridge.Double(5)))); o.rebirth != rebirthNoBirth || len(o.msgs) != 0 {
		t.Fatalf("NDATA after NDEATH: %+v", o)
	}
	if _, _, err := s.h.command("n1", "Temp", bridge.Double(1), s.now); err == nil || !strings.Contains(err.Error(), "dead") {
		t.Errorf("write to a dead node: %v", err)
	}
}

func TestSparkplugInvalidAndBounds(t *testing.T) {
	s := newSpTest(t, func(c *SparkplugConfig) {
		c.MaxMetricsPerPayload = 4
		c.MaxAliasesPerNode = 6
		c.MaxNodes = 2
	})
	bad := func(what string, o spOutcome) {
		t.Helper()
		if !errors.Is(o.invalid, sparkplug.ErrInvalidPayload) || len(o.msgs) != 0 {
			t.Errorf("%s: %+v, want invalid", what, o)
		}
	}
	bad("BIRTH metric without a name", s.send("spBv1.0/g/NBIRTH/a", seqd(0, sparkplug.Metric{Alias: 1, HasAlias: true, Datatype: pb.DataType_Int32, Value: bridge.Int(1)})))
	bad("duplicate alias", s.send("spBv1.0/g/NBIRTH/a", seqd(0, met("x", 1, pb.DataType_Int32, bridge.Int(1)), met("y", 1, pb.DataType_Int32, bridge.Int(1)))))
	bad("duplicate name", s.send("spBv1.0/g/NBIRTH/a", seqd(0, met("x", 1, pb.DataType_Int32, bridge.Int(1)), met("x", 2, pb.DataType_Int32, bridge.Int(1)))))
	bad("no seq", s.send("spBv1.0/g/NBIRTH/a", &sparkplug.Payload{Metrics: []sparkplug.Metric{met("x", 1, pb.DataType_Int32, bridge.Int(1))}}))
	bad("too many metrics", s.send("spBv1.0/g/NBIRTH/a", seqd(0,
		met("a", 0, pb.DataType_Int32, bridge.Int(1)), met("b", 0, pb.DataType_Int32, bridge.Int(1)), met("c", 0, pb.DataType_Int32, bridge.Int(1)),
		met("d", 0, pb.DataType_Int32, bridge.Int(1)), met("e", 0, pb.DataType_Int32, bridge.Int(1)))))
	tp, _ := sparkplug.ParseTopic("spBv1.0/g/NBIRTH/a")
	bad("not protobuf", s.h.handle(s.lv, tp, []byte("{\"temp\": 1}"), s.now))

	// A name that is no point name and a type without a scalar value are declared
	// (their aliases resolve) but not ingested.
	o := s.send("spBv1.0/g/NBIRTH/a", seqd(0,
		met("x", 1, pb.DataType_Int32, bridge.Int(1)),
		met("bad+name", 2, pb.DataType_Int32, bridge.Int(1)),
		sparkplug.Metric{Name: "ds", Alias: 3, HasAlias: true, Datatype: pb.DataType_DataSet, IsNull: true},
	))
	if o.invalid != nil || len(o.msgs) != 1 || o.msgs[0].Point != "x" {
		t.Fatalf("NBIRTH with a skipped name and type: %+v", o)
	}
	o = s.send("spBv1.0/g/NDATA/a", seqd(1, byAlias(2, pb.DataType_Int32, bridge.Int(5)), byAlias(3, pb.DataType_Int32, bridge.Int(5)), byAlias(1, pb.DataType_Int32, bridge.Int(6))))
	if o.rebirth != "" || len(o.msgs) != 1 {
		t.Fatalf("NDATA with skipped metrics: %+v", o)
	}
	bad("a value of another type than the BIRTH's", s.send("spBv1.0/g/NDATA/a", seqd(2, sparkplug.Metric{Alias: 1, HasAlias: true, Datatype: pb.DataType_String, Value: bridge.String("x")})))

	// max_aliases_per_node: the node (1) and its 3 metrics, a device (1) and 1 more fit 6.
	if o = s.send("spBv1.0/g/DBIRTH/a/d", seqd(3, met("y", 4, pb.DataType_Int32, bridge.Int(1)))); o.invalid != nil || o.refused != nil {
		t.Fatalf("DBIRTH within the bound: %+v", o)
	}
	if o = s.send("spBv1.0/g/DBIRTH/a/e", seqd(4)); o.refused == nil {
		t.Fatalf("DBIRTH beyond max_aliases_per_node: %+v", o)
	}
	// Replacing a device's birth frees what it declared.
	if o = s.send("spBv1.0/g/DBIRTH/a/d", seqd(5, met("z", 5, pb.DataType_Int32, bridge.Int(1)))); o.refused != nil || o.invalid != nil {
		t.Fatalf("DBIRTH again: %+v", o)
	}
	if got := metricValue(t, s.h.m.limits.WithLabelValues("max_aliases_per_node")); got != 1 {
		t.Errorf("max_aliases_per_node exceeded %v times, want 1", got)
	}

	// max_nodes: a second node fits, a third does not, unless one is not born.
	if o = s.send("spBv1.0/g/NBIRTH/b", seqd(0)); o.refused != nil {
		t.Fatalf("second node: %+v", o)
	}
	if o = s.send("spBv1.0/g/NBIRTH/c", seqd(0)); o.refused == nil {
		t.Fatalf("third node: %+v", o)
	}
	s.send("spBv1.0/g/NDEATH/b", &sparkplug.Payload{})
	if o = s.send("spBv1.0/g/NBIRTH/c", seqd(0)); o.refused != nil || len(o.born) != 1 {
		t.Fatalf("third node after the second died: %+v", o)
	}
	if n := s.h.nodeCount(); n != 2 {
		t.Errorf("%d nodes tracked, want 2", n)
	}
}

func TestSparkplugCommand(t *testing.T) {
	s := newSpTest(t, nil)
	s.births()
	topic, body, err := s.h.command("n1.pump", "Motor.Speed", bridge.Int(-12), s.now)
	if err != nil || topic != "spBv1.0/plant/DCMD/n1/pump" {
		t.Fatalf("command: %q, %v", topic, err)
	}
	p, err := sparkplug.Decode(body, 0)
	if err != nil || len(p.Metrics) != 1 {
		t.Fatalf("DCMD payload: %+v, %v", p, err)
	}
	m := p.Metrics[0]
	if v, err := m.Decoded(); m.Name != "Motor/Speed" || m.Datatype != pb.DataType_Int16 || err != nil || !v.Equal(bridge.Int(-12)) {
		t.Errorf("DCMD metric %+v = %#v, %v", m, v, err)
	}
	if topic, _, err = s.h.command("n1", "Temp", bridge.Double(20), s.now); err != nil || topic != "spBv1.0/plant/NCMD/n1" {
		t.Errorf("node command: %q, %v", topic, err)
	}
	if _, _, err = s.h.command("n1.pump", "nope", bridge.Int(1), s.now); !errors.Is(err, bridge.ErrUnknownPoint) {
		t.Errorf("unknown point: %v", err)
	}
	if _, _, err = s.h.command("n1.pump", "u8", bridge.Int(300), s.now); err == nil || !strings.Contains(err.Error(), "UInt8") {
		t.Errorf("out of range: %v", err)
	}
	if _, _, err = s.h.command("other", "x", bridge.Int(1), s.now); !errors.Is(err, errNotSparkplugDevice) {
		t.Errorf("not a Sparkplug device: %v", err)
	}
}

// The section's keys as docs/sparkplug.md gives them (enabled and host_id are a
// contract), their defaults, and what Validate refuses.
func TestSparkplugConfig(t *testing.T) {
	cfg, err := decode(t, `{allow_anonymous: true, sparkplug: {enabled: true, host_id: edgegate}}`)
	if err != nil {
		t.Fatal(err)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	want := SparkplugConfig{Enabled: true, HostID: "edgegate", MaxMetricsPerPayload: 1024, MaxAliasesPerNode: 10000,
		MaxNodes: 1000, RebirthInterval: 5 * time.Second}
	if cfg.Sparkplug != want {
		t.Errorf("sparkplug config %+v, want %+v", cfg.Sparkplug, want)
	}
	cfg, err = decode(t, `{allow_anonymous: true, sparkplug: {enabled: true, host_id: scada, max_metrics_per_payload: 10,
  max_aliases_per_node: 20, max_nodes: 3, rebirth_interval: 1m}}`)
	if err != nil || len(cfg.Validate()) > 0 {
		t.Fatalf("every key: %v %v", err, cfg.Validate())
	}
	if _, err := decode(t, `{sparkplug: {enable: true}}`); err == nil {
		t.Error("an unknown key was accepted")
	}
	cfg, _ = decode(t, `{allow_anonymous: true, sparkplug: {enabled: true, host_id: "a/b", max_nodes: 0, max_aliases_per_node: -1,
  max_metrics_per_payload: 0, rebirth_interval: 0s}}`)
	errs := cfg.Validate()
	joined := ""
	for _, e := range errs {
		joined += e.Error() + "\n"
	}
	for _, key := range []string{"host_id", "max_nodes", "max_aliases_per_node", "max_metrics_per_payload", "rebirth_interval"} {
		if !strings.Contains(joined, "sparkplug: "+key) {
			t.Errorf("no error for %s in:\n%s", key, joined)
		}
	}
	// Disabled, the section is not checked.
	cfg, _ = decode(t, `{allow_anonymous: true, sparkplug: {host_id: ""}}`)
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Errorf("disabled: %v", errs)
	}
}

// A change of the sparkplug section needs the adapter restarted.
func TestSparkplugReloadRestarts(t *testing.T) {
	cfg := testConfig()
	e := start(t, cfg)
	next := testConfig()
	next.Sparkplug.Enabled = true
	if err := e.a.Reconfigure(context.Background(), next); !errors.Is(err, protocols.ErrRestartRequired) {
		t.Errorf("Reconfigure enabling sparkplug: %v, want ErrRestartRequired", err)
	}
}

// BenchmarkSparkplugDDATA: the host's work for a DDATA of 10 metrics by alias,
// payload to bridge messages (no broker, no hub).
func BenchmarkSparkplugDDATA(b *testing.B) {
	s := newSpTest(b, nil)
	s.births()
	ms := make([]sparkplug.Metric, 10)
	for i := range ms {
		ms[i] = byAlias(uint64(10+i), pb.DataType_Int32, bridge.Int(int64(i)))
	}
	ms[8] = byAlias(18, pb.DataType_Float, bridge.Double(1))
	ms[9] = byAlias(19, pb.DataType_Double, bridge.Double(2))
	ms[1] = byAlias(11, pb.DataType_Int8, bridge.Int(1))
	ms[2] = byAlias(12, pb.DataType_Int32, bridge.Int(1))
	ms[3] = byAlias(13, pb.DataType_Int64, bridge.Int(1))
	ms[4] = byAlias(14, pb.DataType_UInt8, bridge.Uint(1))
	ms[5] = byAlias(15, pb.DataType_UInt16, bridge.Uint(1))
	ms[6] = byAlias(16, pb.DataType_UInt32, bridge.Uint(1))
	ms[7] = byAlias(17, pb.DataType_UInt64, bridge.Uint(1))
	ms[0] = byAlias(10, pb.DataType_Int16, bridge.Int(1))
	tp, _ := sparkplug.ParseTopic("spBv1.0/plant/DDATA/n1/pump")
	raw := make([][]byte, 256)
	for seq := range raw {
		var err error
		if raw[seq], err = sparkplug.Encode(seqd(uint64(seq), ms...)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	seq := 2
	for b.Loop() {
		o := s.h.handle(s.lv, tp, raw[seq%256], s.now)
		if o.invalid != nil || o.rebirth != "" || len(o.msgs) != 10 {
			b.Fatalf("%+v", o)
		}
		seq++
	}
}

// FuzzSparkplugHost: whatever payloads arrive on an edge node's topics, in whatever
// order, the host never panics, every message it makes is one the bridge takes (a
// valid device and point name, a value), and a refusal is invalid or a bound.
func FuzzSparkplugHost(f *testing.F) {
	topics := []string{
		"spBv1.0/g/NBIRTH/n", "spBv1.0/g/NDATA/n", "spBv1.0/g/NDEATH/n",
		"spBv1.0/g/DBIRTH/n/d", "spBv1.0/g/DDATA/n/d", "spBv1.0/g/DDEATH/n/d",
	}
	enc := func(p *sparkplug.Payload) []byte {
		b, err := sparkplug.Encode(p)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	nbirth := enc(seqd(0, met("bdSeq", 0, pb.DataType_Int64, bridge.Int(0)), met("a/b", 1, pb.DataType_Int8, bridge.Int(-1))))
	dbirth := enc(seqd(1, met("x", 2, pb.DataType_String, bridge.String("s")), met("y", 3, pb.DataType_UInt64, bridge.Uint(5))))
	ddata := enc(seqd(2, byAlias(2, pb.DataType_String, bridge.String("t")), sparkplug.Metric{Alias: 3, HasAlias: true, Datatype: pb.DataType_UInt64, IsNull: true}))
	ndeath := enc(&sparkplug.Payload{Metrics: []sparkplug.Metric{met("bdSeq", 0, pb.DataType_Int64, bridge.Int(0))}})
	f.Add(byte(0), nbirth, byte(3), dbirth, byte(4), ddata)
	f.Add(byte(0), nbirth, byte(1), ddata, byte(2), ndeath)
	f.Add(byte(4), ddata, byte(5), ddata, byte(0), []byte("junk"))
	f.Fuzz(func(t *testing.T, t1 byte, p1 []byte, t2 byte, p2 []byte, t3 byte, p3 []byte) {
		s := newSpTest(t, func(c *SparkplugConfig) { c.MaxMetricsPerPayload = 16; c.MaxAliasesPerNode = 32; c.MaxNodes = 2 })
		// A birth first, so that the fuzzed messages also meet a born node.
		tp, _ := sparkplug.ParseTopic(topics[0])
		s.h.handle(s.lv, tp, nbirth, s.now)
		for _, in := range []struct {
			topic byte
			raw   []byte
		}{{t1, p1}, {t2, p2}, {t3, p3}} {
			tp, _ := sparkplug.ParseTopic(topics[int(in.topic)%len(topics)])
			o := s.h.handle(s.lv, tp, in.raw, s.now)
			if o.invalid != nil && !errors.Is(o.invalid, sparkplug.ErrInvalidPayload) {
				t.Fatalf("invalid: %v", o.invalid)
			}
			if (o.invalid != nil || o.refused != nil) && len(o.msgs) > 0 {
				t.Fatalf("refused, with %d messages", len(o.msgs))
			}
			for _, m := range o.msgs {
				if payload.ValidName(m.Device) != nil || payload.ValidName(m.Point) != nil || m.Value.IsZero() {
					t.Fatalf("message %+v", m)
				}
			}
			s.now = s.now.Add(time.Second)
		}
	})
}
