package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/coap"
)

func parseCoAP(t *testing.T, args ...string) (*coapOptions, error) {
	t.Helper()
	fs := flag.NewFlagSet("coap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o coapOptions
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return &o, o.validate()
}

func TestCoAPFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  string
	}{
		{args: nil},
		{args: []string{"--server", "127.0.0.1:5683", "--devices", "500", "--load", "--rate", "0", "--payload", "cbor"}},
		{args: []string{"--server", "coaps://127.0.0.1:5684", "--psk-key", "k"}},
		{args: []string{"--server", "coaps+tcp://gw:5684", "--cacert", "ca.crt"}},
		{args: []string{"--serve", "127.0.0.1:0", "--transport", "dtls", "--psk-key", "k"}},
		{args: []string{"--devices", "0"}, bad: "--devices"},
		{args: []string{"--rate", "0"}, bad: "--rate"},
		{args: []string{"--payload", "xml"}, bad: "--payload"},
		{args: []string{"--inflight", "65"}, bad: "--inflight"},
		{args: []string{"--server", "http://x:1"}, bad: "--server"},
		{args: []string{"--server", "coap://x"}, bad: "--server"},
		{args: []string{"--server", "coaps://x:5684"}, bad: "--psk-key or --cacert"},
		{args: []string{"--server", "coap://x:5683", "--psk-key", "k"}, bad: "plaintext"},
		{args: []string{"--cert", "c"}, bad: "--cert and --key"},
		{args: []string{"--prefix", "a/"}, bad: "--prefix"},
		{args: []string{"--serve", "nowhere"}, bad: "--serve"},
		{args: []string{"--serve", "127.0.0.1:0", "--transport", "dtls"}, bad: "--psk-key"},
		{args: []string{"--serve", "127.0.0.1:0", "--transport", "sctp"}, bad: "--transport"},
	} {
		_, err := parseCoAP(t, tc.args...)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%q: error %v, want one about %s", tc.args, err, tc.bad)
		case err != nil && !errors.Is(err, errUsage):
			t.Errorf("%q: %v is not a usage error", tc.args, err)
		}
	}
}

// gateway is the CoAP adapter with an in-process hub, on a loopback UDP port.
type gateway struct {
	a   *coap.Adapter
	hub *bridge.Hub
	sub *bridge.Subscription
}

func startGateway(t *testing.T, devices ...coap.DeviceConfig) *gateway {
	t.Helper()
	return startGatewayWith(t, []coap.ListenerConfig{{Type: "udp", Address: "127.0.0.1:0"}}, devices...)
}

func startGatewayWith(t *testing.T, listeners []coap.ListenerConfig, devices ...coap.DeviceConfig) *gateway {
	t.Helper()
	cfg := coap.NewConfig()
	cfg.Listeners = listeners
	cfg.Devices = devices
	ad, err := cfg.New(protocols.Env{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a := ad.(*coap.Adapter)
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	sub, err := hub.Subscribe(bridge.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, hub.Ingest(bridge.ProtocolCoAP)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		sub.Close()
		hub.Close()
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway not ready")
	}
	return &gateway{a: a, hub: hub, sub: sub}
}

// waitFor reads the gateway's messages until one satisfies ok.
func (g *gateway) waitFor(t *testing.T, what string, ok func(*bridge.Message) bool) *bridge.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		ms, err := g.sub.Next(ctx, make([]*bridge.Message, 0, 64))
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		for _, m := range ms {
			if ok(m) {
				return m
			}
		}
	}
}

