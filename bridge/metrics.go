package bridge

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	in, out, bad, writes *prometheus.CounterVec
	badUnknown           *prometheus.CounterVec
	rejected             *prometheus.CounterVec
	dropped              *prometheus.CounterVec
	devices              *prometheus.GaugeVec
	// The reporting stage (report.go).
	reportSuppressed                         *prometheus.CounterVec
	reportDeadband, reportSample, reportLost prometheus.Counter
	reportPending, reportPoints              prometheus.Gauge
}

func newMetrics(h *Hub, reg prometheus.Registerer) *metrics {
	dl := []string{"protocol", "device"}
	m := &metrics{
		in: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_messages_in_total", Help: "Messages accepted from devices.",
		}, dl),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_messages_out_total", Help: "Messages delivered to subscribers (one per subscriber).",
		}, dl),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_decode_errors_total", Help: "Payloads from devices that did not decode.",
		}, dl),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_writes_total", Help: "Writes sent to devices.",
		}, dl),
		badUnknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_decode_errors_unattributed_total", Help: "Payloads that did not decode, from devices the registry had no room for.",
		}, []string{"protocol"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_messages_rejected_total", Help: "Messages refused by the bridge, by reason.",
		}, []string{"protocol", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_subscriber_dropped_total", Help: "Messages a slow subscriber skipped (drop_oldest policy) or subscribers disconnected (disconnect policy).",
		}, []string{"policy"}),
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_devices", Help: "Devices by protocol and state.",
		}, []string{"protocol", "state"}),
		reportSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_reporting_suppressed_total", Help: "Messages the reporting rules kept from the hub: unchanged or within the deadband (deadband), or held by sampling and replaced by a newer value (sample), or held by sampling and lost because the hub closed or its journal refused them at a reload (lost).",
		}, []string{"reason"}),
		reportPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_reporting_pending", Help: "Values held by sampling until their interval ends (at most one per point).",
		}),
		reportPoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_reporting_points", Help: "Points that a reporting rule matches and whose last published value the gateway keeps.",
		}),
	}
	m.reportDeadband = m.reportSuppressed.WithLabelValues(reasonDeadband)
	m.reportSample = m.reportSuppressed.WithLabelValues(reasonSample)
	m.reportLost = m.reportSuppressed.WithLabelValues(reasonLost)
	if reg == nil {
		return m
	}
	reg.MustRegister(m.in, m.out, m.bad, m.writes, m.badUnknown, m.rejected, m.dropped, m.devices,
		m.reportSuppressed, m.reportPending, m.reportPoints,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_subscribers", Help: "Open subscriptions.",
		}, func() float64 { return float64(len(h.subscriptions())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_subscriber_queue_depth_max", Help: "Messages the furthest-behind subscriber has yet to read.",
		}, func() float64 { return float64(h.maxLag()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_subscriber_queue_limit", Help: "How far a subscriber may fall behind before the slow-consumer policy applies.",
		}, func() float64 { return float64(h.cfg.QueueSize) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_retained_messages", Help: "Messages held in memory for replay and slow subscribers.",
		}, func() float64 { return float64(h.retained()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_last_sequence", Help: "The last sequence number assigned.",
		}, func() float64 { return float64(h.head.Load()) }),
	)
	return m
}
