package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	_ "github.com/edgegate/edgegate/protocols/opcua" // the opcua config section and devices
)

// TestOPCUAGatewayConfig keeps the section's generated config valid as the config
// evolves.
func TestOPCUAGatewayConfig(t *testing.T) {
	c, err := config.Parse([]byte(opcuaGatewayConfig("opc.tcp://127.0.0.1:4840", 100, opcuaBenchInterval)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Protocols["opcua"]; !ok || c.Gateway.MaxPointsPerDevice < 100 {
		t.Fatalf("config %+v", c)
	}
}

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 150 and 50 ticks; the name has spaces.
	line := "1234 (edge gate) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 8 0 100 1000 50"
	d, err := parseStatCPU(line)
	if err != nil || d != 2*time.Second {
		t.Fatalf("%v %v", d, err)
	}
	if _, err := parseStatCPU("1234 (x S"); err == nil {
		t.Error("a short line parsed")
	}
}

// TestOPCUASectionWithoutSimulator: a missing bin/edgesim is a measurement that
// could not be made, said as such.
func TestOPCUASectionWithoutSimulator(t *testing.T) {
	dir := t.TempDir()
	e := &env{options: &options{quick: true, duration: time.Second, gateway: filepath.Join(dir, "edgegate")},
		stderr: io.Discard, tmp: dir, maxRate: map[string]float64{}}
	e.opcuaSection(context.Background())
	if len(e.failures) != 1 || !strings.Contains(e.failures[0], "simulator binary") {
		t.Fatalf("failures %q", e.failures)
	}
}
