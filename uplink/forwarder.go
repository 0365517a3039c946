package uplink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// The forwarder reads the durable log with two cursors and publishes what it
// reads, with up to MaxInFlight publishes awaiting the hub's acknowledgement.
//
//   - The main cursor reads everything in sequence order.
//   - The priority cursor runs ahead of it while the main cursor is more than
//     PriorityLag messages behind the log, sending only high and critical
//     messages. The main cursor then skips the high and critical messages the
//     priority cursor has already passed.
//
// So after an outage the hub gets the backlog's critical and high messages first,
// and a new alarm during a long drain overtakes the drain. Memory stays bounded:
// what the priority cursor has sent is not a set but a position.
//
// Two positions are saved in the durable log: ConsumerAcked, up to which every
// message is acknowledged, and ConsumerPriority, up to which every high and
// critical message is. Both move only over a contiguous prefix of acknowledged
// sequences. After a restart or reconnect, everything after them is sent again;
// what the hub already has it drops by Nats-Msg-Id.
type forwarder struct {
	u    *Uplink
	js   jetstream.JetStream
	fail context.CancelCauseFunc

	// The sender's cursors: the next sequence each reads.
	mainNext, prioNext uint64

	mu sync.Mutex
	// Sequences in flight, oldest first: high and critical in prioQ, the rest in
	// mainQ. Each queue is in sequence order and in publish order, and the
	// collector resolves publishes in publish order, so an acknowledgement always
	// pops a queue's head.
	mainQ, prioQ queue
	// mainDone and prioDone: the cursors have dealt with every sequence up to here
	// (sent it, or skipped it).
	mainDone, prioDone uint64

	slots   chan struct{} // a token per publish in flight
	pending chan inflight // publishes in order, for the collector
	pacer   *pacer
	idle    chan struct{} // signalled when nothing is in flight

	progressed bool
}

type inflight struct {
	seq  uint64
	prio bool
	size int
	fut  jetstream.PubAckFuture
}

func newForwarder(u *Uplink, js jetstream.JetStream, fail context.CancelCauseFunc) *forwarder {
	w := u.cfg.MaxInFlight
	return &forwarder{
		u: u, js: js, fail: fail,
		slots:   make(chan struct{}, w),
		pending: make(chan inflight, w),
		pacer:   newPacer(u.cfg.Budget),
		idle:    make(chan struct{}, 1),
	}
}

// readBatch is how many messages one journal read returns.
const readBatch = 256

// stopWait bounds how long a stopping forwarder waits for the acknowledgements of
// what it has sent, so that the saved position is as fresh as it can be.
const stopWait = 2 * time.Second

// run forwards until sctx ends (the session failed, or ctx ended: the uplink
// stops). It returns the reason it stopped early, if it did.
func (f *forwarder) run(sctx, ctx context.Context) error {
	acked, prio := f.u.acked.Load(), f.u.priority.Load()
	f.mainNext = acked + 1
	f.prioNext = max(acked, prio) + 1
	f.mainDone, f.prioDone = acked, f.prioNext-1

	stop := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		f.collect(stop)
	}()
	err := f.send(sctx)
	if sctx.Err() != nil {
		err = nil // the session's cause says why
	}
	if ctx.Err() != nil && context.Cause(sctx) == context.Cause(ctx) {
		// Stopping with the connection up: the saved position is as fresh as
		// the acknowledgements that come within stopWait.
		WaitAcked(f.inFlight, f.idle, collected, stopWait)
	}
	close(stop)
	<-collected
	f.u.savePositions()
	f.u.setDraining(false)
	f.u.m.inFlight.Set(0)
	return err
}

func (f *forwarder) inFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mainQ.len() + f.prioQ.len()
}

// errSkip says a message was not published and is to be passed over.
var errSkip = errors.New("skipped")

