package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/protocols"
	"github.com/prometheus/client_golang/prometheus"
)

// ReloadResult says what a reload did, protocol by protocol.
type ReloadResult struct {
	Started, Stopped, Restarted, Reconfigured []string
	// NeedsRestart lists sections that changed but only take effect at the next
	// start (listeners of the gateway itself, the durable log).
	NeedsRestart []string
}

func (r ReloadResult) String() string {
	var parts []string
	add := func(what string, l []string) {
		if len(l) > 0 {
			parts = append(parts, what+" "+strings.Join(l, ","))
		}
	}
	add("started", r.Started)
	add("stopped", r.Stopped)
	add("restarted", r.Restarted)
	add("reconfigured", r.Reconfigured)
	add("needs a restart:", r.NeedsRestart)
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

type reloadMetrics struct {
	reloads      *prometheus.CounterVec
	lastSuccess  prometheus.Gauge
	needsRestart prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_config_reloads_total", Help: "Config reloads, by result: ok, invalid (the file), refused (the running gateway cannot take it whole), failed (applying failed and was undone, or an adapter did not stop in time to be replaced).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_config_last_reload_success_timestamp_seconds", Help: "When a config was last applied.",
		}),
		needsRestart: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_config_restart_needed", Help: "1 when the config file has changes that only a restart applies, or a reload failed because an adapter did not stop in time (its protocol is down until a later reload or a restart).",
		}),
	}
	reg.MustRegister(m.reloads, m.lastSuccess, m.needsRestart)
	return m
}

// ErrReloadRefused says a reload was refused before anything changed: the running
// gateway could not take the config whole.
var ErrReloadRefused = errors.New("reload refused")

// ErrAdapterNotStopped says a reload failed because a protocol's adapter, told to
// stop so that its replacement could start, had not stopped within the shutdown
// timeout. It still runs, cancelled and owned (shutdown waits for it), and nothing
// replaces it until it has stopped: that protocol runs no adapter until then, and a
// later reload starts it, or a restart does.
var ErrAdapterNotStopped = errors.New("the adapter did not stop in time")

