package client_test

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/gatewaychild"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	_ "github.com/edgegate/edgegate/protocols/all"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gatewaychild.RunIfChild() // this binary may be a test's gateway process
	goleak.VerifyTestMain(m,
		// paho's client keeps a goroutine a moment after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch"),
	)
}

// inproc is a gateway running in the test's process.
type inproc struct {
	g    *gateway.Gateway
	stop func()
}

// startGateway runs a gateway from a YAML config until the test ends or stop.
func startGateway(t testing.TB, yaml string) *inproc {
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
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("gateway did not stop")
		}
	}
	t.Cleanup(stop)
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway stopped before ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("gateway not ready")
	}
	return &inproc{g: g, stop: stop}
}

// startChild runs a gateway in its own process, to be killed and started again.
func startChild(t *testing.T, cfgPath string) (*exec.Cmd, gatewaychild.Addrs) {
	c := gatewaychild.Start(t, cfgPath)
	return c.Cmd, c.Addrs
}
