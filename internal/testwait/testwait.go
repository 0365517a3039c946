// Package testwait is how tests wait for what background work makes true: the
// condition is looked at every few milliseconds until it holds or a deadline
// passes, never a sleep of a guessed length, so a condition that holds soon is
// seen soon and one that never holds fails the test with what was awaited.
package testwait

import (
	"context"
	"testing"
	"time"
)

// Interval is the time between two looks at a condition.
const Interval = 5 * time.Millisecond

// For fails t unless cond holds within timeout.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	Until(t, ctx, what, cond)
}

// Until fails t unless cond holds before ctx ends. Call it from the test's
// goroutine (it may call t.Fatalf).
func Until(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %v", what, context.Cause(ctx))
		}
	}
}
