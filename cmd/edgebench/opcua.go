package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The OPC UA section: 10,000 monitored items changing every 100 ms on one simulated
// server (bin/edgesim opcua, a child process), through one gateway (bin/edgegate,
// one OPC UA device with a point per item), to one gRPC subscriber. It measures the
// notifications delivered per second on gRPC, against the 100,000 a second the
// server produces, and the CPU the gateway and the simulator use. There is no peer.
//
// To run it, call e.opcuaSection(ctx) from bench() under a section name (e.g.
// "opcua"); it needs bin/edgesim beside the gateway binary (`make build` makes both).

// Defaults of the section.
const (
	opcuaBenchItems    = 10000
	opcuaBenchInterval = 100 * time.Millisecond
	opcuaBenchDevice   = "opc-1"
)

// opcuaResult is what one run measured.
type opcuaResult struct {
	items    int
	rate     float64 // messages delivered per second on gRPC
	received float64 // notifications the adapter received per second
	expected float64 // changes the server made per second
	gwCPU    float64 // gateway CPU, in cores (1.0 is one core busy)
	simCPU   float64
	gwRSS    uint64
}

func (e *env) opcuaSection(ctx context.Context) {
	items := opcuaBenchItems
	if e.quick {
		items = 1000
	}
	r, err := e.measureOPCUA(ctx, items, opcuaBenchInterval)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.fail("opcua", err)
		return
	}
	e.logf("opcua      %d items every %v: %.0f notifications/s on gRPC, %.0f/s received by the adapter (server made %.0f/s), gateway CPU %.0f%%, simulator CPU %.0f%%",
		r.items, opcuaBenchInterval, r.rate, r.received, r.expected, 100*r.gwCPU, 100*r.simCPU)
	name := fmt.Sprintf("opcua %d items @ %v", r.items, opcuaBenchInterval)
	e.rows = append(e.rows,
		row{name: name + ": notifications/s on gRPC", eg: fmt.Sprintf("%s of %s", fmtCount(r.rate), fmtCount(r.expected))},
		row{name: name + ": notifications/s received by the adapter", eg: fmtCount(r.received)},
		row{name: name + ": gateway CPU (cores)", eg: fmt.Sprintf("%.2f", r.gwCPU)},
		row{name: name + ": simulator CPU (cores)", eg: fmt.Sprintf("%.2f", r.simCPU)},
		row{name: name + ": gateway RSS", eg: fmtBytes(float64(r.gwRSS))},
	)
}

// edgesimPath is bin/edgesim beside the gateway binary.
func (e *env) edgesimPath() (string, error) {
	p := filepath.Join(filepath.Dir(e.gateway), "edgesim")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the simulator binary: %w (run `make build`)", err)
	}
	return p, nil
}

// opcuaGatewayConfig is one OPC UA device with a point per simulated item.
func opcuaGatewayConfig(endpoint string, items int, interval time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway:\n  id: edgebench\n  log_level: info\n  max_points_per_device: %d\n", items+16)
	// A ring and queue that hold several intervals, so that the figure is the
	// adapter's and the stream's rate, not the slow-consumer policy's.
	fmt.Fprintf(&b, "  retain: %d\n  subscriber_queue: %d\n  slow_consumer: drop_oldest\n", 1<<19, 1<<18)
	b.WriteString("grpc: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"127.0.0.1:0\"}\n")
	fmt.Fprintf(&b, "opcua:\n  max_points_per_device: %d\n  publish_requests: 10\n  max_notifications_per_publish: 1500\n", items+16)
	fmt.Fprintf(&b, "devices:\n  - id: %s\n    protocol: opcua\n    endpoint: %q\n", opcuaBenchDevice, endpoint)
	fmt.Fprintf(&b, "    security: {policy: None, mode: None}\n    publishing_interval: %s\n    points:\n", interval)
	for i := 1; i <= items; i++ {
		fmt.Fprintf(&b, "      - {name: v%d, node: \"ns=1;s=Sim.V%d\", sampling_interval: %s, queue_size: 2}\n", i, i, interval)
	}
	return b.String()
}

func (e *env) measureOPCUA(ctx context.Context, items int, interval time.Duration) (*opcuaResult, error) {
	simBin, err := e.edgesimPath()
	if err != nil {
		return nil, err
	}
	simAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	sim, err := startProc("edgesim", simBin, []string{"opcua", "--listen", simAddr, "--items", strconv.Itoa(items),
		"--interval", interval.String(), "--stats", "1h"}, nil, false)
	if err != nil {
		return nil, err
	}
	defer sim.stop()
	if err := waitDial(ctx, sim, simAddr); err != nil {
		return nil, err
	}

	cfg := filepath.Join(e.tmp, "edgegate-opcua.yaml")
	if err := os.WriteFile(cfg, []byte(opcuaGatewayConfig("opc.tcp://"+simAddr, items, interval)), 0o600); err != nil {
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

	var count atomic.Uint64
	conn, err := grpc.NewClient("passthrough:///"+rl.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewGatewayClient(conn).Subscribe(sctx, &pb.SubscribeRequest{Devices: []string{opcuaBenchDevice}})
	if err != nil {
		return nil, err
	}
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if sctx.Err() != nil || errors.Is(err, io.EOF) {
					err = nil
				}
				recvDone <- err
				return
			}
			if m.GetQuality() == pb.Quality_QUALITY_GOOD {
				count.Add(1)
			}
		}
	}()
	defer func() {
		cancel()
		<-recvDone
	}()

	// Warm up: every item subscribed and flowing.
	deadline := time.Now().Add(60 * time.Second)
	for count.Load() < uint64(items) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d notifications in 60s; the gateway says:\n%s", count.Load(), gw.output())
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if err := sleepCtx(ctx, e.warmup); err != nil {
		return nil, err
	}
	n0, nerr := adapterNotifications(ctx, rl.HTTP)
	c0, t0 := count.Load(), time.Now()
	g0, gerr := procCPU(gw.pid())
	s0, serr := procCPU(sim.pid())
	if err := sleepCtx(ctx, e.duration); err != nil {
		return nil, err
	}
	c1, t1 := count.Load(), time.Now()
	n1, nerr1 := adapterNotifications(ctx, rl.HTTP)
	g1, gerr1 := procCPU(gw.pid())
	s1, serr1 := procCPU(sim.pid())
	if err := errors.Join(gerr, serr, gerr1, serr1, nerr, nerr1); err != nil {
		return nil, err
	}
	if gw.exitedEarly() {
		return nil, gw.exited()
	}
	secs := t1.Sub(t0).Seconds()
	rss, _ := gw.rss()
	return &opcuaResult{
		items:    items,
		rate:     float64(c1-c0) / secs,
		received: (n1 - n0) / secs,
		expected: float64(items) / interval.Seconds(),
		gwCPU:    (g1 - g0).Seconds() / secs,
		simCPU:   (s1 - s0).Seconds() / secs,
		gwRSS:    rss,
	}, nil
}

// adapterNotifications reads edgegate_opcua_notifications_total from the
// gateway's /metrics.
func adapterNotifications(ctx context.Context, httpAddr string) (float64, error) {
	text, err := gatewayMetrics(ctx, httpAddr)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "edgegate_opcua_notifications_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// procCPU is a process's user and system CPU time so far, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go runs on.
const clockTicks = 100

// parseStatCPU reads utime and stime (fields 14 and 15) of a stat line; the command
// name (field 2) is in parentheses and may hold spaces.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat line")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	// f[0] is field 3 (state): utime is field 14, f[11]; stime f[12].
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}
