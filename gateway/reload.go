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
			Name: "edgegate_config_reloads_total", Help: "Config reloads, by result (ok, invalid, failed).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_config_last_reload_success_timestamp_seconds", Help: "When a config was last applied.",
		}),
		needsRestart: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_config_restart_needed", Help: "1 when the config file has changes that only a restart applies.",
		}),
	}
	reg.MustRegister(m.reloads, m.lastSuccess, m.needsRestart)
	return m
}

// Reload applies a new, validated config as a difference: protocols added start,
// protocols removed stop, a protocol whose section or devices changed is
// reconfigured in place when its adapter can (protocols.Reconfigurer) and restarted
// alone otherwise; edge functions and reporting rules are swapped in place.
// Everything else (other adapters, their devices and clients, every subscriber
// stream) is untouched. It is safe to call while Run runs, from one goroutine at a
// time.
func (g *Gateway) Reload(ctx context.Context, next *config.Config) (ReloadResult, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	var res ReloadResult
	if g.adapters.ctx == nil {
		return res, errors.New("reload before Run")
	}
	cur := g.config()
	for name, same := range map[string]bool{
		"gateway": reflect.DeepEqual(cur.Gateway, next.Gateway),
		"grpc":    reflect.DeepEqual(cur.GRPC, next.GRPC),
		"http":    reflect.DeepEqual(cur.HTTP, next.HTTP),
		"journal": reflect.DeepEqual(cur.Journal, next.Journal),
		"uplink":  reflect.DeepEqual(cur.Uplink, next.Uplink),
		"tunnels": reflect.DeepEqual(cur.Tunnels, next.Tunnels),
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
	timeout := cur.Gateway.ShutdownTimeout
	var errs []error
	for _, n := range sorted {
		old := g.adapters.get(n)
		pc, wanted := next.Protocols[n]
		switch {
		case old == nil && wanted:
			a, err := g.build(n, pc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			g.adapters.add(a)
			g.adapters.start(a)
			res.Started = append(res.Started, n)
		case old != nil && !wanted:
			if !g.adapters.stop(old, timeout) {
				errs = append(errs, fmt.Errorf("%s: did not stop within %s", n, timeout))
			}
			g.adapters.remove(old)
			g.route(old.protocol, nil)
			old.metrics.unregisterAll()
			res.Stopped = append(res.Stopped, n)
		case old != nil && cur.ProtocolSource(n) != next.ProtocolSource(n):
			if rc, ok := old.impl.(protocols.Reconfigurer); ok {
				err := rc.Reconfigure(ctx, pc)
				if err == nil {
					old.cfg = pc
					res.Reconfigured = append(res.Reconfigured, n)
					continue
				}
				if !errors.Is(err, protocols.ErrRestartRequired) {
					errs = append(errs, fmt.Errorf("%s: %w", n, err))
					continue
				}
			}
			// The old one stops first: the new one binds the same ports and
			// registers the same metrics.
			if !g.adapters.stop(old, timeout) {
				errs = append(errs, fmt.Errorf("%s: did not stop within %s", n, timeout))
			}
			g.adapters.remove(old)
			g.route(old.protocol, nil)
			old.metrics.unregisterAll()
			a, err := g.build(n, pc)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s stopped and could not start again: %w", n, err))
				continue
			}
			g.adapters.add(a)
			g.adapters.start(a)
			res.Restarted = append(res.Restarted, n)
		}
	}
	// Edge functions swap atomically; those that did not change keep their state.
	if next.FunctionSet != cur.FunctionSet {
		changed := !reflect.DeepEqual(cur.Functions, next.Functions)
		if err := g.functions.Swap(next.FunctionSet); err != nil {
			errs = append(errs, fmt.Errorf("functions: %w", err))
		} else if changed {
			res.Reconfigured = append(res.Reconfigured, "functions")
		}
	}
	// Reporting rules swap at once: what the old ones held is published, and every
	// point starts afresh.
	if !reflect.DeepEqual(cur.Reporting, next.Reporting) {
		if err := g.hub.SetReporting(next.ReportRules()); err != nil {
			errs = append(errs, fmt.Errorf("reporting: %w", err))
		} else {
			res.Reconfigured = append(res.Reconfigured, "reporting")
		}
	}
	g.setConfig(next)
	g.reloadMetrics.needsRestart.Set(boolGauge(len(res.NeedsRestart) > 0))
	if err := errors.Join(errs...); err != nil {
		g.reloadMetrics.reloads.WithLabelValues("failed").Inc()
		return res, err
	}
	g.reloadMetrics.reloads.WithLabelValues("ok").Inc()
	g.reloadMetrics.lastSuccess.SetToCurrentTime()
	return res, nil
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
			g.log.Error("config reload failed in part", "file", path, "result", res.String(), "err", err)
			continue
		}
		g.log.Info("config reloaded", "file", path, "result", res.String())
		if len(res.NeedsRestart) > 0 {
			g.log.Warn("config changes that take effect only after a restart", "sections", res.NeedsRestart)
		}
	}
}
