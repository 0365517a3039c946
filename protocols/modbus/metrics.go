package modbus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	polls, skipped, requests, busy *prometheus.CounterVec // by device
	errors                         *prometheus.CounterVec // by device and class
	bad                            *prometheus.GaugeVec   // by device
	state                          *prometheus.GaugeVec   // by device
	reconnects                     *prometheus.CounterVec // by connection
	jitter                         prometheus.Histogram
	publishErrors                  prometheus.Counter
	logsDropped                    prometheus.Counter
}

func newMetrics() *metrics {
	dl := []string{"device"}
	return &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_modbus_polls_total", Help: "Polls of a device that ran to the end (each one or more read requests), whatever the device answered.",
		}, dl),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_modbus_polls_skipped_total", Help: "Polls that could not run in their slot (the line was busy or down) and were skipped.",
		}, dl),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_modbus_requests_total", Help: "Requests sent to a device, retries included.",
		}, dl),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_modbus_busy_retries_total", Help: "Requests retried because the device answered busy or acknowledge.",
		}, dl),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_modbus_poll_errors_total",
			Help: "Poll errors by class: busy, illegal_address, exception, timeout, transaction_id, protocol, io.",
		}, []string{"device", "class"}),
		bad: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_modbus_points_bad", Help: "Points whose last report is BAD.",
		}, dl),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_modbus_device_state",
			Help: "A device's state: 1 connected, 2 disconnected, 3 error, 4 connecting (as edgegate.v1.DeviceState); its last error is in ListDevices.",
		}, dl),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_modbus_reconnects_total", Help: "Connection attempts after a failure or a lost connection.",
		}, []string{"connection"}),
		jitter: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgegate_modbus_poll_jitter_seconds",
			Help:    "How late a poll started after its slot.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_modbus_publish_errors_total", Help: "Batches of readings the bridge refused.",
		}),
		logsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_modbus_log_lines_suppressed_total", Help: "Log lines dropped by the rate limit.",
		}),
	}
}

// device resolves the device's series once, so that a poll looks nothing up.
func (m *metrics) device(id string) deviceMetrics {
	return deviceMetrics{
		polls:    m.polls.WithLabelValues(id),
		skipped:  m.skipped.WithLabelValues(id),
		requests: m.requests.WithLabelValues(id),
		busy:     m.busy.WithLabelValues(id),
		bad:      m.bad.WithLabelValues(id),
		state:    m.state.WithLabelValues(id),
		errors:   m.errors.MustCurryWith(prometheus.Labels{"device": id}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.polls, m.skipped, m.requests, m.busy, m.errors, m.bad, m.state, m.reconnects, m.jitter, m.publishErrors, m.logsDropped} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
