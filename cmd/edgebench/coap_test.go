package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestCoAPSection runs the CoAP section once against bin/edgegate and bin/edgesim
// (`make build`) and prints its rows, while main.go does not run it yet:
//
//	EDGEBENCH_COAP=1 go test -run TestCoAPSection -v -timeout 10m ./cmd/edgebench/
//
// EDGEBENCH_COAP_QUICK=1 makes it the quick variant (50 clients, short windows).
func TestCoAPSection(t *testing.T) {
	if os.Getenv("EDGEBENCH_COAP") != "1" {
		t.Skip("a measurement, not a test: set EDGEBENCH_COAP=1 (needs bin/edgegate and bin/edgesim)")
	}
	gw, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	o := &options{duration: 5 * time.Second, warmup: time.Second, gateway: gw + "/../../bin/edgegate"}
	if os.Getenv("EDGEBENCH_COAP_QUICK") == "1" {
		o.quick, o.duration, o.warmup = true, 500*time.Millisecond, 300*time.Millisecond
	}
	if _, err := raiseFileLimit(); err != nil {
		t.Log(err)
	}
	e := &env{options: o, stderr: os.Stderr, tmp: t.TempDir(), maxRate: map[string]float64{}}
	e.coapSection(context.Background())
	printTable(os.Stdout, e.rows)
	for _, f := range e.failures {
		t.Error(f)
	}
}
