package northbound

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	"github.com/edgegate/edgegate/uplink"
)

// The forwarder reads the hub with a subscription that has the link's match
// (which reads the durable log wherever the hub's memory no longer holds the
// backlog), waits until what it read is on disk, and publishes it in sequence
// order on one connection, with up to max_in_flight publishes awaiting their
// PUBACK. A collector resolves the publishes in publish order (the broker
// acknowledges in that order), and the position moves over what is
// acknowledged, and over what the match skipped, never past a publish in
// flight. After a reconnect or a restart the link starts again right after the
// position: at least once, in order per point (and overall).
type forwarder struct {
	l      *Link
	client mqtt.Client
	fail   context.CancelCauseFunc
	// sp is the Sparkplug edge node (format sparkplug), nil for json; rebirth
	// asks it for its births again (an NCMD).
	sp      *spNode
	rebirth <-chan struct{}

	slots   chan struct{} // a token per publish in flight
	pending chan flight   // publishes in order, for the collector
	idle    chan struct{} // signalled when nothing is in flight

	mu       sync.Mutex
	inflight int
	// done: every sequence up to here was read and, if selected, published.
	done uint64

	progressed atomic.Bool
}

type flight struct {
	seq  uint64
	size int
	tok  mqtt.Token
}

// readBatch bounds one read of the backlog: the subscription reads the log a
// batch at a time, and never more than the window lets out.
const readBatch = 256

// skipInterval is how long a link may wait for a message its match selects
// before its position moves over those the match skipped.
const skipInterval = 100 * time.Millisecond

// stopWait bounds how long a stopping link waits for the acknowledgements of
// what it has sent, so that its saved position is as fresh as it can be.
const stopWait = 2 * time.Second

// run forwards until sctx ends (the session failed, or ctx ended: the link
// stops). It returns the reason it stopped early, if it did.
func (f *forwarder) run(sctx, ctx context.Context) error {
	w := f.l.cfg.MQTT.MaxInFlight
	f.slots = make(chan struct{}, w)
	f.pending = make(chan flight, w)
	f.idle = make(chan struct{}, 1)
	stop := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		f.collect(stop)
	}()
	err := f.loop(sctx)
	if sctx.Err() != nil {
		err = nil // the session's cause says why
	}
	if ctx.Err() != nil && context.Cause(sctx) == context.Cause(ctx) {
		// Stopping with the connection up: the saved position is as fresh as
		// the acknowledgements that come within stopWait.
		uplink.WaitAcked(f.inFlight, f.idle, collected, stopWait)
	}
	close(stop)
	<-collected
	f.l.savePosition()
	f.l.m.inFlight.WithLabelValues(f.l.cfg.Name).Set(0)
	return err
}

func (f *forwarder) inFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight
}

// loop is the sender loop.
func (f *forwarder) loop(ctx context.Context) error {
	l := f.l
	if f.sp != nil {
		if err := f.sp.births(ctx, f); err != nil {
			return err
		}
	}
	start := l.acked.Load()
	f.mu.Lock()
	f.done = start
	f.mu.Unlock()
	sub, err := l.subscribe(start)
	if err != nil {
		return err
	}
	defer func() { sub.s.Close() }()
	buf := make([]*bridge.Message, 0, readBatch)
	for {
		if f.sp != nil {
			select {
			case <-f.rebirth:
				if err := f.sp.births(ctx, f); err != nil {
					return err
				}
			default:
			}
			if err := f.sp.deviceStates(ctx, f); err != nil {
				return err
			}
		}
		// Next returns only what the match selects, and waits for it: a
		// deadline lets the position move over what it skipped meanwhile.
		nctx, cancel := context.WithTimeout(ctx, skipInterval)
		batch, err := sub.s.Next(nctx, buf)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			f.batchDone(sub.s.Cursor() - 1)
			continue
		}
		if errors.Is(err, bridge.ErrSlowConsumer) {
			// Fell behind the hub's memory without a durable log to read from
			// (slow_consumer: disconnect): go on from where it was, counting what
			// the hub no longer holds as lost.
			from := sub.s.Cursor() - 1
			sub.s.Close()
			if sub, err = l.subscribe(from); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		sub.countLost(l)
		if l.jlog != nil && len(batch) > 0 {
			// The hub hands out what is appended; the broker gets only what is
			// on disk, so that it never has a message a crash could take back.
			if err := l.jlog.WaitDurable(ctx, batch[len(batch)-1].Sequence); err != nil {
				return err
			}
		}
		for _, m := range batch {
			var err error
			if f.sp != nil {
				err = f.sp.data(ctx, f, m)
			} else {
				err = f.publish(ctx, m)
			}
			if err != nil {
				return err
			}
		}
		f.batchDone(sub.s.Cursor() - 1)
	}
}