// TestCoAPPush runs two pushing devices against the adapter: readings arrive, and a
// write is applied and reported back.
func TestCoAPPush(t *testing.T) {
	for _, form := range []string{"json", "cbor", "object"} {
		t.Run(form, func(t *testing.T) {
			g := startGateway(t)
			o, err := parseCoAP(t, "--server", g.a.Addrs()[0].String(), "--devices", "2", "--rate", "50", "--points", "2", "--payload", form, "--seed", "1")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var out bytes.Buffer
			done := make(chan error, 1)
			go func() { done <- runCoAP(ctx, o, slog.New(slog.DiscardHandler), &out) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("runCoAP: %v", err)
				}
			}()
			g.waitFor(t, "a reading of sim-2", func(m *bridge.Message) bool { return m.Device == "sim-2" })
			m := g.waitFor(t, "a temperature", func(m *bridge.Message) bool { return m.Point == "temperature" })
			if m.Unit != "°C" || m.SourceTime.IsZero() {
				t.Errorf("temperature: unit %q, ts %v", m.Unit, m.SourceTime)
			}
			// The write reaches the device once it observes; it reports the value.
			deadline := time.Now().Add(15 * time.Second)
			for {
				err := g.a.Write(ctx, "sim-1", "setpoint", bridge.Double(19.5))
				if err == nil {
					break
				}
				if !errors.Is(err, coap.ErrNoObserver) || time.Now().After(deadline) {
					t.Fatalf("write: %v", err)
				}
				select {
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			g.waitFor(t, "the written setpoint reported back", func(m *bridge.Message) bool {
				return m.Device == "sim-1" && m.Point == "setpoint" && m.Value.String() == "19.5"
			})
		})
	}
}

// TestCoAPServe serves a device and checks it with a go-coap client and with the
// adapter's client side.
func TestCoAPServe(t *testing.T) {
	o, err := parseCoAP(t, "--serve", "127.0.0.1:0", "--rate", "20", "--points", "3", "--id", "served-1", "--seed", "2")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- serveCoAP(ctx, o, slog.New(slog.DiscardHandler), &out, ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveCoAP: %v", err)
		}
	}()
	addr := <-ready
	if !strings.Contains(out.String(), "address: coap://"+addr) || !strings.Contains(out.String(), "path: /points/temperature") {
		t.Errorf("printed config:\n%s", out.String())
	}

	tk := &ticker{}
	tctx, stopTicker := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); tk.run(tctx) }()
	defer func() { stopTicker(); wg.Wait() }()
	c, err := udp.Dial(addr, options.WithPeriodicRunner(tk.add), options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(); <-c.Done() }()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	notes := make(chan string, 16)
	obs, err := c.Observe(rctx, "/points/temperature", func(m *pool.Message) {
		b, _ := m.ReadBody()
		select {
		case notes <- string(b):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-notes:
		case <-rctx.Done():
			t.Fatal("fewer than 3 notifications")
		}
	}
	_ = obs.Cancel(rctx)
	resp, err := c.Put(rctx, "/points/counter", message.TextPlain, strings.NewReader("42"))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("PUT: %v, %v", resp, err)
	}
	resp, err = c.Get(rctx, "/points/counter")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := resp.ReadBody(); string(b) != "42" {
		t.Errorf("counter after the write: %q", b)
	}
	if resp, err := c.Get(rctx, "/points/nope"); err != nil || resp.Code() != codes.NotFound {
		t.Errorf("unknown point: %v, %v", resp, err)
	}

	// The adapter's client side observes it.
	g := startGateway(t, coap.DeviceConfig{ID: "served-1", Protocol: "coap", Address: "coap://" + addr, Observe: true,
		Points: []coap.PointConfig{{Name: "temperature", Path: "/points/temperature"}, {Name: "counter", Path: "/points/counter", Writable: true}}})
	g.waitFor(t, "served-1 temperature", func(m *bridge.Message) bool { return m.Device == "served-1" && m.Point == "temperature" })
	if err := g.a.Write(rctx, "served-1", "counter", bridge.Int(7)); err != nil {
		t.Fatalf("write through the adapter: %v", err)
	}
	g.waitFor(t, "the written counter", func(m *bridge.Message) bool {
		return m.Point == "counter" && m.Value.String() == "7"
	})
}

// TestCoAPPushDTLS pushes over DTLS with a pre-shared key per device identity.
func TestCoAPPushDTLS(t *testing.T) {
	key := filepath.Join(t.TempDir(), "sim.key")
	if err := os.WriteFile(key, []byte("sim-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGatewayWith(t, []coap.ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0",
		PSK: []coap.PSKConfig{{Identity: "sim-1", KeyFile: key}}}})
	o, err := parseCoAP(t, "--server", "coaps://"+g.a.Addrs()[0].String(), "--psk-key", "sim-secret", "--rate", "50", "--observe=false")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCoAP(ctx, o, slog.New(slog.DiscardHandler), io.Discard) }()
	m := g.waitFor(t, "a reading over DTLS", func(m *bridge.Message) bool { return m.Device == "sim-1" })
	if m.Labels["identity"] != "sim-1" {
		t.Errorf("identity label %q", m.Labels["identity"])
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("runCoAP: %v", err)
	}
}
