package gateway

import (
	"testing"

	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/prometheus/client_golang/prometheus"
)

// The journal's health is on /metrics: unavailable, write errors, corrupt records.
func TestJournalMetrics(t *testing.T) {
	j, err := journal.Open(t.TempDir(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(journalCollector{j})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for _, name := range []string{"edgegate_journal_unavailable", "edgegate_journal_write_errors_total",
		"edgegate_journal_corrupt_records_total", "edgegate_journal_corrupt_bytes_total", "edgegate_journal_reserve_waits_total", "edgegate_journal_syncs_total"} {
		if v, ok := got[name]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0 on a healthy journal", name, v, ok)
		}
	}
}
