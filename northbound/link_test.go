package northbound_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/internal/mosquittotest"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/northbound"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/prometheus/client_golang/prometheus"
)

const gatewayID = "site-1"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// site is a hub (with a durable log when dir is set) and its links.
type site struct {
	t      testing.TB
	j      *journal.Journal
	hub    *bridge.Hub
	ingest *bridge.Ingest
	writer *recordingWriter
	reg    *prometheus.Registry
	m      *northbound.Metrics
}

func newSite(t testing.TB, dir string) *site {
	return newSiteWith(t, dir, bridge.HubConfig{})
}

func newSiteWith(t testing.TB, dir string, hc bridge.HubConfig) *site {
	t.Helper()
	s := &site{t: t, writer: &recordingWriter{}, reg: prometheus.NewRegistry()}
	if dir != "" {
		j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Sync: journal.SyncBatch})
		if err != nil {
			t.Fatal(err)
		}
		s.j = j
		hc.Journal, hc.FirstSequence = j, j.NextSequence()
	}
	s.hub = bridge.NewHub(hc, nil)
	s.hub.SetWriter(bridge.ProtocolMQTT, s.writer)
	s.ingest = s.hub.Ingest(bridge.ProtocolMQTT)
	s.m = northbound.NewMetrics(s.reg)
	t.Cleanup(func() {
		s.hub.Close()
		if s.j != nil {
			if err := s.j.Close(); err != nil {
				t.Errorf("journal close: %v", err)
			}
		}
	})
	return s
}

// link builds a link on the site; run starts it and returns its stop.
func (s *site) link(cfg northbound.Config) *northbound.Link {
	s.t.Helper()
	o := northbound.Options{Config: &cfg, GatewayID: gatewayID, Hub: s.hub, Logger: quietLogger(), Metrics: s.m}
	if s.j != nil {
		o.Log = s.j
	}
	l, err := northbound.New(o)
	if err != nil {
		s.t.Fatal(err)
	}
	return l
}

func run(t testing.TB, l *northbound.Link) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("the link did not stop within 15s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// publish ingests n messages spread over four points of two devices and
// returns their sequences.
func (s *site) publish(n int, from int64) []uint64 {
	s.t.Helper()
	var seqs []uint64
	for i := range n {
		m := &bridge.Message{Device: []string{"fryer-1", "fryer-2"}[i%2], Point: []string{"temp", "oil"}[(i/2)%2], Value: bridge.Int(from + int64(i))}
		if err := s.ingest.Publish(context.Background(), m); err != nil {
			s.t.Fatal(err)
		}
		seqs = append(seqs, m.Sequence)
	}
	return seqs
}

func testConfig(url string) northbound.Config {
	return northbound.Config{
		Name:  "uns",
		Topic: "t/{gateway}/{device}/{point}",
		MQTT: &northbound.MQTT{
			URL: url, MaxInFlight: 32, AckTimeout: 3 * time.Second, ConnectTimeout: 2 * time.Second,
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		},
	}
}

// streamer publishes a message every millisecond, from its own goroutine,
// until stopped: the stream the broker's outage falls in the middle of.
type streamer struct {
	s    *site
	mu   sync.Mutex
	seqs []uint64
	err  error
	stop chan struct{}
	done chan struct{}
}

func (s *site) stream() *streamer {
	st := &streamer{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-st.stop:
				return
			case <-tick.C:
			}
			m := &bridge.Message{Device: []string{"fryer-1", "fryer-2"}[i%2], Point: []string{"temp", "oil"}[(i/2)%2], Value: bridge.Int(int64(i))}
			err := s.ingest.Publish(context.Background(), m)
			st.mu.Lock()
			if err != nil {
				st.err = err
			} else {
				st.seqs = append(st.seqs, m.Sequence)
			}
			st.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return st
}

func (st *streamer) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.seqs)
}

// end stops the stream and returns every sequence it published.
func (st *streamer) end(t testing.TB) []uint64 {
	close(st.stop)
	<-st.done
	if st.err != nil {
		t.Fatal(st.err)
	}
	return st.seqs
}

