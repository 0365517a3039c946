package uplink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/internal/testwait"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/uplink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// startHub runs an embedded NATS server with JetStream on a random loopback port,
// storing in dir (so a restart on the same dir keeps the streams).
func startHub(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// proxy is a TCP proxy the test controls: Cut closes every connection and
// refuses new ones until Restore, as a hub that went away would.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// Cut drops every connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *proxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// site is a gateway's core in-process: a durable log, the hub over it, and an
// uplink.
type site struct {
	t       testing.TB
	dir     string
	j       *journal.Journal
	hub     *bridge.Hub
	ingest  *bridge.Ingest
	up      *uplink.Uplink
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	writer  *recordingWriter
	stopped bool
}

// recordingWriter is the site's device side of writes: it records every write
// the hub routes to it, and runs hook first when one is set.
type recordingWriter struct {
	mu     sync.Mutex
	writes []string
	hook   func(device, point string) error
}

func (w *recordingWriter) Write(_ context.Context, device, point string, v bridge.Value) error {
	w.mu.Lock()
	hook := w.hook
	w.writes = append(w.writes, device+"/"+point+"="+v.String())
	w.mu.Unlock()
	if hook != nil {
		return hook(device, point)
	}
	return nil
}

func (w *recordingWriter) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

const gatewayID = "site-1"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newSite opens the log in dir and builds an uplink with cfg (not yet running).
func newSite(t testing.TB, dir string, cfg uplink.NATS) *site {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Sync: journal.SyncBatch, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, dir: dir, j: j, writer: &recordingWriter{}, reg: prometheus.NewRegistry()}
	s.hub = bridge.NewHub(bridge.HubConfig{Journal: j, FirstSequence: j.NextSequence()}, nil)
	s.hub.SetWriter(bridge.ProtocolMQTT, s.writer)
	s.ingest = s.hub.Ingest(bridge.ProtocolMQTT)
	c := cfg
	up, err := uplink.New(uplink.Options{
		Config: &uplink.Config{NATS: &c}, GatewayID: gatewayID, DataDir: dir,
		Log: j, Writer: s.hub, Logger: quietLogger(), Metrics: s.reg,
	})
	if err != nil {
		j.Close()
		t.Fatal(err)
	}
	s.up = up
	t.Cleanup(s.stop)
	return s
}

func (s *site) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan error, 1)
	go func() { s.done <- s.up.Run(ctx) }()
}

// stop stops the uplink (bounded) and closes the hub and the log.
func (s *site) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.cancel != nil {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				s.t.Errorf("uplink Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			s.t.Fatal("uplink did not stop within 15s")
		}
	}
	s.hub.Close()
	if err := s.j.Close(); err != nil {
		s.t.Errorf("journal close: %v", err)
	}
}

// publish ingests one message per value of the named point.
func (s *site) publish(device, point string, prio bridge.Priority, values ...int64) {
	s.t.Helper()
	for _, v := range values {
		m := &bridge.Message{Device: device, Point: point, Value: bridge.Int(v), Priority: prio}
		if err := s.ingest.Publish(context.Background(), m); err != nil {
			s.t.Fatal(err)
		}
	}
}

// waitFor polls cond (every 10ms) until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// waitAcked waits until the hub has acknowledged everything in the log.
func (s *site) waitAcked(d time.Duration) {
	s.t.Helper()
	waitFor(s.t, d, "the hub to acknowledge the whole log", func() bool {
		st := s.up.Status()
		return st.AckedSequence >= s.hub.LastSequence()
	})
}

// fastConfig is a config for tests: quick reconnects, small windows.
func fastConfig(url string) uplink.NATS {
	return uplink.NATS{
		URL: url, CreateStreams: true,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		AckTimeout: 3 * time.Second, ConnectTimeout: 2 * time.Second,
		MaxInFlight: 32, PriorityLag: 100,
		CommandTimeout: 500 * time.Millisecond, CommandAckWait: time.Second,
	}
}

// stored is one message in the hub's EDGEGATE stream.
type stored struct {
	subject string
	msgID   string
	msg     *pb.Message
}

// hubMessages reads the whole EDGEGATE stream, in stream order.
func hubMessages(t testing.TB, url string) []stored {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, uplink.DataStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(int(min(1000, info.State.Msgs-uint64(len(out)))), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			pm := &pb.Message{}
			if err := proto.Unmarshal(m.Data(), pm); err != nil {
				t.Fatalf("message %s: %v", m.Subject(), err)
			}
			out = append(out, stored{subject: m.Subject(), msgID: m.Headers().Get(uplink.HeaderMsgID), msg: pm})
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("stream says %d messages, read %d", info.State.Msgs, len(out))
		}
	}
	return out
}

