package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// latCase is one latency measurement: publish to receipt at a fixed rate, with one
// subscriber.
type latCase struct {
	qos        byte
	publishers int
	durable    bool // edgegate with a data_dir
}

func (c latCase) String() string {
	return fmt.Sprintf("QoS %d, %d pub → 1 sub%s", c.qos, c.publishers, durableSuffix(c.durable))
}

// tp is the throughput case whose rate the latency case halves.
func (c latCase) tp() tpCase {
	return tpCase{qos: c.qos, publishers: c.publishers, subs: 1, durable: c.durable}
}

func (o *options) latCases() []latCase {
	if o.quick {
		return []latCase{{qos: 1, publishers: 2}} // the rate from the quick throughput case
	}
	return []latCase{{qos: 1, publishers: 1}, {qos: 0, publishers: 100}}
}

// latResult is one broker's latencies for one case.
type latResult struct {
	p50, p99  time.Duration
	samples   int
	missing   uint64
	delivered float64 // messages a second the subscriber received
}

func (e *env) latency(ctx context.Context) {
	for _, c := range e.latCases() {
		rate, err := e.latencyRate(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.fail(fmt.Sprintf("latency %s", c), err)
			continue
		}
		// The durable twin runs at the same rate as the memory case, against the
		// same peer figure.
		twin := c
		twin.durable = true
		var res [3]*latResult
		for i, run := range []struct {
			kind string
			c    latCase
		}{{kindEdgegate, c}, {kindMosquitto, c}, {kindEdgegate, twin}} {
			if run.kind == kindMosquitto && e.mosquitto == "" {
				continue
			}
			r, err := e.measureLatency(ctx, run.kind, run.c, rate)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				e.fail(fmt.Sprintf("latency %s, %s", run.c, run.kind), err)
				continue
			}
			e.logf("latency    %-9s %s at %.0f msg/s: p50 %v p99 %v (%d samples, %d missing)",
				run.kind, run.c, rate, r.p50, r.p99, r.samples, r.missing)
			res[i] = r
		}
		e.rows = append(e.rows, latRows(c, rate, res[0], res[1])...)
		e.rows = append(e.rows, latRows(twin, rate, res[2], res[1])...)
	}
}

// latencyRate is half the lower of the two brokers' maximum rates for the case, so
// both are measured under the same load, each at half its capacity or less. A
// maximum the throughput section did not measure is measured here, briefly.
func (e *env) latencyRate(ctx context.Context, c latCase) (float64, error) {
	lowest := 0.0
	for _, kind := range []string{kindEdgegate, kindMosquitto} {
		if kind == kindMosquitto && e.mosquitto == "" {
			continue
		}
		max, ok := e.maxRate[c.tp().key(kind)]
		if !ok {
			r, err := e.measureThroughput(ctx, kind, c.tp(), min(e.duration, 2*time.Second))
			if err != nil {
				return 0, fmt.Errorf("measuring the maximum rate on %s: %w", kind, err)
			}
			max = r.rate
			e.logf("throughput %-9s %s: %.0f msg/s (a short run for the latency test's rate)", kind, c.tp(), max)
			e.maxRate[c.tp().key(kind)] = max
		}
		if lowest == 0 || max < lowest {
			lowest = max
		}
	}
	return lowest / 2, nil
}

// measureLatency publishes at rate (in all) and records, at the subscriber, how
// long each message took from the publisher's clock reading, embedded in the
// payload, to its receipt.
func (e *env) measureLatency(ctx context.Context, kind string, c latCase, rate float64) (*latResult, error) {
	w, err := e.runLoad(ctx, kind, c.tp(), rate, e.duration, true)
	if err != nil {
		return nil, err
	}
	s := w.samples
	if len(s) == 0 {
		return nil, fmt.Errorf("no message arrived")
	}
	slices.Sort(s)
	return &latResult{p50: percentile(s, 0.50), p99: percentile(s, 0.99), samples: len(s), missing: w.missing,
		delivered: float64(w.received) / w.seconds}, nil
}

// percentile of sorted samples: the smallest sample with at least p of them at or
// below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func latRows(c latCase, rate float64, eg, peer *latResult) []row {
	mk := func(name string, get func(*latResult) time.Duration) row {
		r := row{name: fmt.Sprintf("latency %s %s at %s msg/s", name, c, fmtCount(rate))}
		cell := func(x *latResult) string {
			if x == nil {
				return "n/a"
			}
			s := fmtDuration(get(x))
			if x.missing > 0 {
				s += fmt.Sprintf(" (%d dropped)", x.missing)
			}
			// A broker that did not keep up with the rate is measured at its own:
			// the latency is then mostly the wait in its queues.
			if x.delivered < 0.9*rate {
				s += fmt.Sprintf(" (kept up with %s msg/s)", fmtCount(x.delivered))
			}
			return s
		}
		r.eg, r.peer = cell(eg), cell(peer)
		if eg != nil && peer != nil && get(peer) > 0 {
			r.ratio = fmtRatio(float64(get(eg)) / float64(get(peer)))
		}
		return r
	}
	return []row{
		mk("p50", func(x *latResult) time.Duration { return x.p50 }),
		mk("p99", func(x *latResult) time.Duration { return x.p99 }),
	}
}
