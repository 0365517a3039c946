package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	_ "github.com/edgegate/edgegate/protocols/all" // the protocols the configs name
)

// The profiles section measures a fleet's config in-process (docs/profiles.md):
// loading and validating 10,000 Modbus devices made from 50 profiles (the peer
// column: the same devices written out, from `check --expand`), and a reload of
// a running gateway that changes the one profile 2,000 of them use: the time to
// parse the new file and apply the difference, and how many connections the
// difference restarted (each device has its own, so exactly 2,000; the other
// 8,000 go on untouched). The goals are a second each.
//
// Each device has its own loopback address with nothing listening (127.1.x.y,
// port 1): the gateway's connection attempts fail at once and back off, so the
// run needs no devices and opens no sockets that stay.

const (
	profilesDevices    = 10000
	profilesCount      = 50
	profilesChanged    = 2000 // devices of profile p0; the rest share the other 49
	profilesPoints     = 10
	profilesGoal       = time.Second
	profilesGoalColumn = "goal"
)

func (e *env) profilesSection(ctx context.Context) {
	text := fleetConfig("x0")
	// Load and validate, with profiles and written out.
	load, err := timeParse(text)
	if err != nil {
		e.fail("profiles: load", err)
		return
	}
	expanded, err := config.Expand([]byte(text))
	if err != nil {
		e.fail("profiles: expand", err)
		return
	}
	plain, err := timeParse(string(expanded))
	if err != nil {
		e.fail("profiles: load written out", err)
		return
	}
	e.logf("profiles: load and validate %d devices from %d profiles: %v (written out: %v)", profilesDevices, profilesCount, load, plain)
	e.rows = append(e.rows, durationRow(fmt.Sprintf("profiles: load and validate %d devices from %d profiles, ms", profilesDevices, profilesCount), load, plain, "written out"))

	// A running gateway, and a reload that changes profile p0.
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		e.fail("profiles: reload", err)
		return
	}
	rec := &reconfigureLog{}
	g, err := gateway.New(cfg, slog.New(rec))
	if err != nil {
		e.fail("profiles: reload", err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			e.logf("profiles: the gateway: %v", err)
		}
	}()
	select {
	case <-g.Ready():
	case <-ctx.Done():
		return
	case <-time.After(time.Minute):
		e.fail("profiles: reload", fmt.Errorf("the gateway was not ready within a minute"))
		return
	}
	start := time.Now()
	next, err := config.Parse([]byte(fleetConfig("x1")))
	if err != nil {
		e.fail("profiles: reload", err)
		return
	}
	parsed := time.Since(start)
	res, err := g.Reload(ctx, next)
	took := time.Since(start)
	applied := took - parsed
	if err != nil {
		e.fail("profiles: reload", err)
		return
	}
	restarted, devices := rec.result()
	e.logf("profiles: reload changing the profile of %d of %d devices: %v: parse %v, apply %v (%s; %d connections restarted of %d devices)", profilesChanged, profilesDevices, took, parsed, applied, res, restarted, devices)
	if restarted != profilesChanged {
		e.fail("profiles: reload", fmt.Errorf("%d connections restarted, want %d", restarted, profilesChanged))
	}
	e.rows = append(e.rows,
		durationRow(fmt.Sprintf("profiles: reload changing 1 profile (%d of %d devices, %d reconnected), parse and apply, ms", profilesChanged, profilesDevices, restarted), took, profilesGoal, profilesGoalColumn),
		durationRow("profiles: the same reload, apply the difference alone, ms", applied, profilesGoal, profilesGoalColumn))
}

func timeParse(text string) (time.Duration, error) {
	start := time.Now()
	c, err := config.Parse([]byte(text))
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	c.FunctionSet.Close()
	return took, nil
}

func durationRow(name string, eg, peer time.Duration, peerName string) row {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	return row{name: name, eg: ms(eg), peer: ms(peer), peerName: peerName, ratio: fmt.Sprintf("%.2f", float64(eg)/float64(peer))}
}

// fleetConfig is 10,000 Modbus devices from 50 profiles; model is profile p0's
// label, the change a reload makes.
func fleetConfig(model string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway: {id: fleet, max_devices: %d}\ngrpc: {listen: 127.0.0.1:0}\nhttp: {listen: \"off\"}\nprofiles:\n", 2*profilesDevices)
	for p := 0; p < profilesCount; p++ {
		m := fmt.Sprintf("m%d", p)
		if p == 0 {
			m = model
		}
		fmt.Fprintf(&b, "  - name: p%d\n    protocol: modbus\n    unit_id: 1\n    poll_interval: 1s\n    labels: {model: %s}\n    points:\n", p, m)
		for i := 0; i < profilesPoints; i++ {
			fmt.Fprintf(&b, "      - {name: v%d, register: holding, address: %d, type: float32, unit: \"°C\"}\n", i, 2*i)
		}
	}
	b.WriteString("devices:\n")
	for i := 0; i < profilesDevices; i++ {
		p := 0
		if i >= profilesChanged {
			p = 1 + i%(profilesCount-1)
		}
		fmt.Fprintf(&b, "  - {id: d%d, profile: p%d, address: \"tcp://127.1.%d.%d:1\", labels: {shop: s%d}}\n", i, p, i/250, i%250+1, i)
	}
	return b.String()
}

// reconfigureLog is the gateway's log, discarded but for the Modbus adapter's
// account of a reconfiguration: how many connections it restarted.
type reconfigureLog struct {
	mu                 sync.Mutex
	restarted, devices int
}

func (r *reconfigureLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *reconfigureLog) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *reconfigureLog) WithGroup(string) slog.Handler            { return r }

func (r *reconfigureLog) Handle(_ context.Context, rec slog.Record) error {
	if !strings.Contains(rec.Message, "reconfigured in place") {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "restarted_connections":
			r.restarted = int(a.Value.Int64())
		case "devices":
			r.devices = int(a.Value.Int64())
		}
		return true
	})
	return nil
}

func (r *reconfigureLog) result() (restarted, devices int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restarted, r.devices
}
