package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	_ "github.com/edgegate/edgegate/protocols/all"
)

// asGateway makes the test binary the gateway under test when set: the smoke test
// runs the harness against it as it runs against bin/edgegate, without building one.
const asGateway = "EDGEBENCH_TEST_AS_GATEWAY"

func TestMain(m *testing.M) {
	// The harness starts this binary as its publishers' worker, and in
	// TestQuickRun as the gateway too.
	if len(os.Args) > 1 && os.Args[1] == workerCmd {
		os.Exit(workerMain(os.Args[2:], os.Stdin, os.Stdout))
	}
	if os.Getenv(asGateway) == "1" {
		os.Exit(serveGateway(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// serveGateway is `edgegate serve --config FILE`, as cmd/edgegate does it.
func serveGateway(args []string) int {
	if len(args) != 3 || args[0] != "serve" || args[1] != "--config" {
		fmt.Fprintf(os.Stderr, "test gateway: want serve --config FILE, got %q\n", args)
		return 2
	}
	cfg, err := config.Load(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	g, err := gateway.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestPayloadIs256BytesAndRoundTrips(t *testing.T) {
	sent := time.Date(2026, 5, 1, 12, 0, 0, 5, time.UTC)
	for _, seq := range []uint64{1, 9, 10, 12345, 1 << 40, ^uint64(0)} {
		b := encodePayload(seq, sent)
		if len(b) != payloadSize {
			t.Fatalf("seq %d: %d bytes: %s", seq, len(b), b)
		}
		got, ts, err := decodePayload(b)
		if err != nil || got != seq || !ts.Equal(sent) {
			t.Fatalf("seq %d: decoded %d %v %v from %s", seq, got, ts, err, b)
		}
	}
	for _, bad := range []string{"", "21.5", `{"value":x,"ts":"2026-05-01T12:00:00Z"}`, `{"value":1,"ts":"2026`} {
		if _, _, err := decodePayload([]byte(bad)); err == nil {
			t.Errorf("decodePayload(%q) succeeded", bad)
		}
	}
}

func TestPublisherIndex(t *testing.T) {
	for i := range []int{0, 7, 99} {
		if got, ok := publisherIndex(publisherID(i)); !ok || got != i {
			t.Errorf("publisherIndex(%q) = %d, %v", publisherID(i), got, ok)
		}
	}
	for _, s := range []string{"sim-1", "bench-p", "bench-p-1", "bench-px"} {
		if _, ok := publisherIndex(s); ok {
			t.Errorf("publisherIndex(%q) accepted", s)
		}
	}
}

func TestTallyCountsGapsAndRepeats(t *testing.T) {
	tl := newTally(2)
	now := time.Now()
	for _, m := range []struct {
		pub int
		seq uint64
	}{{0, 1}, {0, 2}, {0, 5}, {1, 3}, {0, 5}, {0, 4}, {1, 4}, {2, 1}} {
		tl.add(m.pub, m.seq, now, now)
	}
	if c := tl.snapshot(); c.received != 7 || c.missing != 4 {
		t.Fatalf("received %d missing %d, want 7 and 4 (3, 4 of p0; 1, 2 of p1)", c.received, c.missing)
	}
	if tl.repeated.Load() != 2 || tl.bad.Load() != 1 {
		t.Fatalf("repeated %d bad %d", tl.repeated.Load(), tl.bad.Load())
	}
	tl.recording.Store(true)
	tl.add(1, 5, now, now.Add(3*time.Millisecond))
	if s := tl.samples(); len(s) != 1 || s[0] != 3*time.Millisecond {
		t.Fatalf("samples %v", s)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	if p := percentile(s, 0.5); p != 50 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(s, 0.99); p != 99 {
		t.Errorf("p99 = %d", p)
	}
	if p := percentile(s[:1], 0.99); p != 1 {
		t.Errorf("p99 of one = %d", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("p50 of none = %d", p)
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS("Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\nThreads: 3\n")
	if err != nil || got != 1234*1024 {
		t.Fatalf("%d, %v", got, err)
	}
	for _, bad := range []string{"", "VmRSS: 12 MB\n", "VmRSS: x kB\n"} {
		if _, err := parseVmRSS(bad); err == nil {
			t.Errorf("parseVmRSS(%q) succeeded", bad)
		}
	}
	if n, err := readRSS(os.Getpid()); err != nil || n == 0 {
		t.Errorf("our own RSS: %d, %v", n, err)
	}
}

func TestConnectPacket(t *testing.T) {
	want := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 1, 'a'}
	if got := connectPacket("a"); !bytes.Equal(got, want) {
		t.Fatalf("% x, want % x", got, want)
	}
	if err := checkConnack([4]byte{0x20, 2, 0, 0}); err != nil {
		t.Error(err)
	}
	for _, bad := range [][4]byte{{0x20, 2, 0, 5}, {0x30, 2, 0, 0}, {0x20, 3, 0, 0}} {
		if err := checkConnack(bad); err == nil {
			t.Errorf("% x accepted", bad)
		}
	}
}

// The gateway config the harness writes must be one the gateway accepts.
func TestGatewayConfigIsValid(t *testing.T) {
	for _, s := range []brokerSetup{{}, {queue: subscriberQueue}, {maxConnections: 20000}} {
		text := gatewayConfig("127.0.0.1:18830", s)
		cfg, err := config.Parse([]byte(text))
		if err != nil {
			t.Fatalf("%+v:\n%s\n%v", s, text, err)
		}
		if s.queue > 0 && (cfg.Gateway.SubscriberQueue != s.queue || cfg.Gateway.SlowConsumer != "drop_oldest") {
			t.Errorf("%+v: gateway section %+v", s, cfg.Gateway)
		}
	}
}

func TestMosquittoConfig(t *testing.T) {
	text, err := mosquittoConfig("127.0.0.1:18830", brokerSetup{queue: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listener 18830 127.0.0.1\n", "allow_anonymous true\n", "max_queued_messages 7\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
}

func TestOptions(t *testing.T) {
	o, err := parseOptions([]string{"--quick", "--only", "latency,memory"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.runs("throughput") || !o.runs("latency") || !o.runs("memory") || o.duration != 500*time.Millisecond || o.conns != 200 {
		t.Fatalf("%+v", o)
	}
	for _, bad := range [][]string{{"--only", "speed"}, {"--duration", "1ns"}, {"--connections", "-1"}, {"extra"}} {
		if _, err := parseOptions(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTableFormat(t *testing.T) {
	var b bytes.Buffer
	printTable(&b, []row{{name: "a", eg: "1", peer: "22", ratio: "0.05"}, {name: "bb → c", eg: "333"}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if len([]rune(l)) != len([]rune(lines[0])) {
			t.Errorf("ragged table:\n%s", b.String())
			break
		}
	}
	if !strings.Contains(lines[3], "n/a") {
		t.Errorf("missing ratio not shown as n/a:\n%s", b.String())
	}
	if got := fmtCount(1234567.4); got != "1,234,567" {
		t.Errorf("fmtCount = %s", got)
	}
	if got := fmtBytes(3 * 1024); got != "3.0 KiB" {
		t.Errorf("fmtBytes = %s", got)
	}
}

// TestQuickRun runs the whole harness briefly, with this test binary as the gateway
// and mosquitto as the peer when it is installed.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs brokers for several seconds")
	}
	t.Setenv(asGateway, "1")
	// A race-enabled binary otherwise sleeps a second as it exits.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	// The MQTT sections and the durable log's: the protocol sections need bin/edgesim
	// and have tests of their own.
	o, err := parseOptions([]string{"--quick", "--duration", "200ms", "--connections", "50", "--gateway", os.Args[0],
		"--only", "throughput,latency,memory,journal"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := bench(ctx, o, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"| throughput QoS 1, 2 pub → 1 sub", "| throughput QoS 1, 2 pub → 1 sub, data_dir", "| latency p99 QoS 1",
		"| latency p99 QoS 1, 2 pub → 1 sub, data_dir", "| memory per idle MQTT connection (50 conns"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	if findMosquitto("") != "" && strings.Contains(out.String(), "n/a |") {
		t.Errorf("a cell is empty:\n%s", out.String())
	}
}