// publish sends one message in the json format.
func (f *forwarder) publish(ctx context.Context, m *bridge.Message) error {
	l := f.l
	payload, err := pbconv.AppendJSON(nil, m)
	if err != nil {
		// The log's checks make this impossible; it must not stall the link.
		l.log.Error("northbound: a message does not encode; skipped", "name", l.cfg.Name, "seq", m.Sequence, "device", m.Device, "point", m.Point, "err", err)
		return nil
	}
	return f.send(ctx, l.topic.expand(l.id, m.Device, m.Point), payload, m.Sequence)
}

// send publishes within the in-flight window. seq is the message's sequence,
// or 0 for a publish of the format's own (a Sparkplug birth or death), which
// moves no position.
func (f *forwarder) send(ctx context.Context, topic string, payload []byte, seq uint64) error {
	l := f.l
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	f.inflight++
	f.mu.Unlock()
	// paho keeps payload until the broker has it: a fresh slice each time.
	tok := f.client.Publish(topic, byte(*l.cfg.QoS), false, payload)
	l.m.inFlight.WithLabelValues(l.cfg.Name).Inc()
	f.pending <- flight{seq: seq, size: len(payload), tok: tok} // never blocks: we hold a slot
	return nil
}

// batchDone records that everything up to seq was read and published.
func (f *forwarder) batchDone(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = max(f.done, seq)
	if f.inflight == 0 {
		f.l.setAcked(f.done, true)
	}
}

// collect resolves publishes in publish order and moves the position.
func (f *forwarder) collect(stop <-chan struct{}) {
	l := f.l
	name := l.cfg.Name
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var p flight
		select {
		case p = <-f.pending:
		case <-stop:
			return
		}
		t.Reset(l.cfg.MQTT.AckTimeout)
		var err error
		select {
		case <-p.tok.Done():
			err = p.tok.Error()
		case <-t.C:
			err = fmt.Errorf("no PUBACK within %s", l.cfg.MQTT.AckTimeout)
		case <-stop:
			return
		}
		l.m.inFlight.WithLabelValues(name).Dec()
		if err != nil {
			l.m.pubErrors.WithLabelValues(name).Inc()
			f.fail(fmt.Errorf("broker did not take sequence %d: %w", p.seq, err))
			<-f.slots
			return
		}
		l.m.published.WithLabelValues(name).Inc()
		l.m.bytes.WithLabelValues(name).Add(float64(p.size))
		f.progressed.Store(true)
		f.mu.Lock()
		f.inflight--
		pos, idle := p.seq, f.inflight == 0
		if idle {
			pos = max(pos, f.done)
		}
		l.setAcked(pos, idle)
		f.mu.Unlock()
		<-f.slots
		if idle {
			select {
			case f.idle <- struct{}{}:
			default:
			}
		}
	}
}

// subscription is the hub subscription a forwarder reads, with what it has
// counted as lost so far.
type subscription struct {
	s    *bridge.Subscription
	lost uint64
}

// subscribe opens a subscription with the link's match after sequence after.
func (l *Link) subscribe(after uint64) (*subscription, error) {
	s, err := l.hub.Subscribe(bridge.SubscribeOptions{
		Match: l.match, Start: bridge.StartAfter, After: after, Name: ConsumerPrefix + l.cfg.Name,
	})
	if err != nil {
		return nil, err
	}
	sub := &subscription{s: s}
	sub.countLost(l)
	return sub, nil
}

// countLost adds what the subscription skipped (no longer retained) or dropped
// since the last look to the link's lost count, and logs it.
func (sub *subscription) countLost(l *Link) {
	n := sub.s.Skipped() + sub.s.Dropped()
	if n > sub.lost {
		d := n - sub.lost
		sub.lost = n
		l.m.lost.WithLabelValues(l.cfg.Name).Add(float64(d))
		what := "the hub's memory (gateway.retain) no longer held them; without gateway.data_dir an outage or a restart loses what the hub forgets"
		if l.jlog != nil {
			what = "the durable log's retention dropped them (journal.max_size or max_age is too small for this outage)"
		}
		l.log.Warn("northbound: messages lost before the broker had them", "name", l.cfg.Name, "count", d, "why", what)
	}
}
