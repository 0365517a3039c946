package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// tpCase is one throughput measurement.
type tpCase struct {
	qos        byte
	publishers int
	subs       int
	// durable runs edgegate with a data_dir (journal.sync: batch), as it is
	// deployed; the peer runs from memory either way.
	durable bool
}

func (c tpCase) String() string {
	return fmt.Sprintf("QoS %d, %d pub → %d sub%s", c.qos, c.publishers, c.subs, durableSuffix(c.durable))
}

// durableSuffix marks a durable case's name.
func durableSuffix(durable bool) string {
	if durable {
		return ", data_dir"
	}
	return ""
}

// twin is the same case with edgegate durable.
func (c tpCase) twin() tpCase {
	c.durable = true
	return c
}

// key names the case for maxRate.
func (c tpCase) key(kind string) string { return kind + " " + c.String() }

func (o *options) tpCases() []tpCase {
	if o.quick {
		return []tpCase{{qos: 1, publishers: 2, subs: 1}}
	}
	var cs []tpCase
	for _, qos := range []byte{0, 1} {
		for _, pubs := range []int{1, 100} {
			for _, subs := range []int{1, 10} {
				cs = append(cs, tpCase{qos: qos, publishers: pubs, subs: subs})
			}
		}
	}
	return cs
}

// subscriberQueue is how far a subscriber may fall behind, on both brokers, before
// messages are dropped for it: large, so that the figure is the brokers' delivery
// rate rather than their policy for slow consumers.
const subscriberQueue = 1 << 17

// tpResult is one broker's figures for one case.
type tpResult struct {
	rate    float64 // messages received per subscriber per second
	missing float64 // share of the messages due that never arrived
	ingest  float64 // messages acknowledged (QoS 1) or sent (QoS 0) per second
}

// throughput measures each case on edgegate from memory, on the peer, and on
// edgegate durable (its twin row, beside it, against the same peer figure).
func (e *env) throughput(ctx context.Context) {
	for _, c := range e.tpCases() {
		var res [3]*tpResult
		for i, run := range []struct {
			kind string
			c    tpCase
		}{{kindEdgegate, c}, {kindMosquitto, c}, {kindEdgegate, c.twin()}} {
			if run.kind == kindMosquitto && e.mosquitto == "" {
				continue
			}
			r, err := e.measureThroughput(ctx, run.kind, run.c, e.duration)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				e.fail(fmt.Sprintf("throughput %s, %s", run.c, run.kind), err)
				continue
			}
			e.logf("throughput %-9s %s: %.0f msg/s per subscriber, %.2f%% missing, publishers %.0f msg/s",
				run.kind, run.c, r.rate, 100*r.missing, r.ingest)
			e.maxRate[run.c.key(run.kind)] = r.rate
			res[i] = r
		}
		e.rows = append(e.rows, tpRow(c, res[0], res[1]), tpRow(c.twin(), res[2], res[1]))
	}
}

// measureThroughput runs one case on a fresh broker, publishers as fast as their
// windows allow, and measures for d.
func (e *env) measureThroughput(ctx context.Context, kind string, c tpCase, d time.Duration) (*tpResult, error) {
	w, err := e.runLoad(ctx, kind, c, 0, d, false)
	if err != nil {
		return nil, err
	}
	r := &tpResult{
		rate:   float64(w.received) / float64(c.subs) / w.seconds,
		ingest: float64(w.acked) / w.seconds,
	}
	if w.received+w.missing > 0 {
		r.missing = float64(w.missing) / float64(w.received+w.missing)
	}
	return r, nil
}

// loadWindow is what one measurement window saw.
type loadWindow struct {
	received, missing uint64 // at every subscriber together
	acked             uint64 // by the broker, of the publishers' messages
	seconds           float64
	samples           []time.Duration // latencies at the first subscriber, when recorded
}

