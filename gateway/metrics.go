package gateway

import (
	"time"

	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/prometheus/client_golang/prometheus"
)

// journalCollector reports the durable log's size, age and consumers at scrape time.
type journalCollector struct{ j *journal.Journal }

var (
	jBytes    = prometheus.NewDesc("edgegate_journal_bytes", "Size of the durable log on disk.", nil, nil)
	jSegments = prometheus.NewDesc("edgegate_journal_segments", "Segment files of the durable log.", nil, nil)
	jFirst    = prometheus.NewDesc("edgegate_journal_first_sequence", "Oldest retained sequence.", nil, nil)
	jLast     = prometheus.NewDesc("edgegate_journal_last_sequence", "Newest sequence appended.", nil, nil)
	jDurable  = prometheus.NewDesc("edgegate_journal_durable_sequence", "Newest sequence on disk.", nil, nil)
	jOldest   = prometheus.NewDesc("edgegate_journal_oldest_age_seconds", "Age of the newest message in the oldest segment: roughly how far back the log reaches.", nil, nil)
	jDropped  = prometheus.NewDesc("edgegate_journal_retention_dropped_total", "Messages removed by retention since start.", nil, nil)
	jLag      = prometheus.NewDesc("edgegate_consumer_lag", "Messages a durable consumer has not acknowledged.", []string{"consumer"}, nil)

	jUnavailable  = prometheus.NewDesc("edgegate_journal_unavailable", "1 while the durable log cannot write (appends refused, retried with backoff), else 0.", nil, nil)
	jWriteErrors  = prometheus.NewDesc("edgegate_journal_write_errors_total", "Failed writes and fsyncs of the durable log, retries included, since start.", nil, nil)
	jCorrupt      = prometheus.NewDesc("edgegate_journal_corrupt_records_total", "Bad ranges of the durable log (one record or more each) skipped at start.", nil, nil)
	jCorruptBytes = prometheus.NewDesc("edgegate_journal_corrupt_bytes_total", "Bytes of the bad ranges skipped at start.", nil, nil)
	jReserveWaits = prometheus.NewDesc("edgegate_journal_reserve_waits_total", "Appends that waited for the sequence reservation to reach the disk.", nil, nil)
	jSyncs        = prometheus.NewDesc("edgegate_journal_syncs_total", "Group commits of the durable log (fsyncs of a segment) since start; messages per sync is their batch size.", nil, nil)
)

func (c journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jBytes, jSegments, jFirst, jLast, jDurable, jOldest, jDropped, jLag,
		jUnavailable, jWriteErrors, jCorrupt, jCorruptBytes, jReserveWaits, jSyncs} {
		ch <- d
	}
}

func (c journalCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.j.Stats()
	ch <- prometheus.MustNewConstMetric(jBytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(jSegments, prometheus.GaugeValue, float64(st.Segments))
	ch <- prometheus.MustNewConstMetric(jFirst, prometheus.GaugeValue, float64(st.First))
	ch <- prometheus.MustNewConstMetric(jLast, prometheus.GaugeValue, float64(st.Last))
	ch <- prometheus.MustNewConstMetric(jDurable, prometheus.GaugeValue, float64(st.Durable))
	age := 0.0
	if !st.Oldest.IsZero() {
		age = time.Since(st.Oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(jOldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(jDropped, prometheus.CounterValue, float64(st.Dropped))
	unavailable := 0.0
	if st.Unavailable {
		unavailable = 1
	}
	ch <- prometheus.MustNewConstMetric(jUnavailable, prometheus.GaugeValue, unavailable)
	ch <- prometheus.MustNewConstMetric(jWriteErrors, prometheus.CounterValue, float64(st.WriteErrors))
	ch <- prometheus.MustNewConstMetric(jCorrupt, prometheus.CounterValue, float64(st.CorruptRecords))
	ch <- prometheus.MustNewConstMetric(jCorruptBytes, prometheus.CounterValue, float64(st.CorruptBytes))
	ch <- prometheus.MustNewConstMetric(jReserveWaits, prometheus.CounterValue, float64(st.ReserveWaits))
	ch <- prometheus.MustNewConstMetric(jSyncs, prometheus.CounterValue, float64(st.Syncs))
	for name, pos := range c.j.Consumers() {
		lag := 0.0
		if st.Last > pos {
			lag = float64(st.Last - pos)
		}
		ch <- prometheus.MustNewConstMetric(jLag, prometheus.GaugeValue, lag, name)
	}
}
