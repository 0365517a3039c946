package grpcapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestBudgetShedsLowKeepsHigh offers four times a stream's budget at once: every
// HIGH and CRITICAL message must arrive, in sequence order, and the shortfall must
// come out of LOW and NORMAL.
func TestBudgetShedsLowKeepsHigh(t *testing.T) {
	f := start(t, bridge.HubConfig{Retain: 4096, QueueSize: 4096}, Options{SubscriberBudget: Budget{MessagesPerSecond: 1000}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: &pb.Budget{MessagesPerSecond: 500}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	prios := []bridge.Priority{bridge.PriorityCritical, bridge.PriorityLow, bridge.PriorityHigh, bridge.PriorityNormal, bridge.PriorityLow}
	const total = 2000
	batch := make([]*bridge.Message, total)
	important := 0
	for i := range batch {
		p := prios[i%len(prios)]
		if p >= bridge.PriorityHigh {
			important++
		}
		batch[i] = &bridge.Message{Device: "d", Point: p.String(), Value: bridge.Int(int64(i)), Priority: p}
	}
	if err := f.hub.Ingest(bridge.ProtocolMQTT).Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	var got, gotImportant int
	var last uint64
	for gotImportant < important {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d important of %d: %v", gotImportant, important, err)
		}
		if m.GetSequence() <= last {
			t.Fatalf("sequence %d after %d", m.GetSequence(), last)
		}
		last = m.GetSequence()
		got++
		if m.GetPriority() >= pb.Priority_PRIORITY_HIGH {
			gotImportant++
		}
	}
	if got >= total {
		t.Fatalf("all %d delivered: the budget shed nothing", got)
	}
	t.Logf("%d of %d delivered, every one of the %d HIGH and CRITICAL", got, total, important)
}

func TestBudgetCaps(t *testing.T) {
	limit := Budget{MessagesPerSecond: 100}
	for _, c := range []struct{ req, want Budget }{
		{Budget{}, Budget{MessagesPerSecond: 100}},
		{Budget{MessagesPerSecond: 50}, Budget{MessagesPerSecond: 50}},
		{Budget{MessagesPerSecond: 500, BytesPerSecond: 10}, Budget{MessagesPerSecond: 100, BytesPerSecond: 10}},
	} {
		if got := c.req.capped(limit); got != c.want {
			t.Errorf("%+v capped by %+v = %+v, want %+v", c.req, limit, got, c.want)
		}
	}
	if newBucket(Budget{}) != nil {
		t.Error("an unlimited budget needs no bucket")
	}
}

// TestHoldPolicyLosesNothing: with SHED_POLICY_HOLD every message waits its turn,
// whatever its priority.
func TestHoldPolicyLosesNothing(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: &pb.Budget{MessagesPerSecond: 200}, Shed: pb.ShedPolicy_SHED_POLICY_HOLD})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	batch := make([]*bridge.Message, 300)
	for i := range batch {
		batch[i] = &bridge.Message{Device: "d", Point: "p", Value: bridge.Int(int64(i)), Priority: priorityMix[i%len(priorityMix)]}
	}
	if err := f.hub.Ingest(bridge.ProtocolMQTT).Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetValue().GetIntValue() != int64(i) {
			t.Fatalf("message %d has value %d", i, m.GetValue().GetIntValue())
		}
	}
}

