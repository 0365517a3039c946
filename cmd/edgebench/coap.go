package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The CoAP section: many CoAP clients (bin/edgesim coap --load, a child process,
// each client its own UDP socket) POST confirmable JSON readings through one gateway
// (bin/edgegate, CoAP over UDP) to one gRPC subscriber. Each client has one request
// in flight (CoAP's NSTART of 1), so the load is closed-loop: the clients send as
// fast as the gateway acknowledges, and it acknowledges a reading only once the
// bridge has it. It measures the readings delivered per second on gRPC and the
// latency from the reading's timestamp (taken by the client as it builds the
// request) to its receipt on the stream, p50 and p99, under that full load and
// again at half the rate; and the gateway's CPU and memory. There is no peer in the
// same run; for scale, a Java CoAP server (Californium) is reported at about 40,000
// requests a second with 500 clients on one machine.
//
// To run it, call e.coapSection(ctx) from bench() under a section name (e.g. "coap");
// it needs bin/edgesim beside the gateway binary (`make build` makes both). Without
// wiring: EDGEBENCH_COAP=1 go test -run TestCoAPSection -v ./cmd/edgebench/ runs it
// against bin/edgegate (see coap_test.go).

// Defaults of the section.
const (
	coapBenchClients = 500
	coapBenchPrefix  = "cb-"
)

// coapResult is one run's figures.
type coapResult struct {
	clients  int
	rate     float64 // readings delivered per second on gRPC
	acked    float64 // requests acknowledged per second, by the clients' count (full load only)
	p50, p99 time.Duration
	samples  int
	gwCPU    float64 // cores
	simCPU   float64
	gwRSS    uint64
}

func (e *env) coapSection(ctx context.Context) {
	clients := coapBenchClients
	if e.quick {
		clients = 50
	}
	full, err := e.measureCoAP(ctx, clients, 0, false)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.fail("coap", err)
		return
	}
	e.logf("coap       %d clients, full load: %.0f readings/s on gRPC (%.0f/s acknowledged), p50 %v p99 %v, gateway CPU %.0f%%, load generator CPU %.0f%%",
		clients, full.rate, full.acked, full.p50, full.p99, 100*full.gwCPU, 100*full.simCPU)
	half, err := e.measureCoAP(ctx, clients, full.rate/2, false)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.fail("coap at half load", err)
	} else {
		e.logf("coap       %d clients at %.0f/s: p50 %v p99 %v", clients, full.rate/2, half.p50, half.p99)
	}
	// The durable twin: the same full load with a data_dir, where each CON's ACK
	// waits for its reading's fsync.
	dur, err := e.measureCoAP(ctx, clients, 0, true)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.fail("coap, data_dir", err)
	} else {
		e.logf("coap       %d clients, full load, data_dir: %.0f readings/s on gRPC (%.0f/s acknowledged), p50 %v p99 %v",
			clients, dur.rate, dur.acked, dur.p50, dur.p99)
	}
	name := fmt.Sprintf("coap %d UDP clients (CON, 1 in flight each) → 1 gRPC sub", clients)
	latency := func(r *coapResult) string { return fmtDuration(r.p50) + " / " + fmtDuration(r.p99) }
	e.rows = append(e.rows, row{name: name + ": readings/s", eg: fmtCount(full.rate)})
	if dur != nil {
		e.rows = append(e.rows, row{name: name + ", data_dir: readings/s", eg: fmtCount(dur.rate)})
	}
	e.rows = append(e.rows, row{name: name + ": latency p50 / p99 at full load", eg: latency(full)})
	if dur != nil {
		e.rows = append(e.rows, row{name: name + ", data_dir: latency p50 / p99 at full load", eg: latency(dur)})
	}
	if half != nil {
		e.rows = append(e.rows, row{name: fmt.Sprintf("%s: latency p50 / p99 at %s/s", name, fmtCount(full.rate/2)), eg: latency(half)})
	}
	e.rows = append(e.rows,
		row{name: name + ": gateway CPU (cores) at full load", eg: fmt.Sprintf("%.2f", full.gwCPU)},
		row{name: name + ": gateway RSS at full load", eg: fmtBytes(float64(full.gwRSS))},
	)
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// coapGatewayConfig is CoAP over UDP for the clients, and a ring and queue that hold
// seconds of the stream, so that the figure is the adapter's and the stream's
// rate, not the slow-consumer policy's. A dataDir makes it durable.
func coapGatewayConfig(addr string, clients int, dataDir string) string {
	var b strings.Builder
	b.WriteString("gateway:\n  id: edgebench\n  log_level: info\n")
	if dataDir != "" {
		fmt.Fprintf(&b, "  data_dir: %q\n", dataDir)
	}
	fmt.Fprintf(&b, "  retain: %d\n  subscriber_queue: %d\n  slow_consumer: drop_oldest\n", 1<<19, 1<<18)
	b.WriteString("grpc: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"127.0.0.1:0\"}\n")
	if dataDir != "" {
		b.WriteString("journal: {sync: batch}\n")
	}
	fmt.Fprintf(&b, "coap:\n  listeners: [{type: udp, address: %q}]\n  max_connections: %d\n", addr, clients+64)
	return b.String()
}

