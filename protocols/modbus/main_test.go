package modbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/modbus"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on a condition; generous because the machine is
// shared. No test sleeps to wait: each waits for what it expects.
const waitTimeout = 15 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig polls fast and backs off briefly, so that tests take little time.
func testConfig(devs ...modbus.DeviceConfig) *modbus.Config {
	c := modbus.NewConfig()
	c.PollInterval = 20 * time.Millisecond
	c.Timeout = 2 * time.Second
	c.ConnectTimeout = 2 * time.Second
	c.Heartbeat = time.Hour
	c.BusyBackoff = 2 * time.Millisecond
	c.BusyBackoffMax = 10 * time.Millisecond
	c.ReconnectBackoff = 10 * time.Millisecond
	c.ReconnectBackoffMax = 100 * time.Millisecond
	c.Devices = devs
	return c
}

func device(id, addr string, unit int, points ...modbus.PointConfig) modbus.DeviceConfig {
	return modbus.DeviceConfig{ID: id, Protocol: "modbus", Address: "tcp://" + addr, UnitID: &unit, Points: points}
}

func ptr[T any](v T) *T { return &v }

func pc(name, register string, addr int, typ string) modbus.PointConfig {
	return modbus.PointConfig{Name: name, Register: register, Address: ptr(addr), Type: typ}
}

// newSim starts a simulated device on a loopback port; it stops when the test ends.
func newSim(t *testing.T, opts sim.Options) *sim.Server {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

type env struct {
	t      *testing.T
	a      *modbus.Adapter
	hub    *bridge.Hub
	reg    *prometheus.Registry
	sub    *bridge.Subscription
	cancel context.CancelFunc
	done   chan error
	buf    []*bridge.Message // read from the subscription, not yet matched
}

// start runs an adapter with an in-process hub as its sink until the test ends (or
// stop).
func start(t *testing.T, cfg *modbus.Config) *env {
	t.Helper()
	return startWith(t, cfg, testLogger(t))
}

func startWith(t *testing.T, cfg *modbus.Config, log *slog.Logger) *env {
	t.Helper()
	return startOnHub(t, cfg, log, bridge.HubConfig{})
}

// startOnHub is startWith on a hub of the given bounds.
func startOnHub(t *testing.T, cfg *modbus.Config, log *slog.Logger, hc bridge.HubConfig) *env {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	reg := prometheus.NewRegistry()
	ad, err := cfg.New(protocols.Env{Logger: log, Metrics: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a := ad.(*modbus.Adapter)
	hub := bridge.NewHub(hc, nil)
	hub.SetWriter(bridge.ProtocolModbus, a)
	hub.SetReader(bridge.ProtocolModbus, a)
	sub, err := hub.Subscribe(bridge.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, a: a, hub: hub, reg: reg, sub: sub, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- a.Run(ctx, hub.Ingest(bridge.ProtocolModbus)) }()
	t.Cleanup(func() {
		e.stop()
		sub.Close()
		hub.Close()
	})
	select {
	case <-a.Ready():
	case err := <-e.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("adapter not ready")
	}
	return e
}

// stop cancels Run and waits for it.
func (e *env) stop() {
	if e.done == nil {
		return
	}
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		e.t.Errorf("Run did not return after cancellation; goroutines:\n%s", stacks.String())
	}
	e.done = nil
}

// next waits for the next message that matches. The others stay for later calls,
// so that a test may wait for the points of one batch in any order.
func (e *env) next(what string, match func(*bridge.Message) bool) *bridge.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		for i, m := range e.buf {
			if match(m) {
				e.buf = append(e.buf[:i], e.buf[i+1:]...)
				return m
			}
		}
		got, err := e.sub.Next(ctx, nil)
		if err != nil {
			e.t.Fatalf("waiting for %s: %v", what, err)
		}
		e.buf = append(e.buf, got...)
	}
}

// point waits for the next message of a point with the given quality.
func (e *env) point(dev, pt string, q bridge.Quality) *bridge.Message {
	e.t.Helper()
	return e.next(fmt.Sprintf("%s/%s quality %d", dev, pt, q), func(m *bridge.Message) bool {
		return m.Device == dev && m.Point == pt && m.Quality == q
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, waitTimeout, what, cond)
}

func (e *env) device(id string) bridge.DeviceInfo {
	for _, d := range e.hub.Devices(nil) {
		if d.ID == id {
			return d
		}
	}
	return bridge.DeviceInfo{}
}

// metric sums the samples of a metric family whose labels include the given ones.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// polls waits until the device has been polled n more times.
func (e *env) polls(dev string, n int) {
	e.t.Helper()
	base := e.metric("edgegate_modbus_polls_total", "device", dev)
	waitFor(e.t, "polls of "+dev, func() bool {
		return e.metric("edgegate_modbus_polls_total", "device", dev) >= base+float64(n)
	})
}