// TestHeadroom: from a full bucket of 150 tokens (100 a second, 1.5 s of burst),
// LOW messages take it down to half a second's worth, NORMAL ones to a quarter,
// and HIGH and CRITICAL ones take the rest. The clock stands still, so nothing
// refills.
func TestHeadroom(t *testing.T) {
	p := &pacer{own: newBucket(Budget{MessagesPerSecond: 100})}
	now := time.Now()
	count := func(prio bridge.Priority) int {
		n := 0
		for p.allowAt(now, prio, 0) {
			n++
		}
		return n
	}
	if d := p.delayAt(now, bridge.PriorityLow, 0); d != minWake {
		t.Errorf("a full bucket: LOW waits %v", d)
	}
	for _, c := range []struct {
		prio bridge.Priority
		want int
	}{{bridge.PriorityLow, 100}, {bridge.PriorityNormal, 25}, {bridge.PriorityUnspecified, 0}, {bridge.PriorityHigh, 20}, {bridge.PriorityCritical, 5}} {
		if c.prio == bridge.PriorityHigh {
			// HIGH may take everything; take 20 of the 25 so CRITICAL finds 5.
			for range c.want {
				if !p.allowAt(now, c.prio, 0) {
					t.Fatal("HIGH refused above zero")
				}
			}
			continue
		}
		if got := count(c.prio); got != c.want {
			t.Errorf("%v: %d messages, want %d", c.prio, got, c.want)
		}
	}
	// Empty: a LOW message needs 51 tokens, at 100 a second.
	if d := p.delayAt(now, bridge.PriorityLow, 0); d != 510*time.Millisecond {
		t.Errorf("LOW waits %v, want 510ms", d)
	}
	if d := p.delayAt(now, bridge.PriorityCritical, 0); d != 10*time.Millisecond {
		t.Errorf("CRITICAL waits %v, want 10ms", d)
	}
	// A full bucket admits a message of any size: a LOW one of 60 KiB in a
	// 64 KiB bytes bucket, which half the burst could not hold.
	b := &pacer{own: newBucket(Budget{BytesPerSecond: 1000})}
	if !b.allowAt(now, bridge.PriorityLow, 60<<10) {
		t.Error("a full bytes bucket refused a large LOW message")
	}
}

// TestBurstWithinBudget: traffic that keeps to its budget is never shed, also
// when it comes in bursts of a second's worth (a poll cycle, a payload of many
// points): 50 LOW messages at once, once a second, on a budget of 60 a second.
func TestBurstWithinBudget(t *testing.T) {
	p := &pacer{own: newBucket(Budget{MessagesPerSecond: 60})}
	now := time.Now()
	for second := range 5 {
		at := now.Add(time.Duration(second) * time.Second)
		for i := range 50 {
			if !p.allowAt(at, bridge.PriorityLow, 0) {
				t.Fatalf("second %d: LOW message %d of 50 refused on a budget of 60/s", second, i)
			}
		}
	}
}

// TestHoldOnSharedBudget: a HOLD stream's LOW message is not starved on the
// gateway's shared budget while another stream keeps that bucket below the LOW
// headroom; the CRITICAL message behind it (HOLD keeps order) arrives too. The
// other stream's NORMAL load is four times the shared budget, for as long as the
// test runs.
func TestHoldOnSharedBudget(t *testing.T) {
	f := start(t, bridge.HubConfig{Retain: 4096, QueueSize: 4096}, Options{GatewayBudget: Budget{MessagesPerSecond: 100}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hogStream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Devices: []string{"hog"}})
	if err != nil {
		t.Fatal(err)
	}
	hold, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Devices: []string{"held"}, Shed: pb.ShedPolicy_SHED_POLICY_HOLD})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []grpc.ClientStream{hogStream, hold} {
		if _, err := s.Header(); err != nil {
			t.Fatal(err)
		}
	}
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	hogCtx, stopHog := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the load: 4 NORMAL messages every 10 ms
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-hogCtx.Done():
				return
			case <-tick.C:
			}
			for j := range 4 {
				_ = in.Publish(hogCtx, &bridge.Message{Device: "hog", Point: strconv.Itoa(j), Value: bridge.Int(int64(i)), Priority: bridge.PriorityNormal})
			}
		}
	}()
	go func() { // its reader
		defer wg.Done()
		for {
			if _, err := hogStream.Recv(); err != nil {
				return
			}
		}
	}()
	defer func() { stopHog(); cancel(); wg.Wait() }()
	// The hog's stream has spent the shared bucket down to its NORMAL headroom.
	waitUntil(t, ctx, "the other stream to be shed", func() bool { return labelled(t, f.srv.shed.MetricVec, "normal") > 0 })
	if err := in.Publish(ctx,
		&bridge.Message{Device: "held", Point: "a", Value: bridge.Int(1), Priority: bridge.PriorityLow},
		&bridge.Message{Device: "held", Point: "b", Value: bridge.Int(2), Priority: bridge.PriorityCritical}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a", "b"} {
		m, err := hold.Recv()
		if err != nil {
			t.Fatalf("HOLD stream, waiting for %s: %v", want, err)
		}
		if m.GetPoint() != want {
			t.Fatalf("HOLD stream: got %s, want %s", m.GetPoint(), want)
		}
	}
}

