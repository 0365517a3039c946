package coap_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols/coap"
)

// TestThroughGateway runs the adapter in a real gateway from a YAML config: a CoAP
// POST reaches a gRPC subscriber, and a gRPC Write reaches a CoAP observer.
func TestThroughGateway(t *testing.T) {
	cfg, err := config.Parse([]byte(`
gateway: {id: e2e}
grpc: {listen: "127.0.0.1:0"}
http: {listen: "off"}
coap:
  listeners: [{type: udp, address: "127.0.0.1:0"}]
devices:
  - {id: boiler-1, protocol: coap, labels: {site: a}, points: [{name: temp, unit: "°C"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg).Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coapAddr := g.Adapter("coap").(*coap.Adapter).Addrs()[0].String()

	conn, err := grpc.NewClient("passthrough:///"+g.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := gw.Subscribe(sctx, &pb.SubscribeRequest{Protocols: []pb.Protocol{pb.Protocol_PROTOCOL_COAP}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}

	// go-coap's periodic work for the client, in a goroutine this test owns.
	stopTicks := make(chan struct{})
	var ticks sync.WaitGroup
	defer func() {
		close(stopTicks)
		ticks.Wait()
	}()
	c, err := udp.Dial(coapAddr, options.WithErrors(func(error) {}), options.WithPeriodicRunner(func(f func(time.Time) bool) {
		ticks.Add(1)
		go func() {
			defer ticks.Done()
			tk := time.NewTicker(100 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stopTicks:
					return
				case now := <-tk.C:
					if !f(now) {
						return
					}
				}
			}
		}()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(); <-c.Done() }()

	resp, err := c.Post(ctx, "/devices/boiler-1/temp", message.TextPlain, strings.NewReader("21.5"))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("POST: %v, %v", resp, err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetDevice() != "boiler-1" || m.GetPoint() != "temp" || m.GetValue().GetDoubleValue() != 21.5 ||
		m.GetProtocol() != pb.Protocol_PROTOCOL_COAP || m.GetUnit() != "°C" || m.GetLabels()["site"] != "a" {
		t.Errorf("gRPC message: %v", m)
	}

	notes := make(chan []byte, 4)
	obs, err := c.Observe(ctx, "/devices/boiler-1/setpoint", func(n *pool.Message) {
		if b, _ := n.ReadBody(); len(b) > 0 {
			notes <- b
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Write(ctx, &pb.WriteRequest{Device: "boiler-1", Point: "setpoint", Value: &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 55}}}); err != nil {
		t.Fatalf("gRPC Write: %v", err)
	}
	select {
	case b := <-notes:
		if !bytes.Equal(b, []byte("55")) {
			t.Errorf("notification %q", b)
		}
	case <-ctx.Done():
		t.Fatal("no notification")
	}
	_ = obs.Cancel(ctx)
}
