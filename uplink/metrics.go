package uplink

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	connected  prometheus.Gauge
	inFlight   prometheus.Gauge
	published  prometheus.Counter
	bytes      prometheus.Counter
	duplicates prometheus.Counter
	pubErrors  prometheus.Counter
	lost       prometheus.Counter
	budgetWait prometheus.Counter
	connects   *prometheus.CounterVec
	commands   *prometheus.CounterVec
}

var (
	descBacklog    = prometheus.NewDesc("edgegate_uplink_backlog_messages", "Messages in the durable log that the hub has not acknowledged.", nil, nil)
	descBacklogAge = prometheus.NewDesc("edgegate_uplink_backlog_age_seconds", "Age of the oldest message the hub has not acknowledged (0 without a backlog).", nil, nil)
	descAcked      = prometheus.NewDesc("edgegate_uplink_acked_sequence", "Every message up to this sequence is acknowledged by the hub.", nil, nil)
	descPriority   = prometheus.NewDesc("edgegate_uplink_priority_acked_sequence", "Every high and critical message up to this sequence is acknowledged by the hub.", nil, nil)
	descWindow     = prometheus.NewDesc("edgegate_uplink_in_flight_limit", "Bound on publishes awaiting the hub's acknowledgement (uplink.nats.max_in_flight).", nil, nil)
	descIDs        = prometheus.NewDesc("edgegate_uplink_command_ids", "Executed command ids remembered against redelivery.", nil, nil)
	descIDsLimit   = prometheus.NewDesc("edgegate_uplink_command_ids_limit", "Bound on remembered command ids (uplink.nats.max_command_ids).", nil, nil)
)

func newMetrics(u *Uplink, reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgegate_uplink_connected", Help: "1 while the uplink is connected to the hub."}),
		inFlight:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgegate_uplink_in_flight", Help: "Publishes awaiting the hub's acknowledgement."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgegate_uplink_published_total", Help: "Messages the hub acknowledged (duplicates included)."}),
		bytes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "edgegate_uplink_published_bytes_total", Help: "Payload bytes the hub acknowledged."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgegate_uplink_duplicates_total",
			Help: "Messages sent again after a reconnect or restart that the hub already had (dropped by its Nats-Msg-Id de-duplication)."}),
		pubErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgegate_uplink_publish_errors_total", Help: "Publishes that failed or were not acknowledged in time; each ends the connection."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgegate_uplink_lost_total",
			Help: "Messages the durable log's retention dropped before the hub had them (journal.max_size or max_age too small for the outage)."}),
		budgetWait: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgegate_uplink_budget_wait_seconds_total", Help: "Time the forwarder waited for its budget."}),
		connects:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_uplink_connects_total", Help: "Connection attempts to the hub, by result (ok, error)."}, []string{"result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_uplink_commands_total",
			Help: "Commands from the hub by outcome: executed, failed (the write failed), refused (expired or malformed), repeated (a redelivery answered without running it again), interrupted."}, []string{"outcome"}),
	}
	for _, o := range []string{"executed", "failed", "refused", "repeated", "interrupted"} {
		m.commands.WithLabelValues(o)
	}
	m.connects.WithLabelValues("ok")
	m.connects.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.connected, m.inFlight, m.published, m.bytes, m.duplicates, m.pubErrors, m.lost, m.budgetWait,
			m.connects, m.commands, collector{u})
	}
	return m
}

// collector reports what is read at scrape time.
type collector struct{ u *Uplink }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBacklog, descBacklogAge, descAcked, descPriority, descWindow, descIDs, descIDsLimit} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	u := c.u
	n, age := u.backlog()
	ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descBacklogAge, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descAcked, prometheus.GaugeValue, float64(u.acked.Load()))
	ch <- prometheus.MustNewConstMetric(descPriority, prometheus.GaugeValue, float64(u.priority.Load()))
	ch <- prometheus.MustNewConstMetric(descWindow, prometheus.GaugeValue, float64(u.cfg.MaxInFlight))
	ids := 0
	u.mu.Lock()
	if u.exec != nil {
		ids = u.exec.size()
	}
	u.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descIDs, prometheus.GaugeValue, float64(ids))
	ch <- prometheus.MustNewConstMetric(descIDsLimit, prometheus.GaugeValue, float64(u.cfg.MaxCommandIDs))
}

// counterValue reads a counter (for the status page).
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
