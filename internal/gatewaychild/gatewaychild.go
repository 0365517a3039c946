// Package gatewaychild runs a whole gateway in a child process for tests that must
// kill it with SIGKILL (crash loops, restarts). The test binary re-executes itself:
// TestMain calls RunIfChild first, and Start launches the child and waits until it
// reports its addresses. It is for tests only.
package gatewaychild

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

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/protocols"
)

// configEnv names the config file when the test binary runs as a gateway child.
const configEnv = "EDGEGATE_TEST_GATEWAY_CHILD_CONFIG"

// Addrs are the child's bound addresses; MQTT is empty without an MQTT listener.
type Addrs struct {
	GRPC string `json:"grpc"`
	MQTT string `json:"mqtt"`
}

// RunIfChild runs the gateway and exits when this process is a child started by
// Start; otherwise it returns at once. Call it first in TestMain.
func RunIfChild() {
	if path := os.Getenv(configEnv); path != "" {
		os.Exit(run(path))
	}
}

// run is the child: it prints its addresses as one JSON line once ready, and runs
// until SIGTERM (or SIGKILL, which is the point).
func run(path string) int {
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
		a := Addrs{GRPC: g.GRPCAddr().String()}
		if l, ok := g.Adapter("mqtt").(protocols.Listening); ok {
			a.MQTT = l.Addrs()[0].String()
		}
		b, _ := json.Marshal(a)
		os.Stdout.Write(append(b, '\n'))
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Child is a running gateway process.
type Child struct {
	Cmd *exec.Cmd
	Addrs
}

// Start runs a gateway child with the config file at path and waits until it is
// ready. The child is killed, by its pid, when the test ends.
func Start(t testing.TB, path string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), configEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &Child{Cmd: cmd}
	t.Cleanup(c.Kill)
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("child gateway did not report ready: %v", err)
	}
	go io.Copy(io.Discard, out)
	if err := json.Unmarshal(line, &c.Addrs); err != nil {
		t.Fatal(err)
	}
	return c
}

// Kill ends the child with SIGKILL and reaps it; it is safe to call again.
func (c *Child) Kill() {
	if c.Cmd.ProcessState == nil {
		c.Cmd.Process.Kill()
		c.Cmd.Wait()
	}
}