// TestLatestEscalation: a point whose pending (NORMAL) value is overtaken by a
// CRITICAL message of the same point never gets the older value after it: the
// pending value is dropped and counted as conflated. All in one hub batch, so
// that the order of events is fixed: 20 NORMAL values of x on a budget of 10/s
// (burst 15) send 13 and leave the newest pending; the CRITICAL one follows.
func TestLatestEscalation(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: &pb.Budget{MessagesPerSecond: 10}, Shed: pb.ShedPolicy_SHED_POLICY_LATEST})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	batch := make([]*bridge.Message, 0, 21)
	for i := range 20 {
		batch = append(batch, &bridge.Message{Device: "d", Point: "x", Value: bridge.Int(int64(i)), Priority: bridge.PriorityNormal})
	}
	batch = append(batch, &bridge.Message{Device: "d", Point: "x", Value: bridge.Int(100), Priority: bridge.PriorityCritical})
	if err := in.Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "the pending value dropped", func() bool {
		return labelled(t, f.srv.pending.MetricVec, "normal") == 0 && labelled(t, f.srv.conflated.MetricVec, "normal") > 0
	})
	// A sentinel: everything the stream sent before it is in order.
	if err := in.Publish(ctx, &bridge.Message{Device: "d", Point: "end", Value: bridge.Int(0), Priority: bridge.PriorityCritical}); err != nil {
		t.Fatal(err)
	}
	last := int64(-1)
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetPoint() == "end" {
			break
		}
		if v := m.GetValue().GetIntValue(); v <= last {
			t.Fatalf("x: %d after %d", v, last)
		} else {
			last = v
		}
	}
	if last != 100 {
		t.Errorf("x ended at %d, want the CRITICAL 100", last)
	}
}

// priorityMix is the offered load's points, in the order they repeat: 5%
// CRITICAL, 15% HIGH, 40% NORMAL, 40% LOW, interleaved.
var priorityMix = []bridge.Priority{
	bridge.PriorityCritical, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityLow,
	bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityLow,
	bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityLow,
	bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityLow, bridge.PriorityNormal,
}

// mixedLoad is n messages over the points of priorityMix; value i is message i's.
func mixedLoad(n int) []*bridge.Message {
	out := make([]*bridge.Message, n)
	for i := range out {
		k := i % len(priorityMix)
		p := priorityMix[k]
		out[i] = &bridge.Message{Device: "d", Point: fmt.Sprintf("%s-%d", p, k), Value: bridge.Int(int64(i)), Priority: p}
	}
	return out
}

// offer publishes msgs at rate a second, paced by the clock (message i once
// i/rate seconds have passed), then the marker.
func offer(ctx context.Context, in *bridge.Ingest, msgs []*bridge.Message, rate float64, marker *bridge.Message) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for sent := 0; sent < len(msgs); {
		if due := min(len(msgs), int(time.Since(start).Seconds()*rate)+1); due > sent {
			if err := in.Publish(ctx, msgs[sent:due]...); err != nil {
				return err
			}
			sent = due
			continue
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return in.Publish(ctx, marker)
}

// metricValue reads a counter or a gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue() + d.GetGauge().GetValue()
}

