package coap

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Session refusal reasons, the values of the reason label of sessions_refused_total.
const (
	refusedMaxConnections = "max_connections"
	refusedHandshake      = "handshake"
	refusedShuttingDown   = "shutting_down"
)

// Notification results, the values of the result label of notifications_total.
const (
	notifyAcknowledged = "acknowledged" // a confirmable notification was acknowledged, or a TCP one written
	notifySent         = "sent"         // the initial response of a registration
	notifyReset        = "reset"        // the observer answered with a reset: observation removed
	notifyFailed       = "failed"       // not acknowledged or not written: observation removed
)

// Observation refusal reasons, the values of the reason label of
// observations_refused_total.
const (
	obsNotFound      = "not_found"
	obsMax           = "max_observations"
	obsPerConnection = "per_connection"
	obsPerPeer       = "per_peer"
)

// Reasons a reading is answered 5.03, the reason label of
// readings_unacknowledged_total.
const (
	ackPendingFull = "pending_full"
	ackUnavailable = "durable_log_unavailable"
)

type metrics struct {
	requests       *prometheus.CounterVec
	badPayloads    prometheus.Counter
	sessions       *prometheus.GaugeVec
	sessionsTotal  *prometheus.CounterVec
	refused        *prometheus.CounterVec
	observations   prometheus.Gauge
	obsRefused     *prometheus.CounterVec
	pending        prometheus.Gauge
	ackRefused     *prometheus.CounterVec
	notifications  *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	panics         prometheus.Counter
	logsDropped    prometheus.Counter
	clientRequests *prometheus.CounterVec
	clientObserved prometheus.Gauge
	collectables   []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_requests_total",
			Help: "CoAP requests served, by transport, method and response code (such as 2.04, 4.00).",
		}, []string{"transport", "method", "code"}),
		badPayloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_coap_bad_payloads_total", Help: "CoAP requests to device resources whose payload did not decode (answered 4.00).",
		}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_coap_sessions", Help: "Open CoAP sessions (UDP peers, DTLS sessions, TCP and TLS connections), by transport.",
		}, []string{"transport"}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_sessions_total", Help: "CoAP sessions opened, by transport.",
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_sessions_refused_total", Help: "CoAP sessions refused or failed before serving, by transport and reason.",
		}, []string{"transport", "reason"}),
		observations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_coap_observations", Help: "Observations registered with the gateway by CoAP clients.",
		}),
		obsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_observations_refused_total",
			Help: "Observe registrations not taken, by reason: not_found (4.04: the device is neither configured nor seen), max_observations, per_connection, per_peer (answered 2.05 without Observe).",
		}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_coap_pending_responses", Help: "Confirmable CoAP readings whose answer waits for the durable log (bounded by max_pending_responses).",
		}),
		ackRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_readings_unacknowledged_total",
			Help: "CoAP readings answered 5.03 instead of 2.04, by reason: pending_full (max_pending_responses), durable_log_unavailable (the journal cannot write).",
		}, []string{"reason"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_notifications_total", Help: "Observe notifications sent to CoAP clients, by result.",
		}, []string{"result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_datagrams_dropped_total", Help: "UDP and DTLS datagrams dropped before any CoAP processing, by reason.",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_coap_recovered_panics_total", Help: "Panics recovered while serving a CoAP request; each was answered 5.00.",
		}),
		logsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_coap_log_lines_suppressed_total", Help: "Log lines dropped by the rate limit.",
		}),
		clientRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_coap_client_requests_total", Help: "Requests the gateway made to CoAP devices it is the client of, by method and result.",
		}, []string{"method", "result"}),
		clientObserved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_coap_client_observations", Help: "Resources of CoAP devices the gateway currently observes.",
		}),
	}
	m.collectables = []prometheus.Collector{
		m.requests, m.badPayloads, m.sessions, m.sessionsTotal, m.refused, m.observations,
		m.obsRefused, m.pending, m.ackRefused,
		m.notifications, m.dropped, m.panics, m.logsDropped, m.clientRequests, m.clientObserved,
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectables {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
