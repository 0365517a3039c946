package grpcapi

import (
	"context"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
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

// TestHoldPolicyLosesNothing: with SHED_POLICY_HOLD every message waits its turn.
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
		batch[i] = &bridge.Message{Device: "d", Point: "p", Value: bridge.Int(int64(i)), Priority: bridge.PriorityLow}
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