// send is the sender loop.
func (f *forwarder) send(ctx context.Context) error {
	mainR, prioR := f.u.jlog.NewReader(), f.u.jlog.NewReader()
	defer mainR.Close()
	defer prioR.Close()
	mainBuf := make([]*bridge.Message, 0, readBatch)
	prioBuf := make([]*bridge.Message, 0, readBatch)
	lag := uint64(f.u.cfg.PriorityLag)
	for {
		// Sleep until the log has something at or after the main cursor on disk.
		if err := f.u.jlog.WaitDurable(ctx, f.mainNext); err != nil {
			return err
		}
		last := f.u.jlog.Last()
		if f.prioNext <= last && last+1-f.mainNext > lag {
			f.u.setDraining(true)
			batch, err := f.read(ctx, prioR, &f.prioNext, prioBuf)
			if err != nil {
				return err
			}
			for _, m := range batch {
				if m.Priority >= bridge.PriorityHigh {
					if err := f.publish(ctx, m, true, false); err != nil && err != errSkip {
						return err
					}
				}
				f.prioNext = m.Sequence + 1
				f.mu.Lock()
				f.prioDone = m.Sequence
				f.advanceLocked()
				f.mu.Unlock()
			}
			if len(batch) > 0 {
				continue
			}
		}
		f.u.setDraining(false)
		batch, err := f.read(ctx, mainR, &f.mainNext, mainBuf)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			// Nothing readable yet at the cursor: wait for something newer.
			if err := f.u.jlog.WaitDurable(ctx, last+1); err != nil {
				return err
			}
			continue
		}
		for _, m := range batch {
			high := m.Priority >= bridge.PriorityHigh
			err := errSkip
			if !high || m.Sequence >= f.prioNext {
				err = f.publish(ctx, m, high, true)
			} // else the priority cursor has sent it (or an earlier session had)
			if err == errSkip {
				f.mu.Lock()
				f.mainDone = m.Sequence
				f.advanceLocked()
				f.mu.Unlock()
			} else if err != nil {
				return err
			}
			f.mainNext = m.Sequence + 1
		}
		if f.mainNext > f.prioNext {
			// The main cursor has overtaken the priority cursor: what it sent
			// from there, high or not, is tracked in the queues.
			f.prioNext = f.mainNext
			f.mu.Lock()
			f.prioDone = max(f.prioDone, f.mainNext-1)
			f.advanceLocked()
			f.mu.Unlock()
		}
	}
}

// read reads a batch at *next that is on disk. When the log no longer holds
// *next, both cursors move to the oldest message it retains, counting what the
// hub will never get.
func (f *forwarder) read(ctx context.Context, r bridge.JournalReader, next *uint64, buf []*bridge.Message) ([]*bridge.Message, error) {
	batch, err := r.Read(*next, buf)
	if errors.Is(err, bridge.ErrTruncated) {
		first := f.u.jlog.First()
		if first <= *next {
			return nil, nil // retention moved on meanwhile: read again
		}
		if first > f.mainNext {
			f.u.log.Warn("uplink: the durable log dropped messages the hub never got (journal.max_size or journal.max_age is too small for this outage)",
				"from", f.mainNext, "to", first-1)
			f.u.m.lost.Add(float64(first - f.mainNext))
		}
		f.mainNext = max(f.mainNext, first)
		f.prioNext = max(f.prioNext, first)
		f.mu.Lock()
		f.mainDone = max(f.mainDone, first-1)
		f.prioDone = max(f.prioDone, first-1)
		f.advanceLocked()
		f.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the durable log at %d: %w", *next, err)
	}
	if n := len(batch); n > 0 {
		// The reader may return what is written but not yet synced.
		if err := f.u.jlog.WaitDurable(ctx, batch[n-1].Sequence); err != nil {
			return nil, err
		}
	}
	return batch, nil
}

// publish sends one message within the budget and the in-flight window. main
// says the main cursor sends it. It returns errSkip for a message that cannot
// be encoded (which the log's checks make impossible; it must not stall us).
func (f *forwarder) publish(ctx context.Context, m *bridge.Message, high, main bool) error {
	data, err := f.u.codec.appendMessage(nil, m)
	if err != nil {
		f.u.log.Error("uplink: a message does not encode; skipped", "seq", m.Sequence, "device", m.Device, "point", m.Point, "err", err)
		return errSkip
	}
	msg := &nats.Msg{
		Subject: DataSubject(f.u.id, m.Device, m.Point),
		Data:    data,
		Header:  nats.Header{HeaderMsgID: []string{string(appendMsgID(nil, f.u.id, m.Sequence))}},
	}
	size := len(data) + len(msg.Subject)
	if waited, err := f.pacer.wait(ctx, size); err != nil {
		return err
	} else if waited > 0 {
		f.u.m.budgetWait.Add(waited.Seconds())
	}
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Track before publishing: the acknowledgement may come before we return.
	f.mu.Lock()
	if high {
		f.prioQ.push(m.Sequence)
	} else {
		f.mainQ.push(m.Sequence)
	}
	if main {
		f.mainDone = m.Sequence
	}
	f.mu.Unlock()
	fut, err := f.js.PublishMsgAsync(msg)
	if err != nil {
		f.u.m.pubErrors.Inc()
		<-f.slots
		return fmt.Errorf("publishing sequence %d: %w", m.Sequence, err)
	}
	f.u.m.inFlight.Inc()
	f.pending <- inflight{seq: m.Sequence, prio: high, size: size, fut: fut} // never blocks: we hold a slot
	return nil
}