// measureCoAP runs the clients against a fresh gateway: as fast as they are
// acknowledged when rate is 0, else at rate readings a second in all; with a
// data_dir of its own when durable.
func (e *env) measureCoAP(ctx context.Context, clients int, rate float64, durable bool) (*coapResult, error) {
	simBin, err := e.edgesimPath()
	if err != nil {
		return nil, err
	}
	addr, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(e.tmp, "edgegate-coap.yaml")
	var dataDir string
	if durable {
		if dataDir, err = os.MkdirTemp(e.tmp, "data-coap-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dataDir)
	}
	if err := os.WriteFile(cfg, []byte(coapGatewayConfig(addr, clients, dataDir)), 0o600); err != nil {
		return nil, err
	}
	readyCh := make(chan readyLine, 1)
	gw, err := startProc(kindEdgegate, e.gateway, []string{"serve", "--config", cfg}, func(line string) {
		if !strings.Contains(line, `"edgegate ready"`) {
			return
		}
		var rl readyLine
		if json.Unmarshal([]byte(line), &rl) == nil {
			select {
			case readyCh <- rl:
			default:
			}
		}
	}, false)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	var rl readyLine
	select {
	case rl = <-readyCh:
	case <-gw.done:
		return nil, gw.exited()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("edgegate did not log \"edgegate ready\" within 60s:\n%s", gw.output())
	}

	sub, err := subscribeCoAP(ctx, rl.GRPC)
	if err != nil {
		return nil, err
	}
	defer sub.close()

	args := []string{"coap", "--server", "coap://" + addr, "--devices", strconv.Itoa(clients), "--points", "1",
		"--payload", "json", "--observe=false", "--prefix", coapBenchPrefix, "--stats", "1h"}
	if rate == 0 {
		args = append(args, "--load", "--inflight", "1")
	} else {
		args = append(args, "--rate", strconv.FormatFloat(rate/float64(clients), 'f', -1, 64))
	}
	connected := make(chan struct{})
	var once sync.Once
	var acked atomic.Uint64
	sim, err := startProc("edgesim", simBin, args, func(line string) {
		if strings.Contains(line, "msg=connected") {
			once.Do(func() { close(connected) })
		}
		// Load mode's lines: "t=1s rate=12345 msg/s delivered=N ..."
		if i := strings.Index(line, "delivered="); i >= 0 {
			f := strings.Fields(line[i+len("delivered="):])
			if len(f) > 0 {
				if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					acked.Store(v)
				}
			}
		}
	}, false)
	if err != nil {
		return nil, err
	}
	defer sim.stop()
	select {
	case <-connected:
	case <-sim.done:
		return nil, sim.exited()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("the clients did not connect within 60s:\n%s", sim.output())
	}
	if err := sleepCtx(ctx, e.warmup); err != nil {
		return nil, err
	}
	r0, a0, t0 := sub.received.Load(), acked.Load(), time.Now()
	g0, gerr := procCPU(gw.pid())
	s0, serr := procCPU(sim.pid())
	sub.recording.Store(true)
	err = sleepCtx(ctx, e.duration)
	sub.recording.Store(false)
	r1, a1, t1 := sub.received.Load(), acked.Load(), time.Now()
	g1, gerr1 := procCPU(gw.pid())
	s1, serr1 := procCPU(sim.pid())
	if err != nil {
		return nil, err
	}
	if err := errors.Join(gerr, serr, gerr1, serr1); err != nil {
		return nil, err
	}
	if gw.exitedEarly() {
		return nil, gw.exited()
	}
	if sim.exitedEarly() {
		return nil, sim.exited()
	}
	if err := sub.failed(); err != nil {
		return nil, err
	}
	if r1 == r0 {
		return nil, fmt.Errorf("no reading arrived; the clients say:\n%s", sim.output())
	}
	rss, _ := gw.rss()
	secs := t1.Sub(t0).Seconds()
	s := sub.samples()
	slices.Sort(s)
	res := &coapResult{
		clients: clients,
		rate:    float64(r1-r0) / secs,
		p50:     percentile(s, 0.50),
		p99:     percentile(s, 0.99),
		samples: len(s),
		gwCPU:   (g1 - g0).Seconds() / secs,
		simCPU:  (s1 - s0).Seconds() / secs,
		gwRSS:   rss,
	}
	if rate == 0 {
		// edgesim prints its count each second; the window's share of it.
		res.acked = float64(a1-a0) / secs
	}
	return res, nil
}

// coapSub is the gRPC subscriber: it counts the readings and samples their
// latencies while recording.
type coapSub struct {
	conn      *grpc.ClientConn
	cancel    context.CancelFunc
	done      chan struct{}
	err       error
	received  atomic.Uint64
	recording atomic.Bool

	mu        sync.Mutex
	latencies []time.Duration
}

func subscribeCoAP(ctx context.Context, addr string) (*coapSub, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := pb.NewGatewayClient(conn).Subscribe(sctx, &pb.SubscribeRequest{Devices: []string{coapBenchPrefix + "*"}})
	if err == nil {
		_, err = stream.Header()
	}
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	s := &coapSub{conn: conn, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			m, err := stream.Recv()
			if err != nil {
				if sctx.Err() == nil && !errors.Is(err, io.EOF) {
					s.err = err
				}
				return
			}
			now := time.Now()
			s.received.Add(1)
			if s.recording.Load() && m.GetSourceTime() != nil {
				s.mu.Lock()
				if len(s.latencies) < maxSamples {
					s.latencies = append(s.latencies, now.Sub(m.GetSourceTime().AsTime()))
				}
				s.mu.Unlock()
			}
		}
	}()
	return s, nil
}

func (s *coapSub) samples() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.latencies...)
}

// failed reports a stream that ended on its own.
func (s *coapSub) failed() error {
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("subscriber: %w", s.err)
		}
		return errors.New("the subscriber's stream ended early")
	default:
		return nil
	}
}

func (s *coapSub) close() {
	s.cancel()
	<-s.done
	s.conn.Close()
}
