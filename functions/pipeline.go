package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Pipeline. The zero value works.
type Options struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer // nil: no metrics registered
	// Writer carries out the writes of WebAssembly functions with allow_writes
	// (the gateway gives its hub). Nil: such writes are dropped and counted.
	Writer bridge.Writer
}

// ErrClosed is returned by Swap and Run once Run has returned.
var ErrClosed = errors.New("functions: pipeline closed")

const (
	// writeQueueSize bounds the writes waiting to be sent.
	writeQueueSize = 256
	// writeTimeout bounds one write to a device.
	writeTimeout = 10 * time.Second
	// emitTimeout bounds publishing one window's aggregates.
	emitTimeout = 10 * time.Second
)

// Pipeline runs functions between the adapters and the hub. It is safe for
// concurrent use: every adapter publishes through its own Sink at the same time.
type Pipeline struct {
	log    *slog.Logger
	m      *metrics
	lim    *limiter
	writer bridge.Writer
	writes chan pendingWrite
	kick   chan struct{} // an aggregate opened a window that ends before the timer

	cur atomic.Pointer[active]

	mu      sync.Mutex // Swap and the start and end of Run
	running bool
	closed  bool
}

// active is the installed function list. A batch holds its read lock while the
// functions run, so that Swap knows when the last batch that saw a list is done
// with it.
type active struct {
	mu      sync.RWMutex
	retired bool
	fns     []*function
	byName  map[string]*function
}

type pendingWrite struct {
	f *function
	w write
}

// New returns a pipeline running the functions of s (nil: none yet). It takes
// ownership of s. Run must run for aggregates to emit and writes to be sent.
func New(s *Set, opts Options) *Pipeline {
	p := &Pipeline{
		log:    opts.Logger,
		writer: opts.Writer,
		writes: make(chan pendingWrite, writeQueueSize),
		kick:   make(chan struct{}, 1),
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.m = newMetrics(opts.Metrics, func() float64 { return float64(len(p.writes)) })
	p.lim = newLimiter(1, 10, p.m.logDropped)
	a := &active{byName: map[string]*function{}}
	if s != nil {
		for _, f := range s.fns {
			p.install(f)
			a.fns = append(a.fns, f)
			a.byName[f.cfg.Name] = f
		}
	}
	p.cur.Store(a)
	return p
}

// install gives a new function its metrics and state.
func (p *Pipeline) install(f *function) {
	f.m = p.m.forFunction(f.cfg.Name)
	switch f.kind {
	case kindAggregate:
		f.win = newWindows(f.m.windows)
	case kindWASM:
		f.pool = newPool(f.wasm, f.cfg.WASM.Instances, f.m.waiting)
	}
}

// Names lists the running functions in order.
func (p *Pipeline) Names() []string {
	a := p.cur.Load()
	out := make([]string, len(a.fns))
	for i, f := range a.fns {
		out[i] = f.cfg.Name
	}
	return out
}

// Swap replaces the running functions with those of s, atomically: every batch
// runs wholly through the old list or wholly through the new one, and none is
// lost. A function whose config (and module) did not change keeps its state (open
// windows, instances); the others start afresh, and the open windows of a removed
// or changed aggregate are not emitted. Swap returns once no batch uses the old
// list and what it alone held is closed. It takes ownership of s.
func (p *Pipeline) Swap(s *Set) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		s.Close()
		return ErrClosed
	}
	old := p.cur.Load()
	next := &active{byName: map[string]*function{}}
	oldByKey := make(map[string]*function, len(old.fns))
	for _, f := range old.fns {
		oldByKey[f.key] = f
	}
	kept := map[*function]bool{}
	if s != nil {
		for _, f := range s.fns {
			if o, ok := oldByKey[f.key]; ok && !kept[o] {
				kept[o] = true
				if f != o { // the same Set given again keeps its functions as they are
					f.close() // the new copy's compiled module: the old one's serves
				}
				f = o
			} else {
				p.install(f)
			}
			next.fns = append(next.fns, f)
			next.byName[f.cfg.Name] = f
		}
	}
	p.cur.Store(next)
	// Wait for the batches still running through the old list.
	old.mu.Lock()
	old.retired = true
	old.mu.Unlock()
	for _, f := range old.fns {
		if kept[f] {
			continue
		}
		f.close()
		if _, still := next.byName[f.cfg.Name]; !still {
			p.m.forget(f.cfg.Name)
		}
	}
	p.wake()
	return nil
}

