package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The durable section measures ingest as edgegate is deployed, with a data_dir
// (journal.sync: batch, the default), in the shapes of issue 14, against mosquitto
// from memory and against a durable peer, NATS JetStream on file storage:
//
//   - (a) QoS 1 pipelined from one client: mosquitto_pub -q 1 -l fed 20,000 lines,
//     with its default window of 20 in flight; the time until it exits.
//   - (b) QoS 1 from 100 clients, each waiting for its PUBACK before the next
//     message, 20,000 messages in all; the time until the last PUBACK.
//   - (c) QoS 0 from 10 clients, 10,000 messages each, to one subscriber (gRPC on
//     edgegate, MQTT on mosquitto): the rate and the share delivered within 20 s.
//   - QoS 1 latency, publish to receipt, at 7,000 msg/s from one client.
//   - QoS 0 from 100 clients, 1,000 messages each, to one subscriber: what is not
//     delivered within 20 s.
//   - JetStream: the messages of (a), published with PublishMsgAsync and the same
//     window; once as Debian's nats-server runs by default, and once with
//     sync_interval: always when the server knows the setting.
//   - The cost of one write + fsync of a small record on this disk: the floor
//     under any acknowledgement that waits for the disk.
//   - A restart with a large log: the time from exec to /readyz answering 200.
//
// Every case has a deadline (durableTimeout) after which it reports what it
// completed rather than waiting on: the durable path it measures may be slow.

// durableTimeout bounds one case.
const durableTimeout = 60 * time.Second

// deliveryWindow is how long the subscriber cases wait for their messages.
const deliveryWindow = 20 * time.Second

// pipelinedWindow is mosquitto_pub's default --max-inflight (client_shared.c:
// max_inflight = 20), passed explicitly so that every run uses the same.
const pipelinedWindow = 20

// latencyRate is the rate of the durable latency case, in all.
const latencyRate = 7000

// fsyncSamples is how many write+fsync pairs the floor is measured over.
const fsyncSamples = 1000

// durableSizes are the section's message counts.
type durableSizes struct {
	pipelined          int    // (a): lines fed to mosquitto_pub
	closedClients      int    // (b)
	closedTotal        int    // (b): in all
	floodClients       int    // (c)
	floodEach          uint64 // (c): per client
	manyClients        int    // the missing count
	manyEach           uint64 // per client
	retained, fsyncOps int
}

func (o *options) durableSizes() durableSizes {
	s := durableSizes{
		pipelined: 20_000, closedClients: 100, closedTotal: 20_000, floodClients: 10, floodEach: 10_000,
		manyClients: 100, manyEach: 1_000, retained: o.retained, fsyncOps: fsyncSamples,
	}
	if o.quick {
		s.pipelined, s.closedTotal, s.floodEach, s.manyEach, s.fsyncOps = 2_000, 2_000, 1_000, 100, 100
	}
	return s
}

// timedRun is a case that ran until every message was done or its deadline.
type timedRun struct {
	done, total uint64
	took        time.Duration // to the last message, or to the deadline
	dropped     uint64        // with a subscriber: sequence numbers it never saw, though it saw later ones
}

func (r timedRun) complete() bool { return r.done >= r.total }

// rate is messages done per second; a lower bound when the run timed out.
func (r timedRun) rate() float64 {
	if r.took <= 0 {
		return 0
	}
	return float64(r.done) / r.took.Seconds()
}

// cell is the time with the rate, or what completed before the deadline.
func (r *timedRun) cell() string {
	switch {
	case r == nil:
		return "n/a"
	case r.complete():
		return fmt.Sprintf("%s (%s msg/s)", fmtSeconds(r.took.Seconds()), fmtCount(r.rate()))
	}
	return fmt.Sprintf("timeout, %s of %s in %s (%s msg/s)", fmtCount(float64(r.done)), fmtCount(float64(r.total)),
		fmtSeconds(r.took.Seconds()), fmtCount(r.rate()))
}

// timedRow compares two runs by their rates (above 1: edgegate is faster).
func timedRow(name string, eg, peer *timedRun, peerName string) row {
	r := row{name: name, eg: eg.cell(), peer: peer.cell(), peerName: peerName}
	if eg != nil && peer != nil {
		r.ratio = ratioOf(eg.rate(), peer.rate())
	}
	return r
}

// deliveredCell is a subscriber case's rate and share delivered.
func (r *timedRun) deliveredCell() string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%s msg/s, %.0f%% delivered", fmtCount(r.rate()), 100*float64(r.done)/float64(r.total))
}

