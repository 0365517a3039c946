package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/grpcapi"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The priority section measures the priority goal of working offline: when a
// subscriber is slower than the data, CRITICAL messages stay on time. A hub and
// the gRPC service (grpcapi) run in this process, served on a loopback port, with
// one subscriber over real gRPC. The offered load is 2,000 msg/s over 20 points,
// interleaved: 5% CRITICAL, 15% HIGH, 40% NORMAL, 40% LOW, each message published
// on its own at its due time and carrying the time it was published (on a
// monotonic clock), so latency is publish to receipt. Four runs, on a fresh hub
// each:
//   - unloaded: the same CRITICAL messages at the same times, nothing else, no budget;
//   - loaded: the whole mix with a subscriber budget of half of it (1,000 msg/s),
//     SHED_POLICY_DROP;
//   - the same with SHED_POLICY_LATEST;
//   - for reference, the whole mix with no budget (everything delivered).
//
// The goal: the p99 of CRITICAL messages loaded is at most 1.5 × unloaded. The
// unloaded run idles between its messages, and waking from idle is slow on some
// machines, so it may be the slower one: a ratio below 1 says the load costs
// CRITICAL messages nothing, not that it speeds them up.

const (
	prioRate   = 2000.0 // offered msg/s
	prioBudget = 1000.0 // the subscriber's budget, msg/s
	prioGoal   = 1.5    // CRITICAL p99 loaded / unloaded
)

// prioMix is the priorities of the 20 points, in the order messages visit them.
var prioMix = []bridge.Priority{
	bridge.PriorityCritical, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityLow,
	bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityLow,
	bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityLow,
	bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal,
}

// prioCase is one run.
type prioCase struct {
	name   string
	loaded bool          // the whole mix; otherwise CRITICAL only, no budget
	budget bool          // with loaded: the subscriber's budget is prioBudget
	shed   pb.ShedPolicy // with budget
}

func (c prioCase) String() string { return c.name }

// prioResult is one run's CRITICAL latencies and, for the messages published in
// the measured window, how many of each priority were offered and delivered.
type prioResult struct {
	p50, p99           time.Duration
	samples            int
	offered, delivered map[bridge.Priority]int
}

func (e *env) prioritySection(ctx context.Context) {
	cases := []prioCase{
		{name: "unloaded"},
		{name: "DROP", loaded: true, budget: true, shed: pb.ShedPolicy_SHED_POLICY_DROP},
		{name: "LATEST", loaded: true, budget: true, shed: pb.ShedPolicy_SHED_POLICY_LATEST},
		{name: "no budget", loaded: true},
	}
	res := map[string]*prioResult{}
	for _, c := range cases {
		r, err := e.measurePriority(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.fail("priority "+c.name, err)
			continue
		}
		e.logf("priority   %-8s CRITICAL p50 %v p99 %v (%d samples); delivered %s", c.name, r.p50, r.p99, r.samples, r.shares())
		res[c.name] = r
	}
	base := res["unloaded"]
	for _, c := range cases[1:] {
		r := res[c.name]
		if r == nil {
			continue
		}
		load := fmt.Sprintf("%s msg/s mixed, budget %s msg/s, %s", fmtCount(prioRate), fmtCount(prioBudget), c.name)
		if !c.budget {
			load = fmt.Sprintf("%s msg/s mixed, no budget (reference)", fmtCount(prioRate))
		}
		p99 := "p99"
		if c.budget {
			p99 = fmt.Sprintf("p99 (goal ≤ %.1f×)", prioGoal)
		}
		for _, q := range []struct {
			name string
			get  func(*prioResult) time.Duration
		}{
			{"p50", func(x *prioResult) time.Duration { return x.p50 }},
			{p99, func(x *prioResult) time.Duration { return x.p99 }},
		} {
			row := row{name: fmt.Sprintf("priority: CRITICAL latency %s, %s", q.name, load), eg: fmtDuration(q.get(r)), peerName: "unloaded run"}
			if base != nil {
				row.peer = fmtDuration(q.get(base))
				row.ratio = ratioOf(float64(q.get(r)), float64(q.get(base)))
			}
			e.rows = append(e.rows, row)
		}
		if c.budget {
			// What the budget itself costs: against the same load, unpaced.
			if ref := res["no budget"]; ref != nil {
				e.rows = append(e.rows, row{name: fmt.Sprintf("priority: CRITICAL latency p99, %s", load), eg: fmtDuration(r.p99),
					peerName: "no-budget run", peer: fmtDuration(ref.p99), ratio: ratioOf(float64(r.p99), float64(ref.p99))})
			}
			e.rows = append(e.rows, row{name: fmt.Sprintf("priority: share delivered, %s", load), eg: r.shares()})
		}
	}
}

