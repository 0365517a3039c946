package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestMeasureFunctions makes one short CEL measurement, so that the functions
// section's code path is checked without a benchmark run.
func TestMeasureFunctions(t *testing.T) {
	e := &env{options: &options{duration: 100 * time.Millisecond, warmup: 10 * time.Millisecond}, stderr: os.Stderr, tmp: t.TempDir()}
	for _, list := range []string{"", `[{name: f, filter: {cel: "value > 0.5"}}]`} {
		rate, err := e.measureFunctions(context.Background(), list, 10, nil)
		if err != nil || rate <= 0 {
			t.Errorf("functions %q: rate %v, %v", list, rate, err)
		}
	}
	if _, err := parseFunctions(`[{name: f, filter: {cel: "true", cell: 1}}]`); err == nil {
		t.Error("an unknown key was accepted")
	}
}
