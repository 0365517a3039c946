package functions

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// The module's exports (docs/functions.md).
const (
	exportMemory  = "memory"
	exportAlloc   = "alloc"
	exportProcess = "process"
	exportInit    = "_initialize" // a WASI reactor's constructor: called once per instance
	exportStart   = "_start"      // a WASI command's main: never called
	wasiModule    = wasi_snapshot_preview1.ModuleName
	// initTimeout bounds an instance's _initialize (a Go module starts its runtime).
	initTimeout = 5 * time.Second
	// closeTimeout bounds closing an instance or a runtime.
	closeTimeout = 5 * time.Second
)

// wasmModule is a compiled module and the runtime it belongs to: one runtime per
// function, because the memory limit is a runtime setting.
type wasmModule struct {
	cfg      *WASM
	sum      [sha256.Size]byte
	rt       wazero.Runtime
	compiled wazero.CompiledModule
}

// compileWASM reads, validates and compiles a module. Nothing of it runs yet.
func compileWASM(ctx context.Context, c *WASM, cache wazero.CompilationCache) (*wasmModule, error) {
	code, err := readModule(c.Module)
	if err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(uint32(c.MemoryLimit / wasmPageSize)).
		// A call whose context ends (the batch deadline) stops where it is and
		// closes the instance: loops check for it, so an infinite loop ends too.
		WithCloseOnContextDone(true)
	if cache != nil {
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	fail := func(err error) (*wasmModule, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		rt.Close(cctx)
		return nil, err
	}
	// WASI with nothing granted: no preopened directories (so no file can be
	// opened), no sockets, no environment, no arguments; stdout discarded, stderr
	// kept for the failure log. The clocks and random source are real.
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(fmt.Errorf("WASI: %w", err))
	}
	cm, err := rt.CompileModule(ctx, code)
	if err != nil {
		return fail(fmt.Errorf("module %s: %w", c.Module, err))
	}
	if err := checkModule(cm); err != nil {
		return fail(fmt.Errorf("module %s: %w", c.Module, err))
	}
	return &wasmModule{cfg: c, sum: sha256.Sum256(code), rt: rt, compiled: cm}, nil
}

func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	code, err := io.ReadAll(io.LimitReader(f, MaxWASMModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	if len(code) > MaxWASMModuleSize {
		return nil, fmt.Errorf("module %s: larger than %d MiB", path, MaxWASMModuleSize>>20)
	}
	return code, nil
}

// checkModule checks the ABI: what the module exports and imports.
func checkModule(cm wazero.CompiledModule) error {
	for _, f := range cm.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasiModule {
			return fmt.Errorf("imports %s.%s: only %s is provided", mod, name, wasiModule)
		}
	}
	if len(cm.ImportedMemories()) > 0 {
		return errors.New("imports a memory: it must export its own as \"memory\"")
	}
	// wazero has refused a memory whose minimum is over the limit.
	if _, ok := cm.ExportedMemories()[exportMemory]; !ok {
		return fmt.Errorf("exports no memory named %q", exportMemory)
	}
	fns := cm.ExportedFunctions()
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	for _, want := range []struct {
		name           string
		params, result []api.ValueType
		sig            string
	}{
		{exportAlloc, []api.ValueType{i32}, []api.ValueType{i32}, "alloc(size i32) -> i32"},
		{exportProcess, []api.ValueType{i32, i32}, []api.ValueType{i64}, "process(ptr i32, len i32) -> i64"},
	} {
		f, ok := fns[want.name]
		if !ok {
			return fmt.Errorf("exports no function %q (the ABI needs %s)", want.name, want.sig)
		}
		if !equalTypes(f.ParamTypes(), want.params) || !equalTypes(f.ResultTypes(), want.result) {
			return fmt.Errorf("export %q has the wrong signature (the ABI needs %s)", want.name, want.sig)
		}
	}
	if _, cmd := fns[exportStart]; cmd {
		if _, reactor := fns[exportInit]; !reactor {
			return errors.New("is a WASI command (exports _start and no _initialize): build it as a reactor (Go: -buildmode=c-shared; Rust: crate-type cdylib)")
		}
	}
	return nil
}

func equalTypes(a, b []api.ValueType) bool { return bytes.Equal(a, b) }

// close releases the runtime and every instance in it.
func (w *wasmModule) close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	w.rt.Close(ctx)
}

// instance is one instantiation of a module, used by one batch at a time.
type instance struct {
	mod     api.Module
	alloc   api.Function
	process api.Function
	stderr  *headWriter
	// The input buffer the last alloc returned: kept by the module until the
	// next alloc, and used for every batch that fits.
	inPtr, inCap uint32
	stack        []uint64
}

// minInput is the smallest input buffer asked for; larger ones are asked for in
// powers of two, so that alloc is called a few times in an instance's life.
const minInput = 4096

func (w *wasmModule) instantiate(ctx context.Context) (*instance, error) {
	ctx, cancel := context.WithTimeout(ctx, initTimeout)
	defer cancel()
	stderr := &headWriter{max: 512}
	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: instances of one module do not collide
		WithStartFunctions(exportInit).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStderr(stderr)
	mod, err := w.rt.InstantiateModule(ctx, w.compiled, mc)
	if err != nil {
		return nil, withStderr(fmt.Errorf("instantiating: %w", err), stderr)
	}
	return &instance{
		mod:     mod,
		alloc:   mod.ExportedFunction(exportAlloc),
		process: mod.ExportedFunction(exportProcess),
		stderr:  stderr,
		stack:   make([]uint64, 2),
	}, nil
}

