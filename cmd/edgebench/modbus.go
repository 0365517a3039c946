package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

// The Modbus section: many simulated Modbus TCP devices, each a server of its own
// in this process, polled by one gateway every interval; one gRPC subscriber counts
// what comes out. It measures the gateway's CPU (from /proc), the poll jitter as the
// devices see it and as the gateway's histogram reports it, the messages per second
// delivered, and the gateway's memory. Every register changes every interval, so
// report by exception publishes each poll's every value.
//
// The devices' jitter is |time between two polls of a device − interval|, so it
// holds the lateness of two polls; the gateway's histogram holds each poll's
// lateness after its slot, to the bucket.

// modbusBench is one Modbus measurement.
type modbusBench struct {
	devices   int
	registers int // holding registers per device, contiguous: one request a poll
	interval  time.Duration
	warmup    time.Duration // after every device has been polled once
	duration  time.Duration
}

// modbusCase is the load (1,000 devices × 10 registers at 1 s), or a small
// one with --quick.
func (o *options) modbusCase() modbusBench {
	b := modbusBench{devices: 1000, registers: 10, interval: time.Second, warmup: 3 * time.Second, duration: max(o.duration, 20*time.Second)}
	if o.quick {
		b = modbusBench{devices: 50, registers: 10, interval: time.Second, warmup: time.Second, duration: 3 * time.Second}
	}
	return b
}

// Reference: an industrial gateway publishes 500 devices × 30 tags a second on
// about 1.2 of 4 cores.
const (
	refTagsPerSecond = 500 * 30
	refCores         = 1.2
)

// modbusResult is what one measurement found.
type modbusResult struct {
	cores        float64 // the gateway's CPU time over wall time
	msgsPerSec   float64 // delivered to the subscriber
	reqsPerSec   float64 // read requests the devices answered
	jitterP50    time.Duration
	jitterP99    time.Duration
	jitterMax    time.Duration
	gatewayP99   string // the bucket of the gateway's histogram that holds its p99
	rssBytes     uint64
	polls        int // samples behind the jitter figures
	tagsPerSec   float64
	skippedPolls float64
}

// modbusSection runs the Modbus section and adds its rows to the table, or its
// failure to the list of what was not measured.
func (e *env) modbusSection(ctx context.Context) {
	rows, err := e.benchModbus(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.fail("modbus", err)
		return
	}
	e.rows = append(e.rows, rows...)
}

// benchModbus runs the Modbus section and returns its rows. It starts the devices
// in this process and the gateway (e.gateway) as a child, and stops both.
func (e *env) benchModbus(ctx context.Context) ([]row, error) {
	b := e.modbusCase()
	r, err := e.measureModbus(ctx, b)
	if err != nil {
		return nil, err
	}
	e.logf("modbus %d devices × %d registers every %v: %.2f cores, %.0f msg/s, %.0f requests/s, jitter p50 %v p99 %v max %v (%d polls), gateway p99 %s",
		b.devices, b.registers, b.interval, r.cores, r.msgsPerSec, r.reqsPerSec, r.jitterP50, r.jitterP99, r.jitterMax, r.polls, r.gatewayP99)
	load := fmt.Sprintf("modbus %s devices × %d registers every %v", fmtCount(float64(b.devices)), b.registers, b.interval)
	refPerTag := refCores / refTagsPerSecond
	rows := []row{
		{name: load + ": gateway CPU (cores)", eg: fmt.Sprintf("%.2f", r.cores),
			peer: fmt.Sprintf("%.1f for %s tags/s (industrial gateway)", refCores, fmtCount(refTagsPerSecond))},
		{name: load + ": CPU per tag a second (µs)", eg: fmt.Sprintf("%.1f", 1e6*r.cores/r.tagsPerSec),
			peer: fmt.Sprintf("%.1f", 1e6*refPerTag), ratio: fmtRatio(r.cores / r.tagsPerSec / refPerTag)},
		{name: load + ": poll jitter p99 at the devices", eg: fmtDuration(r.jitterP99), peer: "goal < 50 ms"},
		{name: load + ": poll jitter p99 (gateway histogram)", eg: r.gatewayP99, peer: "goal < 50 ms"},
		{name: load + ": messages out per second", eg: fmtCount(r.msgsPerSec), peer: fmtCount(r.tagsPerSec) + " due"},
		{name: load + ": gateway memory (RSS)", eg: fmtBytes(float64(r.rssBytes))},
	}
	if r.skippedPolls > 0 {
		rows = append(rows, row{name: load + ": polls skipped (late)", eg: fmtCount(r.skippedPolls)})
	}
	return rows, nil
}

