package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestPrioritySection runs the priority section briefly, so that its code path
// (four runs, their rows) is checked without a benchmark run. It asserts no
// latency: that is the benchmark's to measure.
func TestPrioritySection(t *testing.T) {
	e := &env{options: &options{quick: true, duration: 200 * time.Millisecond, warmup: 50 * time.Millisecond}, stderr: io.Discard}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.prioritySection(ctx)
	if len(e.failures) > 0 {
		t.Fatalf("failures: %v", e.failures)
	}
	var names []string
	for _, r := range e.rows {
		names = append(names, r.name)
		if r.eg == "" {
			t.Errorf("row %q has no value", r.name)
		}
	}
	if len(e.rows) != 10 {
		t.Fatalf("%d rows:\n%s", len(e.rows), strings.Join(names, "\n"))
	}
	for _, r := range e.rows {
		if strings.HasPrefix(r.name, "priority: share delivered") && !strings.HasPrefix(r.eg, "C 100% H 100%") {
			t.Errorf("%s: %s: a CRITICAL or HIGH message was lost", r.name, r.eg)
		}
	}
}
