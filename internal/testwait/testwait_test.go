package testwait

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFor: a condition that background work makes true is seen.
func TestFor(t *testing.T) {
	var done atomic.Bool
	go func() { done.Store(true) }()
	For(t, 10*time.Second, "the goroutine", done.Load)
}

// fatal records a Fatalf and ends its goroutine, as testing.T does.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestUntilFails: a condition that never holds fails once the context ends, and
// says what was awaited.
func TestUntilFails(t *testing.T) {
	f := &fatal{TB: t}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(f, ctx, "the impossible", func() bool { return false })
	}()
	<-done
	if !strings.Contains(f.msg, "the impossible") {
		t.Errorf("failure %q does not say what was awaited", f.msg)
	}
}
