package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/functions"
	"github.com/tetratelabs/wazero"
	"gopkg.in/yaml.v3"
)

// The functions section measures edge functions in-process: messages per second
// per core through a CEL filter, a CEL derive and the example WebAssembly module
// (examples/functions/anomaly), at batch sizes 1 and 100, each into a real hub
// (in memory, no subscriber), against the same hub with no function (the peer
// column): the ratio is what the function costs next to the gateway's own
// ingest. One goroutine publishes; "per core" is per CPU-second of the whole
// process (getrusage: garbage collection included). The goal is 20,000 a second
// per core.

// functionsModule is where `make functions-example` puts the example module.
const functionsModule = "bin/anomaly.wasm"

func (e *env) functionsSection(ctx context.Context) {
	module, err := e.exampleModule(ctx)
	if err != nil {
		e.fail("functions", fmt.Errorf("the example module: %w", err))
		module = ""
	}
	cache := wazero.NewCompilationCache()
	defer cache.Close(context.Background())
	cases := []struct {
		name, config string
		wasm         bool
	}{
		{"CEL filter", `[{name: f, match: {points: [oil_temp]}, filter: {cel: "value > 0.5"}}]`, false},
		{"CEL derive", `[{name: f, match: {points: [oil_temp]}, derive: {point: oil_temp_f, cel: "value * 9.0 / 5.0 + 32.0"}}]`, false},
		{"WebAssembly (example module)", fmt.Sprintf(`[{name: f, wasm: {module: %q, max_batch: 100}}]`, module), true},
	}
	for _, batch := range []int{1, 100} {
		base, err := e.measureFunctions(ctx, "", batch, cache)
		if err != nil {
			e.fail(fmt.Sprintf("functions: no function, batch %d", batch), err)
			continue
		}
		for _, c := range cases {
			if c.wasm && module == "" {
				continue
			}
			rate, err := e.measureFunctions(ctx, c.config, batch, cache)
			if err != nil {
				e.fail(fmt.Sprintf("functions: %s, batch %d", c.name, batch), err)
				continue
			}
			e.logf("functions: %s, batch %d: %s msg/s per core (no function: %s)", c.name, batch, fmtCount(rate), fmtCount(base))
			e.rows = append(e.rows, rateRow(fmt.Sprintf("functions: %s, batch of %d, msg/s per core", c.name, batch), rate, base, "no function"))
		}
	}
}

// exampleModule returns the example module, built into the run's directory when
// `make functions-example` has not built it.
func (e *env) exampleModule(ctx context.Context) (string, error) {
	if _, err := os.Stat(functionsModule); err == nil {
		return functionsModule, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%s is missing (make functions-example) and there is no go command to build it: %w", functionsModule, err)
	}
	out, err := filepath.Abs(filepath.Join(e.tmp, "anomaly.wasm"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./functions/anomaly")
	cmd.Dir = "examples"
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building it: %v: %s", err, firstLine(string(b)))
	}
	return out, nil
}

// measureFunctions publishes batches of readings through a pipeline of the given
// functions (a YAML list; empty: none) for the run's duration after its warm-up,
// and returns the messages handed in per CPU-second.
func (e *env) measureFunctions(ctx context.Context, list string, batch int, cache wazero.CompilationCache) (float64, error) {
	var set *functions.Set
	if list != "" {
		cfgs, err := parseFunctions(list)
		if err != nil {
			return 0, err
		}
		var errs []error
		if set, errs = functions.Compile(cfgs, functions.CompileOptions{Cache: cache}); len(errs) > 0 {
			return 0, errors.Join(errs...)
		}
	}
	p := functions.New(set, functions.Options{Logger: slog.New(slog.DiscardHandler)})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	defer func() {
		stop()
		<-done
	}()
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	defer hub.Close()
	sink := p.Sink(hub.Ingest(bridge.ProtocolMQTT))

	// Readings from 16 fryers, values spread over [0, 1) so that the filter passes
	// about half. Each is a new message, as an adapter makes: the hub keeps them.
	labels := map[string]string{"line": "a", "topic": "devices/fryer/oil_temp"}
	devices := make([]string, 16)
	for i := range devices {
		devices[i] = fmt.Sprint("fryer-", i)
	}
	msgs := make([]*bridge.Message, batch)
	run := func(d time.Duration) (n int64, cpu time.Duration, err error) {
		start, cpu0 := time.Now(), cpuTime()
		for i := 0; ; i++ {
			if i%64 == 0 {
				if ctx.Err() != nil {
					return 0, 0, ctx.Err()
				}
				if time.Since(start) >= d {
					break
				}
			}
			for j := range msgs {
				k := i*batch + j
				msgs[j] = &bridge.Message{
					Device: devices[k%16], Point: "oil_temp", Unit: "°C", Labels: labels,
					Value: bridge.Double(float64((k*7919)%1000) / 1000),
				}
			}
			if err := sink.Publish(ctx, msgs...); err != nil {
				return 0, 0, err
			}
			n += int64(batch)
		}
		return n, cpuTime() - cpu0, nil
	}
	if _, _, err := run(e.warmup); err != nil {
		return 0, err
	}
	n, cpu, err := run(e.duration)
	if err != nil {
		return 0, err
	}
	if hub.LastSequence() < hub.Config().FirstSequence {
		return 0, errors.New("nothing came through")
	}
	return float64(n) / cpu.Seconds(), nil
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parseFunctions decodes a `functions:` list strictly, as the config does.
func parseFunctions(src string) ([]functions.Config, error) {
	var cfgs []functions.Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfgs); err != nil {
		return nil, fmt.Errorf("functions: %w", err)
	}
	return cfgs, nil
}
