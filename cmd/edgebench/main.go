// Command edgebench measures edgegate against a peer, mosquitto, in one run on this
// machine and prints one table with the ratios: MQTT-in to gRPC-out throughput,
// publish-to-receipt latency, and memory per idle MQTT connection. `make bench`
// runs it after building bin/edgegate.
//
// Both brokers run as child processes on loopback ports picked at run time, and
// every child is stopped by its pid, also when a measurement fails or edgebench is
// interrupted. It is a measurement, not a test: it fails only when it cannot
// measure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/internal/backoff"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerCmd {
		os.Exit(workerMain(os.Args[2:], os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	quick     bool
	only      map[string]bool // sections to run; all when empty
	duration  time.Duration   // one measurement
	warmup    time.Duration
	conns     int // idle connections of the memory test
	retained  int // messages in the durable section's restart
	gateway   string
	mosquitto string
}

// sections in the order they run; each protocol's lives in its own file.
var sections = []string{"throughput", "latency", "memory", "journal", "uplink", "northbound", "modbus", "opcua", "coap", "tls", "functions", "client", "priority", "durable", "profiles"}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("edgebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "edgebench: edgegate against mosquitto, one table\n\nUsage: edgebench [flags]\n")
		fs.PrintDefaults()
	}
	var o options
	var only string
	fs.BoolVar(&o.quick, "quick", false, "a short smoke run: fewer cases, short measurements, few connections")
	fs.StringVar(&only, "only", "", "run only these sections, comma-separated: "+strings.Join(sections, ", "))
	fs.DurationVar(&o.duration, "duration", 0, "length of one measurement, after a warm-up (default 5s, or 500ms with --quick)")
	fs.IntVar(&o.conns, "connections", 0, "idle MQTT connections of the memory test (default 10000, or 200 with --quick)")
	fs.IntVar(&o.retained, "retained", 0, "messages in the data_dir of the durable section's restart (default 1000000, or 20000 with --quick)")
	fs.StringVar(&o.gateway, "gateway", "bin/edgegate", "the edgegate binary to measure")
	fs.StringVar(&o.mosquitto, "mosquitto", "", "the mosquitto binary (default: /usr/sbin/mosquitto or on PATH)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.only = map[string]bool{}
	for s := range strings.SplitSeq(only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !contains(sections, s) {
			return nil, fmt.Errorf("--only: %q is not one of %s", s, strings.Join(sections, ", "))
		}
		o.only[s] = true
	}
	if o.duration == 0 {
		o.duration = 5 * time.Second
		if o.quick {
			o.duration = 500 * time.Millisecond
		}
	}
	if o.duration < 100*time.Millisecond || o.duration > 10*time.Minute {
		return nil, fmt.Errorf("--duration: %v is not between 100ms and 10m", o.duration)
	}
	o.warmup = time.Second
	if o.quick {
		o.warmup = 300 * time.Millisecond
	}
	if o.conns == 0 {
		o.conns = 10000
		if o.quick {
			o.conns = 200
		}
	}
	if o.retained == 0 {
		o.retained = 1_000_000
		if o.quick {
			o.retained = 20_000
		}
	}
	if o.retained < 1 || o.retained > 100_000_000 {
		return nil, fmt.Errorf("--retained: %d is not between 1 and 100000000", o.retained)
	}
	if o.conns < 1 || o.conns > maxIdleConns {
		return nil, fmt.Errorf("--connections: %d is not between 1 and %d", o.conns, maxIdleConns)
	}
	return &o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (o *options) runs(section string) bool { return len(o.only) == 0 || o.only[section] }

// env is one benchmark run.
type env struct {
	*options
	mosquitto string // resolved; "" when there is none
	self      string // this executable: the publishers' worker
	tmp       string
	stderr    io.Writer
	rows      []row
	failures  []string
	// maxRate holds the throughput measured for each broker and case, from which
	// the latency test takes its rate.
	maxRate map[string]float64
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(e.stderr, "edgebench: "+format+"\n", a...)
}

// fail records a measurement that could not be made; the table shows it as such.
func (e *env) fail(what string, err error) {
	e.logf("%s: %v", what, err)
	e.failures = append(e.failures, fmt.Sprintf("%s: %v", what, firstLine(err.Error())))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgebench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return bench(ctx, o, stdout, stderr)
}

func bench(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	e := &env{options: o, stderr: stderr, maxRate: map[string]float64{}}
	if _, err := os.Stat(o.gateway); err != nil {
		fmt.Fprintf(stderr, "edgebench: the gateway binary: %v (run `make build`, or give --gateway)\n", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "edgebench: %v\n", err)
		return 1
	}
	e.self = self
	e.mosquitto = findMosquitto(o.mosquitto)
	peer := "mosquitto (not installed)"
	if e.mosquitto == "" {
		e.logf("%v: the peer's cells stay empty", errNoPeer)
	} else {
		peer = mosquittoVersion(e.mosquitto)
	}
	limit, err := raiseFileLimit()
	if err != nil {
		e.logf("could not raise the open-file limit: %v", err)
	}
	tmp, err := os.MkdirTemp("", "edgebench-")
	if err != nil {
		fmt.Fprintf(stderr, "edgebench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	e.tmp = tmp

	started := time.Now()
	load := loadAverage()
	if o.runs("throughput") {
		e.throughput(ctx)
	}
	if o.runs("latency") && ctx.Err() == nil {
		e.latency(ctx)
	}
	if o.runs("memory") && ctx.Err() == nil {
		if need := uint64(o.conns) + 256; limit < need {
			e.fail("memory", fmt.Errorf("the open-file limit is %d; %d connections need %d", limit, o.conns, need))
		} else {
			e.memory(ctx)
		}
	}
	if o.runs("journal") && ctx.Err() == nil {
		e.journalSection(ctx)
	}
	if o.runs("uplink") && ctx.Err() == nil {
		e.uplinkSection(ctx)
	}
	if o.runs("northbound") && ctx.Err() == nil {
		e.northboundSection(ctx)
	}
	if o.runs("modbus") && ctx.Err() == nil {
		e.modbusSection(ctx)
	}
	if o.runs("opcua") && ctx.Err() == nil {
		e.opcuaSection(ctx)
	}
	if o.runs("coap") && ctx.Err() == nil {
		e.coapSection(ctx)
	}
	if o.runs("tls") && ctx.Err() == nil {
		e.tlsSection(ctx)
	}
	if o.runs("functions") && ctx.Err() == nil {
		e.functionsSection(ctx)
	}
	if o.runs("client") && ctx.Err() == nil {
		e.clientSection(ctx)
	}
	if o.runs("priority") && ctx.Err() == nil {
		e.prioritySection(ctx)
	}
	if o.runs("durable") && ctx.Err() == nil {
		e.durableSection(ctx)
	}
	if o.runs("profiles") && ctx.Err() == nil {
		e.profilesSection(ctx) // profiles.go
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "edgebench: interrupted; every broker it started is stopped")
		return 130
	}

	fmt.Fprintf(stdout, "edgebench: edgegate (%s) vs %s, one run on this machine, %s\n", o.gateway, peer, started.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "machine: %s, %d CPUs, %s/%s, %s; load average at start %s; took %v\n",
		cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), load, time.Since(started).Round(time.Second))
	fmt.Fprintf(stdout, "load: %d-byte JSON readings over MQTT 3.1.1 (paho clients), each publisher with up to %d messages in flight; "+
		"edgegate delivers over gRPC Subscribe (no filter), mosquitto over MQTT at the publishers' QoS; "+
		"each case on a fresh broker, measured for %v after %v of warm-up\n\n", payloadSize, window, o.duration, o.warmup)
	printTable(stdout, e.rows)
	fmt.Fprintln(stdout, "\nthroughput: messages received per subscriber per second; only delivered messages count, and the share that went missing (dropped by a slow-consumer policy or a full queue) is shown.")
	fmt.Fprintln(stdout, "ratio: edgegate/mosquitto; above 1 is better for throughput, below 1 is better for latency and memory.")
	if o.runs("throughput") || o.runs("latency") || o.runs("coap") {
		fmt.Fprintln(stdout, "data_dir: edgegate with gateway.data_dir set and journal.sync: batch (the default, as deployed), against the same peer figure as the row above it; the peer runs from memory.")
	}
	if o.runs("durable") {
		fmt.Fprintf(stdout, "durable: edgegate with a data_dir against mosquitto from memory, each case on a fresh broker with a %v deadline (then: what completed); ratios compare rates, above 1 is better, also where the cell is a time. "+
			"JetStream by default acknowledges a publish without an fsync of it (its file store syncs on an interval: sync_interval, 2 min by default, configurable from nats-server 2.10), while edgegate acknowledges only what is fsynced.\n", durableTimeout)
	}
	if o.runs("priority") {
		fmt.Fprintln(stdout, "priority: CRITICAL latency publish to receipt over loopback gRPC in one process, loaded run/unloaded run; share delivered is of each priority's messages (C, H, N, L).")
	}
	if len(e.failures) > 0 {
		fmt.Fprintf(stdout, "\nnot measured:\n")
		for _, f := range e.failures {
			fmt.Fprintf(stdout, "- %s\n", f)
		}
		return 1
	}
	return 0
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