// modbusDevices are the simulated devices and what they saw.
type modbusDevices struct {
	servers []*sim.Server
	mu      sync.Mutex
	last    []time.Time // per device: the last request's arrival
	samples []time.Duration
	record  atomic.Bool
	reqs    atomic.Uint64
}

func (m *modbusDevices) stop() {
	for _, s := range m.servers {
		s.Stop()
	}
}

// arrived records how far the time since the device's last request is from the
// poll interval. (Measured against a grid from the first request instead, one
// late first poll would shift every later sample of its device.)
func (m *modbusDevices) arrived(i int, interval time.Duration) {
	now := time.Now()
	m.reqs.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	last := m.last[i]
	m.last[i] = now
	if last.IsZero() || !m.record.Load() || len(m.samples) >= 1<<22 {
		return
	}
	d := now.Sub(last) - interval
	m.samples = append(m.samples, max(d, -d))
}

func startModbusDevices(b modbusBench) (*modbusDevices, error) {
	m := &modbusDevices{last: make([]time.Time, b.devices)}
	for i := range b.devices {
		s, err := sim.New(sim.Options{
			Size:       max(b.registers, 16),
			MaxClients: 4,
			OnRequest:  func(uint8, byte, uint16, uint16) { m.arrived(i, b.interval) },
		})
		if err == nil {
			err = s.Start()
		}
		if err != nil {
			m.stop()
			return nil, fmt.Errorf("device %d: %w", i+1, err)
		}
		m.servers = append(m.servers, s)
	}
	return m, nil
}

// move changes every register of every device once an interval until ctx ends.
func (m *modbusDevices) move(ctx context.Context, b modbusBench) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for n := uint64(1); ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range m.servers {
			for r := range b.registers {
				_ = s.Set(1, sim.Point{Register: sim.Holding, Address: r}, bridge.Uint((n+uint64(r))%65536))
			}
		}
	}
}

func modbusGatewayConfig(b modbusBench, devs *modbusDevices) string {
	var sb strings.Builder
	sb.WriteString("gateway:\n  id: edgebench-modbus\n  log_level: info\n  retain: 131072\n  subscriber_queue: 65536\n  slow_consumer: drop_oldest\n")
	sb.WriteString("grpc: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"127.0.0.1:0\"}\n")
	fmt.Fprintf(&sb, "modbus:\n  poll_interval: %s\n  timeout: 2s\ndevices:\n", b.interval)
	for i, s := range devs.servers {
		fmt.Fprintf(&sb, "  - id: plc-%d\n    protocol: modbus\n    address: tcp://%s\n    unit_id: 1\n    points:\n", i+1, s.Addr())
		for r := range b.registers {
			fmt.Fprintf(&sb, "      - {name: r%d, register: holding, address: %d, type: uint16}\n", r, r)
		}
	}
	return sb.String()
}

