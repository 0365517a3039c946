package mqtt

import (
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons, the values of the reason label of connections_refused_total.
const (
	refusedMaxConnections = "max_connections"
	refusedBadCredentials = "bad_credentials"
	refusedNotAuthorized  = "not_authorized"
	refusedShuttingDown   = "shutting_down"
	refusedWillTopic      = "will_not_authorized"
	refusedClientID       = "client_id"
	refusedTLS            = "tls"       // the TLS handshake failed: no, a foreign or an expired client certificate
	refusedNoDevice       = "no_device" // a certificate login whose identity names no device
	// The client id's session belongs to another identity, or the id does not fit
	// mqtt.client_id (session.go).
	refusedClientIDTaken   = "client_id_taken"
	refusedClientIDPattern = "client_id_pattern"
	// The source failed too many logins of late, or the wait for a password check
	// reached connect_timeout (login.go).
	refusedThrottled = "throttled"
	refusedBusy      = "busy"
)

// Publish results, the values of the result label of publishes_total.
const (
	resultAccepted    = "accepted"    // the bridge took it
	resultInvalid     = "invalid"     // the payload or names did not decode
	resultRefused     = "refused"     // the bridge refused it for good (limits, a name of another protocol)
	resultUnavailable = "unavailable" // the bridge could not take it now (shutting down)
)

type metrics struct {
	open        prometheus.Gauge
	accepted    prometheus.Counter
	refused     *prometheus.CounterVec
	publishes   *prometheus.CounterVec
	badPayloads prometheus.Counter
	panics      prometheus.Counter
	aclDenied   *prometheus.CounterVec
	logsDropped prometheus.Counter
	acks        *ackMetrics
	// authThrottled: CONNECTs refused before their password was checked, their
	// source having failed too many; authQueue: CONNECTs waiting for a check.
	authThrottled prometheus.Counter
	authQueue     prometheus.Gauge
	collectables  []prometheus.Collector
}

// newMetrics builds the adapter's metrics; srv gives the broker's byte counters of
// the current Run.
func newMetrics(srv *atomic.Pointer[mochi.Server]) *metrics {
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_mqtt_connections", Help: "Open MQTT network connections.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_connections_total", Help: "MQTT network connections accepted.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_mqtt_connections_refused_total", Help: "MQTT connections refused, by reason.",
		}, []string{"reason"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_mqtt_publishes_total", Help: "Publishes on the gateway's device topics, by result.",
		}, []string{"result"}),
		badPayloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_bad_payloads_total", Help: "Publishes on device topics whose payload did not decode.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_recovered_panics_total", Help: "Panics recovered while serving a connection; each closed only that connection.",
		}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_mqtt_acl_denied_total", Help: "Publishes and subscriptions (or deliveries) refused by the access lists.",
		}, []string{"action"}),
		logsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_log_lines_suppressed_total", Help: "Log lines dropped by the rate limit.",
		}),
		acks: newAckMetrics(),
		authThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_auth_throttled_total",
			Help: "MQTT logins refused without a password check: their source failed too many of late.",
		}),
		authQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_mqtt_auth_queue", Help: "MQTT CONNECTs waiting for a password check.",
		}),
	}
	info := func(f func(s *mochi.Server) int64) func() float64 {
		return func() float64 {
			if s := srv.Load(); s != nil {
				return float64(f(s))
			}
			return 0
		}
	}
	m.collectables = []prometheus.Collector{
		m.open, m.accepted, m.refused, m.publishes, m.badPayloads, m.panics, m.aclDenied, m.logsDropped,
		m.acks.pending, m.acks.written, m.acks.windowFull, m.acks.unavailable,
		m.authThrottled, m.authQueue,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgegate_mqtt_received_bytes_total", Help: "Bytes received by the MQTT broker since it started.",
		}, info(func(s *mochi.Server) int64 { return atomic.LoadInt64(&s.Info.BytesReceived) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgegate_mqtt_sent_bytes_total", Help: "Bytes sent by the MQTT broker since it started.",
		}, info(func(s *mochi.Server) int64 { return atomic.LoadInt64(&s.Info.BytesSent) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgegate_mqtt_retained_messages", Help: "Messages the MQTT broker retains.",
		}, info(func(s *mochi.Server) int64 { return atomic.LoadInt64(&s.Info.Retained) })),
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
