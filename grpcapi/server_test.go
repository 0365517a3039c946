package grpcapi

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingWriter is the device side of a write: it keeps what it was asked to set.
type recordingWriter struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (w *recordingWriter) Write(ctx context.Context, device, point string, v bridge.Value) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.writes = append(w.writes, device+"/"+point+"="+v.String())
	return nil
}

type fixture struct {
	hub    *bridge.Hub
	srv    *Server
	client pb.GatewayClient
}

func start(t *testing.T, cfg bridge.HubConfig, opts Options) *fixture {
	t.Helper()
	hub := bridge.NewHub(cfg, nil)
	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	api := New(hub, opts)
	api.Register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		hub.Close()
		srv.Stop()
		<-done
	})
	return &fixture{hub: hub, srv: api, client: pb.NewGatewayClient(cc)}
}

func publish(t *testing.T, in *bridge.Ingest, device, point string, v bridge.Value, labels map[string]string) {
	t.Helper()
	if err := in.Publish(context.Background(), &bridge.Message{Device: device, Point: point, Value: v, Labels: labels}); err != nil {
		t.Fatal(err)
	}
}

func recvN(t *testing.T, s pb.Gateway_SubscribeClient, n int) []*pb.Message {
	t.Helper()
	var out []*pb.Message
	for len(out) < n {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

func TestSubscribeFiltersAndTypes(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{
		Devices:   []string{"fryer-*"},
		Points:    []string{"oil_temp", "state"},
		Protocols: []pb.Protocol{pb.Protocol_PROTOCOL_MQTT},
		Labels:    map[string]string{"site": "0042"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // the subscription is registered once the header arrives
		t.Fatal(err)
	}
	mq, mb := f.hub.Ingest(bridge.ProtocolMQTT), f.hub.Ingest(bridge.ProtocolModbus)
	site := map[string]string{"site": "0042"}
	publish(t, mq, "fryer-1", "oil_temp", bridge.Double(180.5), site)
	publish(t, mq, "oven-1", "oil_temp", bridge.Double(1), site)                            // device filtered out
	publish(t, mq, "fryer-1", "humidity", bridge.Double(1), site)                           // point filtered out
	publish(t, mb, "fryer-9", "oil_temp", bridge.Double(1), site)                           // protocol filtered out
	publish(t, mq, "fryer-2", "oil_temp", bridge.Double(1), map[string]string{"site": "1"}) // label
	publish(t, mq, "fryer-2", "state", bridge.String("frying"), site)
	got := recvN(t, stream, 2)
	if got[0].GetDevice() != "fryer-1" || got[0].GetValue().GetDoubleValue() != 180.5 {
		t.Errorf("first = %v", got[0])
	}
	if got[1].GetValue().GetStringValue() != "frying" || got[1].GetSequence() <= got[0].GetSequence() {
		t.Errorf("second = %v", got[1])
	}
	for _, m := range got {
		if m.GetQuality() != pb.Quality_QUALITY_GOOD || m.GetPriority() != pb.Priority_PRIORITY_NORMAL ||
			m.GetGatewayTime() == nil || m.GetProtocol() != pb.Protocol_PROTOCOL_MQTT {
			t.Errorf("defaults missing: %v", m)
		}
	}
}

func TestSubscribeReplayAndResume(t *testing.T) {
	f := start(t, bridge.HubConfig{Retain: 8, QueueSize: 8}, Options{})
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	for i := range 12 {
		publish(t, in, "d", "p", bridge.Int(int64(i)), nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	earliest, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	got := recvN(t, earliest, 8)
	if got[0].GetValue().GetIntValue() != 4 || got[7].GetValue().GetIntValue() != 11 {
		t.Fatalf("earliest replay = %v .. %v, want the 8 retained (4..11)", got[0], got[7])
	}

	resume, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Start: &pb.SubscribeRequest_AfterSequence{AfterSequence: got[5].GetSequence()}})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, in, "d", "p", bridge.Int(12), nil)
	r := recvN(t, resume, 3)
	if r[0].GetSequence() != got[6].GetSequence() || r[2].GetValue().GetIntValue() != 12 {
		t.Fatalf("resume = %v", r)
	}

	// Resuming from before the retained window says how much is gone.
	old, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Start: &pb.SubscribeRequest_AfterSequence{AfterSequence: 1}})
	if err != nil {
		t.Fatal(err)
	}
	md, err := old.Header()
	if err != nil {
		t.Fatal(err)
	}
	if v := md.Get(HeaderSkipped); len(v) != 1 || v[0] == "0" {
		t.Errorf("header %s = %v, want a count", HeaderSkipped, v)
	}
}

func TestSlowSubscriberIsDisconnected(t *testing.T) {
	f := start(t, bridge.HubConfig{Retain: 64, QueueSize: 16, SlowPolicy: bridge.SlowDisconnect}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	// 100 messages in one batch: the subscriber is 100 behind before it reads one.
	batch := make([]*bridge.Message, 100)
	for i := range batch {
		batch[i] = &bridge.Message{Device: "d", Point: "p", Value: bridge.Int(int64(i))}
	}
	if err := in.Publish(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("err = %v, want RESOURCE_EXHAUSTED", err)
		}
		break
	}
}

