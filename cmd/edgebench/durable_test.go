package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// The durable configs the harness writes must be ones the gateway accepts, with
// the durable log on in the mode deployments run.
func TestDurableGatewayConfigs(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"mqtt": gatewayConfig("127.0.0.1:18830", brokerSetup{queue: subscriberQueue, dataDir: dir, httpAddr: "127.0.0.1:18831"}),
		"coap": coapGatewayConfig("127.0.0.1:5683", 10, dir),
	} {
		cfg, err := config.Parse([]byte(text))
		if err != nil {
			t.Fatalf("%s:\n%s\n%v", name, text, err)
		}
		if !cfg.Durable() || cfg.Gateway.DataDir != dir || cfg.Journal.Sync != "batch" {
			t.Errorf("%s: not durable with sync batch in %s:\n%s", name, dir, text)
		}
	}
	cfg, err := config.Parse([]byte(gatewayConfig("127.0.0.1:18830", brokerSetup{httpAddr: "127.0.0.1:18831"})))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Durable() || cfg.HTTP.Listen != "127.0.0.1:18831" {
		t.Errorf("memory config: durable %v, http %q", cfg.Durable(), cfg.HTTP.Listen)
	}
}

func TestParseRetained(t *testing.T) {
	text := "# HELP edgegate_journal_first_sequence Oldest retained sequence.\n" +
		"edgegate_journal_first_sequence 1\nedgegate_journal_last_sequence_x 5\nedgegate_journal_last_sequence 1e+06\n"
	first, last, err := parseRetained(text)
	if err != nil || first != 1 || last != 1_000_000 {
		t.Fatalf("got %d %d %v", first, last, err)
	}
	for _, bad := range []string{"", "edgegate_journal_first_sequence 1\n", "edgegate_journal_first_sequence x\nedgegate_journal_last_sequence 2\n"} {
		if _, _, err := parseRetained(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTimedRunCells(t *testing.T) {
	done := &timedRun{done: 20_000, total: 20_000, took: 2 * time.Second}
	late := &timedRun{done: 6_000, total: 20_000, took: time.Minute}
	if got := done.cell(); got != "2.00 s (10,000 msg/s)" {
		t.Errorf("complete: %q", got)
	}
	if got := late.cell(); got != "timeout, 6,000 of 20,000 in 60.00 s (100 msg/s)" {
		t.Errorf("timeout: %q", got)
	}
	if r := timedRow("x", late, done, ""); r.ratio != "0.01" {
		t.Errorf("ratio %q, want the rates' 0.01", r.ratio)
	}
	if got := late.deliveredCell(); got != "100 msg/s, 30% delivered" {
		t.Errorf("delivered: %q", got)
	}
	late.dropped = 20
	if got := late.missingCell(); got != "14,000 of 20,000 missing (20 of them dropped)" {
		t.Errorf("missing: %q", got)
	}
	var none *timedRun
	if none.cell() != "n/a" || timedRow("x", none, done, "").ratio != "" {
		t.Error("a failed run is not n/a")
	}
	if got := fmtRatio(0.0021); got != "0.0021" {
		t.Errorf("fmtRatio(0.0021) = %q", got)
	}
}

func TestRetainedOption(t *testing.T) {
	for args, want := range map[string]int{"": 1_000_000, "--quick": 20_000, "--retained 5000": 5000} {
		o, err := parseOptions(strings.Fields(args), &bytes.Buffer{})
		if err != nil || o.retained != want {
			t.Errorf("%q: %d %v, want %d", args, o.retained, err, want)
		}
	}
	if _, err := parseOptions([]string{"--retained", "-1"}, &bytes.Buffer{}); err == nil {
		t.Error("--retained -1 accepted")
	}
}

// TestDurableSection runs the durable section once, quick, with this test binary
// as the gateway (it needs mosquitto, mosquitto_pub and nats-server):
//
//	EDGEBENCH_DURABLE=1 go test -run TestDurableSection -v -timeout 10m ./cmd/edgebench/
func TestDurableSection(t *testing.T) {
	if os.Getenv("EDGEBENCH_DURABLE") != "1" {
		t.Skip("a measurement, not a test: set EDGEBENCH_DURABLE=1 (needs mosquitto, mosquitto_pub and nats-server)")
	}
	t.Setenv(asGateway, "1")
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	o, err := parseOptions([]string{"--quick", "--only", "durable", "--gateway", os.Args[0]}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := bench(context.Background(), o, &out, &errOut); code != 0 {
		t.Errorf("exit %d\n%s", code, errOut.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"| durable (a) QoS 1 pipelined", "| durable (b)", "| durable (c)", "| latency p99 QoS 1, 1 pub → 1 sub, data_dir at 7,000 msg/s",
		"not delivered within", "against JetStream", "| durable restart with 20,000 retained", "write + fsync"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the table", want)
		}
	}
}
