package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const reloadConfig = `
gateway: {id: reload}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt:
  listeners: [{type: tcp, address: 127.0.0.1:0}]
  allow_anonymous: true
devices:
  - {id: fryer-1, protocol: mqtt, labels: {line: %q}}
`

// TestReloadKeepsClientsAndStreams changes a device's labels in the config file
// while an MQTT client publishes and a gRPC stream reads: the change applies, the
// client stays connected and the stream has no gap. Then an invalid file is refused
// and everything goes on.
func TestReloadKeepsClientsAndStreams(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edgegate.yaml")
	write := func(body string) {
		t.Helper()
		// Write and rename, as an editor or Kubernetes would: the watcher sees a
		// new file, never half of one.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(reloadConfig, "a"))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	g.WatchConfigFile(path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-g.Ready():
	case <-ctx.Done():
		t.Fatal("not ready")
	}
	mqttAddr := g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
	cc, err := grpc.NewClient("passthrough:///"+g.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := pb.NewGatewayClient(cc).Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	lost := make(chan string, 1)
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("fryer-1").
		SetAutoReconnect(false).SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err.Error() }))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer dev.Disconnect(100)

	// Publish 1, 2, 3, ... and read until the label says b; every value arrives once.
	want := 0
	sawNew := false
	rewritten := false
	for !sawNew {
		if tok := dev.Publish("devices/fryer-1/oil_temp", 1, false, fmt.Sprint(want)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", want, tok.Error())
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.GetValue().GetIntValue(); got != int64(want) {
			t.Fatalf("value %d, want %d: the stream has a gap", got, want)
		}
		switch m.GetLabels()["line"] {
		case "a":
		case "b":
			sawNew = true
		default:
			t.Fatalf("labels = %v", m.GetLabels())
		}
		if !rewritten {
			write(fmt.Sprintf(reloadConfig, "b"))
			rewritten = true
		}
		want++
		select {
		case err := <-lost:
			t.Fatalf("the MQTT client was disconnected by the reload: %s", err)
		case <-ctx.Done():
			t.Fatal("the reload never applied")
		case <-time.After(20 * time.Millisecond): // paces the publisher; not a wait for a condition
		}
	}

	// An invalid config is refused; the gateway and the client go on.
	write("mqtt: {listeners: [{type: tcp, address: 0.0.0.0:1883}]}\nbogus: 1\n")
	g.RequestReload()
	for i := 0; i < 5; i++ {
		if tok := dev.Publish("devices/fryer-1/oil_temp", 1, false, fmt.Sprint(want)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish after an invalid config: %v", tok.Error())
		}
		m, err := stream.Recv()
		if err != nil || m.GetValue().GetIntValue() != int64(want) {
			t.Fatalf("after an invalid config: %v, %v", m, err)
		}
		want++
	}
	if !dev.IsConnected() {
		t.Fatal("client disconnected")
	}
}

// TestReloadStartsAndStopsProtocols adds and removes a protocol section through
// Reload.
func TestReloadStartsAndStopsProtocols(t *testing.T) {
	base := "gateway: {id: r}\ngrpc: {listen: 127.0.0.1:0}\nhttp: {listen: \"off\"}\n"
	cfg, err := config.Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg).Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withMQTT, err := config.Parse([]byte(base + "mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Reload(ctx, withMQTT)
	if err != nil || strings.Join(res.Started, ",") != "mqtt" {
		t.Fatalf("reload = %v, %v", res, err)
	}
	a := g.Adapter("mqtt")
	select {
	case <-a.(protocols.Readier).Ready():
	case <-ctx.Done():
		t.Fatal("mqtt never ready")
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + a.(protocols.Listening).Addrs()[0].String()))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.Disconnect(100)
	// A listener change needs a new broker: restarted alone.
	moved, err := config.Parse([]byte(base + "mqtt: {listeners: [{type: tcp, address: 127.0.0.2:0}], allow_anonymous: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := g.Reload(ctx, moved); err != nil || strings.Join(res.Restarted, ",") != "mqtt" {
		t.Fatalf("reload = %v, %v", res, err)
	}
	if res, err := g.Reload(ctx, cfg); err != nil || strings.Join(res.Stopped, ",") != "mqtt" || g.Adapter("mqtt") != nil {
		t.Fatalf("reload = %v, %v", res, err)
	}
	changed, _ := config.Parse([]byte("gateway: {id: other}\ngrpc: {listen: 127.0.0.1:0}\nhttp: {listen: \"off\"}\n"))
	if res, err := g.Reload(ctx, changed); err != nil || strings.Join(res.NeedsRestart, ",") != "gateway" {
		t.Fatalf("reload = %v, %v", res, err)
	}
}