// runLoad runs a case on a fresh broker: the subscribers, then the publishers (as
// fast as their windows allow when rate is 0, else at rate messages a second in
// all), and measures for d after the warm-up.
func (e *env) runLoad(ctx context.Context, kind string, c tpCase, rate float64, d time.Duration, record bool) (*loadWindow, error) {
	b, err := e.startBroker(ctx, kind, brokerSetup{queue: subscriberQueue, durable: c.durable})
	if err != nil {
		return nil, err
	}
	defer b.stop()
	subs, err := openSubscribers(ctx, b, c)
	if err != nil {
		return nil, err
	}
	defer closeSubscribers(subs)
	pw, err := e.startPublishers(ctx, b.mqttAddr, pubLoad{qos: c.qos, publishers: c.publishers, rate: rate})
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			pw.stop()
		}
	}()
	if err := sleepCtx(ctx, e.warmup); err != nil {
		return nil, err
	}
	first := subs[0].tally()
	before, a0, t0 := snapshot(subs), pw.acked.Load(), time.Now()
	first.recording.Store(record)
	err = sleepCtx(ctx, d)
	first.recording.Store(false)
	after, a1, t1 := snapshot(subs), pw.acked.Load(), time.Now()
	if err != nil {
		return nil, err
	}
	if err := pw.running(); err != nil {
		return nil, err
	}
	stopped = true
	if err := pw.stop(); err != nil {
		return nil, err
	}
	if err := subscriberErrors(subs); err != nil {
		return nil, err
	}
	if b.proc.exitedEarly() {
		return nil, b.proc.exited()
	}
	w := &loadWindow{
		received: after.received - before.received,
		missing:  after.missing - before.missing,
		acked:    a1 - a0,
		seconds:  t1.Sub(t0).Seconds(),
	}
	if record {
		w.samples = first.samples()
	}
	if w.received == 0 {
		return nil, errors.New("no message arrived")
	}
	return w, nil
}

// openSubscribers opens the case's subscribers: gRPC streams on edgegate, MQTT
// clients at the publishers' QoS on the peer.
func openSubscribers(ctx context.Context, b *broker, c tpCase) ([]subscriber, error) {
	var subs []subscriber
	for i := range c.subs {
		var s subscriber
		var err error
		if b.kind == kindEdgegate {
			s, err = subscribeGRPC(ctx, b.grpcAddr, c.publishers)
		} else {
			s, err = subscribeMQTT(b.mqttAddr, fmt.Sprintf("bench-s%d", i), c.qos, c.publishers)
		}
		if err != nil {
			closeSubscribers(subs)
			return nil, err
		}
		subs = append(subs, s)
	}
	return subs, nil
}

func closeSubscribers(subs []subscriber) {
	for _, s := range subs {
		s.close()
	}
}

// snapshot sums every subscriber's counts.
func snapshot(subs []subscriber) counts {
	var c counts
	for _, s := range subs {
		n := s.tally().snapshot()
		c.received += n.received
		c.missing += n.missing
	}
	return c
}

// subscriberErrors reports a stream that ended on its own, and messages that were
// not the benchmark's.
func subscriberErrors(subs []subscriber) error {
	for _, s := range subs {
		if g, ok := s.(*grpcSub); ok {
			select {
			case <-g.done:
				if g.err != nil {
					return fmt.Errorf("subscriber: %w", g.err)
				}
				return errors.New("a subscriber's stream ended early")
			default:
			}
		}
		if n := s.tally().bad.Load(); n > 0 {
			return fmt.Errorf("a subscriber received %d messages it could not read", n)
		}
	}
	return nil
}

func tpRow(c tpCase, eg, peer *tpResult) row {
	r := row{name: fmt.Sprintf("throughput %s (msg/s per sub)", c)}
	cell := func(x *tpResult) string {
		if x == nil {
			return "n/a"
		}
		s := fmtCount(x.rate)
		if x.missing > 0 {
			s += fmt.Sprintf(" (%.1f%% dropped)", 100*x.missing)
		}
		return s
	}
	r.eg, r.peer = cell(eg), cell(peer)
	if eg != nil && peer != nil {
		r.ratio = fmtRatio(eg.rate / peer.rate)
	}
	return r
}
