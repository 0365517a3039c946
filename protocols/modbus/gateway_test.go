package modbus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

// TestThroughTheGateway runs a whole gateway from a config file with a Modbus
// device, and uses the contract's gRPC calls: Subscribe, Write (a read-only point
// refused with InvalidArgument and nothing sent), Read from the device, and
// ListDevices with the state and last error.
func TestThroughTheGateway(t *testing.T) {
	s := newSim(t, sim.Options{})
	set(t, s, 1, sim.Point{Register: sim.Holding, Address: 0, Type: "float32"}, bridge.Double(21.5))
	doc := fmt.Sprintf(`
grpc: {listen: "127.0.0.1:0"}
http: {listen: "off"}
modbus: {poll_interval: 20ms, reconnect_backoff: 10ms}
devices:
  - id: boiler-1
    protocol: modbus
    address: tcp://%s
    unit_id: 1
    points:
      - {name: temperature, register: holding, address: 0, type: float32, byte_order: ABCD, unit: "°C"}
      - {name: setpoint, register: holding, address: 10, type: uint16, scale: 0.1, writable: true}
      - {name: alarm, register: coil, address: 0, type: bool, priority: critical}
      - {name: missing, register: holding, address: 5000, type: uint16}
`, s.Addr())
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g := gatewaytest.Start(t, cfg).Gateway
	cc, err := grpc.NewClient("passthrough:///"+g.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := pb.NewGatewayClient(cc)
	rctx, rcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer rcancel()

	stream, err := client.Subscribe(rctx, &pb.SubscribeRequest{Points: []string{"temperature"}, Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetDevice() != "boiler-1" || m.GetValue().GetDoubleValue() != 21.5 || m.GetUnit() != "°C" || m.GetProtocol() != pb.Protocol_PROTOCOL_MODBUS {
		t.Errorf("subscribed: %v", m)
	}

	if _, err := client.Write(rctx, &pb.WriteRequest{Device: "boiler-1", Point: "setpoint", Value: &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 55.5}}}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if v, _ := s.Get(1, sim.Point{Register: sim.Holding, Address: 10}); !v.Equal(bridge.Uint(555)) {
		t.Errorf("setpoint raw %#v, want 555", v)
	}
	writes := s.RequestsOf(0x06) + s.RequestsOf(0x10) + s.RequestsOf(0x05)
	_, err = client.Write(rctx, &pb.WriteRequest{Device: "boiler-1", Point: "temperature", Value: &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 1}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("write to a read-only point: %v", err)
	}
	if n := s.RequestsOf(0x06) + s.RequestsOf(0x10) + s.RequestsOf(0x05); n != writes {
		t.Errorf("a refused write reached the device")
	}

	resp, err := client.Read(rctx, &pb.ReadRequest{Points: []*pb.PointRef{{Device: "boiler-1", Point: "setpoint"}}, Source: pb.ReadSource_READ_SOURCE_DEVICE})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetMessages()[0].GetValue().GetDoubleValue(); got < 55.49 || got > 55.51 {
		t.Errorf("read from the device: %v", got)
	}

	waitFor(t, "ListDevices to show the refused point", func() bool {
		l, err := client.ListDevices(rctx, &pb.ListDevicesRequest{})
		if err != nil || len(l.GetDevices()) != 1 {
			return false
		}
		d := l.GetDevices()[0]
		return d.GetState() == pb.DeviceState_DEVICE_STATE_CONNECTED && strings.Contains(d.GetLastError(), "illegal data address") &&
			d.GetWrites() == 1
	})
}