func (e *env) measureModbus(ctx context.Context, b modbusBench) (*modbusResult, error) {
	if _, err := raiseFileLimit(); err != nil {
		e.logf("could not raise the open-file limit: %v", err)
	}
	devs, err := startModbusDevices(b)
	if err != nil {
		return nil, err
	}
	defer devs.stop()
	mctx, stopMoving := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		devs.move(mctx, b)
	}()
	defer func() {
		stopMoving()
		wg.Wait()
	}()

	cfg := filepath.Join(e.tmp, "edgegate-modbus.yaml")
	if err := os.WriteFile(cfg, []byte(modbusGatewayConfig(b, devs)), 0o600); err != nil {
		return nil, err
	}
	readyCh := make(chan readyLine, 1)
	p, err := startProc(kindEdgegate, e.gateway, []string{"serve", "--config", cfg}, func(line string) {
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
	defer p.stop()
	var rl readyLine
	select {
	case rl = <-readyCh:
	case <-p.done:
		return nil, p.exited()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("edgegate did not log \"edgegate ready\" within 60s:\n%s", p.output())
	}

	// One subscriber, counting.
	conn, err := grpc.NewClient("passthrough:///"+rl.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	sctx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	stream, err := pb.NewGatewayClient(conn).Subscribe(sctx, &pb.SubscribeRequest{})
	if err == nil {
		_, err = stream.Header()
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	var received atomic.Uint64
	subDone := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				if sctx.Err() != nil || errors.Is(err, io.EOF) {
					err = nil
				}
				subDone <- err
				return
			}
			received.Add(1)
		}
	}()
	defer func() {
		cancelSub()
		<-subDone
	}()

	// Warm up: every device polled, then a while longer.
	deadline := time.Now().Add(b.interval + 30*time.Second)
	for {
		devs.mu.Lock()
		all := !slices.ContainsFunc(devs.last, time.Time.IsZero)
		devs.mu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("not every device was polled within 30s of the first interval")
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if err := sleepCtx(ctx, b.warmup); err != nil {
		return nil, err
	}

	cpu0, err := procCPU(p.pid())
	if err != nil {
		return nil, err
	}
	skipped0, _ := gatewayMetricsSum(ctx, rl.HTTP, "edgegate_modbus_polls_skipped_total")
	hist0, _ := gatewayMetricsHistogram(ctx, rl.HTTP, "edgegate_modbus_poll_jitter_seconds")
	m0, r0, t0 := received.Load(), devs.reqs.Load(), time.Now()
	devs.record.Store(true)
	err = sleepCtx(ctx, b.duration)
	devs.record.Store(false)
	m1, r1, t1 := received.Load(), devs.reqs.Load(), time.Now()
	if err != nil {
		return nil, err
	}
	cpu1, err := procCPU(p.pid())
	if err != nil {
		return nil, err
	}
	skipped1, _ := gatewayMetricsSum(ctx, rl.HTTP, "edgegate_modbus_polls_skipped_total")
	hist1, _ := gatewayMetricsHistogram(ctx, rl.HTTP, "edgegate_modbus_poll_jitter_seconds")
	rss, _ := p.rss()
	if p.exitedEarly() {
		return nil, p.exited()
	}
	secs := t1.Sub(t0).Seconds()
	r := &modbusResult{
		cores:        (cpu1 - cpu0).Seconds() / secs,
		msgsPerSec:   float64(m1-m0) / secs,
		reqsPerSec:   float64(r1-r0) / secs,
		rssBytes:     rss,
		tagsPerSec:   float64(b.devices*b.registers) / b.interval.Seconds(),
		skippedPolls: skipped1 - skipped0,
		gatewayP99:   modbusHistQuantile(hist0, hist1, 0.99),
	}
	devs.mu.Lock()
	s := slices.Clone(devs.samples)
	devs.mu.Unlock()
	if len(s) == 0 {
		return nil, errors.New("no poll was recorded")
	}
	slices.Sort(s)
	r.polls = len(s)
	r.jitterP50 = s[len(s)/2]
	r.jitterP99 = s[min(len(s)-1, len(s)*99/100)]
	r.jitterMax = s[len(s)-1]
	return r, nil
}

// gatewayMetricsSum sums a counter's samples from the gateway's /metrics.
func gatewayMetricsSum(ctx context.Context, httpAddr, name string) (float64, error) {
	text, err := gatewayMetrics(ctx, httpAddr)
	if err != nil {
		return 0, err
	}
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum, nil
}

// gatewayMetricsHistogram reads a histogram's cumulative buckets: upper bound to count.
func gatewayMetricsHistogram(ctx context.Context, httpAddr, name string) (map[float64]float64, error) {
	text, err := gatewayMetrics(ctx, httpAddr)
	if err != nil {
		return nil, err
	}
	out := map[float64]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `le="`)
		if !ok {
			continue
		}
		le, rest, _ := strings.Cut(rest, `"`)
		bound := math.Inf(1)
		if le != "+Inf" {
			if bound, err = strconv.ParseFloat(le, 64); err != nil {
				continue
			}
		}
		f := strings.Fields(rest)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			out[bound] = v
		}
	}
	return out, nil
}

// modbusHistQuantile names the bucket holding quantile q of the observations made
// between two scrapes, as "≤ 5 ms".
func modbusHistQuantile(before, after map[float64]float64, q float64) string {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return "n/a"
	}
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return "n/a"
	}
	for _, b := range bounds {
		if after[b]-before[b] >= q*total {
			if math.IsInf(b, 1) {
				return "> " + fmtDuration(time.Duration(bounds[len(bounds)-2]*float64(time.Second)))
			}
			return "≤ " + fmtDuration(time.Duration(b*float64(time.Second)))
		}
	}
	return "n/a"
}

// gatewayMetrics fetches the gateway's /metrics, as text.
func gatewayMetrics(ctx context.Context, httpAddr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return string(b), err
}
