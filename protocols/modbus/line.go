package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/backoff"
	"github.com/edgegate/edgegate/protocols"
	"github.com/prometheus/client_golang/prometheus"
)

// call is a write or an on-demand read, handed to the line's goroutine so that it
// takes its turn on the wire between polls.
type call struct {
	d     *device
	p     *point
	write bool
	data  []byte          // write: the encoded value (a coil: one byte, 0 or 1)
	done  chan callResult // buffered: the line never waits for the caller
}

type callResult struct {
	v   bridge.Value
	err error
}

// line is one connection, a TCP connection or a serial line, and the devices
// (unit ids) behind it. One goroutine owns it and everything of its devices'
// reporting state: requests go out one at a time, so a slow device delays only the
// devices that share its connection.
type line struct {
	a          *Adapter
	ep         *endpoint
	devices    []*device
	calls      chan *call
	stopped    chan struct{} // closed when run returns
	reconnects prometheus.Counter

	sink     protocols.Sink
	tr       transport
	attempts int // failures (to connect, or of a connection) since a poll last succeeded
	lastErr  error
}

func newLine(a *Adapter, ep *endpoint) *line {
	l := &line{
		a:       a,
		ep:      ep,
		calls:   make(chan *call, a.cfg.Queue),
		stopped: make(chan struct{}),
	}
	l.reconnects = a.metrics.reconnects.WithLabelValues(ep.key())
	return l
}

// run polls the line's devices until ctx ends, connecting and reconnecting as
// needed, and serves calls between polls.
func (l *line) run(ctx context.Context, sink protocols.Sink) {
	defer close(l.stopped)
	l.sink = sink
	defer l.closeTransport()
	start := time.Now()
	for _, d := range l.devices {
		d.due = start.Add(d.phase)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		if l.tr == nil {
			// After a failure (to connect, or of the connection) wait before the next
			// attempt; the wait grows with each failure until a poll succeeds.
			if l.attempts > 0 && !l.idle(ctx, timer, l.backoff()) {
				return
			}
			if err := l.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				l.attempts++
				l.lastErr = err
				l.allDown(ctx, fmt.Errorf("connecting to %s: %w", l.ep.key(), err))
				continue
			}
			l.realign(time.Now())
		}
		d := l.nextDue()
		timer.Reset(time.Until(d.due))
		select {
		case <-ctx.Done():
			return
		case c := <-l.calls:
			l.serve(ctx, c)
		case <-timer.C:
			l.poll(ctx, d)
		}
	}
}

func (l *line) connect(ctx context.Context) error {
	if l.attempts > 0 || l.lastErr != nil {
		l.reconnects.Inc()
	}
	var err error
	if l.ep.rtu() {
		var port serialPort
		if port, err = openSerial(l.ep); err == nil {
			l.tr = newRTU(port, l.ep)
		}
	} else {
		var t *tcpTransport
		if t, err = dialTCP(ctx, l.ep.host, l.a.cfg.ConnectTimeout); err == nil {
			l.tr = t
		}
	}
	return err
}

// backoff is the wait before the next connection attempt (see reconnectBackoff).
func (l *line) backoff() time.Duration { return l.a.cfg.reconnectBackoff().Delay(l.attempts) }

// jitter is the part of each wait drawn at random (internal/backoff), so that
// devices that went down together do not come back in step.
const jitter = 0.4

// reconnectBackoff paces connection attempts, and the requests to a unit that
// does not answer on a serial line: doubling from reconnect_backoff up to
// reconnect_backoff_max, each wait up to 40% shorter at random.
func (c *Config) reconnectBackoff() backoff.Policy {
	return backoff.Policy{Min: c.ReconnectBackoff, Max: c.ReconnectBackoffMax, Jitter: jitter}
}

// busyBackoff paces the retries of a request the device answered "busy":
// doubling from busy_backoff up to busy_backoff_max, each wait up to 40% shorter at
// random.
func (c *Config) busyBackoff() backoff.Policy {
	return backoff.Policy{Min: c.BusyBackoff, Max: c.BusyBackoffMax, Jitter: jitter}
}

// idle waits for d, answering calls with the line's error meanwhile. It returns
// false when ctx ended.
func (l *line) idle(ctx context.Context, timer *time.Timer, d time.Duration) bool {
	timer.Reset(d)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case c := <-l.calls:
			c.done <- callResult{err: fmt.Errorf("%w: %w", errNotConnected, l.lastErr)}
		}
	}
}

var errNotConnected = errors.New("modbus: device not connected")

func (l *line) closeTransport() {
	if l.tr != nil {
		_ = l.tr.close()
		l.tr = nil
	}
}

// realign moves polls that fell due while the line was down to their next slot.
func (l *line) realign(now time.Time) {
	for _, d := range l.devices {
		if n := skip(d, now); n > 0 {
			d.m.skipped.Add(float64(n))
		}
	}
}

// skip advances d.due past now by whole intervals and returns how many it skipped.
func skip(d *device, now time.Time) int64 {
	if d.due.After(now) {
		return 0
	}
	n := int64(now.Sub(d.due)/d.interval) + 1
	d.due = d.due.Add(time.Duration(n) * d.interval)
	return n
}

