package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/protocols"
	_ "github.com/edgegate/edgegate/protocols/all"
	"go.uber.org/goleak"
)

// childEnv names the config file when the test binary runs as a gateway child.
const childEnv = "EDGEGATE_CLIENT_TEST_CHILD_CONFIG"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg)) // this binary is a test's gateway process
	}
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

type childAddrs struct {
	GRPC string `json:"grpc"`
	MQTT string `json:"mqtt"`
}

// runChild is a gateway in its own process: it prints its addresses as one JSON
// line once ready and runs until SIGTERM, or SIGKILL, which is the point.
func runChild(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-g.Ready():
		case <-ctx.Done():
			return
		}
		b, _ := json.Marshal(childAddrs{GRPC: g.GRPCAddr().String(), MQTT: g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()})
		os.Stdout.Write(append(b, '\n'))
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild starts a gateway process and waits for its addresses.
func startChild(t *testing.T, cfgPath string) (*exec.Cmd, childAddrs) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("child gateway did not report ready: %v", err)
	}
	var a childAddrs
	if err := json.Unmarshal(line, &a); err != nil {
		t.Fatal(err)
	}
	return cmd, a
}