// TestBrokerRestartLosesNothing stops mosquitto in the middle of a stream and
// starts it again: every message arrives, in order per point, repeats only of
// what was in flight; then the link itself stops and a new one on the same log
// goes on from its durable position.
func TestBrokerRestartLosesNothing(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSite(t, t.TempDir())
	sub := newSubscriber(t, b, "t/#")
	l := s.link(testConfig(b.URL()))
	stop := run(t, l)

	st := s.stream()
	testwait.For(t, 20*time.Second, "the subscriber to get 200 messages", func() bool { return sub.distinct() >= 200 })
	b.Stop()
	testwait.For(t, 10*time.Second, "the link to notice the outage", func() bool { return !l.Status().Connected })
	during := st.count()
	testwait.For(t, 20*time.Second, "300 messages during the outage", func() bool { return st.count() >= during+300 })
	if bl := l.Backlog(); bl < 300 {
		t.Errorf("backlog %d while the broker is away, want at least 300", bl)
	}
	b.Start()
	atRestart := st.count()
	testwait.For(t, 30*time.Second, "the backlog and 100 live messages after the restart", func() bool { return sub.distinct() >= atRestart+100 })
	want := st.end(t)
	last := want[len(want)-1]
	testwait.For(t, 30*time.Second, "the backlog to drain", func() bool { return sub.distinct() >= len(want) })
	testwait.For(t, 10*time.Second, "the position to reach the end", func() bool { return l.Acked() == last })
	repeats := sub.check(t, want)
	t.Logf("%d messages through a broker restart: %d repeats", len(want), repeats)
	if repeats > 2*32 {
		t.Errorf("%d repeats, more than twice the window", repeats)
	}
	if status := l.Status(); status.Backlog != 0 || status.Published < uint64(len(want)) || status.Lost != 0 || status.Reconnects < 1 {
		t.Errorf("status after the drain: %+v", status)
	}

	// The link stops (as the gateway does), messages go on, a new link on the
	// same log starts from the durable position northbound-uns.
	stop()
	if pos, ok := s.j.Position("northbound-uns"); !ok || pos != last {
		t.Errorf("saved position %d, %v; want %d", pos, ok, last)
	}
	want = append(want, s.publish(200, 1000000)...)
	l2 := s.link(testConfig(b.URL()))
	run(t, l2)
	testwait.For(t, 20*time.Second, "the messages published while the link was stopped", func() bool { return sub.distinct() >= len(want) })
	if r := sub.check(t, want); r != repeats {
		t.Errorf("a clean restart of the link repeated %d messages", r-repeats)
	}
}

// TestMatchAndPosition: only what the match selects is published, and the
// position still moves over what it skips.
func TestMatchAndPosition(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSite(t, t.TempDir())
	sub := newSubscriber(t, b, "t/#")
	cfg := testConfig(b.URL())
	cfg.Match = northbound.Match{Devices: []string{"fryer-1"}, Points: []string{"t*"}}
	l := s.link(cfg)
	run(t, l)
	all := s.publish(100, 0)
	var want []uint64
	for i, q := range all {
		if i%4 == 0 { // fryer-1, temp
			want = append(want, q)
		}
	}
	testwait.For(t, 20*time.Second, "the position to reach the end", func() bool { return l.Acked() == all[len(all)-1] })
	testwait.For(t, 10*time.Second, "the selected messages", func() bool { return sub.distinct() >= len(want) })
	sub.check(t, want)
}

// TestPlaintextRefused: tcp:// to a broker off loopback is refused unless
// insecure: true; TLS or loopback is fine.
func TestPlaintextRefused(t *testing.T) {
	for _, c := range []struct {
		url      string
		tls      bool
		insecure bool
		refused  bool
	}{
		{url: "tcp://192.0.2.7:1883", refused: true},
		{url: "mqtt://broker.example", refused: true},
		{url: "tcp://192.0.2.7:1883", insecure: true},
		{url: "tcp://192.0.2.7:1883", tls: true},
		{url: "tls://broker.example:8883"},
		{url: "tcp://127.0.0.1:1883"},
		{url: "tcp://localhost:1883"},
	} {
		cfg := testConfig(c.url)
		cfg.MQTT.Insecure = c.insecure
		if c.tls {
			cfg.MQTT.TLS = &etlsFiles
		}
		cfg.SetDefaults()
		var msgs []string
		for _, p := range cfg.Validate(gatewayID) {
			msgs = append(msgs, p.Error())
		}
		refused := len(msgs) == 1 && strings.HasPrefix(msgs[0], "mqtt.url: plaintext to a non-loopback address")
		if refused != c.refused || (!c.refused && len(msgs) > 0) {
			t.Errorf("%s (tls %v, insecure %v): %q", c.url, c.tls, c.insecure, msgs)
		}
	}
	s := newSite(t, "")
	cfg := testConfig("tcp://192.0.2.7:1883")
	_, err := northbound.New(northbound.Options{Config: &cfg, GatewayID: gatewayID, Hub: s.hub})
	if err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("New with plaintext off loopback: %v", err)
	}
}