// missingCell is what a subscriber case did not deliver.
func (r *timedRun) missingCell() string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%s of %s missing (%s of them dropped)", fmtCount(float64(r.total-min(r.done, r.total))), fmtCount(float64(r.total)),
		fmtCount(float64(r.dropped)))
}

// each runs f for edgegate (durable) and for the peer (from memory), and returns
// their results, nil for one that failed (and is listed as not measured).
func (e *env) each(ctx context.Context, what string, f func(kind string) (*timedRun, error)) (eg, peer *timedRun) {
	var res [2]*timedRun
	for i, kind := range []string{kindEdgegate, kindMosquitto} {
		if (kind == kindMosquitto && e.mosquitto == "") || ctx.Err() != nil {
			continue
		}
		r, err := f(kind)
		if err != nil {
			if ctx.Err() == nil {
				e.fail(fmt.Sprintf("%s, %s", what, kind), err)
			}
			continue
		}
		e.logf("durable    %-9s %s: %d of %d in %v (%.0f msg/s)", kind, what, r.done, r.total, r.took.Round(time.Millisecond), r.rate())
		res[i] = r
	}
	return res[0], res[1]
}

func (e *env) durableSection(ctx context.Context) {
	sz := e.durableSizes()

	if p50, p99, err := e.fsyncFloor(sz.fsyncOps); err != nil {
		e.fail("fsync floor", err)
	} else {
		e.rows = append(e.rows, row{name: fmt.Sprintf("durable: write + fsync of a 64 B record on this disk, p50 / p99 of %s", fmtCount(float64(sz.fsyncOps))),
			eg: fmtDuration(p50) + " / " + fmtDuration(p99)})
	}

	name := fmt.Sprintf("durable (a) QoS 1 pipelined, 1 client, %s msgs, %d in flight (mosquitto_pub -l)", fmtCount(float64(sz.pipelined)), pipelinedWindow)
	pipeEG, pipePeer := e.each(ctx, name, func(kind string) (*timedRun, error) { return e.pipelined(ctx, kind, sz.pipelined) })
	e.rows = append(e.rows, timedRow(name+": time", pipeEG, pipePeer, ""))

	per := uint64(sz.closedTotal / sz.closedClients)
	name = fmt.Sprintf("durable (b) QoS 1, %d clients each waiting for its PUBACK, %s msgs", sz.closedClients, fmtCount(float64(per)*float64(sz.closedClients)))
	eg, peer := e.each(ctx, name, func(kind string) (*timedRun, error) {
		return e.counted(ctx, kind, pubLoad{qos: 1, publishers: sz.closedClients, count: per, window: 1}, false, durableTimeout)
	})
	e.rows = append(e.rows, timedRow(name+": time", eg, peer, ""))

	name = fmt.Sprintf("durable (c) QoS 0, %d clients × %s → 1 sub", sz.floodClients, fmtCount(float64(sz.floodEach)))
	eg, peer = e.each(ctx, name, func(kind string) (*timedRun, error) {
		return e.counted(ctx, kind, pubLoad{qos: 0, publishers: sz.floodClients, count: sz.floodEach}, true, deliveryWindow)
	})
	r := row{name: fmt.Sprintf("%s: msg/s, share delivered within %v", name, deliveryWindow), eg: eg.deliveredCell(), peer: peer.deliveredCell()}
	if eg != nil && peer != nil {
		r.ratio = ratioOf(eg.rate(), peer.rate())
	}
	e.rows = append(e.rows, r)

	if ctx.Err() == nil {
		e.durableLatency(ctx)
	}

	name = fmt.Sprintf("durable QoS 0, %d clients × %s → 1 sub", sz.manyClients, fmtCount(float64(sz.manyEach)))
	eg, peer = e.each(ctx, name, func(kind string) (*timedRun, error) {
		return e.counted(ctx, kind, pubLoad{qos: 0, publishers: sz.manyClients, count: sz.manyEach}, true, deliveryWindow)
	})
	e.rows = append(e.rows, row{name: fmt.Sprintf("%s: not delivered within %v", name, deliveryWindow), eg: eg.missingCell(), peer: peer.missingCell()})

	if ctx.Err() == nil {
		e.jetStreamRows(ctx, sz.pipelined, pipeEG)
	}
	if ctx.Err() == nil {
		e.restartRow(ctx, sz.retained)
	}
}

