package mqtt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// TestShutdown stops the adapter with a client connected, one in the middle of its
// CONNECT and one that sent nothing: Run returns nil promptly, every client is
// disconnected, and (TestMain's goleak) no goroutine is left.
func TestShutdown(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "dev", Protocol: "mqtt"}}
	ad, err := cfg.New(protocols.Env{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a := ad.(*Adapter)
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	defer hub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, hub.Ingest(bridge.ProtocolMQTT)) }()
	<-a.Ready()
	addr := a.Addrs()[0].String()

	c5, _, err := connect5(t, addr, "dev", "", "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dev connected", func() bool { return hub.Devices(nil)[0].State == bridge.StateConnected })
	half, _ := rawConn(t, addr)
	if _, err := half.Write(rawConnect311[:5]); err != nil {
		t.Fatal(err)
	}
	_, _ = rawConn(t, addr)
	waitFor(t, "three connections", func() bool { return metricValue(t, a.metrics.open) == 3 })

	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	// Generous over the grace (a loaded CI machine under -race is slow), yet
	// well short of a shutdown that waits on the lingering clients.
	if d := time.Since(began); d > shutdownGrace+5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	select {
	case code := <-c5.disconnects:
		if code != 0x8b {
			t.Errorf("DISCONNECT reason %#x, want 0x8b (server shutting down)", code)
		}
	case <-time.After(waitTimeout):
		t.Error("the v5 client got no DISCONNECT")
	}
	<-c5.Done()
	if s := hub.Devices(nil)[0].State; s != bridge.StateDisconnected {
		t.Errorf("dev is %v after shutdown", s)
	}
	if err := a.Write(context.Background(), "dev", "x", bridge.Int(1)); err != ErrNotRunning {
		t.Errorf("Write after Run: %v", err)
	}
}

func TestMaxRetained(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetained = 1
	e := start(t, cfg)
	pub := mustClient3(t, e.addr(), "", "", "")
	for _, topic := range []string{"status/a", "status/b"} {
		if tok := pub.Publish(topic, 1, true, "up"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// The first was retained, the second only delivered. mochi retains before it
	// acknowledges (and delivers after), so the store is settled once the PUBACK came.
	retained := e.a.srv.Load().Topics.Retained
	if _, ok := retained.Get("status/a"); !ok {
		t.Error("status/a was not retained")
	}
	if _, ok := retained.Get("status/b"); ok {
		t.Error("status/b was retained beyond max_retained")
	}
	// Replacing a retained message is allowed at the limit.
	if tok := pub.Publish("status/a", 1, true, "down"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if pk, _ := retained.Get("status/a"); string(pk.Payload) != "down" {
		t.Errorf("status/a retained %q, want the replacement", pk.Payload)
	}
}

func TestMetricsRegistered(t *testing.T) {
	e := start(t, testConfig())
	c := mustClient3(t, e.addr(), "", "", "")
	publish3(t, c, "devices/m/x", 1, "1")
	e.next(1)
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"edgegate_mqtt_connections", "edgegate_mqtt_connections_total", "edgegate_mqtt_publishes_total",
		"edgegate_mqtt_received_bytes_total", "edgegate_mqtt_sent_bytes_total"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("metric %s not registered; have %s", want, got)
		}
	}
	if n := e.counter(e.a.metrics.publishes.WithLabelValues(resultAccepted)); n != 1 {
		t.Errorf("accepted publishes: %v", n)
	}
}

// TestBridgeUnavailable: when the bridge cannot take a reading now (here: the hub is
// closed), nothing is acknowledged; the client is disconnected so that it sends the
// message again after reconnecting.
func TestBridgeUnavailable(t *testing.T) {
	e := start(t, testConfig())
	c5 := mustClient5(t, e.addr(), "", "", "")
	c3 := mustClient3(t, e.addr(), "", "", "")
	e.hub.Close()
	// paho waits for the PUBACK until its packet timeout even once the server hung
	// up; the publish is cancelled once the DISCONNECT has arrived.
	ctx, cancel := context.WithCancel(context.Background())
	published := make(chan error, 1)
	go func() {
		_, err := c5.Publish(ctx, &paho.Publish{Topic: "devices/d/x", QoS: 1, Payload: []byte("1")})
		published <- err
	}()
	select {
	case code := <-c5.disconnects:
		if code != 0x8b {
			t.Errorf("DISCONNECT reason %#x, want 0x8b", code)
		}
	case <-time.After(waitTimeout):
		t.Error("no DISCONNECT")
	}
	cancel()
	if err := <-published; err == nil {
		t.Error("v5 publish acknowledged with the bridge closed")
	}
	tok := c3.Publish("devices/d/x", 1, false, "1")
	waitFor(t, "3.1.1 client disconnected", func() bool { return !c3.IsConnectionOpen() })
	if tok.WaitTimeout(0) && tok.Error() == nil {
		t.Error("3.1.1 publish acknowledged with the bridge closed")
	}
	if n := e.counter(e.a.metrics.publishes.WithLabelValues(resultUnavailable)); n != 2 {
		t.Errorf("unavailable publishes: %v, want 2", n)
	}
}
