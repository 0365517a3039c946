package functions_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/functions"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols"
	_ "github.com/edgegate/edgegate/protocols/all"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const gatewayConfig = `
gateway: {id: fn-gw, labels: {site: "0042"}}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt:
  listeners: [{type: tcp, address: 127.0.0.1:0}]
  allow_anonymous: true
functions:
  - name: fryer-fahrenheit
    match: {devices: ["fryer-*"], points: [oil_temp]}
    derive: {point: oil_temp_f, cel: "value * 9.0 / 5.0 + 32.0", unit: "°F"}
  - name: drop-noise
    match: {points: [vibration]}
    filter: {cel: "value > 0.5"}
`

type running struct {
	g      *gateway.Gateway
	client pb.GatewayClient
	mqtt   paho.Client
}

// startGateway runs a whole gateway from a config, a gRPC client and an MQTT client
// (fryer-1) until the test ends.
func startGateway(t *testing.T, src string) *running {
	t.Helper()
	cfg, err := config.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g := gatewaytest.Start(t, cfg).Gateway
	cc, err := grpc.NewClient("passthrough:///"+g.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	addr := g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("fryer-1").
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &running{g: g, client: pb.NewGatewayClient(cc), mqtt: c}
}

func (r *running) subscribe(t *testing.T) pb.Gateway_SubscribeClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	stream, err := r.client.Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	return stream
}

func (r *running) publish(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := r.mqtt.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestGatewayDerivedReachesSubscriber: a whole gateway from a config with
// functions; a real MQTT client publishes, a real gRPC client subscribes, and the
// derived message arrives with its own sequence while the filtered one does not.
func TestGatewayDerivedReachesSubscriber(t *testing.T) {
	r := startGateway(t, gatewayConfig)
	stream := r.subscribe(t)
	r.publish(t, "devices/fryer-1/vibration", "0.1") // dropped by drop-noise
	r.publish(t, "devices/fryer-1/oil_temp", "180")  // an int, promoted for the double expression
	r.publish(t, "devices/fryer-1/vibration", "0.9")

	var got []*pb.Message
	for len(got) < 3 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d messages: %v", len(got), err)
		}
		got = append(got, m)
	}
	src, d, vib := got[0], got[1], got[2]
	if src.GetPoint() != "oil_temp" || src.GetValue().GetIntValue() != 180 {
		t.Errorf("first message %v; want oil_temp=180 (vibration 0.1 dropped)", src)
	}
	if d.GetDevice() != "fryer-1" || d.GetPoint() != "oil_temp_f" || d.GetValue().GetDoubleValue() != 356 || d.GetUnit() != "°F" {
		t.Errorf("derived %v; want fryer-1/oil_temp_f=356 °F", d)
	}
	if d.GetSequence() != src.GetSequence()+1 {
		t.Errorf("derived sequence %d, source %d; want its own, next", d.GetSequence(), src.GetSequence())
	}
	if l := d.GetLabels(); l[functions.LabelDerivedFrom] != "fryer-fahrenheit" || l["site"] != "0042" || d.GetProtocol() != pb.Protocol_PROTOCOL_MQTT {
		t.Errorf("derived labels %v protocol %v", l, d.GetProtocol())
	}
	if vib.GetPoint() != "vibration" || vib.GetValue().GetDoubleValue() != 0.9 {
		t.Errorf("third message %v; want vibration=0.9", vib)
	}
	// The derived point is a point of the device like any other.
	resp, err := r.client.Read(t.Context(), &pb.ReadRequest{Points: []*pb.PointRef{{Device: "fryer-1", Point: "oil_temp_f"}}})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if ms := resp.GetMessages(); len(ms) != 1 || ms[0].GetValue().GetDoubleValue() != 356 {
		t.Errorf("Read oil_temp_f: %v", ms)
	}
}

// TestGatewayReloadSwapsFunctions: a config reload swaps the functions while the
// gateway serves.
func TestGatewayReloadSwapsFunctions(t *testing.T) {
	r := startGateway(t, gatewayConfig)
	stream := r.subscribe(t)
	next, err := config.Parse([]byte(strings.Replace(gatewayConfig, "value * 9.0 / 5.0 + 32.0", "value + 273.15", 1)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.g.Reload(t.Context(), next)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !strings.Contains(res.String(), "reconfigured functions") {
		t.Errorf("reload result %q", res)
	}
	r.publish(t, "devices/fryer-1/oil_temp", "20")
	if m, err := stream.Recv(); err != nil || m.GetPoint() != "oil_temp" {
		t.Fatalf("Recv: %v %v", m, err)
	}
	m, err := stream.Recv()
	if err != nil || m.GetPoint() != "oil_temp_f" || m.GetValue().GetDoubleValue() != 293.15 {
		t.Fatalf("derived after the reload: %v %v; want the new expression's 293.15", m, err)
	}
}

// TestExampleConfig runs examples/functions/edgegate.yaml (on ports picked at run
// time): a jump in a fryer's steady oil temperature reaches a subscriber as
// oil_temp_anomaly, from the example WebAssembly module.
func TestExampleConfig(t *testing.T) {
	src, err := os.ReadFile("../examples/functions/edgegate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"bin/anomaly.wasm", functions.ExampleModule(t),
		"timeout: 50ms", "timeout: 10s", // a loaded machine with the race detector is not a kitchen
		"127.0.0.1:50051", "127.0.0.1:0", "127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:1883", "127.0.0.1:0",
	).Replace(string(src))
	r := startGateway(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := r.client.Subscribe(ctx, &pb.SubscribeRequest{Points: []string{"*_anomaly"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		r.publish(t, "devices/fryer-1/oil_temp", fmt.Sprint(180+i%3))
	}
	r.publish(t, "devices/fryer-1/oil_temp", "240")
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetDevice() != "fryer-1" || m.GetPoint() != "oil_temp_anomaly" || m.GetValue().GetDoubleValue() < 4 ||
		m.GetPriority() != pb.Priority_PRIORITY_HIGH || m.GetLabels()[functions.LabelDerivedFrom] != "anomaly" {
		t.Errorf("anomaly %v", m)
	}
}