// durableLatency is QoS 1 publish to receipt at latencyRate from one client:
// edgegate durable (gRPC receipt) against mosquitto from memory (MQTT receipt).
func (e *env) durableLatency(ctx context.Context) {
	c := latCase{qos: 1, publishers: 1, durable: true}
	var res [2]*latResult
	for i, kind := range []string{kindEdgegate, kindMosquitto} {
		if kind == kindMosquitto && e.mosquitto == "" {
			continue
		}
		r, err := e.measureLatency(ctx, kind, c, latencyRate)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.fail(fmt.Sprintf("durable latency %s, %s", c, kind), err)
			continue
		}
		e.logf("durable    %-9s latency %s at %d msg/s: p50 %v p99 %v (%d samples, %d missing)",
			kind, c, latencyRate, r.p50, r.p99, r.samples, r.missing)
		res[i] = r
	}
	e.rows = append(e.rows, latRows(c, latencyRate, res[0], res[1])...)
}

// fsyncFloor appends a 64-byte record to a file in the directory the data dirs
// live in, and fsyncs it, n times: the median and p99 of one pair.
func (e *env) fsyncFloor(n int) (p50, p99 time.Duration, err error) {
	f, err := os.CreateTemp(e.tmp, "fsync-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, 64)
	samples := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := f.Write(rec); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		samples = append(samples, time.Since(start))
	}
	slices.Sort(samples)
	p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
	e.logf("fsync floor: %d write+fsync pairs of 64 B in %s: p50 %v p99 %v", n, e.tmp, p50, p99)
	return p50, p99, nil
}

// brokerFor starts the section's broker: edgegate durable, the peer from memory.
func (e *env) brokerFor(ctx context.Context, kind string) (*broker, error) {
	return e.startBroker(ctx, kind, brokerSetup{queue: subscriberQueue, durable: kind == kindEdgegate})
}

