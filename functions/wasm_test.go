package functions

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

func wasmEnv(t *testing.T, extra string) *env {
	t.Helper()
	mod := testModule(t)
	return newEnv(t, compile(t, fmt.Sprintf(`
- name: mod
  match: {devices: ["m-*"]}
  wasm: {module: %q, timeout: 1s, memory_limit: 16MiB, instances: 1%s}
`, mod, extra)))
}

func TestWASMDeriveAndDrop(t *testing.T) {
	e := wasmEnv(t, "")
	e.publish(reading("m-1", "temp", bridge.Double(21.5)), reading("m-1", "drop", bridge.Int(1)),
		reading("x-1", "temp", bridge.Int(7)), reading("m-2", "flag", bridge.Bool(true)))
	got := e.published()
	want := "m-1/temp=double(21.5) x-1/temp=int(7) m-2/flag=bool(true) m-1/temp_seen=double(21.5) m-2/flag_seen=bool(true) "
	if d := describe(got); d != want {
		t.Fatalf("published %s; want %s", d, want)
	}
	for _, m := range got[3:] {
		if m.Labels[LabelDerivedFrom] != "mod" || m.Protocol != bridge.ProtocolMQTT {
			t.Errorf("%s/%s: labels %v protocol %v; want derived_from and the batch's protocol", m.Device, m.Point, m.Labels, m.Protocol)
		}
		if m.Sequence <= got[2].Sequence {
			t.Errorf("%s/%s: sequence %d; want its own", m.Device, m.Point, m.Sequence)
		}
	}
	if v := e.metric("drops", "mod"); v != 1 {
		t.Errorf("drops %v; want 1", v)
	}
	if v := e.metric("emits", "mod"); v != 2 {
		t.Errorf("emits %v; want 2", v)
	}
	if v := e.metric("evaluations", "mod"); v != 3 {
		t.Errorf("evaluations %v; want 3", v)
	}
}

// TestWASMLoopStopped: a module that loops forever is stopped at its deadline, the
// batch goes on unchanged and counts as failed, and the next batch runs on a fresh
// instance.
func TestWASMLoopStopped(t *testing.T) {
	mod := testModule(t)
	e := newEnv(t, compile(t, fmt.Sprintf(`[{name: mod, wasm: {module: %q, timeout: 1s, instances: 1}}]`, mod)))
	e.publish(reading("m-1", "count", bridge.Int(0)))
	e.publish(reading("m-1", "count", bridge.Int(0)))
	start := time.Now()
	e.publish(reading("m-1", "loop", bridge.Int(1)))
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the looping batch took %v", took)
	}
	if v := e.metric("failures", "mod", reasonTimeout); v != 1 {
		t.Fatalf("timeout failures %v; want 1\nlog: %s", v, e.log.String())
	}
	e.publish(reading("m-1", "count", bridge.Int(0)))
	got := e.published()
	want := "m-1/count=int(0) m-1/count=int(1) m-1/count=int(0) m-1/count=int(2) m-1/loop=int(1) m-1/count=int(0) m-1/count=int(1) "
	if d := describe(got); d != want {
		t.Fatalf("published %s; want %s (the count starting over on a new instance)", d, want)
	}
	if v := e.metric("dead_letters", "mod"); v != 1 {
		t.Errorf("dead letters %v; want 1", v)
	}
}

// TestWASMMemoryLimit: growing past memory_limit traps (a Go module's runtime
// aborts when memory.grow fails); the gateway goes on.
func TestWASMMemoryLimit(t *testing.T) {
	mod := testModule(t)
	e := newEnv(t, compile(t, fmt.Sprintf(`[{name: mod, wasm: {module: %q, timeout: 10s, memory_limit: 8MiB, instances: 1}}]`, mod)))
	e.publish(reading("m-1", "grow", bridge.Int(1)))
	if v := e.metric("failures", "mod", reasonError); v != 1 {
		t.Fatalf("failures %v; want 1\nlog: %s", v, e.log.String())
	}
	if log := e.log.String(); !strings.Contains(log, "fatal error: out of memory") {
		t.Errorf("log %q; want the module's own words on stderr", log)
	}
	e.publish(reading("m-1", "temp", bridge.Int(3)))
	if d := describe(e.published()); d != "m-1/grow=int(1) m-1/temp=int(3) m-1/temp_seen=int(3) " {
		t.Fatalf("published %s", d)
	}
}