// checkOnceInOrder checks that the hub holds each sequence in want exactly once,
// nothing else, and each subject's messages in sequence order.
func checkOnceInOrder(t testing.TB, got []stored, want map[uint64]bool) {
	t.Helper()
	seen := map[uint64]int{}
	lastBySubject := map[string]uint64{}
	for _, s := range got {
		seq := s.msg.GetSequence()
		seen[seq]++
		if wantID := uplink.MsgID(gatewayID, seq); s.msgID != wantID {
			t.Errorf("sequence %d: Nats-Msg-Id %q, want %q", seq, s.msgID, wantID)
		}
		if prev, ok := lastBySubject[s.subject]; ok && seq <= prev {
			t.Errorf("subject %s: sequence %d stored after %d", s.subject, seq, prev)
		}
		lastBySubject[s.subject] = seq
	}
	var missing, extra, twice []uint64
	for seq := range want {
		if seen[seq] == 0 {
			missing = append(missing, seq)
		}
	}
	for seq, n := range seen {
		if !want[seq] {
			extra = append(extra, seq)
		}
		if n > 1 {
			twice = append(twice, seq)
		}
	}
	if len(missing)+len(extra)+len(twice) > 0 {
		t.Errorf("hub stream: %d missing (%v), %d not in the log (%v), %d more than once (%v)",
			len(missing), head(missing), len(extra), head(extra), len(twice), head(twice))
	}
}

func head(s []uint64) []uint64 {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// logSequences lists every sequence in a log directory (read with a fresh
// journal once the writer has closed it).
func logSequences(t testing.TB, j bridge.Journal) map[uint64]bool {
	t.Helper()
	out := map[uint64]bool{}
	r := j.NewReader()
	defer r.Close()
	buf := make([]*bridge.Message, 0, 512)
	from := j.First()
	for {
		got, err := r.Read(from, buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return out
		}
		for _, m := range got {
			out[m.Sequence] = true
		}
		from = got[len(got)-1].Sequence + 1
	}
}

// hubClient is the central system's side: it sends commands and reads results.
type hubClient struct {
	t       testing.TB
	nc      *nats.Conn
	js      jetstream.JetStream
	results chan *pb.WriteResponse
	count   atomic.Int64
}

func newHubClient(t testing.TB, url string) *hubClient {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h := &hubClient{t: t, nc: nc, js: js, results: make(chan *pb.WriteResponse, 100)}
	if _, err := nc.Subscribe(uplink.ResultSubject(gatewayID), func(m *nats.Msg) {
		r := &pb.WriteResponse{}
		unmarshal := proto.Unmarshal
		if len(m.Data) > 0 && m.Data[0] == '{' {
			unmarshal = protojson.Unmarshal // encoding: json
		}
		if err := unmarshal(m.Data, r); err != nil {
			t.Errorf("result: %v", err)
			return
		}
		h.count.Add(1)
		select {
		case h.results <- r:
		default:
			t.Errorf("too many results")
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return h
}

// ensureCommandStream creates EDGEGATE_CMD as create_streams would, so that the
// test can send commands before any gateway ever connected.
func (h *hubClient) ensureCommandStream() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: uplink.CommandStream, Subjects: []string{"edgegate.cmd.>"}})
	if err != nil {
		h.t.Fatal(err)
	}
}

// send publishes a command; expires may be zero.
func (h *hubClient) send(req *pb.WriteRequest, expires time.Time) {
	h.t.Helper()
	data, err := proto.Marshal(req)
	if err != nil {
		h.t.Fatal(err)
	}
	m := &nats.Msg{Subject: uplink.CommandSubject(gatewayID), Data: data, Header: nats.Header{}}
	if !expires.IsZero() {
		m.Header.Set(uplink.HeaderExpires, expires.UTC().Format(time.RFC3339Nano))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		h.t.Fatal(err)
	}
}

// result waits for the next result.
func (h *hubClient) result(d time.Duration) *pb.WriteResponse {
	h.t.Helper()
	select {
	case r := <-h.results:
		return r
	case <-time.After(d):
		h.t.Fatalf("no command result within %v", d)
		return nil
	}
}

func intValue(v int64) *pb.Value { return &pb.Value{Kind: &pb.Value_IntValue{IntValue: v}} }

func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

var _ = strings.Contains
var _ = fmt.Sprint
var _ = os.Getenv

// hubRaw returns the raw payloads of the EDGEGATE stream.
func hubRaw(t testing.TB, url string) [][]byte {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, uplink.DataStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := str.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}
