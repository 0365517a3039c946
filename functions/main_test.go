package functions

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tetratelabs/wazero"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"
)

var (
	// testCache shares compiled modules among the tests of one run: compiling a
	// Go module takes seconds under the race detector.
	testCache wazero.CompilationCache
	// moduleDir holds the modules the tests build, once per run.
	moduleDir string
)

func TestMain(m *testing.M) {
	testCache = wazero.NewCompilationCache()
	dir, err := os.MkdirTemp("", "edgegate-functions-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moduleDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		defer testCache.Close(context.Background())
		// goleak runs inside so that the cleanups above run whatever it finds.
		code := m.Run()
		if code == 0 {
			// paho's client keeps a few goroutines a moment after Disconnect returns.
			if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch")); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

var buildMu sync.Mutex

// buildModule builds a Go package as a WASI reactor into the run's module
// directory, once: dir is where `go build` runs (a module root), pkg the package.
func buildModule(t testing.TB, dir, pkg, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	out := filepath.Join(moduleDir, name)
	if _, err := os.Stat(out); err == nil {
		return out
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build %s with: %v", pkg, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	return out
}

func testModule(t testing.TB) string {
	return buildModule(t, ".", "./testdata/testmod", "testmod.wasm")
}

func exampleModule(t testing.TB) string {
	return buildModule(t, "../examples", "./functions/anomaly", "anomaly.wasm")
}

// parseConfigs decodes a `functions:` list as the config package does: strictly.
func parseConfigs(t testing.TB, src string) []Config {
	t.Helper()
	var cfgs []Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfgs); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfgs
}

func compile(t testing.TB, src string) *Set {
	t.Helper()
	s, errs := Compile(parseConfigs(t, src), CompileOptions{Cache: testCache})
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	return s
}

// syncBuffer is a log destination for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a pipeline in front of a real hub, running until the test ends.
type env struct {
	t    testing.TB
	hub  *bridge.Hub
	reg  *prometheus.Registry
	p    *Pipeline
	sink protocols.Sink
	log  *syncBuffer
	w    *writes
}

// writes records what functions asked to write.
type writes struct {
	mu  sync.Mutex
	got []string
	ch  chan struct{}
}

func (w *writes) Write(_ context.Context, device, point string, v bridge.Value) error {
	w.mu.Lock()
	w.got = append(w.got, fmt.Sprintf("%s/%s=%#v", device, point, v))
	w.mu.Unlock()
	select {
	case w.ch <- struct{}{}:
	default:
	}
	return nil
}

func newEnv(t testing.TB, s *Set) *env {
	t.Helper()
	e := &env{t: t, reg: prometheus.NewRegistry(), log: &syncBuffer{}, w: &writes{ch: make(chan struct{}, 1)}}
	e.hub = bridge.NewHub(bridge.HubConfig{}, nil)
	e.p = New(s, Options{
		Logger:  slog.New(slog.NewTextHandler(e.log, nil)),
		Metrics: e.reg,
		Writer:  e.w,
	})
	e.sink = e.p.Sink(e.hub.Ingest(bridge.ProtocolMQTT))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		e.hub.Close()
	})
	return e
}

func (e *env) publish(msgs ...*bridge.Message) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.sink.Publish(ctx, msgs...); err != nil {
		e.t.Fatalf("Publish: %v", err)
	}
}

// published returns every message the hub holds, in sequence order.
func (e *env) published() []*bridge.Message {
	e.t.Helper()
	return hubMessages(e.t, e.hub)
}

func hubMessages(t testing.TB, hub *bridge.Hub) []*bridge.Message {
	t.Helper()
	last := hub.LastSequence()
	first := hub.Config().FirstSequence
	if last < first {
		return nil
	}
	sub, err := hub.Subscribe(bridge.SubscribeOptions{Start: bridge.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*bridge.Message
	for len(out) == 0 || out[len(out)-1].Sequence < last {
		got, err := sub.Next(ctx, nil)
		if err != nil {
			t.Fatalf("reading the hub: %v", err)
		}
		out = append(out, got...)
	}
	return out
}

func (e *env) metric(name, function string, more ...string) float64 {
	e.t.Helper()
	var c prometheus.Metric
	switch name {
	case "evaluations":
		c = e.p.m.evaluations.WithLabelValues(function)
	case "drops":
		c = e.p.m.drops.WithLabelValues(function)
	case "emits":
		c = e.p.m.emits.WithLabelValues(function)
	case "dead_letters":
		c = e.p.m.deadLetters.WithLabelValues(function)
	case "failures":
		c = e.p.m.failures.WithLabelValues(function, more[0])
	case "writes":
		c = e.p.m.writes.WithLabelValues(function, more[0])
	default:
		e.t.Fatalf("no metric %s", name)
	}
	return value(c)
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func reading(device, point string, v bridge.Value) *bridge.Message {
	return &bridge.Message{Device: device, Point: point, Value: v, Labels: map[string]string{"line": "a"}}
}

// describe writes messages for failures: device/point=value.
func describe(msgs []*bridge.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%s/%s=%#v ", m.Device, m.Point, m.Value)
	}
	return b.String()
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testutilFailures(p *Pipeline, function, reason string) float64 {
	return value(p.m.failures.WithLabelValues(function, reason))
}
