package functions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// TestSwapLosesNothing swaps the function list back and forth while publishers
// run: every message arrives, each went wholly through one list (its derived
// message right after it says which), and an unchanged function keeps its state.
func TestSwapLosesNothing(t *testing.T) {
	const list = `
- {name: tag, derive: {point: seen_by, cel: "'%s'"}}
- {name: agg, match: {points: [p]}, aggregate: {window: 1h, fn: count, point: n}}
`
	e := newEnv(t, compile(t, fmt.Sprintf(list, "a")))
	agg := e.p.cur.Load().byName["agg"]
	const publishers, swaps = 4, 30
	var wg sync.WaitGroup
	var sent atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, publishers)
	for w := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := e.sink.Publish(t.Context(), reading(fmt.Sprint("d-", w), "p", bridge.Int(int64(i)))); err != nil {
					errs <- err
					return
				}
				sent.Add(1)
			}
		}()
	}
	for i := range swaps {
		if err := e.p.Swap(compile(t, fmt.Sprintf(list, []string{"b", "a"}[i%2]))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := e.published()
	if int64(len(got)) != 2*sent.Load() {
		t.Fatalf("published %d messages; want %d", len(got), 2*sent.Load())
	}
	tags := map[string]int{}
	for i := 0; i < len(got); i += 2 {
		m, d := got[i], got[i+1]
		s, _ := d.Value.AsString()
		if m.Point != "p" || d.Point != "seen_by" || d.Device != m.Device || (s != "a" && s != "b") {
			t.Fatalf("at %d: %s/%s then %s/%s=%#v; want each message followed by its tag", i, m.Device, m.Point, d.Device, d.Point, d.Value)
		}
		tags[s]++
	}
	t.Logf("%d swaps; messages tagged %v", swaps, tags)
	if tags["a"] == 0 || tags["b"] == 0 {
		t.Errorf("tags %v: the swaps did not happen while messages flowed", tags)
	}
	if e.p.cur.Load().byName["agg"] != agg {
		t.Error("the unchanged aggregate was replaced: its open windows are lost")
	}
	agg.win.mu.Lock()
	var counted int64
	for _, w := range agg.win.open {
		counted += w.n
	}
	agg.win.mu.Unlock()
	if counted != sent.Load() {
		t.Errorf("the aggregate counted %d messages across the swaps; want %d", counted, sent.Load())
	}
}

// TestSwapWASM: an unchanged module keeps its instance (and its state); a changed
// one starts afresh; a removed one is closed.
func TestSwapWASM(t *testing.T) {
	mod := testModule(t)
	list := func(timeout string) string {
		return fmt.Sprintf(`[{name: mod, wasm: {module: %q, timeout: %s}}, {name: f, filter: {cel: "true"}}]`, mod, timeout)
	}
	e := newEnv(t, compile(t, list("5s")))
	count := func() bridge.Value {
		t.Helper()
		e.publish(reading("m-1", "count", bridge.Int(0)))
		got := e.published()
		return got[len(got)-1].Value
	}
	if v := count(); !v.Equal(bridge.Int(1)) {
		t.Fatalf("count %#v", v)
	}
	if err := e.p.Swap(compile(t, list("5s"))); err != nil {
		t.Fatal(err)
	}
	if v := count(); !v.Equal(bridge.Int(2)) {
		t.Fatalf("count after swapping in the same module: %#v; want 2 (the same instance)", v)
	}
	if err := e.p.Swap(compile(t, list("6s"))); err != nil {
		t.Fatal(err)
	}
	if v := count(); !v.Equal(bridge.Int(1)) {
		t.Fatalf("count after a change: %#v; want 1 (a new instance)", v)
	}
	old := e.p.cur.Load().byName["mod"]
	if err := e.p.Swap(compile(t, `[{name: f, filter: {cel: "true"}}]`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.pool.done:
	default:
		t.Error("the removed module's instances are not closed")
	}
	if got := e.p.Names(); fmt.Sprint(got) != "[f]" {
		t.Errorf("names %v", got)
	}
}

func TestSwapAfterClose(t *testing.T) {
	p := New(nil, Options{Logger: discardLog()})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Swap(compile(t, `[{name: f, filter: {cel: "false"}}]`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Swap after Run: %v; want ErrClosed", err)
	}
	if err := p.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run again: %v; want ErrClosed", err)
	}
}

// TestNoFunctions: without functions a sink passes batches through as they are.
func TestNoFunctions(t *testing.T) {
	e := newEnv(t, nil)
	e.publish(reading("m-1", "p", bridge.Int(1)), reading("m-1", "q", bridge.Int(2)))
	if d := describe(e.published()); d != "m-1/p=int(1) m-1/q=int(2) " {
		t.Fatalf("published %s", d)
	}
	if err := e.sink.Declare("m-2", "x"); err != nil {
		t.Fatal(err)
	}
	if !e.hub.HasPoint("m-2", "x") {
		t.Error("Declare did not reach the hub")
	}
}
