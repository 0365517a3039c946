package grpcapi

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// clock is a settable time for consumers' idle times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Issue 19.3: under grpc.authz, an identity allowed only fryer-1 moved another
// identity's consumer forward, and junk Acks filled the consumer slots for good.
// A consumer belongs to the identity whose Subscribe created it; an Ack never
// creates one; consumers can be listed, deleted, and expire when idle.
func TestConsumersBelongToIdentities(t *testing.T) {
	j, err := journal.Open(t.TempDir(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	const ttl = 24 * time.Hour
	f := startTLS(t, AuthzOptions{Restrict: true, Rules: []Rule{
		{Identity: "dash", Subscribe: []string{"*"}},
		{Identity: "fryer", Subscribe: []string{"fryer-1"}},
	}}, Options{Consumers: j, ConsumerTTL: ttl, Now: clk.now, Metrics: reg})
	ctx := testCtx(t)
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	for i := range 16 {
		publish(t, in, "fryer-1", "oil_temp", bridge.Int(int64(i)), nil)
	}
	dash := pb.NewGatewayClient(f.client(t, "dash", nil))
	fryer := pb.NewGatewayClient(f.client(t, "fryer", nil))

	s, err := dash.Subscribe(ctx, &pb.SubscribeRequest{Consumer: "dash", Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil { // the consumer exists once the stream delivers
		t.Fatal(err)
	}
	if r, err := dash.Ack(ctx, &pb.AckRequest{Consumer: "dash", Sequence: 2}); err != nil || r.GetSequence() != 2 {
		t.Fatalf("owner's Ack = %v, %v", r, err)
	}
	// Before the fix this moved dash's consumer to 8.
	_, err = fryer.Ack(ctx, &pb.AckRequest{Consumer: "dash", Sequence: 8})
	wantCode(t, "another identity's Ack", err, codes.PermissionDenied)
	fs, err := fryer.Subscribe(ctx, &pb.SubscribeRequest{Consumer: "dash"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = fs.Recv()
	wantCode(t, "another identity's Subscribe", err, codes.PermissionDenied)
	_, err = fryer.DeleteConsumer(ctx, &pb.DeleteConsumerRequest{Consumer: "dash"})
	wantCode(t, "another identity's DeleteConsumer", err, codes.PermissionDenied)

	// Junk Acks create nothing: the slots stay free.
	for i := range journal.MaxConsumers + 6 {
		_, err := fryer.Ack(ctx, &pb.AckRequest{Consumer: "junk-" + strconv.Itoa(i), Sequence: 1})
		if i == 0 {
			wantCode(t, "Ack of an unknown consumer", err, codes.NotFound)
		}
	}
	fs, err = fryer.Subscribe(ctx, &pb.SubscribeRequest{Consumer: "fryer-display", Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Recv(); err != nil {
		t.Fatalf("a new consumer after the junk Acks: %v", err)
	}

	list, err := dash.ListConsumers(ctx, &pb.ListConsumersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := list.GetConsumers(); len(c) != 1 || c[0].GetName() != "dash" || c[0].GetSequence() != 2 || !c[0].GetAcknowledged() ||
		c[0].GetOwner() != "dash" || !c[0].GetExpires().AsTime().Equal(clk.now().Add(ttl)) {
		t.Errorf("dash's consumers = %v", c)
	}
	list, err = fryer.ListConsumers(ctx, &pb.ListConsumersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := list.GetConsumers(); len(c) != 1 || c[0].GetName() != "fryer-display" || c[0].GetAcknowledged() {
		t.Errorf("fryer's consumers = %v", c)
	}
	if got := metricSum(t, reg, "edgegate_grpc_consumers", ""); got != 2 {
		t.Errorf("edgegate_grpc_consumers = %v", got)
	}

	// The owner deletes its consumer; its next Ack is NOT_FOUND.
	if _, err := dash.DeleteConsumer(ctx, &pb.DeleteConsumerRequest{Consumer: "dash"}); err != nil {
		t.Fatal(err)
	}
	_, err = dash.Ack(ctx, &pb.AckRequest{Consumer: "dash", Sequence: 3})
	wantCode(t, "Ack after delete", err, codes.NotFound)
	_, err = dash.DeleteConsumer(ctx, &pb.DeleteConsumerRequest{Consumer: "dash"})
	wantCode(t, "delete twice", err, codes.NotFound)
	_, err = dash.DeleteConsumer(ctx, &pb.DeleteConsumerRequest{Consumer: "uplink-acked"})
	wantCode(t, "delete of the gateway's own", err, codes.InvalidArgument)
	_, err = dash.Ack(ctx, &pb.AckRequest{Consumer: "northbound-uns", Sequence: 3})
	wantCode(t, "Ack of a northbound link's position", err, codes.InvalidArgument)

	// Idle for the TTL, fryer-display expires; a use just before keeps it.
	clk.add(ttl - time.Second)
	if _, err := fryer.Ack(ctx, &pb.AckRequest{Consumer: "fryer-display", Sequence: 5}); err != nil {
		t.Fatal(err)
	}
	clk.add(ttl - time.Second)
	if list, err := fryer.ListConsumers(ctx, &pb.ListConsumersRequest{}); err != nil || len(list.GetConsumers()) != 1 {
		t.Fatalf("used within the TTL: %v, %v", list, err)
	}
	clk.add(2 * time.Second)
	if list, err := fryer.ListConsumers(ctx, &pb.ListConsumersRequest{}); err != nil || len(list.GetConsumers()) != 0 {
		t.Fatalf("idle past the TTL: %v, %v", list, err)
	}
	if got := metricSum(t, reg, "edgegate_grpc_consumers_expired_total", ""); got != 1 {
		t.Errorf("edgegate_grpc_consumers_expired_total = %v", got)
	}
	if got := metricSum(t, reg, "edgegate_grpc_consumer_refused_total", "not_owner"); got != 3 {
		t.Errorf("refused not_owner = %v, want 3", got)
	}
}

// metricSum sums the samples of a counter or gauge, of those with a label of
// value labelValue ("": all).
func metricSum(t *testing.T, reg *prometheus.Registry, name, labelValue string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := labelValue == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == labelValue
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
