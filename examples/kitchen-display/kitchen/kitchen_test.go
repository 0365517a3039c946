package kitchen_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/client"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/examples/kitchen-display/kitchen"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/protocols"
	_ "github.com/edgegate/edgegate/protocols/all"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// paho's client keeps a goroutine a moment after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch"),
	)
}

var (
	oilTemp = sim.Point{Register: sim.Holding, Address: 0, Type: "float32"}
	heater  = sim.Point{Register: sim.Coil, Address: 0}
)

// TestKitchenEndToEnd: a point-of-sale terminal places an order over MQTT and the
// display's board shows it; the order is served and leaves the board; a fryer on
// the Modbus simulator gets too hot, the display raises an alert, and its write
// turns the simulated fryer's heater coil off.
func TestKitchenEndToEnd(t *testing.T) {
	fryer, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fryer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fryer.Stop)
	fryer.Set(1, oilTemp, bridge.Double(176))
	fryer.Set(1, heater, bridge.Bool(true))

	g := startGateway(t, fmt.Sprintf(`
gateway: {id: store-0042, data_dir: %s}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
modbus: {reconnect_backoff: 50ms}
devices:
  - id: fryer-1
    protocol: modbus
    address: tcp://%s
    unit_id: 1
    poll_interval: 50ms
    points:
      - {name: oil_temp, register: holding, address: 0, type: float32, unit: "°C", priority: critical}
      - {name: heater, register: coil, address: 0, writable: true}
`, t.TempDir(), fryer.Addr()))

	c, err := client.Dial(g.GRPCAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := kitchen.New(kitchen.Config{Hot: 200, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx, c) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// The fryer's first readings reach the board.
	wait(t, ctx, d, "the fryer's readings", func(b kitchen.Board) bool {
		f, ok := b.Fryer("fryer-1")
		return ok && f.HasTemp && f.Temp == 176 && f.Heater != nil && *f.Heater
	})

	// An order over MQTT.
	pos := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()).
		SetClientID("pos-1").SetAutoReconnect(false))
	if tok := pos.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("pos: %v", tok.Error())
	}
	defer pos.Disconnect(100)
	publish := func(topic, payload string) {
		if tok := pos.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	publish("devices/pos-1/order", "1042: 2x fries, 1x burger")
	publish("devices/pos-1/order", "1043: onion rings")
	wait(t, ctx, d, "order 1042 on the board", func(b kitchen.Board) bool {
		o, ok := b.Order("1042")
		return ok && len(b.Orders) == 2 && o.Terminal == "pos-1" && len(o.Items) == 2 && o.Items[0] == "2x fries"
	})
	publish("devices/pos-1/served", "1042")
	wait(t, ctx, d, "order 1042 served", func(b kitchen.Board) bool {
		_, open := b.Order("1042")
		return !open && len(b.Orders) == 1
	})

	// The fryer gets too hot: an alert, and the heater goes off on the device.
	if len(d.Board().Alerts()) != 0 {
		t.Fatal("an alert before the oil is hot")
	}
	fryer.Set(1, oilTemp, bridge.Double(212.5))
	wait(t, ctx, d, "the alert", func(b kitchen.Board) bool { return len(b.Alerts()) == 1 })
	waitCond(t, ctx, "the heater write on the simulated fryer", func() bool {
		v, err := fryer.Get(1, heater)
		on, _ := v.AsBool()
		return err == nil && !on
	})
	wait(t, ctx, d, "the fryer reporting its heater off", func(b kitchen.Board) bool {
		f, _ := b.Fryer("fryer-1")
		return f.Heater != nil && !*f.Heater && f.Writes >= 1 && f.WriteErr == ""
	})
	// Cooled down: the alert clears.
	fryer.Set(1, oilTemp, bridge.Double(170))
	wait(t, ctx, d, "the alert to clear", func(b kitchen.Board) bool { return len(b.Alerts()) == 0 })

	// A display started now (a restarted pod) rebuilds the same board from what
	// the gateway retains.
	d2 := kitchen.New(kitchen.Config{Hot: 200, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- d2.Run(ctx2, c) }()
	wait(t, ctx, d2, "the rebuilt board", func(b kitchen.Board) bool {
		_, open := b.Order("1043")
		f, _ := b.Fryer("fryer-1")
		return len(b.Orders) == 1 && open && f.Temp == 170 && len(b.Alerts()) == 0
	})
	stop2()
	if err := <-done2; err != nil {
		t.Errorf("second display: %v", err)
	}
}

func TestParseOrder(t *testing.T) {
	id, items, err := kitchen.ParseOrder(" 17 : 2x fries,, burger ")
	if err != nil || id != "17" || len(items) != 2 || items[1] != "burger" {
		t.Errorf("%q %q %v", id, items, err)
	}
	for _, bad := range []string{"", "no colon", ": items"} {
		if _, _, err := kitchen.ParseOrder(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestMaxOrders: the board keeps at most MaxOrders, dropping the oldest.
func TestMaxOrders(t *testing.T) {
	d := kitchen.New(kitchen.Config{MaxOrders: 2})
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		d.Apply(&client.Message{Sequence: uint64(i + 1), Device: "pos-1", Point: "order", Value: client.String(fmt.Sprintf("%d: x", i)),
			GatewayTime: base.Add(time.Duration(i) * time.Second)}, base)
	}
	b := d.Board()
	if len(b.Orders) != 2 || b.Orders[0].ID != "1" || b.DroppedOrders != 1 {
		t.Errorf("board %+v", b)
	}
	if !d.Bump("2") || d.Bump("2") {
		t.Error("Bump")
	}
}

// TestHeaterWritesPaced: while a fryer stays hot and its heater is not reported
// off, the write is repeated at most once per Retry.
func TestHeaterWritesPaced(t *testing.T) {
	d := kitchen.New(kitchen.Config{Hot: 200, Retry: time.Minute})
	now := time.Now()
	hot := func(at time.Time, temp float64) string {
		return d.Apply(&client.Message{Device: "fryer-1", Point: "oil_temp", Value: client.Double(temp), Quality: client.QualityGood}, at)
	}
	if hot(now, 201) != "fryer-1" {
		t.Fatal("no write when hot")
	}
	if hot(now.Add(time.Second), 205) != "" {
		t.Error("written again within Retry")
	}
	if hot(now.Add(2*time.Minute), 205) != "fryer-1" {
		t.Error("not written again after Retry")
	}
	d.Apply(&client.Message{Device: "fryer-1", Point: "heater", Value: client.Bool(false)}, now)
	if hot(now.Add(4*time.Minute), 205) != "" {
		t.Error("written although the heater is off")
	}
	if d.Apply(&client.Message{Device: "fryer-1", Point: "oil_temp", Value: client.Double(250), Quality: client.QualityBad}, now) != "" {
		t.Error("a BAD reading acted on")
	}
}

func wait(t *testing.T, ctx context.Context, d *kitchen.Display, what string, cond func(kitchen.Board) bool) {
	t.Helper()
	if err := d.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v; board %+v", what, err, d.Board())
	}
}

func waitCond(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func startGateway(t *testing.T, yaml string) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
	})
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("gateway not ready")
	}
	return g
}