func (p *Pipeline) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// acquire returns the installed list with its read lock held, or nil when there
// are no functions (the fast path: nothing to hold).
func (p *Pipeline) acquire() *active {
	for {
		a := p.cur.Load()
		if len(a.fns) == 0 {
			return nil
		}
		a.mu.RLock()
		if !a.retired {
			return a
		}
		a.mu.RUnlock()
	}
}

// Sink wraps the sink of one protocol's adapter: what the adapter publishes runs
// through the functions on its way to inner.
func (p *Pipeline) Sink(inner protocols.Sink) protocols.Sink {
	s := &sink{p: p, inner: inner}
	if pi, ok := inner.(interface{ Protocol() bridge.Protocol }); ok {
		s.protocol = pi.Protocol()
	}
	return s
}

type sink struct {
	p        *Pipeline
	inner    protocols.Sink
	protocol bridge.Protocol
}

var _ protocols.Sink = (*sink)(nil)

func (s *sink) State(device string, st bridge.DeviceState, cause error) {
	s.inner.State(device, st, cause)
}
func (s *sink) Declare(device string, points ...string) error {
	return s.inner.Declare(device, points...)
}
func (s *sink) Invalid(device string, cause error) { s.inner.Invalid(device, cause) }

// Publish runs the batch through the functions and publishes what comes out as one
// batch: the messages that passed, each followed by those derived from it, then
// what WebAssembly functions added. When every message was dropped there is
// nothing to publish, and the adapter may acknowledge the device.
func (s *sink) Publish(ctx context.Context, msgs ...*bridge.Message) error {
	r, err := s.Submit(ctx, msgs...)
	if err != nil {
		return err
	}
	return r.Wait(ctx)
}

// Submit is Publish without the wait for the durable log (protocols.Sink).
func (s *sink) Submit(ctx context.Context, msgs ...*bridge.Message) (bridge.Receipt, error) {
	a := s.p.acquire()
	if a == nil {
		return s.inner.Submit(ctx, msgs...)
	}
	if s.protocol != bridge.ProtocolUnspecified {
		for _, m := range msgs {
			m.Protocol = s.protocol // as the Ingest will: functions may read it
		}
	}
	out := s.p.run(ctx, s, a, msgs, 0)
	byName := a.byName
	a.mu.RUnlock()
	return s.submit(ctx, out, msgs, byName)
}

// Barrier is the inner sink's (protocols.Sink).
func (s *sink) Barrier() bridge.Receipt { return s.inner.Barrier() }

// submit hands out to the inner sink. When the hub refuses a batch that
// functions added to (a derived point over the registry's limit), the device's own
// messages are published without the additions: a function's mistake must not
// cost the device its data.
func (s *sink) submit(ctx context.Context, out, orig []*bridge.Message, byName map[string]*function) (bridge.Receipt, error) {
	if len(out) == 0 {
		// Dropped by a filter: acknowledged after what the device sent before.
		return s.inner.Barrier(), nil
	}
	r, err := s.inner.Submit(ctx, out...)
	if err == nil || !(errors.Is(err, bridge.ErrInvalidMessage) || errors.Is(err, bridge.ErrTooManyPoints) || errors.Is(err, bridge.ErrTooManyDevices)) {
		return r, err
	}
	isOrig := make(map[*bridge.Message]bool, len(orig))
	for _, m := range orig {
		isOrig[m] = true
	}
	kept := make([]*bridge.Message, 0, len(out))
	for _, m := range out {
		if isOrig[m] {
			kept = append(kept, m)
			continue
		}
		if f := byName[m.Labels[labelDerivedFrom]]; f != nil {
			s.p.fail(f, m, 1, reasonRefused, err)
		}
	}
	if len(kept) == len(out) {
		return bridge.Receipt{}, err
	}
	if len(kept) == 0 {
		return s.inner.Barrier(), nil
	}
	return s.inner.Submit(ctx, kept...)
}

