package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/gatewaychild"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/internal/testwait"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols"
	_ "github.com/edgegate/edgegate/protocols/all"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	gatewaychild.RunIfChild() // this binary may be a crash test's gateway
	goleak.VerifyTestMain(m,
		// paho's client keeps a few goroutines a moment after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch"),
	)
}

type running struct {
	g      *gateway.Gateway
	mqtt   string
	client pb.GatewayClient
	cc     *grpc.ClientConn
	http   string
}

const testConfig = `
gateway: {id: test-gw, labels: {site: "0042"}}
grpc: {listen: %s}
http: {listen: 127.0.0.1:0}
mqtt:
  listeners: [{type: tcp, address: 127.0.0.1:0}]
  allow_anonymous: true
devices:
  - {id: fryer-1, protocol: mqtt, labels: {line: "a"}, points: [{name: oil_temp, unit: "°C", priority: critical}]}
`

func startGateway(t *testing.T, grpcListen string) *running {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(testConfig, grpcListen)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g := gatewaytest.Start(t, cfg).Gateway
	r := &running{g: g, http: g.HTTPAddr().String()}
	r.mqtt = g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
	target := "passthrough:///" + g.GRPCAddr().String()
	if strings.HasPrefix(grpcListen, "unix://") {
		target = grpcListen
	}
	r.cc, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cc.Close() })
	r.client = pb.NewGatewayClient(r.cc)
	return r
}

