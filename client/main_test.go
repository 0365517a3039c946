package client_test

import (
	"os/exec"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/gatewaychild"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
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
	r := gatewaytest.Start(t, cfg)
	stop := func() {
		if err := r.Stop(); err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	}
	return &inproc{g: r.Gateway, stop: stop}
}

// startChild runs a gateway in its own process, to be killed and started again.
func startChild(t *testing.T, cfgPath string) (*exec.Cmd, gatewaychild.Addrs) {
	c := gatewaychild.Start(t, cfgPath)
	return c.Cmd, c.Addrs
}