// run passes a batch through the functions from index `from` on.
func (p *Pipeline) run(ctx context.Context, s *sink, a *active, batch []*bridge.Message, from int) []*bridge.Message {
	for i := from; i < len(a.fns) && len(batch) > 0; i++ {
		f := a.fns[i]
		switch f.kind {
		case kindFilter:
			batch = p.filter(f, batch)
		case kindDerive:
			batch = p.derive(f, batch)
		case kindAggregate:
			p.aggregate(f, s, batch)
		case kindWASM:
			batch = p.runWASM(ctx, f, s, batch)
		}
	}
	return batch
}

func (p *Pipeline) filter(f *function, batch []*bridge.Message) []*bridge.Message {
	start := time.Now()
	var out []*bridge.Message // nil until the first drop: most batches pass whole
	n := 0
	for i, m := range batch {
		keep := true
		if f.match.Match(m) {
			n++
			res, err := f.prog.eval(m)
			switch b, ok := res.(types.Bool); {
			case err != nil:
				p.fail(f, m, 1, celReason(err), err)
			case !ok:
				p.fail(f, m, 1, reasonResult, fmt.Errorf("cel %q produced a %s, not a bool", f.prog.expr, res.Type()))
			default:
				keep = bool(b)
			}
		}
		if !keep {
			if out == nil {
				out = append(make([]*bridge.Message, 0, len(batch)-1), batch[:i]...)
			}
			f.m.drops.Inc()
			continue
		}
		if out != nil {
			out = append(out, m)
		}
	}
	if n > 0 {
		f.m.evaluations.Add(float64(n))
		f.m.since(start)
	}
	if out == nil {
		return batch
	}
	return out
}

func (p *Pipeline) derive(f *function, batch []*bridge.Message) []*bridge.Message {
	start := time.Now()
	var out []*bridge.Message // nil until the first derived message
	n := 0
	for i, m := range batch {
		var d *bridge.Message
		if f.match.Match(m) {
			n++
			res, err := f.prog.eval(m)
			var v bridge.Value
			if err == nil {
				v, err = fromCEL(res)
				if err != nil {
					p.fail(f, m, 1, reasonResult, fmt.Errorf("cel %q %w", f.prog.expr, err))
				}
			} else {
				p.fail(f, m, 1, celReason(err), err)
			}
			if err == nil {
				d = &bridge.Message{
					Device:     m.Device,
					Point:      f.cfg.Derive.Point,
					Protocol:   m.Protocol,
					Value:      v,
					Quality:    m.Quality,
					SourceTime: m.SourceTime,
					Unit:       f.cfg.Derive.Unit,
					Labels:     derivedLabels(m.Labels, f.cfg.Name),
					Priority:   m.Priority,
				}
			}
		}
		if d != nil {
			if out == nil {
				out = append(make([]*bridge.Message, 0, len(batch)+len(batch)-i), batch[:i]...)
			}
			out = append(out, m, d)
			f.m.emits.Inc()
			continue
		}
		if out != nil {
			out = append(out, m)
		}
	}
	if n > 0 {
		f.m.evaluations.Add(float64(n))
		f.m.since(start)
	}
	if out == nil {
		return batch
	}
	return out
}

func celReason(err error) string {
	var c interpreter.EvalCancelledError
	if errors.As(err, &c) && c.Cause == interpreter.CostLimitExceeded {
		return reasonBudget
	}
	return reasonError
}

func (p *Pipeline) aggregate(f *function, s *sink, batch []*bridge.Message) {
	start := time.Now()
	n := 0
	for _, m := range batch {
		if !f.match.Match(m) {
			continue
		}
		n++
		earlier, err := f.win.add(f.agg, f.cfg.Aggregate.Window, start, s, m)
		if err != nil {
			p.fail(f, m, 1, reasonResult, err)
		}
		if earlier {
			p.wake()
		}
	}
	if n > 0 {
		f.m.evaluations.Add(float64(n))
		f.m.since(start)
	}
}

// fail counts a failure and its dead letters (n messages that went on unchanged)
// and logs it, at a bounded rate.
func (p *Pipeline) fail(f *function, m *bridge.Message, n int, reason string, err error) {
	f.m.failures[reason].Inc()
	f.m.deadLetters.Add(float64(n))
	args := []any{"function", f.cfg.Name, "reason", reason, "err", err}
	if m != nil {
		args = append(args, "device", m.Device, "point", m.Point)
	}
	if n > 1 {
		args = append(args, "messages", n)
	}
	p.lim.Log(p.log, slog.LevelWarn, "edge function failed; the message goes on unchanged", args...)
}

