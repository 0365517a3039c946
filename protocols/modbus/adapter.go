package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// Adapter polls the configured Modbus devices and writes to them.
type Adapter struct {
	cfg     *Config
	log     *slog.Logger
	lim     *limiter
	metrics *metrics

	// mu guards the topology, which Reconfigure replaces line by line.
	mu      sync.RWMutex
	lines   []*line
	devices map[string]*device
	lineOf  map[string]*line         // device id: its line
	confs   map[*line][]DeviceConfig // what each line was built from
	runs    map[*line]*lineRun       // running lines
	runCtx  context.Context          // Run's, parent of every line's
	sink    protocols.Sink

	running   atomic.Bool
	readyOnce sync.Once
	ready     chan struct{}
}

var (
	_ protocols.Adapter = (*Adapter)(nil)
	_ protocols.Writer  = (*Adapter)(nil)
	_ protocols.Reader  = (*Adapter)(nil)
	_ protocols.Readier = (*Adapter)(nil)
)

// logRate and logBurst bound the log lines that devices can cause.
const (
	logRate  = 10 // per second
	logBurst = 20
)

func newAdapter(c *Config, env protocols.Env) (*Adapter, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{
		cfg:     c,
		log:     log,
		metrics: newMetrics(),
		ready:   make(chan struct{}),
		runs:    map[*line]*lineRun{},
	}
	a.lim = newLimiter(logRate, logBurst, a.metrics.logsDropped)
	t, err := a.topology(c)
	if err != nil {
		return nil, err
	}
	a.lines, a.devices, a.lineOf, a.confs = t.lines, t.devices, t.lineOf, t.confs
	if err := a.metrics.register(env.Metrics); err != nil {
		return nil, fmt.Errorf("modbus: registering metrics: %w", err)
	}
	return a, nil
}

// Ready is closed once Run has declared the devices and started polling. It does
// not wait for the devices: one that is down must not keep the gateway unready.
func (a *Adapter) Ready() <-chan struct{} { return a.ready }

// Run polls every device until ctx ends, each connection in a goroutine of its own,
// and returns nil once they have all stopped and closed their connections.
func (a *Adapter) Run(ctx context.Context, sink protocols.Sink) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("modbus: adapter already ran")
	}
	a.mu.Lock()
	for _, l := range a.lines {
		if err := declare(sink, l); err != nil {
			a.mu.Unlock()
			return err
		}
	}
	a.runCtx, a.sink = ctx, sink
	for _, l := range a.lines {
		a.startLineLocked(l)
	}
	n, conns := len(a.devices), len(a.lines)
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	a.log.Info("modbus: polling", "devices", n, "connections", conns)
	// Without devices there is nothing to poll, but the adapter runs until ctx
	// ends like any other: the gateway takes an early return for a failure.
	<-ctx.Done()
	a.mu.Lock()
	runs := make([]*lineRun, 0, len(a.runs))
	for _, r := range a.runs {
		runs = append(runs, r)
	}
	a.mu.Unlock()
	for _, r := range runs {
		<-r.done
	}
	return nil
}

// Write sets a coil or holding register point: the value is encoded for the point's
// type and byte order, with its scale and offset reversed, and sent when the line is
// next free. A write to an unknown or read-only point, or of a value that does not
// fit, is refused with InvalidArgument and sends nothing. A device that refuses the
// write gives FailedPrecondition; one that cannot be reached, Unavailable.
func (a *Adapter) Write(ctx context.Context, device, point string, v bridge.Value) error {
	d, l, p, err := a.lookup(device, point)
	if err != nil {
		return err
	}
	if !p.writable {
		return status.Errorf(codes.InvalidArgument, "modbus: device %q point %q is not writable", device, point)
	}
	data, err := p.encode(v)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "modbus: device %q point %q (%s): %v", device, point, p.typ, err)
	}
	_, err = a.do(ctx, l, &call{d: d, p: p, write: true, data: data})
	if err != nil {
		return callError(fmt.Sprintf("modbus: write to device %q point %q", device, point), err)
	}
	return nil
}

// Read reads a point from the device now, between polls.
func (a *Adapter) Read(ctx context.Context, device, point string) (*bridge.Message, error) {
	d, l, p, err := a.lookup(device, point)
	if err != nil {
		return nil, err
	}
	v, err := a.do(ctx, l, &call{d: d, p: p})
	if err != nil {
		return nil, callError(fmt.Sprintf("modbus: read of device %q point %q", device, point), err)
	}
	return &bridge.Message{
		Device:   device,
		Point:    point,
		Protocol: bridge.ProtocolModbus,
		Value:    v,
		Quality:  bridge.QualityGood,
		Unit:     p.unit,
		Labels:   p.labels,
		Priority: p.priority,
	}, nil
}

func (a *Adapter) lookup(device, point string) (*device, *line, *point, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	d, ok := a.devices[device]
	if !ok {
		return nil, nil, nil, status.Errorf(codes.InvalidArgument, "modbus: no device %q", device)
	}
	p, ok := d.byName[point]
	if !ok {
		return nil, nil, nil, status.Errorf(codes.InvalidArgument, "modbus: device %q has no point %q", device, point)
	}
	return d, a.lineOf[device], p, nil
}

// do hands a call to the line and waits for its result.
func (a *Adapter) do(ctx context.Context, l *line, c *call) (bridge.Value, error) {
	if !a.running.Load() {
		return bridge.Value{}, status.Error(codes.Unavailable, "modbus: adapter not running")
	}
	c.done = make(chan callResult, 1)
	select {
	case l.calls <- c:
	case <-l.stopped:
		return bridge.Value{}, status.Error(codes.Unavailable, "modbus: adapter stopped")
	case <-ctx.Done():
		return bridge.Value{}, ctx.Err()
	default:
		return bridge.Value{}, status.Errorf(codes.ResourceExhausted, "modbus: %d requests already wait for %s", cap(l.calls), l.ep.key())
	}
	select {
	case r := <-c.done:
		return r.v, r.err
	case <-l.stopped:
		return bridge.Value{}, status.Error(codes.Unavailable, "modbus: adapter stopped")
	case <-ctx.Done():
		// The call may still run when its turn comes: a write cannot be taken back
		// once it is queued.
		return bridge.Value{}, ctx.Err()
	}
}

// callError gives a device's answer its gRPC status, keeping the cause for errors.Is.
func callError(what string, err error) error {
	var ex Exception
	code := codes.Unavailable
	if errors.As(err, &ex) && classify(err) != classRetry {
		code = codes.FailedPrecondition
	}
	return &statusError{code: code, err: fmt.Errorf("%s: %w", what, err)}
}

// statusError is an error with a gRPC status that still unwraps to its cause.
type statusError struct {
	code codes.Code
	err  error
}

func (e *statusError) Error() string              { return e.err.Error() }
func (e *statusError) Unwrap() error              { return e.err }
func (e *statusError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

func errValuef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrValue, fmt.Sprintf(format, args...))
}

// logf logs a warning through the rate limit: what devices cause, they can cause often.
func (a *Adapter) logf(msg string, args ...any) { a.logAt(slog.LevelWarn, msg, args...) }

func (a *Adapter) logAt(level slog.Level, msg string, args ...any) {
	a.lim.Log(a.log, level, msg, args...)
}