func (l *line) nextDue() *device {
	next := l.devices[0]
	for _, d := range l.devices[1:] {
		if d.due.Before(next.due) {
			next = d
		}
	}
	return next
}

// poll reads every block of d that is due, reports what changed and publishes it.
func (l *line) poll(ctx context.Context, d *device) {
	now := time.Now()
	l.a.metrics.jitter.Observe(now.Sub(d.due).Seconds())
	// The next poll is a whole interval after this one was due, not after it ran:
	// polls do not drift. One that could not run in its slot is skipped.
	d.due = d.due.Add(d.interval)
	if n := skip(d, now); n > 0 {
		d.m.skipped.Add(float64(n))
	}
	err := l.pollBlocks(ctx, d, now)
	switch c := classify(err); {
	case c == classNone:
		d.m.polls.Inc()
		d.failures = 0
		l.attempts = 0
	case c == classCanceled || ctx.Err() != nil:
	case c == classReconnect && l.ep.rtu() && !errors.Is(err, errIO):
		// One unit that does not answer on a serial line does not make the line
		// bad: the others are still polled. What might still come from it is
		// drained before the next request, and the unit is asked again after the
		// reconnect backoff rather than every poll, so that its timeouts do not
		// take the line's time from the units that answer.
		l.drain(ctx)
		l.deviceDown(ctx, d, err)
		d.failures++
		if retry := time.Now().Add(l.a.cfg.reconnectBackoff().Delay(d.failures)); retry.After(d.due) {
			// The first slot of its grid at or after the retry.
			n := (retry.Sub(d.due) + d.interval - 1) / d.interval
			d.due = d.due.Add(n * d.interval)
			d.m.skipped.Add(float64(n))
		}
	case c == classReconnect:
		l.lineDown(ctx, err)
	}
	l.publish(ctx, d)
}

// pollBlocks reads d's blocks and returns an error that ends the poll: the
// connection's or our own cancellation.
func (l *line) pollBlocks(ctx context.Context, d *device, now time.Time) error {
	d.msgs = d.msgs[:0]
	var pointErr, devErr error
	for _, b := range d.blocks {
		if len(b.points) == 1 && now.Before(b.points[0].badUntil) {
			continue
		}
		perr, err := l.readBlock(ctx, d, b, now)
		if perr != nil {
			pointErr = perr
		}
		switch classify(err) {
		case classNone:
		case classDevice, classRetry:
			devErr = err
			d.m.errors.WithLabelValues(errLabel(err)).Inc()
			for _, p := range b.points {
				d.reportBad(p, now)
			}
		default:
			d.m.errors.WithLabelValues(errLabel(err)).Inc()
			return err
		}
	}
	if d.replan() {
		d.blocks = planBlocks(d.points, d.maxGap, d.maxBitGap, d.maxRegs, d.maxBits)
	}
	switch {
	case devErr != nil:
		l.setState(d, bridge.StateError, devErr)
	default:
		// A point the device refuses leaves the device connected, with the refusal
		// as its last error.
		l.setState(d, bridge.StateConnected, pointErr)
	}
	return nil
}

// readBlock reads b and reports its points. When the device refuses the addresses,
// a single point is marked BAD and left alone for bad_point_retry; a block of
// several is split, now and from then on, into single reads, so that only the
// points the device refuses are BAD. pointErr is such a refusal; err is an error
// that concerns more than b's points.
func (l *line) readBlock(ctx context.Context, d *device, b *block, now time.Time) (pointErr, err error) {
	data, err := l.exchange(ctx, d, b.req)
	switch classify(err) {
	case classNone:
		for _, p := range b.points {
			v, derr := p.decode(data, b.start)
			if derr != nil {
				d.reportBad(p, now)
				continue
			}
			d.report(p, v, bridge.QualityGood, now)
		}
		return nil, nil
	case classPoint:
		d.m.errors.WithLabelValues(errLabel(err)).Inc()
		if len(b.points) == 1 {
			p := b.points[0]
			p.split = splitAlone
			p.badUntil = now.Add(l.a.cfg.BadPointRetry)
			if p.lastQ != bridge.QualityBad {
				l.a.logf("modbus: point refused by the device; it is BAD and read again after bad_point_retry",
					"device", d.id, "point", p.name, "register", p.kind.String(), "address", p.addr, "err", err)
			}
			d.reportBad(p, now)
			return fmt.Errorf("point %q (%s %d): %w", p.name, p.kind, p.addr, err), nil
		}
		// The points that read alone may join their neighbours again, without a
		// gap; if such a request is refused too, they are read alone from then on.
		level := splitContiguous
		for _, p := range b.points {
			if p.split != splitNone {
				level = splitAlone
			}
		}
		for _, p := range b.points {
			p.split = max(p.split, level)
		}
		d.replanned = true
		for _, p := range b.points {
			perr, err := l.readBlock(ctx, d, singleBlock(p), now)
			if perr != nil && pointErr == nil {
				pointErr = perr
			}
			if err != nil {
				return pointErr, err
			}
		}
		return pointErr, nil
	}
	return nil, err
}