// Run emits aggregates at the end of their windows and sends the writes of
// WebAssembly functions, until ctx ends. Windows still open then are not emitted.
// When Run returns, the pipeline is closed: its functions are released and its
// sinks pass messages through unchanged.
func (p *Pipeline) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || p.running {
		p.mu.Unlock()
		return ErrClosed
	}
	p.running = true
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.writeLoop(ctx)
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for ctx.Err() == nil {
		var fire <-chan time.Time
		if next, ok := p.nextWindowEnd(); ok {
			timer.Reset(max(time.Until(next), 0))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-fire:
			p.flush(ctx, time.Now())
		case <-p.kick:
		}
		timer.Stop()
	}
	wg.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	old := p.cur.Load()
	p.cur.Store(&active{})
	old.mu.Lock()
	old.retired = true
	old.mu.Unlock()
	for _, f := range old.fns {
		f.close()
	}
	return nil
}

func (p *Pipeline) nextWindowEnd() (time.Time, bool) {
	var first time.Time
	found := false
	for _, f := range p.cur.Load().fns {
		if f.kind != kindAggregate {
			continue
		}
		if t, ok := f.win.next(f.cfg.Aggregate.Window); ok && (!found || t.Before(first)) {
			first, found = t, true
		}
	}
	return first, found
}

// flush emits the windows that ended by now. Each aggregate goes on through the
// functions listed after the one that made it, then to the sink of its device's
// protocol.
func (p *Pipeline) flush(ctx context.Context, now time.Time) {
	a := p.acquire()
	if a == nil {
		return
	}
	type batchKey struct {
		s    *sink
		from int
	}
	batches := map[batchKey][]*bridge.Message{}
	var order []batchKey
	for i, f := range a.fns {
		if f.kind != kindAggregate {
			continue
		}
		for _, e := range f.win.due(&f.cfg, f.agg, now) {
			k := batchKey{e.sink, i + 1}
			if _, ok := batches[k]; !ok {
				order = append(order, k)
			}
			batches[k] = append(batches[k], e.msg)
			f.m.emits.Inc()
		}
	}
	outs := make([][]*bridge.Message, len(order))
	for i, k := range order {
		outs[i] = p.run(ctx, k.s, a, batches[k], k.from)
	}
	byName := a.byName
	a.mu.RUnlock()
	for i, k := range order {
		pctx, cancel := context.WithTimeout(ctx, emitTimeout)
		// Nobody acknowledges an aggregate: no wait for the disk.
		_, err := k.s.submit(pctx, outs[i], nil, byName)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.lim.Log(p.log, slog.LevelWarn, "publishing aggregates failed", "messages", len(outs[i]), "err", err)
		}
	}
}

// writeLoop sends the writes of WebAssembly functions, one at a time, each under
// a deadline. What is queued when ctx ends is dropped and counted.
func (p *Pipeline) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case pw := <-p.writes:
					pw.f.m.writeDropped.Inc()
				default:
					return
				}
			}
		case pw := <-p.writes:
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := p.writer.Write(wctx, pw.w.device, pw.w.point, pw.w.value)
			cancel()
			if err != nil {
				pw.f.m.writeErr.Inc()
				if ctx.Err() == nil {
					p.lim.Log(p.log, slog.LevelWarn, "write from an edge function failed", "function", pw.f.cfg.Name, "device", pw.w.device, "point", pw.w.point, "err", err)
				}
				continue
			}
			pw.f.m.writeOK.Inc()
		}
	}
}

// queueWrite queues a write from a function without waiting.
func (p *Pipeline) queueWrite(f *function, w write) {
	if p.writer == nil {
		f.m.writeDropped.Inc()
		return
	}
	select {
	case p.writes <- pendingWrite{f: f, w: w}:
	default:
		f.m.writeDropped.Inc()
		p.lim.Log(p.log, slog.LevelWarn, "write queue full; write from an edge function dropped", "function", f.cfg.Name, "device", w.device, "point", w.point, "queue", writeQueueSize)
	}
}
