package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/client"
)

// TestLatest: over budget with Latest, LOW values the gateway held back arrive
// after CRITICAL messages with larger sequences; the subscription delivers them
// (they are not repeats), each point's values in order, every point's last value,
// and every CRITICAL message.
func TestLatest(t *testing.T) {
	g := startGateway(t, `
gateway: {id: client-test}
grpc: {listen: "127.0.0.1:0"}
http: {listen: "off"}
`)
	c, err := client.Dial(g.g.GRPCAddr().String(), fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, client.Filter{Devices: []string{"d"}}, client.WithBudget(200, 0), client.Latest())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// The stream is open once the hub lists it; it starts live.
	opened := make(chan error, 1)
	go func() { _, err := sub.Recv(); opened <- err }()
	in := g.g.Hub().Ingest(bridge.ProtocolMQTT)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for len(g.g.Hub().Subscribers()) == 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("no subscriber")
		}
	}
	if err := in.Publish(ctx, &bridge.Message{Device: "d", Point: "open", Value: bridge.Int(0), Priority: bridge.PriorityCritical}); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatal(err)
	}

	// One batch: a CRITICAL message every fifth, and 50 at the end. The stream
	// reads them all before the LOW values it keeps get the tokens they need
	// (half the bucket), so those arrive after larger sequences.
	const total = 1050
	batch := make([]*bridge.Message, total)
	want := map[string]int64{}
	critical := 0
	for i := range batch {
		m := &bridge.Message{Device: "d", Point: fmt.Sprintf("low-%d", i%4), Value: bridge.Int(int64(i)), Priority: bridge.PriorityLow}
		if i%5 == 0 || i >= 1000 {
			m.Point, m.Priority = "alarm", bridge.PriorityCritical
			critical++
		} else {
			want[m.Point] = int64(i)
		}
		batch[i] = m
	}
	if err := in.Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	var got, gotCritical int
	var outOfOrder bool
	var maxSeq uint64
	done := func() bool {
		for p, v := range want {
			if last[p] != v {
				return false
			}
		}
		return gotCritical == critical
	}
	for !done() {
		m, err := sub.Recv()
		if err != nil {
			t.Fatalf("after %d: %v", got, err)
		}
		got++
		v, _ := m.Value.Int64()
		if prev, ok := last[m.Point]; ok && v <= prev {
			t.Fatalf("point %s: %d after %d", m.Point, v, prev)
		}
		last[m.Point] = v
		if m.Point == "alarm" {
			gotCritical++
		}
		outOfOrder = outOfOrder || m.Sequence < maxSeq
		maxSeq = max(maxSeq, m.Sequence)
	}
	st := sub.Stats()
	if st.Duplicates != 0 || got >= total {
		t.Errorf("%d of %d delivered, stats %+v", got, total, st)
	}
	if !outOfOrder {
		t.Error("every message in sequence order: no LOW value was held back behind a CRITICAL one")
	}
	if sub.Last() != maxSeq {
		t.Errorf("Last %d, want the largest sequence, %d", sub.Last(), maxSeq)
	}
	t.Logf("%d of %d delivered", got, total)
}