// shares says which share of each priority's offered messages was delivered.
func (r *prioResult) shares() string {
	var parts []string
	for _, p := range []bridge.Priority{bridge.PriorityCritical, bridge.PriorityHigh, bridge.PriorityNormal, bridge.PriorityLow} {
		if r.offered[p] == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", strings.ToUpper(p.String()[:1]), 100*float64(r.delivered[p])/float64(r.offered[p])))
	}
	return strings.Join(parts, " ")
}

// measurePriority makes one run: warm-up, then e.duration measured.
func (e *env) measurePriority(ctx context.Context, c prioCase) (*prioResult, error) {
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	defer hub.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	grpcapi.New(hub, grpcapi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	defer func() {
		srv.Stop()
		<-served
	}()
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &pb.SubscribeRequest{Devices: []string{"prio"}}
	if c.budget {
		req.Budget, req.Shed = &pb.Budget{MessagesPerSecond: prioBudget}, c.shed
	}
	stream, err := pb.NewGatewayClient(cc).Subscribe(sctx, req)
	if err != nil {
		return nil, err
	}
	if _, err := stream.Header(); err != nil { // the subscription is registered
		return nil, err
	}

	// Every message's value is the time it was published on the run's monotonic
	// clock; the window is which of those times count.
	clock := time.Now()
	since := func() int64 { return int64(time.Since(clock)) }
	from, to := int64(e.warmup), int64(e.warmup+e.duration)
	type received struct {
		lat       []time.Duration
		delivered map[bridge.Priority]int
		err       error
	}
	done := make(chan received, 1)
	go func() {
		r := received{delivered: map[bridge.Priority]int{}}
		for {
			m, err := stream.Recv()
			if err != nil {
				r.err = err
				done <- r
				return
			}
			if m.GetPoint() == "end" {
				done <- r
				return
			}
			stamp := m.GetValue().GetIntValue()
			if stamp < from || stamp >= to {
				continue
			}
			p := bridge.Priority(m.GetPriority())
			r.delivered[p]++
			if p == bridge.PriorityCritical {
				r.lat = append(r.lat, time.Duration(since()-stamp))
			}
		}
	}()

	names := make([]string, len(prioMix))
	for k, p := range prioMix {
		names[k] = fmt.Sprintf("%s-%d", p, k)
	}
	in := hub.Ingest(bridge.ProtocolMQTT)
	offered := map[bridge.Priority]int{}
	interval := time.Duration(float64(time.Second) / prioRate)
	for i := 0; ; i++ {
		due := time.Duration(i) * interval
		if due >= e.warmup+e.duration {
			break
		}
		k := i % len(prioMix)
		p := prioMix[k]
		if !c.loaded && p != bridge.PriorityCritical {
			continue
		}
		if d := due - time.Since(clock); d > 0 {
			if err := sleepCtx(ctx, d); err != nil {
				return nil, err
			}
		}
		stamp := since()
		if stamp >= from && stamp < to {
			offered[p]++
		}
		m := &bridge.Message{Device: "prio", Point: names[k], Value: bridge.Int(stamp), Priority: p}
		if err := in.Publish(ctx, m); err != nil {
			return nil, err
		}
	}
	// The marker is CRITICAL, never shed: once it arrives, everything before it
	// was sent or shed (LATEST may still hold values: they are not waited for).
	if err := in.Publish(ctx, &bridge.Message{Device: "prio", Point: "end", Value: bridge.Int(-1), Priority: bridge.PriorityCritical}); err != nil {
		return nil, err
	}
	var r received
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		return nil, errors.New("the stream did not deliver the end marker in 30 s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.lat) == 0 {
		return nil, errors.New("no CRITICAL message in the window")
	}
	slices.Sort(r.lat)
	return &prioResult{p50: percentile(r.lat, 0.5), p99: percentile(r.lat, 0.99), samples: len(r.lat), offered: offered, delivered: r.delivered}, nil
}
