package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestClientSection runs the client section on a small replay, so that its code
// path (both replays and the restart) is checked without a benchmark run.
func TestClientSection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gateways")
	}
	e := &env{options: &options{quick: true}, stderr: io.Discard, tmp: t.TempDir()}
	e.clientSection(context.Background())
	if len(e.failures) > 0 {
		t.Fatalf("failures: %v", e.failures)
	}
	if len(e.rows) != 3 || !strings.HasPrefix(e.rows[0].name, "Go client: replay") || e.rows[1].eg == "" {
		t.Errorf("rows %+v", e.rows)
	}
}