// labelled reads one series of a metric labelled by priority.
func labelled(t *testing.T, v *prometheus.MetricVec, prio string) float64 {
	t.Helper()
	m, err := v.GetMetricWithLabelValues(prio)
	if err != nil {
		t.Fatal(err)
	}
	return metricValue(t, m)
}

// byPriority reads a metric labelled by priority.
func byPriority(t *testing.T, v *prometheus.MetricVec) map[bridge.Priority]float64 {
	t.Helper()
	out := map[bridge.Priority]float64{}
	for _, p := range []bridge.Priority{bridge.PriorityLow, bridge.PriorityNormal, bridge.PriorityHigh, bridge.PriorityCritical} {
		out[p] = labelled(t, v, p.String())
	}
	return out
}

func sum(m map[bridge.Priority]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// waitUntil looks at cond every millisecond until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, ctx, what, cond)
}

// TestHalfBudget is the priority test: a subscriber whose budget is half
// the offered load (1,000 msg/s offered for 2 s, 5% CRITICAL, 15% HIGH, 40%
// NORMAL, 40% LOW, a budget of 500 msg/s). CRITICAL and HIGH messages arrive
// complete and in order, LOW ones are shed (DROP) or conflated (LATEST) first,
// and with LATEST the last value of every LOW and NORMAL point arrives.
func TestHalfBudget(t *testing.T) {
	const offered, budget, total = 1000.0, 500.0, 2000
	for _, policy := range []pb.ShedPolicy{pb.ShedPolicy_SHED_POLICY_DROP, pb.ShedPolicy_SHED_POLICY_LATEST} {
		t.Run(policy.String(), func(t *testing.T) {
			f := start(t, bridge.HubConfig{}, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: &pb.Budget{MessagesPerSecond: budget}, Shed: policy})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Header(); err != nil {
				t.Fatal(err)
			}
			load := mixedLoad(total)
			offeredBy := map[bridge.Priority]int{}
			lastValue := map[string]int64{}
			for i, m := range load {
				offeredBy[m.Priority]++
				lastValue[m.Point] = int64(i)
			}
			marker := &bridge.Message{Device: "d", Point: "end", Value: bridge.Int(-1), Priority: bridge.PriorityCritical}
			published := make(chan error, 1)
			go func() { published <- offer(ctx, f.hub.Ingest(bridge.ProtocolMQTT), load, offered, marker) }()

			got := map[bridge.Priority]int{}
			pointLast := map[string]int64{}
			var lastSeq, lastImportant uint64
			seenMarker, delivered := false, 0
			missingLast := func() int {
				n := 0
				for point, v := range lastValue {
					if got, ok := pointLast[point]; !ok || got != v {
						n++
					}
				}
				return n
			}
			// Until the marker, and with LATEST until every point's last value.
			for !seenMarker || policy == pb.ShedPolicy_SHED_POLICY_LATEST && missingLast() > 0 {
				m, err := stream.Recv()
				if err != nil {
					t.Fatalf("after %d messages: %v", delivered, err)
				}
				seq, prio, v := m.GetSequence(), bridge.Priority(m.GetPriority()), m.GetValue().GetIntValue()
				if m.GetPoint() == "end" {
					seenMarker = true
					continue
				}
				delivered++
				got[prio]++
				if prio >= bridge.PriorityHigh {
					if seq <= lastImportant {
						t.Fatalf("%v message %d after %d", prio, seq, lastImportant)
					}
					lastImportant = seq
				}
				if policy == pb.ShedPolicy_SHED_POLICY_DROP && seq <= lastSeq {
					t.Fatalf("sequence %d after %d", seq, lastSeq)
				}
				lastSeq = max(lastSeq, seq)
				if prev, ok := pointLast[m.GetPoint()]; ok && v <= prev {
					t.Fatalf("point %s: value %d after %d", m.GetPoint(), v, prev)
				}
				pointLast[m.GetPoint()] = v
			}
			if err := <-published; err != nil {
				t.Fatal(err)
			}
			for _, p := range []bridge.Priority{bridge.PriorityCritical, bridge.PriorityHigh} {
				if got[p] != offeredBy[p] {
					t.Errorf("%v: %d of %d delivered", p, got[p], offeredBy[p])
				}
			}
			if got[bridge.PriorityLow] >= offeredBy[bridge.PriorityLow] {
				t.Errorf("LOW: all %d delivered: nothing shed", got[bridge.PriorityLow])
			}
			if got[bridge.PriorityLow] > got[bridge.PriorityNormal] {
				t.Errorf("LOW: %d delivered, NORMAL %d: LOW is not shed first", got[bridge.PriorityLow], got[bridge.PriorityNormal])
			}
			shed, conflated := byPriority(t, f.srv.shed.MetricVec), byPriority(t, f.srv.conflated.MetricVec)
			if shed[bridge.PriorityHigh]+shed[bridge.PriorityCritical]+conflated[bridge.PriorityHigh]+conflated[bridge.PriorityCritical] > 0 {
				t.Errorf("HIGH or CRITICAL shed: %v, conflated: %v", shed, conflated)
			}
			// Every message was sent, shed or conflated, exactly one of them.
			if n := float64(delivered) + sum(shed) + sum(conflated); n != total {
				t.Errorf("%d delivered + %v shed + %v conflated = %v, want %d", delivered, shed, conflated, n, total)
			}
			if p := sum(byPriority(t, f.srv.pending.MetricVec)); p != 0 {
				t.Errorf("%v values still pending", p)
			}
			t.Logf("%v: delivered %v of %v; shed %v; conflated %v", policy, got, offeredBy, shed, conflated)
		})
	}
}

