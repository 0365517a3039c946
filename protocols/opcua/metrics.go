package opcua

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the adapter's; the device label takes only configured ids.
type metrics struct {
	connects      *prometheus.CounterVec // device, result
	sessionsLost  *prometheus.CounterVec // device
	subsRecreated *prometheus.CounterVec // device
	items         *prometheus.GaugeVec   // device, state (ok, failed)
	notifications *prometheus.CounterVec // device
	dropped       *prometheus.CounterVec // device: notifications the bridge did not take
	writes        *prometheus.CounterVec // device, result
	reads         *prometheus.CounterVec // device, result
	backoff       *prometheus.GaugeVec   // device
	certReloads   *prometheus.CounterVec // device, result
	certExpiry    *prometheus.GaugeVec   // device
	logsDropped   prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_connects_total", Help: "OPC UA session attempts, by device and result (ok, error, untrusted).",
		}, []string{"device", "result"}),
		sessionsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_sessions_lost_total", Help: "OPC UA sessions that ended without being asked to (server restart, dropped connection, lost session).",
		}, []string{"device"}),
		subsRecreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_subscriptions_recreated_total", Help: "Subscriptions the server lost and the adapter made again on the same session.",
		}, []string{"device"}),
		items: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_opcua_monitored_items", Help: "Monitored items of the current session, by state: ok, or failed (marked BAD, retried).",
		}, []string{"device", "state"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_notifications_total", Help: "Data change notifications received.",
		}, []string{"device"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_notifications_dropped_total", Help: "Data change notifications the bridge did not take (it refused the batch).",
		}, []string{"device"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_writes_total", Help: "Writes, by device and result (ok, refused, failed).",
		}, []string{"device", "result"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_reads_total", Help: "Reads on demand, by device and result (ok, refused, failed).",
		}, []string{"device", "result"}),
		backoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_opcua_reconnect_backoff_seconds", Help: "The wait before the next session attempt; 0 while connected.",
		}, []string{"device"}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_opcua_client_cert_reloads_total",
			Help: "Client certificate files (security.cert_file, key_file) read again after a change, by device and result (ok, or error: the last good certificate stays in use).",
		}, []string{"device", "result"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_opcua_client_cert_expiry_timestamp_seconds",
			Help: "When the client certificate the next session will show expires (Unix time), by device with a secure policy: alert well before it.",
		}, []string{"device"}),
		logsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_opcua_log_lines_suppressed_total", Help: "Log lines dropped by the rate limit.",
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.connects, m.sessionsLost, m.subsRecreated, m.items, m.notifications,
		m.dropped, m.writes, m.reads, m.backoff, m.certReloads, m.certExpiry, m.logsDropped} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
