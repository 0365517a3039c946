package northbound

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are every northbound link's metrics, by the link's name. One set per
// gateway: NewMetrics registers it once, each link adds its rows.
type Metrics struct {
	connected  *prometheus.GaugeVec
	inFlight   *prometheus.GaugeVec
	published  *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	pubErrors  *prometheus.CounterVec
	lost       *prometheus.CounterVec
	reconnects *prometheus.CounterVec
	connects   *prometheus.CounterVec
	commands   *prometheus.CounterVec

	mu    sync.Mutex
	links []*Link
}

var (
	descBacklog = prometheus.NewDesc("edgegate_northbound_backlog_messages",
		"Messages in the log after the link's acknowledged position (those its match skips included): what the broker may still get.", []string{"name"}, nil)
	descAcked = prometheus.NewDesc("edgegate_northbound_acked_sequence",
		"Every message up to this sequence that the link's match selects is acknowledged by the broker.", []string{"name"}, nil)
	descWindow = prometheus.NewDesc("edgegate_northbound_in_flight_limit", "Bound on publishes awaiting the broker's PUBACK (mqtt.max_in_flight).", []string{"name"}, nil)
)

// NewMetrics makes the northbound metrics and registers them with reg (none when nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	name := []string{"name"}
	m := &Metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "edgegate_northbound_connected", Help: "1 while the link is connected to its broker."}, name),
		inFlight:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "edgegate_northbound_in_flight", Help: "Publishes awaiting the broker's PUBACK."}, name),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_published_total",
			Help: "Messages the broker acknowledged (at QoS 0: written to the connection); re-sent ones after a reconnect count again."}, name),
		bytes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_published_bytes_total", Help: "Payload bytes of the published messages."}, name),
		pubErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_publish_errors_total", Help: "Publishes that failed or were not acknowledged within ack_timeout; each ends the connection."}, name),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_lost_total",
			Help: "Messages gone before the broker had them: retention of the durable log, or without one the hub's memory (gateway.retain) during an outage."}, name),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_reconnects_total", Help: "Connection attempts after the first (each after a failure or a lost connection)."}, name),
		connects:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_connects_total", Help: "Connection attempts, by result (ok, error)."}, []string{"name", "result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgegate_northbound_commands_total",
			Help: "Commands from the broker ({topic}/set), by outcome: accepted (written), refused (bad topic, payload or value, unknown device or point, queue full), failed (the device write failed)."},
			[]string{"name", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.inFlight, m.published, m.bytes, m.pubErrors, m.lost, m.reconnects, m.connects, m.commands, collector{m})
	}
	return m
}

// add creates a link's rows, so that they show before anything happens.
func (m *Metrics) add(l *Link) {
	n := l.cfg.Name
	m.connected.WithLabelValues(n)
	m.inFlight.WithLabelValues(n)
	m.published.WithLabelValues(n)
	m.bytes.WithLabelValues(n)
	m.pubErrors.WithLabelValues(n)
	m.lost.WithLabelValues(n)
	m.reconnects.WithLabelValues(n)
	m.connects.WithLabelValues(n, "ok")
	m.connects.WithLabelValues(n, "error")
	for _, o := range []string{"accepted", "refused", "failed"} {
		m.commands.WithLabelValues(n, o)
	}
	m.mu.Lock()
	m.links = append(m.links, l)
	m.mu.Unlock()
}

// collector reports what is read at scrape time.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBacklog
	ch <- descAcked
	ch <- descWindow
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	links := append([]*Link(nil), c.m.links...)
	c.m.mu.Unlock()
	for _, l := range links {
		n := l.cfg.Name
		ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(l.Backlog()), n)
		ch <- prometheus.MustNewConstMetric(descAcked, prometheus.GaugeValue, float64(l.acked.Load()), n)
		ch <- prometheus.MustNewConstMetric(descWindow, prometheus.GaugeValue, float64(l.cfg.MQTT.MaxInFlight), n)
	}
}

// counterValue reads a counter (for Status and tests).
func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}