func mqttClient(t *testing.T, addr, id string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func pub(t *testing.T, c paho.Client, topic string, qos byte, payload string) {
	t.Helper()
	if tok := c.Publish(topic, qos, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func subscribe(t *testing.T, ctx context.Context, r *running, req *pb.SubscribeRequest) pb.Gateway_SubscribeClient {
	t.Helper()
	s, err := r.client.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	return s
}

func recv(t *testing.T, s pb.Gateway_SubscribeClient) *pb.Message {
	t.Helper()
	m, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMQTTToGRPC is the foundation's end-to-end path: a real MQTT client publishes,
// a real gRPC client subscribes, and typed values arrive with their metadata.
func TestMQTTToGRPC(t *testing.T) {
	r := startGateway(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	all := subscribe(t, ctx, r, &pb.SubscribeRequest{})
	filtered := subscribe(t, ctx, r, &pb.SubscribeRequest{Devices: []string{"fryer-*"}, Points: []string{"oil_temp"}})

	dev := mqttClient(t, r.mqtt, "fryer-1")
	ts := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	pub(t, dev, "devices/fryer-1/oil_temp", 1, fmt.Sprintf(`{"value": 180.5, "ts": %q}`, ts.Format(time.RFC3339)))
	pub(t, dev, "devices/fryer-1/door_open", 1, "true")
	pub(t, dev, "devices/fryer-1/count", 0, "42")
	pub(t, dev, "devices/fryer-1/state", 1, `"frying"`)
	pub(t, dev, "devices/fryer-1", 1, `{"oil_temp": 181, "basket": "up"}`)

	want := []struct {
		point string
		value *pb.Value
	}{
		{"oil_temp", &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 180.5}}},
		{"door_open", &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: true}}},
		{"count", &pb.Value{Kind: &pb.Value_IntValue{IntValue: 42}}},
		{"state", &pb.Value{Kind: &pb.Value_StringValue{StringValue: "frying"}}},
	}
	var last uint64
	for i, w := range want {
		m := recv(t, all)
		if m.GetDevice() != "fryer-1" || m.GetPoint() != w.point || m.GetValue().String() != w.value.String() {
			t.Errorf("message %d = %v, want %s=%v", i, m, w.point, w.value)
		}
		if m.GetSequence() <= last {
			t.Errorf("sequence %d after %d", m.GetSequence(), last)
		}
		last = m.GetSequence()
		if m.GetProtocol() != pb.Protocol_PROTOCOL_MQTT || m.GetLabels()["site"] != "0042" || m.GetLabels()["topic"] == "" {
			t.Errorf("message %d metadata = %v", i, m)
		}
		if i == 0 {
			if !m.GetSourceTime().AsTime().Equal(ts) {
				t.Errorf("source time = %v, want %v", m.GetSourceTime().AsTime(), ts)
			}
			if m.GetUnit() != "°C" || m.GetPriority() != pb.Priority_PRIORITY_CRITICAL || m.GetLabels()["line"] != "a" {
				t.Errorf("configured point metadata lost: %v", m)
			}
		}
	}
	// The multi-point object: two messages, in either order.
	got := map[string]string{}
	for range 2 {
		m := recv(t, all)
		got[m.GetPoint()] = m.GetValue().String()
	}
	if len(got) != 2 || !strings.Contains(got["basket"], "up") {
		t.Errorf("multi-point = %v", got)
	}
	// The filtered stream sees only oil_temp, twice.
	for range 2 {
		if m := recv(t, filtered); m.GetPoint() != "oil_temp" {
			t.Errorf("filtered stream got %v", m)
		}
	}

	// Read: one point from the cache, and everything.
	rd, err := r.client.Read(ctx, &pb.ReadRequest{Points: []*pb.PointRef{{Device: "fryer-1", Point: "oil_temp"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v := rd.GetMessages()[0].GetValue(); v.GetIntValue() != 181 && v.GetDoubleValue() != 181 {
		t.Errorf("Read = %v, want 181", rd)
	}
	every, err := r.client.Read(ctx, &pb.ReadRequest{})
	if err != nil || len(every.GetMessages()) != 5 {
		t.Errorf("Read all = %d messages, %v; want 5 points", len(every.GetMessages()), err)
	}

	// ListDevices: connected, counted.
	ld, err := r.client.ListDevices(ctx, &pb.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ld.GetDevices()) != 1 || ld.GetDevices()[0].GetState() != pb.DeviceState_DEVICE_STATE_CONNECTED || ld.GetDevices()[0].GetMessages() != 6 {
		t.Errorf("devices = %v", ld)
	}

	// Write: the device receives it on its set topic.
	writes := make(chan string, 1)
	if tok := dev.Subscribe("devices/fryer-1/+/set", 1, func(_ paho.Client, m paho.Message) {
		writes <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if _, err := r.client.Write(ctx, &pb.WriteRequest{Device: "fryer-1", Point: "setpoint", Value: &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 175}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-writes:
		if w != "devices/fryer-1/setpoint/set 175" {
			t.Errorf("device received %q", w)
		}
	case <-ctx.Done():
		t.Fatal("write never reached the device")
	}
	if _, err := r.client.Write(ctx, &pb.WriteRequest{Device: "nobody", Point: "x", Value: &pb.Value{Kind: &pb.Value_BoolValue{}}}); status.Code(err) != codes.NotFound {
		t.Errorf("write to unknown device = %v", err)
	}

	// The device goes away: DISCONNECTED.
	dev.Disconnect(100)
	waitFor(t, ctx, "fryer-1 disconnected", func() bool {
		ld, err := r.client.ListDevices(ctx, &pb.ListDevicesRequest{Devices: []string{"fryer-1"}})
		return err == nil && len(ld.GetDevices()) == 1 && ld.GetDevices()[0].GetState() == pb.DeviceState_DEVICE_STATE_DISCONNECTED
	})
}

func TestHTTPEndpointsAndHealth(t *testing.T) {
	r := startGateway(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dev := mqttClient(t, r.mqtt, "sensor-1")
	pub(t, dev, "devices/sensor-1/temp", 1, "21.5")
	pub(t, dev, "devices/sensor-1/temp", 1, "{not json")

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, "http://"+r.http+path); code != 200 {
			t.Errorf("%s = %d", path, code)
		}
	}
	waitFor(t, ctx, "metrics", func() bool {
		_, body := get(t, "http://"+r.http+"/metrics")
		return strings.Contains(body, `edgegate_messages_in_total{device="sensor-1",protocol="mqtt"} 1`) &&
			strings.Contains(body, `edgegate_decode_errors_total{device="sensor-1",protocol="mqtt"} 1`)
	})
	_, body := get(t, "http://"+r.http+"/metrics")
	for _, name := range []string{"edgegate_subscribers", "edgegate_subscriber_queue_depth_max", "edgegate_retained_messages", "go_goroutines"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	_, st := get(t, "http://"+r.http+"/status")
	var page struct {
		ID      string `json:"id"`
		Ready   bool   `json:"ready"`
		Devices []struct {
			ID     string `json:"id"`
			Errors int    `json:"errors"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(st), &page); err != nil || page.ID != "test-gw" || !page.Ready {
		t.Errorf("status = %s (%v)", st, err)
	}

	hc, err := healthpb.NewHealthClient(r.cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "edgegate.v1.Gateway"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", hc, err)
	}
}

// TestUnixSocket is the sidecar's path: a workload subscribes and writes over the
// gateway's Unix socket.
func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "grpc.sock")
	r := startGateway(t, "unix://"+sock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := subscribe(t, ctx, r, &pb.SubscribeRequest{Devices: []string{"pump-1"}})
	dev := mqttClient(t, r.mqtt, "pump-1")
	writes := make(chan string, 1)
	if tok := dev.Subscribe("devices/pump-1/+/set", 1, func(_ paho.Client, m paho.Message) { writes <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub(t, dev, "devices/pump-1/speed", 1, "1200")
	if m := recv(t, stream); m.GetPoint() != "speed" || m.GetValue().GetIntValue() != 1200 {
		t.Fatalf("over the socket: %v", m)
	}
	if _, err := r.client.Write(ctx, &pb.WriteRequest{Device: "pump-1", Point: "speed", Value: &pb.Value{Kind: &pb.Value_IntValue{IntValue: 900}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-writes:
		if w != "900" {
			t.Fatalf("device received %q", w)
		}
	case <-ctx.Done():
		t.Fatal("the write over the socket never reached the device")
	}
}

func TestPortInUseFailsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf("grpc: {listen: %s}\nhttp: {listen: 127.0.0.1:0}\n", ln.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "grpc") {
		t.Errorf("Run = %v, want a grpc bind error", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, ctx, what, cond)
}