// pipelined feeds n lines ("1" to "n") to mosquitto_pub -q 1 -l, which sends each
// as a message with up to pipelinedWindow in flight, and times it from start to
// exit. Its debug output (-d) names each PUBACK, which counts what completed.
func (e *env) pipelined(ctx context.Context, kind string, n int) (*timedRun, error) {
	bin := findTool("mosquitto_pub", "/usr/bin/mosquitto_pub")
	if bin == "" {
		return nil, errors.New("mosquitto_pub not found (apt-get install mosquitto-clients)")
	}
	b, err := e.brokerFor(ctx, kind)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	host, port, err := net.SplitHostPort(b.mqttAddr)
	if err != nil {
		return nil, err
	}
	args := []string{"-h", host, "-p", port, "-i", publisherID(0), "-t", "devices/" + publisherID(0) + "/v",
		"-q", "1", "-l", "-M", strconv.Itoa(pipelinedWindow), "-d"}
	var acked atomic.Uint64
	start := time.Now()
	p, err := startProc("mosquitto_pub", bin, args, func(line string) {
		if strings.Contains(line, "received PUBACK") {
			acked.Add(1)
		}
	}, true)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	go feedLines(p.stdin, n)
	r := &timedRun{total: uint64(n)}
	select {
	case <-p.done:
		r.took, r.done = time.Since(start), acked.Load()
		if p.err != nil {
			return nil, fmt.Errorf("mosquitto_pub: %v\n%s", p.err, p.output())
		}
		if !r.complete() {
			return nil, fmt.Errorf("mosquitto_pub exited with %d of %d acknowledged\n%s", r.done, n, p.output())
		}
	case <-time.After(durableTimeout):
		r.took, r.done = durableTimeout, acked.Load()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.proc.exitedEarly() {
		return nil, b.proc.exited()
	}
	return r, nil
}

// feedLines writes the lines 1 to n to w and closes it. A write fails, and it
// stops, when the reader has gone.
func feedLines(w io.WriteCloser, n int) {
	defer w.Close()
	bw := bufio.NewWriter(w)
	for i := 1; i <= n; i++ {
		if _, err := fmt.Fprintf(bw, "%d\n", i); err != nil {
			return
		}
	}
	bw.Flush()
}

// counted runs l (a count per publisher) against a fresh broker and waits, at
// most limit, until every message is acknowledged, or, with a subscriber, until
// the subscriber has them all. done is what was acknowledged, or delivered.
func (e *env) counted(ctx context.Context, kind string, l pubLoad, withSub bool, limit time.Duration) (*timedRun, error) {
	b, err := e.brokerFor(ctx, kind)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	var subs []subscriber
	if withSub {
		if subs, err = openSubscribers(ctx, b, tpCase{qos: l.qos, publishers: l.publishers, subs: 1}); err != nil {
			return nil, err
		}
		defer closeSubscribers(subs)
	}
	pw, err := e.startPublishers(ctx, b.mqttAddr, l)
	if err != nil {
		return nil, err
	}
	defer pw.stop()
	start := time.Now()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	r := &timedRun{total: l.count * uint64(l.publishers)}
	for {
		select {
		case took := <-pw.done:
			if !withSub {
				// The worker's own clock: from its first publish to the last PUBACK.
				r.done, r.took = pw.acked.Load(), took
				return r, nil
			}
		case msg := <-pw.failed:
			return nil, errors.New(msg)
		case <-tick.C:
			if withSub {
				if n := snapshot(subs); n.received >= r.total {
					r.done, r.dropped, r.took = n.received, n.missing, time.Since(start)
					return r, subscriberErrors(subs)
				}
			}
			if b.proc.exitedEarly() {
				return nil, b.proc.exited()
			}
			if pw.p.exitedEarly() && pw.p.err != nil {
				return nil, pw.p.exited()
			}
		case <-deadline.C:
			r.took = limit
			if withSub {
				n := snapshot(subs)
				r.done, r.dropped = n.received, n.missing
				return r, subscriberErrors(subs)
			}
			r.done = pw.acked.Load()
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// jetStreamRows publishes the messages of shape (a) (n, the numbers 1 to n as
// text, pipelinedWindow unacknowledged) to JetStream on file storage, as Debian's
// nats-server runs by default and with sync_interval: always, and compares
// edgegate's durable run of (a), pipe, with each.
func (e *env) jetStreamRows(ctx context.Context, n int, pipe *timedRun) {
	bin := findNATSServer()
	if bin == "" {
		e.fail("durable peer", errors.New("nats-server is not installed (Debian: apt-get install nats-server)"))
		return
	}
	version := natsVersion(bin)
	for _, always := range []bool{false, true} {
		peerName := version + " JetStream, file, default sync"
		name := "jetstream-default"
		if always {
			peerName = version + " JetStream, file, sync_interval: always"
			name = "jetstream-always"
		}
		label := fmt.Sprintf("durable (a) against JetStream: %s msgs, async publish, %d in flight: msg/s", fmtCount(float64(n)), pipelinedWindow)
		r := row{name: label, peerName: peerName, eg: "n/a"}
		if pipe != nil {
			r.eg = fmtCount(pipe.rate())
			if !pipe.complete() {
				r.eg += " (timeout)"
			}
		}
		rate, err := e.jetStreamRate(ctx, bin, name, n, always)
		switch {
		case ctx.Err() != nil:
			return
		case always && err != nil && strings.Contains(err.Error(), "sync_interval"):
			// nats-server before 2.10 has no such setting, and refuses the config.
			e.logf("JetStream with sync_interval: always: %v", firstLine(err.Error()))
			r.peer = "not in " + version
		case err != nil:
			e.fail("durable peer "+peerName, err)
			continue
		default:
			e.logf("JetStream (%s): %d messages, %.0f msg/s", peerName, n, rate)
			r.peer = fmtCount(rate)
			if pipe != nil {
				r.ratio = ratioOf(pipe.rate(), rate)
			}
		}
		e.rows = append(e.rows, r)
	}
}

// jetStreamRate is one run of jetStreamRows on a fresh server.
func (e *env) jetStreamRate(ctx context.Context, bin, name string, n int, syncAlways bool) (float64, error) {
	hub, err := e.startNATSHub(ctx, bin, name, syncAlways)
	if err != nil {
		return 0, err
	}
	defer hub.stop()
	stream := jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage}
	return jsPublishAsync(ctx, hub.url, stream, pipelinedWindow, n, func(i int) *nats.Msg {
		return &nats.Msg{Subject: "bench.pipelined", Data: strconv.AppendInt(nil, int64(i+1), 10)}
	})
}

// natsVersion is "nats-server vX.Y.Z", from the binary.
func natsVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	// It says "nats-server: v2.9.10".
	if v := strings.TrimSpace(strings.Replace(string(out), ":", "", 1)); err == nil && v != "" {
		return v
	}
	return "nats-server"
}

// restartRow fills a data_dir with n messages, starts the gateway on it, stops it
// gracefully, starts it again, and reports the time from exec to /readyz answering
// 200, both times. The log is written with the gateway's own journal package,
// batches of 1,000 with one fsync each: a million through MQTT would take longer
// than the measurement, and today's durable ingest much longer.
func (e *env) restartRow(ctx context.Context, n int) {
	dir, err := os.MkdirTemp(e.tmp, "restart-")
	if err != nil {
		e.fail("restart", err)
		return
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if err := fillJournal(ctx, filepath.Join(dir, "journal"), uint64(n)); err != nil {
		e.fail("restart: filling the log", err)
		return
	}
	e.logf("restart: %d messages written to %s in %v", n, dir, time.Since(start).Round(time.Millisecond))
	var took [2]time.Duration
	for i := range took {
		t, retained, err := e.timeToReady(ctx, dir)
		if err != nil {
			if ctx.Err() == nil {
				e.fail(fmt.Sprintf("restart %d", i+1), err)
			}
			return
		}
		if retained != uint64(n) {
			e.fail("restart", fmt.Errorf("the gateway reports %d messages retained, not %d", retained, n))
			return
		}
		e.logf("restart %d with %d retained: /readyz 200 after %v", i+1, retained, t.Round(time.Millisecond))
		took[i] = t
	}
	e.rows = append(e.rows, row{
		name: fmt.Sprintf("durable restart with %s retained: exec → /readyz 200, first start / after a graceful stop (goal ≤ 2 s)", fmtCount(float64(n))),
		eg:   fmtSeconds(took[0].Seconds()) + " / " + fmtSeconds(took[1].Seconds()),
	})
}

// fillJournal writes n benchmark messages, sequences 1 to n, to a new log in dir.
func fillJournal(ctx context.Context, dir string, n uint64) error {
	j, err := journal.Open(dir, journal.Options{Sync: journal.SyncBatch})
	if err != nil {
		return err
	}
	const batch = 1000
	msgs := make([]*bridge.Message, 0, batch)
	for seq := uint64(1); seq <= n; seq++ {
		msgs = append(msgs, benchMessage(seq))
		if len(msgs) == batch || seq == n {
			if err := j.Append(msgs); err != nil {
				j.Close()
				return err
			}
			if err := j.WaitDurable(ctx, seq); err != nil {
				j.Close()
				return err
			}
			msgs = msgs[:0]
		}
	}
	return j.Close()
}

// timeToReady starts the gateway on dataDir, waits for /readyz to answer 200, reads
// how many messages it retains from /metrics, and stops it with SIGTERM, which it
// must survive with exit status 0.
func (e *env) timeToReady(ctx context.Context, dataDir string) (time.Duration, uint64, error) {
	mqttAddr, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	httpAddr, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	cfg := filepath.Join(e.tmp, "edgegate-restart.yaml")
	if err := os.WriteFile(cfg, []byte(gatewayConfig(mqttAddr, brokerSetup{dataDir: dataDir, httpAddr: httpAddr})), 0o600); err != nil {
		return 0, 0, err
	}
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	p, err := startProc(kindEdgegate, e.gateway, []string{"serve", "--config", cfg}, nil, false)
	if err != nil {
		return 0, 0, err
	}
	defer p.stop()
	var took time.Duration
	for {
		if resp, err := client.Get("http://" + httpAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				took = time.Since(start)
				break
			}
		}
		if time.Since(start) > durableTimeout {
			return 0, 0, fmt.Errorf("/readyz not 200 within %v:\n%s", durableTimeout, p.output())
		}
		select {
		case <-p.done:
			return 0, 0, p.exited()
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	retained, err := journalRetained(ctx, httpAddr)
	if err != nil {
		return 0, 0, err
	}
	p.stop()
	if p.err != nil {
		return 0, 0, fmt.Errorf("the gateway's graceful stop: %v\n%s", p.err, p.output())
	}
	return took, retained, nil
}

// journalRetained reads the number of messages retained from /metrics.
func journalRetained(ctx context.Context, httpAddr string) (uint64, error) {
	text, err := gatewayMetrics(ctx, httpAddr)
	if err != nil {
		return 0, err
	}
	first, last, err := parseRetained(text)
	if err != nil {
		return 0, err
	}
	if last < first {
		return 0, nil
	}
	return last - first + 1, nil
}

// parseRetained finds edgegate_journal_first_sequence and _last_sequence in a
// Prometheus text exposition (whose values may be written as 1e+06).
func parseRetained(text string) (first, last uint64, err error) {
	var found int
	for line := range strings.SplitSeq(text, "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || (name != "edgegate_journal_first_sequence" && name != "edgegate_journal_last_sequence") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || v < 0 {
			return 0, 0, fmt.Errorf("/metrics: %s: %q is not a sequence", name, val)
		}
		if name == "edgegate_journal_first_sequence" {
			first = uint64(v)
		} else {
			last = uint64(v)
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/metrics has no edgegate_journal_first_sequence and edgegate_journal_last_sequence")
	}
	return first, last, nil
}
