package opcua

import (
	"context"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/opcua/opcuasim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on a condition: generous, the machine is shared.
const waitTimeout = 30 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func counter(prev any, _ uint64) any { return prev.(float64) + 1 }

// sim starts a simulator with a changing temperature, a writable setpoint, a
// read-only counter and a string, until the test ends.
func sim(t *testing.T, o opcuasim.Options) *opcuasim.Server {
	t.Helper()
	if o.Vars == nil {
		o.Vars = []opcuasim.Var{
			{Name: "Line1.Temperature", Value: float64(20), Change: counter},
			{Name: "Line1.Setpoint", Value: float64(0), Writable: true},
			{Name: "Line1.Count", Value: int32(0)},
			{Name: "Line1.Mode", Value: "auto", Writable: true},
		}
	}
	if o.Interval == 0 {
		o.Interval = 20 * time.Millisecond
	}
	if testing.Verbose() {
		o.Logger = testLogger(t)
	}
	s, err := opcuasim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// testConfig is a config with quick retries and one device on the simulator with
// the given points (default: temperature, setpoint, count).
func testConfig(endpoint string, points ...PointConfig) *Config {
	c := NewConfig()
	c.BackoffInitial = 50 * time.Millisecond
	c.BackoffMax = 500 * time.Millisecond
	c.KeepAlive = time.Second
	c.RequestTimeout = 5 * time.Second
	if points == nil {
		points = []PointConfig{
			{Name: "temperature", Node: opcuasim.NodeID("Line1.Temperature"), SamplingInterval: 20 * time.Millisecond, Unit: "°C"},
			{Name: "setpoint", Node: opcuasim.NodeID("Line1.Setpoint"), Writable: true},
			{Name: "count", Node: opcuasim.NodeID("Line1.Count")},
			{Name: "mode", Node: opcuasim.NodeID("Line1.Mode"), Writable: true},
		}
	}
	c.Devices = []DeviceConfig{{
		ID: "line-1", Protocol: Name, Endpoint: endpoint,
		Security:           SecurityConfig{Policy: "None", Mode: "None"},
		PublishingInterval: 20 * time.Millisecond,
		Labels:             map[string]string{"line": "1"},
		Points:             points,
	}}
	return c
}

type env struct {
	t   *testing.T
	a   *Adapter
	hub *bridge.Hub
	reg *prometheus.Registry
	sub *bridge.Subscription
}

func start(t *testing.T, cfg *Config, penv protocols.Env) *env {
	t.Helper()
	return startWith(t, cfg, penv, nil)
}

// startWith is start with the adapter set up by setup before it runs, and the
// logger of penv when it has one.
func startWith(t *testing.T, cfg *Config, penv protocols.Env, setup func(*Adapter)) *env {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	reg := prometheus.NewRegistry()
	if penv.Logger == nil {
		penv.Logger = testLogger(t)
	}
	penv.Metrics = reg
	if penv.GatewayID == "" {
		penv.GatewayID = "test"
	}
	ad, err := cfg.New(penv)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a := ad.(*Adapter)
	if setup != nil {
		setup(a)
	}
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	hub.SetWriter(bridge.ProtocolOPCUA, a)
	hub.SetReader(bridge.ProtocolOPCUA, a)
	sub, err := hub.Subscribe(bridge.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, hub.Ingest(bridge.ProtocolOPCUA)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Errorf("Run did not return after cancellation; goroutines:\n%s", stacks.String())
		}
		sub.Close()
		hub.Close()
	})
	return &env{t: t, a: a, hub: hub, reg: reg, sub: sub}
}

// until reads messages until one satisfies ok, and returns it.
func (e *env) until(what string, ok func(*bridge.Message) bool) *bridge.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		got, err := e.sub.Next(ctx, make([]*bridge.Message, 0, 64))
		if err != nil {
			e.t.Fatalf("waiting for %s: %v", what, err)
		}
		for _, m := range got {
			if ok(m) {
				return m
			}
		}
	}
}

func (e *env) device(id string) bridge.DeviceInfo {
	for _, d := range e.hub.Devices(nil) {
		if d.ID == id {
			return d
		}
	}
	return bridge.DeviceInfo{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, waitTimeout, what, cond)
}

func isPoint(point string, q bridge.Quality) func(*bridge.Message) bool {
	return func(m *bridge.Message) bool { return m.Point == point && m.Quality == q }
}

// good is ua.StatusOK, for Set.
var good = ua.StatusOK

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
