package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/bridge/pbconv"
	"github.com/edgegate/edgegate/uplink"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// The uplink section measures the fleet uplink (package uplink, in this process)
// forwarding the durable log to a local hub: Debian's nats-server with JetStream,
// a child process on a loopback port, a fresh one per measurement.
//
//   - forwarded msg/s: the uplink keeps up with a log that writers append to as
//     fast as they can, for --duration; what the hub acknowledged counts.
//   - drain: a backlog of a million messages (--quick: 20,000) waits in the log
//     while the hub is away; then the uplink runs until the hub has it all.
//
// The peer is nats.go itself: the same encoded messages published from memory
// with PublishMsgAsync and the same window, no log, no positions: the ceiling the
// uplink's own work is measured against.

// uplinkWindow is max_in_flight in the measurements (the default).
const uplinkWindow = 256

func findNATSServer() string { return findTool("nats-server", "/usr/sbin/nats-server") }

// findTool returns name as found on PATH, else fallback if it exists, else "".
func findTool(name, fallback string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return ""
}

// natsHub is a nats-server child process.
type natsHub struct {
	proc *proc
	url  string
}

// startNATSHub starts nats-server with JetStream on file storage in a directory of
// its own; syncAlways asks it to fsync every write (sync_interval: always, a
// config file setting that nats-server 2.10 introduced: an older server refuses
// to start, and the error says so).
func (e *env) startNATSHub(ctx context.Context, bin, name string, syncAlways bool) (*natsHub, error) {
	dir := filepath.Join(e.tmp, "nats-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "store")
	args := []string{"-js", "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir}
	if syncAlways {
		// The store directory goes in the file too: given both ways, the server
		// refuses it as a duplicate.
		conf := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", store)), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-c", conf)
	} else {
		args = append(args, "-sd", store)
	}
	p, err := startProc("nats-server", bin, args, nil, false)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.ports"))
		for _, m := range matches {
			b, err := os.ReadFile(m)
			var ports struct{ Nats []string }
			if err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
				return &natsHub{proc: p, url: ports.Nats[0]}, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("nats-server wrote no ports file in 10s\n%s", p.output())
		}
		select {
		case <-p.done:
			return nil, p.exited()
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *natsHub) stop() { h.proc.stop() }

// uplinkLog is a durable log with the hub's lock around appends.
type uplinkLog struct {
	*journal.Journal
	mu   sync.Mutex
	next uint64
}

func (l *uplinkLog) appendBatch(n int) error {
	msgs := make([]*bridge.Message, n)
	l.mu.Lock()
	for i := range msgs {
		msgs[i] = benchMessage(l.next)
		l.next++
	}
	err := l.Append(msgs)
	l.mu.Unlock()
	return err
}

type nopWriter struct{}

func (nopWriter) Write(context.Context, string, string, bridge.Value) error { return nil }

// runUplink runs an uplink on j to url until stop; it returns a function that
// stops it and waits.
func runUplink(j *uplinkLog, dir, url string) (*uplink.Uplink, func(), error) {
	u, err := uplink.New(uplink.Options{
		Config: &uplink.Config{NATS: &uplink.NATS{URL: url, CreateStreams: true, MaxInFlight: uplinkWindow,
			ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond, DuplicateWindow: 2 * time.Minute}},
		GatewayID: "bench", DataDir: dir, Log: j, Writer: nopWriter{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.Run(ctx)
	}()
	return u, func() { cancel(); <-done }, nil
}

func openUplinkLog(dir string) (*uplinkLog, error) {
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Sync: journal.SyncBatch, MaxBytes: 8 << 30})
	if err != nil {
		return nil, err
	}
	return &uplinkLog{Journal: j, next: j.NextSequence()}, nil
}

// waitForwarded waits until the uplink has the hub's acknowledgement for seq.
func waitForwarded(ctx context.Context, u *uplink.Uplink, seq uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for u.Status().AckedSequence < seq {
		if time.Now().After(deadline) {
			st := u.Status()
			return fmt.Errorf("acknowledged %d of %d after %v (last error: %s)", st.AckedSequence, seq, limit, st.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func (e *env) uplinkSection(ctx context.Context) {
	bin := findNATSServer()
	if bin == "" {
		e.fail("uplink", errors.New("nats-server is not installed (Debian: apt-get install nats-server)"))
		return
	}
	backlog := 1_000_000
	if e.quick {
		backlog = 20_000
	}
	peerName := "nats.go PublishMsgAsync, no log"

	// Forwarding while writers append.
	live, err := e.uplinkLive(ctx, bin)
	if err != nil {
		e.fail("uplink forwarding", err)
		return
	}
	peerRate, err := e.rawPublish(ctx, bin, "peer-live", int(max(10_000, live*e.duration.Seconds())))
	if err != nil {
		e.fail("uplink peer", err)
	}
	e.rows = append(e.rows, rateRow(fmt.Sprintf("uplink forwarded msg/s to a local hub, 256 B, %d in flight", uplinkWindow), live, peerRate, peerName))

	drain, err := e.uplinkDrain(ctx, bin, backlog)
	if err != nil {
		e.fail("uplink drain", err)
		return
	}
	peerDrainRate, err := e.rawPublish(ctx, bin, "peer-drain", backlog)
	if err != nil {
		e.fail("uplink peer drain", err)
	}
	r := row{name: fmt.Sprintf("uplink drain of a %s-message backlog", fmtCount(float64(backlog))), eg: fmtSeconds(drain), peerName: peerName}
	if peerDrainRate > 0 {
		peerDrain := float64(backlog) / peerDrainRate
		r.peer, r.ratio = fmtSeconds(peerDrain), ratioOf(drain, peerDrain)
	}
	e.rows = append(e.rows, r)
}

// uplinkLive measures forwarding while 8 writers append batches of 64.
func (e *env) uplinkLive(ctx context.Context, bin string) (float64, error) {
	hub, err := e.startNATSHub(ctx, bin, "live", false)
	if err != nil {
		return 0, err
	}
	defer hub.stop()
	dir := filepath.Join(e.tmp, "uplink-live")
	defer os.RemoveAll(dir)
	j, err := openUplinkLog(dir)
	if err != nil {
		return 0, err
	}
	defer j.Close()
	u, stop, err := runUplink(j, dir, hub.url)
	if err != nil {
		return 0, err
	}
	defer stop()
	wctx, cancel := context.WithTimeout(ctx, e.warmup+e.duration)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Keep the log only a little ahead of the hub: this is forwarding,
			// not a drain. The ticker paces the writers while they are ahead.
			pace := time.NewTicker(time.Millisecond)
			defer pace.Stop()
			for wctx.Err() == nil {
				if j.Last() > u.Status().AckedSequence+16*uplinkWindow {
					select {
					case <-pace.C:
					case <-wctx.Done():
					}
					continue
				}
				if err := j.appendBatch(64); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	if err := sleepCtx(ctx, e.warmup); err != nil {
		return 0, err
	}
	start, from := time.Now(), u.Status().AckedSequence
	<-wctx.Done()
	rate := float64(u.Status().AckedSequence-from) / time.Since(start).Seconds()
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	e.logf("uplink forwarding: %.0f msg/s with writers appending", rate)
	return rate, nil
}

// uplinkDrain fills a log while no uplink runs, then times the drain.
func (e *env) uplinkDrain(ctx context.Context, bin string, n int) (float64, error) {
	hub, err := e.startNATSHub(ctx, bin, "drain", false)
	if err != nil {
		return 0, err
	}
	defer hub.stop()
	dir := filepath.Join(e.tmp, "uplink-drain")
	defer os.RemoveAll(dir)
	j, err := openUplinkLog(dir)
	if err != nil {
		return 0, err
	}
	defer j.Close()
	for left := n; left > 0; left -= 1000 {
		if err := j.appendBatch(min(left, 1000)); err != nil {
			return 0, err
		}
	}
	last := j.Last()
	if err := j.WaitDurable(ctx, last); err != nil {
		return 0, err
	}
	start := time.Now()
	u, stop, err := runUplink(j, dir, hub.url)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := waitForwarded(ctx, u, last, 30*time.Minute); err != nil {
		return 0, err
	}
	took := time.Since(start).Seconds()
	e.logf("uplink drain: %d messages in %.2fs (%.0f msg/s), %d duplicates", n, took, float64(n)/took, u.Status().Duplicates)
	return took, nil
}

// rawPublish publishes n encoded messages from memory with PublishMsgAsync and
// the same window, and returns messages per second.
func (e *env) rawPublish(ctx context.Context, bin, name string, n int) (float64, error) {
	hub, err := e.startNATSHub(ctx, bin, name, false)
	if err != nil {
		return 0, err
	}
	defer hub.stop()
	m := benchMessage(1)
	data, err := benchPayload(m)
	if err != nil {
		return 0, err
	}
	subject := uplink.DataSubject("bench", m.Device, m.Point)
	stream := jetstream.StreamConfig{Name: uplink.DataStream, Subjects: []string{"edgegate.data.>"}, Storage: jetstream.FileStorage}
	rate, err := jsPublishAsync(ctx, hub.url, stream, uplinkWindow, n, func(i int) *nats.Msg {
		return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{uplink.HeaderMsgID: []string{uplink.MsgID("bench", uint64(i+1))}}}
	})
	if err != nil {
		return 0, err
	}
	e.logf("nats.go async publish (%s): %d messages, %.0f msg/s", name, n, rate)
	return rate, nil
}

// jsPublishAsync creates the stream on the hub at url and publishes n messages
// (msg(0) to msg(n-1)) with PublishMsgAsync, at most window unacknowledged, and
// returns messages acknowledged per second, from the first publish to the last
// acknowledgement.
func jsPublishAsync(ctx context.Context, url string, stream jetstream.StreamConfig, window, n int, msg func(i int) *nats.Msg) (float64, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, stream); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := range n {
		if _, err := js.PublishMsgAsync(msg(i)); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(10 * time.Minute):
		return 0, errors.New("publishes not acknowledged in 10 minutes")
	}
	rate := float64(n) / time.Since(start).Seconds()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d of %d publishes failed", f, n)
	}
	return rate, nil
}

// benchPayload is a message as the uplink encodes it (protobuf).
func benchPayload(m *bridge.Message) ([]byte, error) { return proto.Marshal(pbconv.ToProto(m)) }
