package functions

import (
	"time"

	"github.com/edgegate/edgegate/protocols/ratelog"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a function fails, the `reason` label of edgegate_function_failures_total.
const (
	reasonError   = "error"   // the expression or module failed (a trap, an error)
	reasonBudget  = "budget"  // over the CEL cost limit
	reasonTimeout = "timeout" // a module ran past its deadline
	reasonResult  = "result"  // a result of the wrong type, or an invalid module output
	reasonRefused = "refused" // the hub refused the messages the function added
	reasonClosed  = "closed"  // the pipeline or function was closed, or the caller gave up
)

var reasons = []string{reasonError, reasonBudget, reasonTimeout, reasonResult, reasonRefused, reasonClosed}

type metrics struct {
	evaluations *prometheus.CounterVec
	drops       *prometheus.CounterVec
	emits       *prometheus.CounterVec
	failures    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	seconds     *prometheus.CounterVec
	waiting     *prometheus.GaugeVec
	windows     *prometheus.GaugeVec
	writes      *prometheus.CounterVec
	writeQueue  prometheus.GaugeFunc
	logDropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, writeQueue func() float64) *metrics {
	fl := []string{"function"}
	m := &metrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_evaluations_total", Help: "Messages an edge function evaluated.",
		}, fl),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_drops_total", Help: "Messages an edge function dropped (a filter, or a WebAssembly module's drop).",
		}, fl),
		emits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_emits_total", Help: "Messages an edge function added (derived, aggregated, or from a WebAssembly module).",
		}, fl),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_failures_total", Help: "Failed evaluations (CEL: per message; WebAssembly: per batch), by reason.",
		}, []string{"function", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_dead_letters_total", Help: "Messages a function failed on; each went on unchanged.",
		}, fl),
		seconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_seconds_total", Help: "Time spent in an edge function.",
		}, fl),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_function_wasm_waiting", Help: "Batches waiting for a free instance of a WebAssembly function.",
		}, fl),
		windows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_function_open_windows", Help: "Aggregate windows not yet emitted.",
		}, fl),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_function_writes_total", Help: "Writes from WebAssembly functions: ok, error, or dropped (queue full, not allowed, pipeline stopped).",
		}, []string{"function", "result"}),
		writeQueue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_function_write_queue", Help: "Writes from functions waiting to be sent.",
		}, writeQueue),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_function_log_suppressed_total", Help: "Function failure log lines suppressed by the rate limit.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.evaluations, m.drops, m.emits, m.failures, m.deadLetters, m.seconds,
			m.waiting, m.windows, m.writes, m.writeQueue, m.logDropped)
	}
	return m
}

// fnMetrics are one function's children, resolved once.
type fnMetrics struct {
	evaluations, drops, emits, deadLetters, seconds prometheus.Counter
	failures                                        map[string]prometheus.Counter
	waiting, windows                                prometheus.Gauge
	writeOK, writeErr, writeDropped                 prometheus.Counter
}

func (m *metrics) forFunction(name string) *fnMetrics {
	f := &fnMetrics{
		evaluations:  m.evaluations.WithLabelValues(name),
		drops:        m.drops.WithLabelValues(name),
		emits:        m.emits.WithLabelValues(name),
		deadLetters:  m.deadLetters.WithLabelValues(name),
		seconds:      m.seconds.WithLabelValues(name),
		failures:     make(map[string]prometheus.Counter, len(reasons)),
		waiting:      m.waiting.WithLabelValues(name),
		windows:      m.windows.WithLabelValues(name),
		writeOK:      m.writes.WithLabelValues(name, "ok"),
		writeErr:     m.writes.WithLabelValues(name, "error"),
		writeDropped: m.writes.WithLabelValues(name, "dropped"),
	}
	for _, r := range reasons {
		f.failures[r] = m.failures.WithLabelValues(name, r)
	}
	return f
}

// forget removes a function's series once it is gone from the config.
func (m *metrics) forget(name string) {
	for _, v := range []*prometheus.CounterVec{m.evaluations, m.drops, m.emits, m.deadLetters, m.seconds} {
		v.DeleteLabelValues(name)
	}
	m.waiting.DeleteLabelValues(name)
	m.windows.DeleteLabelValues(name)
	for _, r := range reasons {
		m.failures.DeleteLabelValues(name, r)
	}
	for _, r := range []string{"ok", "error", "dropped"} {
		m.writes.DeleteLabelValues(name, r)
	}
}

func (f *fnMetrics) since(start time.Time) { f.seconds.Add(time.Since(start).Seconds()) }

// limiter is the shared token bucket for log lines (protocols/ratelog): a
// function that fails on every message must not flood the log.
type limiter = ratelog.Limiter

func newLimiter(perSecond float64, burst int, dropped prometheus.Counter) *limiter {
	return ratelog.New(perSecond, burst, dropped)
}