// TestWASMNoFiles: a module has no file system: it can open nothing.
func TestWASMNoFiles(t *testing.T) {
	// A file next to the working directory, to be sure nothing is mounted there.
	if err := os.WriteFile(filepath.Join(t.TempDir(), "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := wasmEnv(t, "")
	e.publish(reading("m-1", "open", bridge.Int(1)))
	got := e.published()
	if len(got) != 2 || got[1].Point != "open_result" {
		t.Fatalf("published %s", describe(got))
	}
	s, _ := got[1].Value.AsString()
	if !strings.HasPrefix(s, "denied: ") {
		t.Fatalf("the module reports %q", s)
	}
	t.Logf("the module reports %q", s)
}

func TestWASMFailures(t *testing.T) {
	for _, c := range []struct {
		point, reason, log string
	}{
		{"panic", reasonError, "testmod: asked to panic"},
		{"error", reasonError, "testmod: asked to fail"},
		{"other", reasonResult, `device \"someone-else\" is not in the batch`},
		{"write", reasonResult, "allow_writes is false"},
	} {
		t.Run(c.point, func(t *testing.T) {
			e := wasmEnv(t, "")
			e.publish(reading("m-1", c.point, bridge.Int(1)))
			e.publish(reading("m-1", "temp", bridge.Int(2)))
			want := fmt.Sprintf("m-1/%s=int(1) m-1/temp=int(2) m-1/temp_seen=int(2) ", c.point)
			if d := describe(e.published()); d != want {
				t.Fatalf("published %s; want %s", d, want)
			}
			if v := e.metric("failures", "mod", c.reason); v != 1 {
				t.Errorf("%s failures %v; want 1", c.reason, v)
			}
			if log := e.log.String(); !strings.Contains(log, c.log) {
				t.Errorf("log %s; want %q", log, c.log)
			}
		})
	}
}

func TestWASMWrites(t *testing.T) {
	e := wasmEnv(t, ", allow_writes: true")
	e.publish(reading("m-1", "write", bridge.Double(42)))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	select {
	case <-e.w.ch:
	case <-ctx.Done():
		t.Fatal("no write")
	}
	e.w.mu.Lock()
	got := fmt.Sprint(e.w.got)
	e.w.mu.Unlock()
	if got != "[m-1/setpoint=double(42)]" {
		t.Errorf("writes %s", got)
	}
	if d := describe(e.published()); d != "m-1/write=double(42) " {
		t.Errorf("published %s", d)
	}
}

// TestWASMExample runs the example module of examples/functions.
func TestWASMExample(t *testing.T) {
	mod := exampleModule(t)
	// A generous timeout: a batch that missed it would start the state over.
	e := newEnv(t, compile(t, fmt.Sprintf(`[{name: anomaly, match: {devices: ["fryer-*"]}, wasm: {module: %q, timeout: 10s}}]`, mod)))
	var batch []*bridge.Message
	for i := range 100 {
		batch = append(batch, reading("fryer-1", "oil_temp", bridge.Double(180+float64(i%3))))
	}
	e.publish(batch...)
	e.publish(reading("fryer-1", "oil_temp", bridge.Int(240)))
	got := e.published()
	last := got[len(got)-1]
	if len(got) != 102 || last.Point != "oil_temp_anomaly" || last.Priority != bridge.PriorityHigh {
		t.Fatalf("published %d messages, the last %s/%s; want 102, the last an anomaly at high priority", len(got), last.Device, last.Point)
	}
	if z, _ := last.Value.AsDouble(); z < 4 {
		t.Errorf("z-score %v", z)
	}
}

// TestWASMCompileErrors: modules that do not follow the ABI are refused at load,
// each error naming the function and the problem.
func TestWASMCompileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	header := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	// A memory of 512 pages (32 MiB) exported as "memory".
	bigMemory := append(append([]byte{}, header...),
		0x05, 0x04, 0x01, 0x00, 0x80, 0x04,
		0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00)
	for _, c := range []struct {
		file, want string
	}{
		{write("empty.wasm", header), `exports no memory named "memory"`},
		{write("text.wasm", []byte("hello")), "invalid magic number"},
		{write("big.wasm", bigMemory), "min 512 pages (32 Mi) over limit of 256 pages (16 Mi)"},
	} {
		_, errs := Compile(parseConfigs(t, fmt.Sprintf(`[{name: f, wasm: {module: %q}}]`, c.file)), CompileOptions{})
		if all := fmt.Sprint(errs); !strings.Contains(all, `function "f": wasm: module `+c.file) || !strings.Contains(all, c.want) {
			t.Errorf("%s: errors %s; want %q", filepath.Base(c.file), all, c.want)
		}
	}
	smallMemory := append(append([]byte{}, header...),
		0x05, 0x03, 0x01, 0x00, 0x01,
		0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00)
	_, errs := Compile(parseConfigs(t, fmt.Sprintf(`[{name: f, wasm: {module: %q}}]`, write("noalloc.wasm", smallMemory))), CompileOptions{})
	if all := fmt.Sprint(errs); !strings.Contains(all, `exports no function "alloc"`) {
		t.Errorf("errors %s; want no alloc", all)
	}
}

// TestWASMConcurrent: batches from several adapters at once share the instances.
func TestWASMConcurrent(t *testing.T) {
	mod := testModule(t)
	e := newEnv(t, compile(t, fmt.Sprintf(`[{name: mod, wasm: {module: %q, timeout: 10s, instances: 2}}]`, mod)))
	const workers, each = 4, 25
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := range each {
				if err = e.sink.Publish(t.Context(), reading(fmt.Sprint("m-", w), "temp", bridge.Int(int64(i)))); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := e.published(); len(got) != 2*workers*each {
		t.Fatalf("published %d; want %d", len(got), 2*workers*each)
	}
}
