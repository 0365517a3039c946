package gateway_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/protocols"
)

// drainer is a protocol for these tests only: its adapter counts the instances that
// run at once and, when built with a hold channel, ignores its context until the
// channel is closed, as an adapter stuck in a blocking call would.
func init() {
	protocols.Register(func() protocols.Config { return &drainerConfig{} })
}

var drainer struct {
	mu   sync.Mutex
	hold chan struct{} // given to the adapters built from now on

	running, maxRunning, runs atomic.Int32
}

// drainerReset starts a test: counts at zero, adapters built from now on held by hold.
func drainerReset(hold chan struct{}) {
	drainer.mu.Lock()
	defer drainer.mu.Unlock()
	drainer.hold = hold
	drainer.running.Store(0)
	drainer.maxRunning.Store(0)
	drainer.runs.Store(0)
}

func drainerHold(hold chan struct{}) {
	drainer.mu.Lock()
	defer drainer.mu.Unlock()
	drainer.hold = hold
}

type drainerConfig struct {
	Tag string `yaml:"tag"`
}

func (*drainerConfig) Name() string              { return "drainer" }
func (*drainerConfig) Protocol() bridge.Protocol { return bridge.ProtocolUnspecified }
func (*drainerConfig) Validate() []error         { return nil }
func (*drainerConfig) New(protocols.Env) (protocols.Adapter, error) {
	drainer.mu.Lock()
	defer drainer.mu.Unlock()
	return &drainerAdapter{hold: drainer.hold}, nil
}

type drainerAdapter struct{ hold chan struct{} }

func (a *drainerAdapter) Run(ctx context.Context, _ protocols.Sink) error {
	drainer.runs.Add(1)
	n := drainer.running.Add(1)
	defer drainer.running.Add(-1)
	for m := drainer.maxRunning.Load(); n > m && !drainer.maxRunning.CompareAndSwap(m, n); m = drainer.maxRunning.Load() {
	}
	<-ctx.Done()
	if a.hold != nil {
		<-a.hold
	}
	return nil
}

const drainerBase = `gateway: {id: drain, shutdown_timeout: 500ms}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
`

func drainerYAML(tag string) string { return drainerBase + "drainer: {tag: " + tag + "}\n" }

