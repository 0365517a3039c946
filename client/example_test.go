package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/client"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
)

// exampleGateway runs a gateway in this process for the examples to talk to; a
// workload dials its sidecar or appliance instead. fryer stands in for a device.
func exampleGateway(dataDir string) (g *gateway.Gateway, fryer func(temp float64), stop func()) {
	yaml := `
gateway: {id: example, data_dir: "` + dataDir + `"}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
devices:
  - {id: fryer-1, protocol: mqtt, points: [{name: oil_temp, unit: "°C"}]}
`
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		panic(err)
	}
	g, err = gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	<-g.Ready()
	in := g.Hub().Ingest(bridge.ProtocolMQTT)
	fryer = func(temp float64) {
		in.Publish(ctx, &bridge.Message{Device: "fryer-1", Point: "oil_temp", Unit: "°C", Value: bridge.Double(temp)})
	}
	return g, fryer, func() { cancel(); <-done }
}

// Subscribe to a device's readings and read typed values.
func Example() {
	g, fryer, stop := exampleGateway("")
	defer stop()

	c, err := client.Dial(g.GRPCAddr().String()) // or "unix:///run/edgegate/grpc.sock"
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fryer(181.5)
	fryer(183)
	sub, err := c.Subscribe(ctx, client.Filter{Devices: []string{"fryer-*"}, Points: []string{"oil_temp"}}, client.FromEarliest())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	for range 2 {
		m, err := sub.Recv() // reconnects and resumes by itself; an error is the end
		if err != nil {
			fmt.Println(err)
			return
		}
		t, _ := m.Value.Float64()
		fmt.Printf("%s %s %.1f %s\n", m.Device, m.Point, t, m.Unit)
	}
	// Output:
	// fryer-1 oil_temp 181.5 °C
	// fryer-1 oil_temp 183.0 °C
}

// A durable consumer acknowledges what it handled; after a restart of the workload
// (here: a second subscription) it continues after its last acknowledgement.
func ExampleSubscription_Ack() {
	dir, _ := os.MkdirTemp("", "edgegate-example")
	defer os.RemoveAll(dir)
	g, fryer, stop := exampleGateway(filepath.Join(dir, "data"))
	defer stop()
	c, _ := client.Dial(g.GRPCAddr().String())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, t := range []float64{170, 175, 180} {
		fryer(t)
	}
	sub, _ := c.Subscribe(ctx, client.Filter{}, client.Consumer("kitchen-display"), client.FromEarliest())
	m, _ := sub.Recv()
	fmt.Println("handled", m.Value)
	if err := sub.Ack(ctx, m.Sequence); err != nil {
		fmt.Println(err)
	}
	sub.Close()

	sub, _ = c.Subscribe(ctx, client.Filter{}, client.Consumer("kitchen-display"), client.FromEarliest())
	defer sub.Close()
	m, _ = sub.Recv()
	fmt.Println("next", m.Value)
	// Output:
	// handled 170
	// next 175
}

// List the devices and their state.
func ExampleClient_Devices() {
	g, _, stop := exampleGateway("")
	defer stop()
	c, _ := client.Dial(g.GRPCAddr().String())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	devs, err := c.Devices(ctx, "fryer-*")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range devs {
		fmt.Println(d.ID, d.Protocol, d.Points)
	}
	// Output: fryer-1 PROTOCOL_MQTT [oil_temp]
}

// Read the latest value of a point from the gateway's cache.
func ExampleClient_Latest() {
	g, fryer, stop := exampleGateway("")
	defer stop()
	c, _ := client.Dial(g.GRPCAddr().String())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fryer(176.25)
	m, err := c.Latest(ctx, "fryer-1", "oil_temp")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Value, m.Unit, m.Quality)
	// Output: 176.25 °C QUALITY_GOOD
}

// Turn a fryer's heater off. The gateway routes the write to the adapter that owns
// the device: over MQTT it is published on devices/fryer-1/heater/set, over Modbus
// it writes the point's coil.
func ExampleClient_Write() {
	c, err := client.Dial("unix:///run/edgegate/grpc.sock")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, "fryer-1", "heater", client.Bool(false)); err != nil {
		fmt.Println(err) // status.Code(err) says why: NotFound, FailedPrecondition...
	}
}

// Connect with mutual TLS, with the files `edgegate certs init` writes.
func ExampleWithTLSFiles() {
	c, err := client.Dial("gateway.store-0042.example:50051",
		client.WithTLSFiles("certs/ca.crt", "certs/client.crt", "certs/client.key"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
}

// Typed accessors convert between numeric kinds where nothing is lost.
func ExampleValue_Float64() {
	for _, v := range []client.Value{client.Int(21), client.Double(21.5), client.Bool(true), client.String("hot")} {
		f, ok := v.Float64()
		fmt.Println(v.Kind(), f, ok)
	}
	// Output:
	// int 21 true
	// double 21.5 true
	// bool 0 false
	// string 0 false
}