func TestSubscriberLimitAndConsumer(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{MaxSubscribers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Header(); err != nil {
		t.Fatal(err)
	}
	second, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second subscriber: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Durable consumers need the durable log; without it the refusal is clear.
	durable, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Consumer: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := durable.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("consumer: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := f.client.Ack(ctx, &pb.AckRequest{Consumer: "billing", Sequence: 1}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Ack: %v, want FAILED_PRECONDITION", err)
	}
}

func TestBadPatternIsInvalidArgument(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Devices: []string{"[unclosed"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Recv = %v, want INVALID_ARGUMENT", err)
	}
	if _, err := f.client.ListDevices(ctx, &pb.ListDevicesRequest{Devices: []string{"[x"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListDevices = %v, want INVALID_ARGUMENT", err)
	}
}

func TestReadAndListDevices(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	publish(t, in, "a", "x", bridge.Int(1), nil)
	publish(t, in, "a", "x", bridge.Int(2), nil)
	publish(t, in, "b", "y", bridge.Bool(true), nil)
	in.State("a", bridge.StateConnected, nil)

	all, err := f.client.Read(ctx, &pb.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.GetMessages()) != 2 || all.GetMessages()[0].GetValue().GetIntValue() != 2 {
		t.Errorf("Read all = %v", all)
	}
	one, err := f.client.Read(ctx, &pb.ReadRequest{Points: []*pb.PointRef{{Device: "b", Point: "y"}}})
	if err != nil || !one.GetMessages()[0].GetValue().GetBoolValue() {
		t.Errorf("Read b/y = %v, %v", one, err)
	}
	if _, err := f.client.Read(ctx, &pb.ReadRequest{Points: []*pb.PointRef{{Device: "b", Point: "nope"}}}); status.Code(err) != codes.NotFound {
		t.Errorf("Read missing = %v, want NOT_FOUND", err)
	}
	if _, err := f.client.Read(ctx, &pb.ReadRequest{Points: []*pb.PointRef{{Device: "b", Point: "y"}}, Source: pb.ReadSource_READ_SOURCE_DEVICE}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Read from a device without a reader = %v, want FAILED_PRECONDITION", err)
	}

	list, err := f.client.ListDevices(ctx, &pb.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetDevices()) != 2 {
		t.Fatalf("devices = %v", list)
	}
	a := list.GetDevices()[0]
	if a.GetId() != "a" || a.GetState() != pb.DeviceState_DEVICE_STATE_CONNECTED || a.GetMessages() != 2 ||
		a.GetLastSeen() == nil || len(a.GetPoints()) != 1 {
		t.Errorf("device a = %v", a)
	}
	only, err := f.client.ListDevices(ctx, &pb.ListDevicesRequest{Devices: []string{"b*"}})
	if err != nil || len(only.GetDevices()) != 1 {
		t.Errorf("filtered = %v, %v", only, err)
	}
}

func TestWriteRouting(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := &recordingWriter{}
	f.hub.SetWriter(bridge.ProtocolMQTT, w)
	publish(t, f.hub.Ingest(bridge.ProtocolMQTT), "pump", "speed", bridge.Int(1), nil)
	publish(t, f.hub.Ingest(bridge.ProtocolModbus), "plc", "speed", bridge.Int(1), nil)

	resp, err := f.client.Write(ctx, &pb.WriteRequest{Device: "pump", Point: "speed", Value: pbconv.ValueToProto(bridge.Int(42)), RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRequestId() != "r1" || len(w.writes) != 1 || w.writes[0] != "pump/speed=42" {
		t.Errorf("resp %v, writes %v", resp, w.writes)
	}
	cases := []struct {
		req  *pb.WriteRequest
		code codes.Code
	}{
		{&pb.WriteRequest{Device: "ghost", Point: "p", Value: pbconv.ValueToProto(bridge.Int(1))}, codes.NotFound},
		{&pb.WriteRequest{Device: "plc", Point: "speed", Value: pbconv.ValueToProto(bridge.Int(1))}, codes.FailedPrecondition},
		{&pb.WriteRequest{Device: "pump", Point: "speed"}, codes.InvalidArgument},
		{&pb.WriteRequest{Point: "speed", Value: pbconv.ValueToProto(bridge.Int(1))}, codes.InvalidArgument},
	}
	for _, c := range cases {
		if _, err := f.client.Write(ctx, c.req); status.Code(err) != c.code {
			t.Errorf("Write(%v) = %v, want %v", c.req, err, c.code)
		}
	}
	w.err = status.Error(codes.Unavailable, "broker down")
	if _, err := f.client.Write(ctx, &pb.WriteRequest{Device: "pump", Point: "speed", Value: pbconv.ValueToProto(bridge.Int(1))}); status.Code(err) != codes.Unavailable {
		t.Errorf("adapter failure = %v", err)
	}
	w.err = errors.New("plain failure")
	if _, err := f.client.Write(ctx, &pb.WriteRequest{Device: "pump", Point: "speed", Value: pbconv.ValueToProto(bridge.Int(1))}); status.Code(err) != codes.Unavailable {
		t.Errorf("adapter failure = %v", err)
	}
}

func TestHubCloseEndsStreamsUnavailable(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	md, err := s.Header()
	if err != nil {
		t.Fatal(err)
	}
	if v := md.Get(HeaderFirstSequence); len(v) != 1 {
		t.Errorf("no %s header: %v", HeaderFirstSequence, md)
	} else if _, err := strconv.ParseUint(v[0], 10, 64); err != nil {
		t.Error(err)
	}
	f.hub.Close()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Recv after close = %v, want UNAVAILABLE", err)
	}
}