// TestLatestBurst: four times the budget at once with SHED_POLICY_LATEST. Every
// HIGH and CRITICAL message arrives in order, and the last value of every LOW
// and NORMAL point arrives, each point's values in order.
func TestLatestBurst(t *testing.T) {
	f := start(t, bridge.HubConfig{Retain: 4096, QueueSize: 4096}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: &pb.Budget{MessagesPerSecond: 500}, Shed: pb.ShedPolicy_SHED_POLICY_LATEST})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	const total = 2000
	load := mixedLoad(total)
	important, want := 0, map[string]int64{}
	for i, m := range load {
		if m.Priority >= bridge.PriorityHigh {
			important++
		} else {
			want[m.Point] = int64(i)
		}
	}
	if err := f.hub.Ingest(bridge.ProtocolMQTT).Publish(ctx, load...); err != nil {
		t.Fatal(err)
	}
	var gotImportant, delivered int
	var lastImportant uint64
	last := map[string]int64{}
	done := func() bool {
		for point, v := range want {
			if last[point] != v {
				return false
			}
		}
		return gotImportant == important
	}
	for !done() {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d messages: %v", delivered, err)
		}
		delivered++
		if m.GetPriority() >= pb.Priority_PRIORITY_HIGH {
			if m.GetSequence() <= lastImportant {
				t.Fatalf("sequence %d after %d", m.GetSequence(), lastImportant)
			}
			lastImportant = m.GetSequence()
			gotImportant++
			continue
		}
		if prev, ok := last[m.GetPoint()]; ok && m.GetValue().GetIntValue() <= prev {
			t.Fatalf("point %s: value %d after %d", m.GetPoint(), m.GetValue().GetIntValue(), prev)
		}
		last[m.GetPoint()] = m.GetValue().GetIntValue()
	}
	if delivered >= total {
		t.Fatalf("all %d delivered: nothing conflated", delivered)
	}
	if c := sum(byPriority(t, f.srv.conflated.MetricVec)); float64(delivered)+c != total {
		t.Errorf("%d delivered + %v conflated, want %d", delivered, c, total)
	}
	t.Logf("%d of %d delivered", delivered, total)
}