// collect resolves publishes in publish order and moves the positions.
func (f *forwarder) collect(stop <-chan struct{}) {
	for {
		var p inflight
		select {
		case p = <-f.pending:
		case <-stop:
			return
		}
		select {
		case ack := <-p.fut.Ok():
			f.u.m.published.Inc()
			f.u.m.bytes.Add(float64(p.size))
			if ack.Duplicate {
				f.u.m.duplicates.Inc()
			}
			f.mu.Lock()
			if p.prio {
				f.prioQ.pop()
			} else {
				f.mainQ.pop()
			}
			f.advanceLocked()
			idle := f.mainQ.len()+f.prioQ.len() == 0
			f.mu.Unlock()
			f.progressed = true
			if idle {
				select {
				case f.idle <- struct{}{}:
				default:
				}
			}
		case err := <-p.fut.Err():
			f.u.m.pubErrors.Inc()
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				err = fmt.Errorf("%w: no stream on the hub takes %s (define %s there, see docs/uplink.md, or set uplink.nats.create_streams)",
					err, DataSubject(f.u.id, "<device>", "<point>"), DataStream)
			}
			f.fail(fmt.Errorf("hub did not take sequence %d: %w", p.seq, err))
			f.u.m.inFlight.Dec()
			<-f.slots
			return
		case <-stop:
			return
		}
		f.u.m.inFlight.Dec()
		<-f.slots
	}
}

// advanceLocked computes and saves the positions: everything up to acked is on
// the hub, and every high and critical message up to prio.
func (f *forwarder) advanceLocked() {
	acked, prio := f.mainDone, f.prioDone
	if s, ok := f.mainQ.head(); ok {
		acked = min(acked, s-1)
	}
	if s, ok := f.prioQ.head(); ok {
		acked = min(acked, s-1)
		prio = min(prio, s-1)
	}
	f.u.setPositions(acked, prio, f.mainQ.len()+f.prioQ.len() == 0)
}

// queue is a FIFO of sequences.
type queue struct {
	s   []uint64
	off int
}

func (q *queue) push(v uint64) { q.s = append(q.s, v) }
func (q *queue) len() int      { return len(q.s) - q.off }

func (q *queue) pop() {
	q.off++
	switch {
	case q.off == len(q.s):
		q.s, q.off = q.s[:0], 0
	case q.off >= 1024 && q.off > len(q.s)/2:
		// Never empty under steady load: move the live part down rather than grow.
		n := copy(q.s, q.s[q.off:])
		q.s, q.off = q.s[:n], 0
	}
}

func (q *queue) head() (uint64, bool) {
	if q.off == len(q.s) {
		return 0, false
	}
	return q.s[q.off], true
}

// pacer spends the uplink's budget: a token bucket for messages and one for
// bytes, each with a burst of one second's worth.
type pacer struct {
	msgs, bytes *rate.Limiter
}

// minBytesBurst lets one large message through a small bytes budget.
const minBytesBurst = 64 << 10

func newPacer(b Budget) *pacer {
	p := &pacer{}
	if b.MessagesPerSecond > 0 {
		p.msgs = rate.NewLimiter(rate.Limit(b.MessagesPerSecond), max(1, int(b.MessagesPerSecond)))
	}
	if b.BytesPerSecond > 0 {
		p.bytes = rate.NewLimiter(rate.Limit(b.BytesPerSecond), max(minBytesBurst, int(b.BytesPerSecond)))
	}
	return p
}

// wait blocks until the budget allows a message of size bytes, and says how long
// it waited.
func (p *pacer) wait(ctx context.Context, size int) (time.Duration, error) {
	if p.msgs == nil && p.bytes == nil {
		return 0, nil
	}
	start := time.Now()
	if p.msgs != nil {
		if err := p.msgs.Wait(ctx); err != nil {
			return 0, err
		}
	}
	if p.bytes != nil {
		if err := p.bytes.WaitN(ctx, min(size, p.bytes.Burst())); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// WaitAcked waits, at most for d, until nothing is in flight: idle is signalled
// when the count may have reached zero, collected is closed when no more
// acknowledgements will come (the connection ended). A link that stops with its
// connection up waits this way, so that the position it saves is fresh. The
// uplink and the northbound MQTT links both stop this way.
func WaitAcked(inFlight func() int, idle, collected <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for inFlight() > 0 {
		select {
		case <-idle:
		case <-collected:
			return
		case <-t.C:
			return
		}
	}
}
