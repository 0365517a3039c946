// Package gatewaytest runs a whole gateway inside a test: built from a config,
// Run in a goroutine, ready before the test goes on, and stopped when the test
// ends with Run's error reported. Tests that must kill a gateway process use
// internal/gatewaychild instead.
package gatewaytest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
)

// Deadlines for a gateway to be ready and to stop: generous, for a loaded CI
// machine under the race detector; a healthy gateway takes milliseconds.
const (
	ReadyTimeout = 15 * time.Second
	StopTimeout  = 20 * time.Second
)

// Running is a gateway run for a test.
type Running struct {
	*gateway.Gateway
	once sync.Once
	stop func() error
	err  error
}

// Parse reads a YAML config or fails the test.
func Parse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// StartYAML is Start(t, Parse(t, yaml)).
func StartYAML(t testing.TB, yaml string) *Running {
	t.Helper()
	return Start(t, Parse(t, yaml))
}

// Start runs a gateway on cfg, logging nowhere, until the test ends or Stop, and
// returns once it is ready.
func Start(t testing.TB, cfg *config.Config) *Running {
	t.Helper()
	return StartLogged(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// StartLogged is Start with the gateway's logs going to log.
func StartLogged(t testing.TB, cfg *config.Config, log *slog.Logger) *Running {
	t.Helper()
	g, err := gateway.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	r := &Running{Gateway: g}
	r.stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(StopTimeout):
			return errors.New("the gateway did not stop within " + StopTimeout.String())
		}
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})
	select {
	case <-g.Ready():
	case err := <-done:
		r.once.Do(func() { r.err = err })
		t.Fatalf("the gateway stopped before it was ready: %v", err)
	case <-time.After(ReadyTimeout):
		t.Fatalf("the gateway was not ready within %v", ReadyTimeout)
	}
	return r
}

// Stop ends the gateway's Run and returns its error; later calls return the
// same. The test's cleanup calls it too.
func (r *Running) Stop() error {
	r.once.Do(func() { r.err = r.stop() })
	return r.err
}