// etlsFiles is a tls section with nothing in it: TLS with the system's roots.
var etlsFiles = etls.Files{}

// recordingWriter is the write path's fake device side.
type recordingWriter struct {
	mu     sync.Mutex
	writes []string
	fail   error
}

func (w *recordingWriter) Write(_ context.Context, device, point string, v bridge.Value) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return w.fail
	}
	w.writes = append(w.writes, device+"/"+point+"="+v.String())
	return nil
}

func (w *recordingWriter) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// TestCommandsJSON: a publish on {topic}/set becomes a write through the
// gateway's write path; bad ones are refused and counted. Without a durable
// log, the link streams the live messages.
func TestCommandsJSON(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSite(t, "")
	s.publish(4, 0) // the devices and points become known
	cfg := testConfig(b.URL())
	cfg.AcceptCommands = true
	l := s.link(cfg)
	run(t, l)
	sub := newSubscriber(t, b, "t/#")
	testwait.For(t, 10*time.Second, "the link to connect", func() bool { return l.Status().Connected })

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("central"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	send := func(topic, payload string) {
		t.Helper()
		before := l.Status()
		if tok := pub.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		testwait.For(t, 10*time.Second, "the command "+topic+" "+payload+" to be handled", func() bool {
			st := l.Status()
			return st.Accepted+st.Refused+st.Failed > before.Accepted+before.Refused+before.Failed
		})
	}
	send("t/site-1/fryer-1/temp/set", "42")
	if got := s.writer.list(); len(got) != 1 || got[0] != "fryer-1/temp=42" {
		t.Fatalf("writes: %q", got)
	}
	send("t/site-1/fryer-2/oil/set", `{"value": 180.5}`)
	send("t/site-1/fryer-1/temp/set", "[1, 2]") // not a payload a point takes
	send("t/site-1/nobody/temp/set", "1")       // unknown device
	s.writer.mu.Lock()
	s.writer.fail = errors.New("device unreachable")
	s.writer.mu.Unlock()
	send("t/site-1/fryer-1/temp/set", "7")
	st := l.Status()
	if st.Accepted != 2 || st.Refused != 2 || st.Failed != 1 {
		t.Errorf("commands: accepted %d, refused %d, failed %d; want 2, 2, 1", st.Accepted, st.Refused, st.Failed)
	}
	if got := s.writer.list(); len(got) != 2 || got[1] != "fryer-2/oil=180.5" {
		t.Errorf("writes: %q", got)
	}
	// Live messages flow in memory mode.
	want := s.publish(20, 100)
	testwait.For(t, 10*time.Second, "the live messages", func() bool { return sub.distinct() >= 20 })
	sub.check(t, want)
}

// TestMemoryModeOutageLoses: without a durable log the link streams from the
// hub's memory; an outage longer than it holds loses the oldest messages,
// counted in lost_total, and the link goes on with what the hub still has.
func TestMemoryModeOutageLoses(t *testing.T) {
	b := mosquittotest.Start(t)
	s := newSiteWith(t, "", bridge.HubConfig{Retain: 64, QueueSize: 32})
	sub := newSubscriber(t, b, "t/#")
	l := s.link(testConfig(b.URL()))
	run(t, l)
	testwait.For(t, 10*time.Second, "the link to connect", func() bool { return l.Status().Connected })
	first := s.publish(10, 0)
	testwait.For(t, 10*time.Second, "the first messages", func() bool { return sub.distinct() >= 10 })
	b.Stop()
	testwait.For(t, 10*time.Second, "the link to notice the outage", func() bool { return !l.Status().Connected })
	during := s.publish(200, 100)
	b.Start()
	kept := during[len(during)-64:] // what the hub's memory still holds
	testwait.For(t, 20*time.Second, "what the hub still held", func() bool { return sub.distinct() >= len(first)+len(kept) })
	testwait.For(t, 10*time.Second, "the position to reach the end", func() bool { return l.Acked() == during[len(during)-1] })
	sub.check(t, append(first, kept...))
	if st := l.Status(); st.Lost != 200-64 {
		t.Errorf("lost %d, want %d", st.Lost, 200-64)
	}
}