// Reload applies a new, validated config as a difference: protocols added start,
// protocols removed stop, a protocol whose section or devices changed is
// reconfigured in place when its adapter can (protocols.Reconfigurer) and restarted
// alone otherwise; edge functions and reporting rules are swapped in place.
// Everything else (other adapters, their devices and clients, every subscriber
// stream) is untouched. It is safe to call while Run runs, from one goroutine at a
// time.
//
// A reload is all or nothing. One the running gateway cannot take whole (its device
// registry's bounds, a device id that belongs to another protocol) is refused
// before anything changes (ErrReloadRefused); one that fails while applying is
// undone, protocol by protocol. Either way the running config stays, and the
// result is empty. Only when undoing fails too is the gateway left in between,
// which the error says.
//
// An adapter that must stop for its replacement to start and does not stop within
// gateway.shutdown_timeout fails the reload (ErrAdapterNotStopped), and the other
// protocols are undone; it is not replaced while it runs, so that two adapters of a
// protocol never run together. Its protocol runs no adapter until it stops, then a
// later reload starts one.
func (g *Gateway) Reload(ctx context.Context, next *config.Config) (ReloadResult, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	var res ReloadResult
	if g.adapters.ctx == nil {
		return res, errors.New("reload before Run")
	}
	cur := g.config()
	// The pipeline owns next's functions only once Swap took them.
	discard := func() {
		if next.FunctionSet != cur.FunctionSet {
			next.FunctionSet.Close()
		}
	}
	if err := g.fits(next); err != nil {
		discard()
		g.reloadMetrics.reloads.WithLabelValues("refused").Inc()
		return ReloadResult{}, fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	for name, same := range map[string]bool{
		"gateway":    reflect.DeepEqual(cur.Gateway, next.Gateway),
		"grpc":       reflect.DeepEqual(cur.GRPC, next.GRPC),
		"http":       reflect.DeepEqual(cur.HTTP, next.HTTP),
		"journal":    reflect.DeepEqual(cur.Journal, next.Journal),
		"uplink":     reflect.DeepEqual(cur.Uplink, next.Uplink),
		"northbound": reflect.DeepEqual(cur.Northbound, next.Northbound),
		"tunnels":    reflect.DeepEqual(cur.Tunnels, next.Tunnels),
	} {
		if !same {
			res.NeedsRestart = append(res.NeedsRestart, name)
		}
	}
	sort.Strings(res.NeedsRestart)

	names := map[string]bool{}
	for n := range cur.Protocols {
		names[n] = true
	}
	for n := range next.Protocols {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var touched []string // protocols this reload changed (or began to), to undo
	fail := func(err error) (ReloadResult, error) {
		suffix := "(undone: the running config stays)"
		if errors.Is(err, ErrAdapterNotStopped) {
			// The config in force stays, but its protocol is down until a reload
			// or a restart: only that applies it.
			g.reloadMetrics.needsRestart.Set(1)
			suffix = "(the other protocols undone)"
		}
		var undo []error
		for i := len(touched) - 1; i >= 0; i-- {
			if _, err := g.applyProtocol(ctx, touched[i], next, cur); err != nil {
				undo = append(undo, err)
			}
		}
		discard()
		g.reloadMetrics.reloads.WithLabelValues("failed").Inc()
		if len(undo) > 0 {
			return ReloadResult{}, fmt.Errorf("%w; undoing it failed too, the gateway runs part of each config: %w", err, errors.Join(undo...))
		}
		return ReloadResult{}, fmt.Errorf("%w %s", err, suffix)
	}
	for _, n := range sorted {
		did, err := g.applyProtocol(ctx, n, cur, next)
		// A protocol whose old adapter did not stop has nothing to undo: it cannot
		// be restarted while that one runs.
		if did != nil || (err != nil && !errors.Is(err, ErrAdapterNotStopped)) {
			touched = append(touched, n)
		}
		if err != nil {
			return fail(err)
		}
		if did != nil {
			list := did(&res)
			*list = append(*list, n)
		}
	}
	// Reporting rules swap at once: what the old ones held is published, and every
	// point starts afresh.
	if !reflect.DeepEqual(cur.Reporting, next.Reporting) {
		if err := g.hub.SetReporting(next.ReportRules()); err != nil {
			return fail(fmt.Errorf("reporting: %w", err))
		}
		res.Reconfigured = append(res.Reconfigured, "reporting")
	}
	// Edge functions swap atomically, last: Swap takes next's set and cannot be
	// undone. Those that did not change keep their state.
	if next.FunctionSet != cur.FunctionSet {
		changed := !reflect.DeepEqual(cur.Functions, next.Functions)
		if err := g.functions.Swap(next.FunctionSet); err != nil {
			// Only a closed pipeline refuses: the gateway is stopping.
			g.reloadMetrics.reloads.WithLabelValues("failed").Inc()
			return ReloadResult{}, fmt.Errorf("functions: %w", err)
		}
		if changed {
			res.Reconfigured = append(res.Reconfigured, "functions")
		}
	}
	g.setConfig(next)
	g.reloadMetrics.needsRestart.Set(boolGauge(len(res.NeedsRestart) > 0))
	g.reloadMetrics.reloads.WithLabelValues("ok").Inc()
	g.reloadMetrics.lastSuccess.SetToCurrentTime()
	return res, nil
}

// outcome picks the list of a ReloadResult that an action belongs to.
type outcome func(*ReloadResult) *[]string

var (
	started      outcome = func(r *ReloadResult) *[]string { return &r.Started }
	stopped      outcome = func(r *ReloadResult) *[]string { return &r.Stopped }
	restarted    outcome = func(r *ReloadResult) *[]string { return &r.Restarted }
	reconfigured outcome = func(r *ReloadResult) *[]string { return &r.Reconfigured }
)

// applyProtocol takes protocol n from what config from gives it to what to gives
// it, and says what it did (nil: nothing to do). Undoing is the same call with the
// configs swapped: it looks at the adapter that runs, not at from alone.
func (g *Gateway) applyProtocol(ctx context.Context, n string, from, to *config.Config) (outcome, error) {
	timeout := from.Gateway.ShutdownTimeout
	old := g.adapters.get(n)
	pc, wanted := to.Protocols[n]
	switch {
	case old == nil && wanted:
		// One that an earlier reload stopped may still be running: it is waited
		// for as long as a stop is.
		if !g.adapters.drained(n, timeout) {
			g.log.Error("protocol not started: its previous adapter, which a reload stopped, still runs", "protocol", n, "timeout", timeout)
			return nil, fmt.Errorf("%s: %w: the one a reload stopped before still runs after another %s; %s starts at a reload once it has stopped, or at a restart", n, ErrAdapterNotStopped, timeout, n)
		}
		a, err := g.build(n, pc)
		if err != nil {
			return nil, err
		}
		if err := g.launch(a); err != nil {
			return nil, err
		}
		return started, nil
	case old != nil && !wanted:
		// One that does not stop in time is not replaced: it stays owned,
		// draining, and the removal stands.
		g.stopAdapter(old, timeout)
		return stopped, nil
	case old != nil && from.ProtocolSource(n) != to.ProtocolSource(n):
		if rc, ok := old.impl.(protocols.Reconfigurer); ok {
			err := rc.Reconfigure(ctx, pc)
			if err == nil {
				old.cfg = pc
				return reconfigured, nil
			}
			if !errors.Is(err, protocols.ErrRestartRequired) {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		}
		// The old one stops first: the new one binds the same ports and
		// registers the same metrics. One that does not stop in time is not
		// replaced.
		if err := g.stopAdapter(old, timeout); err != nil {
			return nil, err
		}
		a, err := g.build(n, pc)
		if err != nil {
			return nil, fmt.Errorf("%s stopped and could not start again: %w", n, err)
		}
		if err := g.launch(a); err != nil {
			return nil, fmt.Errorf("%s stopped and could not start again: %w", n, err)
		}
		return restarted, nil
	}
	return nil, nil
}

// launch adds a built adapter to the set and starts it; it fails only when the
// gateway is stopping.
func (g *Gateway) launch(a *adapter) error {
	g.adapters.add(a)
	if err := g.adapters.start(a); err != nil {
		g.adapters.retire(a) // never started: just taken out
		a.metrics.unregisterAll()
		return fmt.Errorf("%s: %w", a.name, err)
	}
	return nil
}

// stopAdapter stops an adapter, waiting up to timeout, and takes it out. One that
// has not stopped by then is logged and stays owned, draining, until it does
// (shutdown waits for it); the error, ErrAdapterNotStopped, says that its
// successor must not start.
func (g *Gateway) stopAdapter(a *adapter, timeout time.Duration) error {
	g.adapters.stop(a, timeout)
	draining := g.adapters.retire(a)
	g.route(a.protocol, nil)
	a.metrics.unregisterAll()
	if draining {
		g.log.Error("adapter did not stop within the shutdown timeout; it stays owned until it stops, and nothing replaces it before", "protocol", a.name, "timeout", timeout)
		return fmt.Errorf("%s: %w: it still runs %s after it was told to stop, and was not replaced; %s runs no adapter until it stops and a later reload starts one, or a restart", a.name, ErrAdapterNotStopped, timeout, a.name)
	}
	return nil
}

// fits refuses a config that the running hub's device registry could not take
// whole, so that a reload never stops half way with the registry full. The
// registry keeps every device it has seen, with its protocol (devices removed from
// the config too, until a restart), and its bounds are those the gateway started
// with: a change of gateway.max_devices needs a restart.
func (g *Gateway) fits(next *config.Config) error {
	hc := g.hub.Config()
	known := map[string]bridge.DeviceInfo{}
	for _, d := range g.hub.Devices(nil) {
		known[d.ID] = d
	}
	var errs []error
	added := 0
	for _, d := range next.Devices() {
		k, ok := known[d.ID]
		if !ok {
			added++
		}
		if pc := next.Protocols[d.Protocol]; ok && pc != nil && k.Protocol != pc.Protocol() {
			errs = append(errs, fmt.Errorf("device %q: protocol: the running gateway has it as a %s device; an id changes protocol only with a restart", d.ID, k.Protocol))
		}
		have := make(map[string]bool, len(k.Points)+len(d.Points))
		for _, p := range k.Points {
			have[p] = true
		}
		for _, p := range d.Points {
			have[p] = true
		}
		if len(have) > hc.MaxPointsPerDevice {
			errs = append(errs, fmt.Errorf("device %q: points: %d with those the running gateway knows, more than gateway.max_points_per_device (%d)", d.ID, len(have), hc.MaxPointsPerDevice))
		}
	}
	if len(known)+added > hc.MaxDevices {
		errs = append(errs, fmt.Errorf("gateway: max_devices: the running gateway knows %d devices (removed ones stay until a restart) and the config adds %d, more than the limit of %d", len(known), added, hc.MaxDevices))
	}
	return errors.Join(errs...)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// RequestReload asks Run's config watcher to reload now (SIGHUP does this).
func (g *Gateway) RequestReload() {
	select {
	case g.hup <- struct{}{}:
	default:
	}
}

// fileStamp identifies a file's contents cheaply: Kubernetes updates a ConfigMap
// volume by swapping a symlink, so the resolved path is part of it.
type fileStamp struct {
	target  string
	size    int64
	modTime time.Time
}

func stamp(path string) (fileStamp, error) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fileStamp{}, err
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{target: target, size: fi.Size(), modTime: fi.ModTime()}, nil
}

// watchConfig reloads the config file when it changes or on RequestReload, until
// ctx ends. An invalid file is logged with every problem and counted; the running
// config stays.
func (g *Gateway) watchConfig(ctx context.Context, path string, every time.Duration) {
	last, _ := stamp(path)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now, err := stamp(path)
			if err != nil || now == last {
				continue
			}
			last = now
		case <-g.hup:
			last, _ = stamp(path)
		}
		next, err := config.Load(path)
		if err != nil {
			g.reloadMetrics.reloads.WithLabelValues("invalid").Inc()
			g.log.Error("config reload refused; the running config stays", "file", path, "problems", err.Error())
			continue
		}
		res, err := g.Reload(ctx, next)
		if err != nil {
			// The error says whether the running config stays (refused, or
			// undone) or, undoing having failed, which parts do not.
			g.log.Error("config reload not applied", "file", path, "err", err)
			continue
		}
		g.log.Info("config reloaded", "file", path, "result", res.String())
		if len(res.NeedsRestart) > 0 {
			g.log.Warn("config changes that take effect only after a restart", "sections", res.NeedsRestart)
		}
	}
}