// TestLatestPendingBound: a stream holds at most MaxPendingPoints pending values.
// The budget (one message, then one every 1,000 s) sends the first of 100 LOW
// points; the next 8 wait; the other 91 are dropped and counted; a newer value
// of a pending point replaces its value (conflated) and takes no new place.
func TestLatestPendingBound(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{MaxPendingPoints: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: &pb.Budget{MessagesPerSecond: 0.001}, Shed: pb.ShedPolicy_SHED_POLICY_LATEST})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	batch := make([]*bridge.Message, 100)
	for i := range batch {
		batch[i] = &bridge.Message{Device: "d", Point: strconv.Itoa(i), Value: bridge.Int(int64(i)), Priority: bridge.PriorityLow}
	}
	if err := in.Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetPoint() != "0" {
		t.Fatalf("first message %v, %v", m, err)
	}
	low := func(v *prometheus.MetricVec) float64 { return labelled(t, v, "low") }
	waitUntil(t, ctx, "91 shed, 8 pending", func() bool { return low(f.srv.shed.MetricVec) == 91 && low(f.srv.pending.MetricVec) == 8 })
	if err := in.Publish(ctx, &bridge.Message{Device: "d", Point: "3", Value: bridge.Int(1000), Priority: bridge.PriorityLow}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "1 conflated", func() bool { return low(f.srv.conflated.MetricVec) == 1 })
	if s, p := low(f.srv.shed.MetricVec), low(f.srv.pending.MetricVec); s != 91 || p != 8 {
		t.Errorf("after a newer value of a pending point: %v shed, %v pending", s, p)
	}
	cancel()
	waitUntil(t, context.Background(), "the stream's end to release its pending values", func() bool { return low(f.srv.pending.MetricVec) == 0 })
}

func TestPendingQueue(t *testing.T) {
	q := newPendingQueue(3)
	val := func(point string, prio bridge.Priority, v int64) *pendingValue {
		return &pendingValue{key: pointKey{"d", point}, m: &bridge.Message{Device: "d", Point: point, Value: bridge.Int(v), Priority: prio}}
	}
	if q.front() != nil || q.blocks(val("a", bridge.PriorityLow, 0).m) {
		t.Fatal("an empty queue has a front or blocks")
	}
	for _, v := range []*pendingValue{val("a", bridge.PriorityLow, 1), val("b", bridge.PriorityNormal, 2), val("c", bridge.PriorityLow, 3)} {
		if old, ok := q.put(v); !ok || old != nil {
			t.Fatalf("put %s: %v %v", v.key.point, old, ok)
		}
	}
	if _, ok := q.put(val("d", bridge.PriorityLow, 4)); ok {
		t.Fatal("a fourth point was kept")
	}
	// A newer value of a: replaces 1, goes behind c.
	if old, ok := q.put(val("a", bridge.PriorityLow, 5)); !ok || old == nil || old.m.Value != bridge.Int(1) {
		t.Fatalf("replace: %v %v", old, ok)
	}
	if !q.blocks(val("x", bridge.PriorityLow, 0).m) || q.blocks(val("x", bridge.PriorityHigh, 0).m) {
		t.Error("LOW must queue behind pending values, HIGH never")
	}
	var order []string
	for v := q.front(); v != nil; v = q.front() {
		order = append(order, fmt.Sprintf("%s=%v", v.key.point, v.m.Value))
		q.remove(v)
	}
	if got := strings.Join(order, " "); got != "b=2 c=3 a=5" {
		t.Errorf("order %q, want NORMAL first, then LOW oldest first", got)
	}
	if q.len() != 0 || q.blocks(val("b", bridge.PriorityNormal, 0).m) {
		t.Error("not empty")
	}
}