func singleBlock(p *point) *block {
	return &block{kind: p.kind, start: p.addr, count: uint16(p.regs), points: []*point{p}, req: readRequest(p.kind, p.addr, uint16(p.regs))}
}

// replan reports, once, whether a request of d was split since its blocks were
// planned.
func (d *device) replan() bool {
	r := d.replanned
	d.replanned = false
	return r
}

// exchange runs one request, retrying it after a growing wait while the device
// answers "busy" (or "acknowledge"), at most busy_retries times.
func (l *line) exchange(ctx context.Context, d *device, req request) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		d.m.requests.Inc()
		pdu, err := l.tr.exchange(ctx, d.unit, req, d.timeout)
		var data []byte
		if err == nil {
			data, err = decodeResponse(req, pdu)
		}
		if classify(err) != classRetry || attempt >= l.a.cfg.BusyRetries {
			return data, err
		}
		d.m.busy.Inc()
		if err := backoff.Sleep(ctx, l.a.cfg.busyBackoff().Delay(attempt+1)); err != nil {
			return nil, fmt.Errorf("%w: %w", errCanceled, err)
		}
	}
}

// serve runs a write or an on-demand read.
func (l *line) serve(ctx context.Context, c *call) {
	var res callResult
	if c.write {
		var req request
		if c.p.kind == kindCoil {
			req = writeCoilRequest(c.p.addr, c.data[0] == 1)
		} else {
			req = writeRegistersRequest(c.p.addr, c.data)
		}
		_, res.err = l.exchange(ctx, c.d, req)
	} else {
		b := singleBlock(c.p)
		data, err := l.exchange(ctx, c.d, b.req)
		if err == nil {
			res.v, err = c.p.decode(data, b.start)
		}
		res.err = err
	}
	c.done <- res
	switch classify(res.err) {
	case classReconnect:
		if l.ep.rtu() && !errors.Is(res.err, errIO) {
			l.drain(ctx)
			return
		}
		l.lineDown(ctx, res.err)
	}
}

// errIO marks a failure of the connection or the port itself, as opposed to a bad or
// missing answer.
var errIO = errors.New("modbus: i/o")

// drain discards what a unit that answered late or badly may still send on a serial
// line, so that it is not read as the next answer.
func (l *line) drain(ctx context.Context) {
	if r, ok := l.tr.(*rtuTransport); ok {
		r.drain(ctx)
	}
}

// lineDown drops the connection after err; every device on it is disconnected and
// its points BAD until the line is back.
func (l *line) lineDown(ctx context.Context, err error) {
	l.closeTransport()
	l.attempts++
	l.lastErr = err
	l.a.logf("modbus: connection lost; reconnecting", "connection", l.ep.key(), "err", err)
	l.allDown(ctx, err)
}

func (l *line) allDown(ctx context.Context, err error) {
	for _, d := range l.devices {
		l.deviceDown(ctx, d, err)
	}
}

// deviceDown disconnects d: the points it had published are BAD until it answers
// again.
func (l *line) deviceDown(ctx context.Context, d *device, err error) {
	now := time.Now()
	for _, p := range d.points {
		if p.published {
			d.reportBad(p, now)
		}
	}
	l.setState(d, bridge.StateDisconnected, err)
	l.publish(ctx, d)
}

func (l *line) setState(d *device, s bridge.DeviceState, err error) {
	text := ""
	if err != nil {
		text = err.Error()
	}
	if d.state == s && d.errText == text {
		return
	}
	// Each change of state is logged once (through the rate limit), not each poll
	// that finds the same state.
	switch {
	case s == bridge.StateConnected && d.state != bridge.StateConnected:
		l.a.logAt(slog.LevelInfo, "modbus: device connected", "device", d.id, "connection", l.ep.key())
	case s != bridge.StateConnected && s != d.state:
		l.a.logAt(slog.LevelWarn, "modbus: device "+s.String(), "device", d.id, "connection", l.ep.key(), "err", err)
	}
	d.state, d.errText = s, text
	d.m.state.Set(float64(s))
	l.sink.State(d.id, s, err)
}

// publish hands the device's batch to the bridge.
func (l *line) publish(ctx context.Context, d *device) {
	if len(d.msgs) == 0 {
		return
	}
	if err := l.sink.Publish(ctx, d.msgs...); err != nil && ctx.Err() == nil {
		l.a.metrics.publishErrors.Inc()
		l.a.logf("modbus: the bridge refused a batch", "device", d.id, "err", err)
	}
	clear(d.msgs)
	d.msgs = d.msgs[:0]
}

// errLabel is an error's class in the poll_errors_total metric.
func errLabel(err error) string {
	var ex Exception
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrTransactionID):
		return "transaction_id"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.As(err, &ex):
		switch classify(err) {
		case classRetry:
			return "busy"
		case classPoint:
			return "illegal_address"
		}
		return "exception"
	case errors.Is(err, errCanceled):
		return "canceled"
	}
	return "io"
}
