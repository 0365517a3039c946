package opcuasim

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"go.uber.org/goleak"

	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait: generous, the machine is shared.
const waitTimeout = 30 * time.Second

func counter(prev any, _ uint64) any { return prev.(int32) + 1 }

func startSim(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func connect(t *testing.T, s *Server) *opcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := opcua.NewClient(s.Endpoint(), opcua.AutoReconnect(false), opcua.SecurityMode(ua.MessageSecurityModeNone))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// TestSubscription checks the engine with gopcua's own client: a monitored item on a
// changing variable delivers values, and one on a missing node fails.
func TestSubscription(t *testing.T) {
	s := startSim(t, Options{Interval: 10 * time.Millisecond, Vars: []Var{
		{Name: "count", Value: int32(0), Change: counter},
	}})
	c := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	notes := make(chan *opcua.PublishNotificationData, 16)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 20 * time.Millisecond}, notes)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctx)
	res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth,
		opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(NodeID("count")), ua.AttributeIDValue, 1),
		opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(NodeID("missing")), ua.AttributeIDValue, 2),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Results[0].StatusCode; got != ua.StatusOK {
		t.Fatalf("count: %v", got)
	}
	if got := res.Results[1].StatusCode; got != ua.StatusBadNodeIDUnknown {
		t.Fatalf("missing: %v, want BadNodeIdUnknown", got)
	}
	seen := 0
	for seen < 3 {
		select {
		case n := <-notes:
			if n.Error != nil {
				t.Fatal(n.Error)
			}
			dcn, ok := n.Value.(*ua.DataChangeNotification)
			if !ok {
				continue
			}
			for _, it := range dcn.MonitoredItems {
				if it.ClientHandle != 1 || it.Value.SourceTimestamp.IsZero() {
					t.Fatalf("unexpected notification %+v", it)
				}
				seen++
			}
		case <-ctx.Done():
			t.Fatal("no notifications")
		}
	}
}

// TestWriteAndRestart checks writes (type and access enforced) and that a restart
// keeps the address and the values.
func TestWriteAndRestart(t *testing.T) {
	s := startSim(t, Options{Vars: []Var{
		{Name: "setpoint", Value: float64(1), Writable: true},
		{Name: "ro", Value: int32(1)},
	}})
	addr := s.Addr()
	c := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	write := func(name string, v any) ua.StatusCode {
		res, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
			NodeID: ua.MustParseNodeID(NodeID(name)), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Results[0]
	}
	if st := write("setpoint", 42.5); st != ua.StatusOK {
		t.Fatalf("write: %v", st)
	}
	if st := write("setpoint", int32(1)); st != ua.StatusBadTypeMismatch {
		t.Fatalf("write of the wrong type: %v", st)
	}
	if st := write("ro", int32(2)); st != ua.StatusBadNotWritable {
		t.Fatalf("write of a read-only variable: %v", st)
	}
	if v, n, _ := s.Value("setpoint"); v != 42.5 || n != 1 {
		t.Fatalf("value %v after %d writes", v, n)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr || s.Starts() != 2 {
		t.Fatalf("restarted on %s (was %s), %d starts", s.Addr(), addr, s.Starts())
	}
	c2 := connect(t, s)
	dv, err := c2.Node(ua.MustParseNodeID(NodeID("setpoint"))).Value(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dv.Value() != 42.5 {
		t.Fatalf("after restart: %v", dv.Value())
	}
}

// TestClientCertificates: a secure channel's client certificate is recorded, one
// of policy None is not.
func TestClientCertificates(t *testing.T) {
	s := startSim(t, Options{Security: AllSecurity, Vars: []Var{{Name: "v", Value: int32(1)}}})
	connect(t, s) // policy None
	if got := s.ClientCertificates(); len(got) != 0 {
		t.Fatalf("policy None recorded %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	eps, err := opcua.GetEndpoints(ctx, s.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	var ep *ua.EndpointDescription
	for _, e := range eps {
		if e.SecurityPolicyURI == ua.SecurityPolicyURIBasic256Sha256 && e.SecurityMode == ua.MessageSecurityModeSignAndEncrypt {
			ep = e
		}
	}
	if ep == nil {
		t.Fatal("no Basic256Sha256 SignAndEncrypt endpoint")
	}
	der, key, err := uacert.Generate("test client", "urn:edgegate:test:client", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := opcua.NewClient(s.Endpoint(), opcua.AutoReconnect(false),
		opcua.Certificate(der), opcua.PrivateKey(key), opcua.ApplicationURI("urn:edgegate:test:client"),
		opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Node(ua.MustParseNodeID(NodeID("v"))).Value(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := s.ClientCertificates(), []string{uacert.Thumbprint(der)}; !slices.Equal(got, want) {
		t.Fatalf("client certificates %v, want %v", got, want)
	}
}