// lockedBuffer collects a gateway's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDrainer runs a gateway whose drainer adapter does not stop until the
// returned release is called (the test's cleanup calls it too, before the gateway
// stops), logging to logs.
func startDrainer(t *testing.T, logs *lockedBuffer) (*gatewaytest.Running, func()) {
	t.Helper()
	hold := make(chan struct{})
	drainerReset(hold)
	var once sync.Once
	release := func() {
		once.Do(func() {
			drainerHold(nil)
			close(hold)
		})
	}
	r := gatewaytest.StartLogged(t, gatewaytest.Parse(t, drainerYAML("a")), slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(release) // cleanups run last first: before the gateway stops
	testwait.For(t, 10*time.Second, "the drainer adapter running", func() bool { return drainer.running.Load() == 1 })
	return r, release
}

// A changed section restarts an adapter; one that does not stop within
// shutdown_timeout is not replaced while it runs: the reload fails, and the
// replacement starts only at a reload after the old one has stopped.
func TestReloadDoesNotReplaceAnAdapterThatHasNotStopped(t *testing.T) {
	var logs lockedBuffer
	r, release := startDrainer(t, &logs)
	g := r.Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	res, err := g.Reload(ctx, gatewaytest.Parse(t, drainerYAML("b")))
	if !errors.Is(err, gateway.ErrAdapterNotStopped) || !strings.Contains(err.Error(), "drainer: ") {
		if err == nil { // say whether the replacement ran alongside
			testwait.For(t, 10*time.Second, "the replacement running", func() bool { return drainer.runs.Load() == 2 })
		}
		t.Fatalf("reload = %v, %v; want it failed with ErrAdapterNotStopped naming drainer; at most %d drainer adapters ran at once", res, err, drainer.maxRunning.Load())
	}
	if n, most, runs := drainer.running.Load(), drainer.maxRunning.Load(), drainer.runs.Load(); n != 1 || most != 1 || runs != 1 {
		t.Fatalf("after the failed reload: %d running, at most %d at once, %d started; want the old one alone", n, most, runs)
	}
	if g.Adapter("drainer") != nil {
		t.Error("the adapter told to stop is still drainer's adapter")
	}
	if l := logs.String(); !strings.Contains(l, `level=ERROR msg="adapter did not stop within the shutdown timeout;`) || !strings.Contains(l, "protocol=drainer") {
		t.Errorf("no error logged naming drainer:\n%s", l)
	}
	if n := reloads(t, g, "failed"); n != 1 {
		t.Errorf(`edgegate_config_reloads_total{result="failed"} = %v, want 1`, n)
	}
	if n := metricAt(t, g.HTTPAddr().String(), "edgegate_config_restart_needed"); n != 1 {
		t.Errorf("edgegate_config_restart_needed = %v, want 1", n)
	}

	// While it still runs, a reload that would start drainer waits for it as long
	// and fails again, starting nothing.
	if res, err := g.Reload(ctx, gatewaytest.Parse(t, drainerYAML("b"))); !errors.Is(err, gateway.ErrAdapterNotStopped) {
		t.Fatalf("reload while the old adapter runs = %v, %v; want ErrAdapterNotStopped", res, err)
	}
	if most, runs := drainer.maxRunning.Load(), drainer.runs.Load(); most != 1 || runs != 1 {
		t.Fatalf("after the second failed reload: at most %d at once, %d started; want the old one alone", most, runs)
	}

	// Once it has stopped, a reload starts drainer again.
	release()
	testwait.For(t, 10*time.Second, "the old adapter stopped", func() bool { return drainer.running.Load() == 0 })
	testwait.For(t, 10*time.Second, "its end logged", func() bool {
		return strings.Contains(logs.String(), `msg="adapter stopped at last, after a reload gave up waiting for it; a reload can start its protocol again" protocol=drainer`)
	})
	res, err = g.Reload(ctx, gatewaytest.Parse(t, drainerYAML("b")))
	if err != nil || strings.Join(res.Started, ",") != "drainer" {
		t.Fatalf("reload after the old adapter stopped = %v, %v; want drainer started", res, err)
	}
	testwait.For(t, 10*time.Second, "the new adapter running", func() bool { return drainer.running.Load() == 1 })
	if n := metricAt(t, g.HTTPAddr().String(), "edgegate_config_restart_needed"); n != 0 {
		t.Errorf("edgegate_config_restart_needed = %v after a reload that applied everything, want 0", n)
	}
	// One that stops in time is restarted as before.
	res, err = g.Reload(ctx, gatewaytest.Parse(t, drainerYAML("c")))
	if err != nil || strings.Join(res.Restarted, ",") != "drainer" {
		t.Fatalf("reload = %v, %v; want drainer restarted", res, err)
	}
	testwait.For(t, 10*time.Second, "the restarted adapter running", func() bool { return drainer.running.Load() == 1 })
	if most, runs := drainer.maxRunning.Load(), drainer.runs.Load(); most != 1 || runs != 3 {
		t.Fatalf("at most %d adapters ran at once and %d started; want 1 and 3", most, runs)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := drainer.running.Load(); n != 0 {
		t.Fatalf("%d drainer adapters still run after the gateway stopped", n)
	}
}

// A protocol removed whose adapter does not stop in time is removed all the same,
// but its adapter stays owned: adding the protocol back fails while it runs, and
// the gateway's stop waits for it.
func TestReloadKeepsAnAdapterThatHasNotStoppedOwned(t *testing.T) {
	var logs lockedBuffer
	r, release := startDrainer(t, &logs)
	g := r.Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	res, err := g.Reload(ctx, gatewaytest.Parse(t, drainerBase))
	if err != nil || strings.Join(res.Stopped, ",") != "drainer" {
		t.Fatalf("reload = %v, %v; want drainer stopped", res, err)
	}
	if n := drainer.running.Load(); n != 1 {
		t.Fatalf("%d running; want the old adapter, which ignores its context, still running", n)
	}
	res, err = g.Reload(ctx, gatewaytest.Parse(t, drainerYAML("a")))
	if !errors.Is(err, gateway.ErrAdapterNotStopped) {
		t.Fatalf("adding drainer back while its old adapter runs = %v, %v; want ErrAdapterNotStopped", res, err)
	}
	if most, runs := drainer.maxRunning.Load(), drainer.runs.Load(); most != 1 || runs != 1 {
		t.Fatalf("at most %d adapters ran at once and %d started; want the old one alone", most, runs)
	}
	release()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := drainer.running.Load(); n != 0 {
		t.Fatalf("%d drainer adapters still run after the gateway stopped", n)
	}
}

// A reload that comes after the gateway began to stop starts no adapter: nothing
// would stop it.
func TestReloadStartsNoAdapterOnceStopping(t *testing.T) {
	drainerReset(nil)
	r := gatewaytest.StartYAML(t, drainerBase)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.Reload(ctx, gatewaytest.Parse(t, drainerYAML("a")))
	if err == nil || !strings.Contains(err.Error(), "drainer: the gateway is stopping") {
		t.Errorf("reload after the stop = %v, %v; want it failed", res, err)
	}
	if r.Adapter("drainer") != nil || drainer.runs.Load() != 0 {
		t.Errorf("an adapter was started after the gateway stopped (%d runs)", drainer.runs.Load())
	}
}