// call hands one encoded batch to the module and returns its output, which is only
// valid until the next call.
func (in *instance) call(ctx context.Context, batch []byte) ([]byte, error) {
	in.stderr.reset()
	if uint64(len(batch)) > 1<<31 {
		return nil, errors.New("batch too large")
	}
	if uint32(len(batch)) > in.inCap {
		size := max(minInput, uint32(1)<<bits.Len32(uint32(len(batch))-1))
		in.stack[0] = uint64(size)
		if err := in.alloc.CallWithStack(ctx, in.stack); err != nil {
			return nil, withStderr(fmt.Errorf("alloc: %w", err), in.stderr)
		}
		in.inPtr, in.inCap = uint32(in.stack[0]), size
	}
	if !in.mod.Memory().Write(in.inPtr, batch) {
		return nil, fmt.Errorf("alloc(%d) returned %#x, outside the module's memory", in.inCap, in.inPtr)
	}
	in.stack[0], in.stack[1] = uint64(in.inPtr), uint64(len(batch))
	if err := in.process.CallWithStack(ctx, in.stack); err != nil {
		return nil, withStderr(fmt.Errorf("process: %w", err), in.stderr)
	}
	optr, olen := uint32(in.stack[0]>>32), uint32(in.stack[0])
	if olen == 0 {
		return nil, nil
	}
	out, ok := in.mod.Memory().Read(optr, olen)
	if !ok {
		return nil, fmt.Errorf("process returned %d bytes at %#x, outside the module's memory", olen, optr)
	}
	return out, nil
}

func (in *instance) close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	in.mod.Close(ctx)
}

// callError is the failure of a call into a module: the first line of wazero's
// error (the rest is a stack trace) and the start of what the module wrote on
// stderr (a Go module's panic message, a Rust module's).
type callError struct {
	err    error
	stderr string
}

func (e *callError) Error() string {
	msg, _, _ := strings.Cut(e.err.Error(), "\n")
	if e.stderr != "" {
		return fmt.Sprintf("%s (stderr: %s)", msg, e.stderr)
	}
	return msg
}

func (e *callError) Unwrap() error { return e.err }

func withStderr(err error, w *headWriter) error {
	return &callError{err: err, stderr: w.String()}
}

// headWriter keeps the first max bytes written since the last reset: a module's
// stderr, for the log of its failure.
type headWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *headWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - len(t.buf); room > 0 {
		t.buf = append(t.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (t *headWriter) reset() {
	t.mu.Lock()
	t.buf = t.buf[:0]
	t.mu.Unlock()
}

func (t *headWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(strings.Fields(string(t.buf)), " ")
}

// pool holds a function's instances, one per shard. Devices are spread over the
// shards by a hash of their id, so that all of one device's messages go to the
// same instance and a module that keeps state per device sees them all. A shard
// lends its instance to one batch at a time; an empty shard (nil) is instantiated
// when lent, so a module that trapped is replaced by a fresh instance on its next
// batch.
type pool struct {
	mod     *wasmModule
	shards  []chan *instance // each holds one instance, or nil, while not lent
	done    chan struct{}
	once    sync.Once
	waiting prometheus.Gauge // batches waiting for their shard
}

var errPoolClosed = errors.New("function closed")

func newPool(mod *wasmModule, size int, waiting prometheus.Gauge) *pool {
	p := &pool{mod: mod, shards: make([]chan *instance, size), done: make(chan struct{}), waiting: waiting}
	for i := range p.shards {
		p.shards[i] = make(chan *instance, 1)
		p.shards[i] <- nil
	}
	return p
}

// shard is the shard of a device.
func (p *pool) shard(device string) int {
	if len(p.shards) == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(device))
	return int(h.Sum32() % uint32(len(p.shards)))
}

// get lends a shard's instance, waiting until ctx ends while another batch has it.
// An empty shard is instantiated under initCtx and initTimeout: starting a
// module's runtime is not the batch's work.
func (p *pool) get(shard int, ctx, initCtx context.Context) (*instance, error) {
	var in *instance
	slot := p.shards[shard]
	select {
	case <-p.done:
		return nil, errPoolClosed
	case in = <-slot:
	default:
		p.waiting.Inc()
		select {
		case in = <-slot:
			p.waiting.Dec()
		case <-p.done:
			p.waiting.Dec()
			return nil, errPoolClosed
		case <-ctx.Done():
			p.waiting.Dec()
			return nil, ctx.Err()
		}
	}
	select {
	case <-p.done:
		slot <- in
		return nil, errPoolClosed
	default:
	}
	if in == nil {
		var err error
		if in, err = p.mod.instantiate(initCtx); err != nil {
			slot <- nil
			return nil, err
		}
	}
	return in, nil
}

// put returns a lent instance; a broken one is closed and its shard emptied.
func (p *pool) put(shard int, in *instance, ok bool) {
	if !ok && in != nil {
		in.close()
		in = nil
	}
	p.shards[shard] <- in
}

// close stops lending, waits for lent instances to come back (each batch is
// bounded by the function's timeout) and closes them.
func (p *pool) close() {
	p.once.Do(func() {
		close(p.done)
		for _, slot := range p.shards {
			if in := <-slot; in != nil {
				in.close()
			}
		}
	})
}
