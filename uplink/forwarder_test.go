package uplink_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/uplink"
)

func TestForwardsEveryMessageOnceInOrder(t *testing.T) {
	hub := startHub(t, t.TempDir())
	s := newSite(t, t.TempDir(), fastConfig(hub.ClientURL()))
	s.start()
	for i := range int64(300) {
		s.publish("fryer-1", "oil_temp", bridge.PriorityNormal, i)
		s.publish("fryer 2.b", "temp °C", bridge.PriorityNormal, i)
	}
	s.waitAcked(30 * time.Second)
	// Idle, the durable log has the position too (a crash now re-sends nothing).
	waitFor(t, 5*time.Second, "the position saved in the log", func() bool {
		pos, _ := s.j.Position(uplink.ConsumerAcked)
		return pos == s.hub.LastSequence()
	})
	got := hubMessages(t, hub.ClientURL())
	checkOnceInOrder(t, got, logSequences(t, s.j))
	subjects := map[string]bool{}
	for _, m := range got {
		subjects[m.subject] = true
	}
	for _, want := range []string{"edgegate.data.site-1.fryer-1.oil_temp", "edgegate.data.site-1.fryer_2_b.temp__C"} {
		if !subjects[want] {
			t.Errorf("no message on %s; subjects: %v", want, subjects)
		}
	}
	m := got[len(got)-1].msg
	if m.GetDevice() != "fryer 2.b" || m.GetPoint() != "temp °C" || m.GetValue().GetIntValue() != 299 || m.GetProtocol() != pb.Protocol_PROTOCOL_MQTT {
		t.Errorf("last message: %v", m)
	}
	st := s.up.Status()
	if !st.Connected || st.Backlog != 0 || st.Published < 600 {
		t.Errorf("status: %+v", st)
	}
	if v := metricValue(t, s.reg, "edgegate_uplink_connected"); v != 1 {
		t.Errorf("edgegate_uplink_connected = %v", v)
	}
	if v := metricValue(t, s.reg, "edgegate_uplink_acked_sequence"); uint64(v) != s.hub.LastSequence() {
		t.Errorf("edgegate_uplink_acked_sequence = %v, want %d", v, s.hub.LastSequence())
	}
}

// TestOfflineBacklogDrainsCriticalFirst: the hub is unreachable while devices
// publish; the site keeps taking messages; when the hub returns, the backlog's
// critical and high messages reach it before the rest, and everything once.
func TestOfflineBacklogDrainsCriticalFirst(t *testing.T) {
	hub := startHub(t, t.TempDir())
	px := newProxy(t, hub.Addr().String())
	px.Cut()
	s := newSite(t, t.TempDir(), fastConfig(px.URL()))
	s.start()
	const n = 2000
	for i := range int64(n) {
		switch {
		case i%50 == 7:
			s.publish("boiler", "alarm", bridge.PriorityCritical, i)
		case i%50 == 9:
			s.publish("boiler", "pressure_high", bridge.PriorityHigh, i)
		default:
			s.publish(fmt.Sprintf("sensor-%d", i%3), "temp", bridge.PriorityNormal, i)
		}
	}
	waitFor(t, 10*time.Second, "a failed connection attempt", func() bool {
		return metricValue(t, s.reg, "edgegate_uplink_connects_total", "result", "error") >= 2
	})
	st := s.up.Status()
	if st.Connected || st.Backlog != n || st.LastError == "" {
		t.Errorf("offline status: %+v", st)
	}
	if v := metricValue(t, s.reg, "edgegate_uplink_backlog_messages"); v != n {
		t.Errorf("edgegate_uplink_backlog_messages = %v, want %d", v, n)
	}
	if v := metricValue(t, s.reg, "edgegate_uplink_backlog_age_seconds"); v <= 0 {
		t.Errorf("edgegate_uplink_backlog_age_seconds = %v, want > 0", v)
	}
	px.Restore()
	s.waitAcked(60 * time.Second)
	got := hubMessages(t, hub.ClientURL())
	checkOnceInOrder(t, got, logSequences(t, s.j))
	firstNormal := -1
	lastUrgent := -1
	for i, m := range got {
		if m.msg.GetPriority() >= pb.Priority_PRIORITY_HIGH {
			lastUrgent = i
		} else if firstNormal < 0 {
			firstNormal = i
		}
	}
	if lastUrgent < 0 || firstNormal < 0 || lastUrgent > firstNormal {
		t.Errorf("critical and high messages not first: last urgent at %d, first normal at %d", lastUrgent, firstNormal)
	}
}

// TestHubCutWhileForwarding cuts the hub again and again while devices publish:
// every message reaches it once, in order per subject.
func TestHubCutWhileForwarding(t *testing.T) {
	hub := startHub(t, t.TempDir())
	px := newProxy(t, hub.Addr().String())
	s := newSite(t, t.TempDir(), fastConfig(px.URL()))
	s.start()
	var v int64
	for round := range 5 {
		for range 400 {
			s.publish(fmt.Sprintf("dev-%d", v%4), "count", bridge.PriorityNormal, v)
			if v%97 == 0 {
				s.publish("dev-0", "alarm", bridge.PriorityCritical, v)
			}
			v++
			if v%150 == 0 {
				px.Cut()
			}
			if v%150 == 40 {
				px.Restore()
			}
		}
		px.Restore()
		t.Logf("round %d: acked %d of %d", round, s.up.Status().AckedSequence, s.hub.LastSequence())
	}
	s.waitAcked(60 * time.Second)
	got := hubMessages(t, hub.ClientURL())
	checkOnceInOrder(t, got, logSequences(t, s.j))
	if v := metricValue(t, s.reg, "edgegate_uplink_connects_total", "result", "ok"); v < 2 {
		t.Errorf("connected %v times: the cuts did not cut", v)
	}
}

// TestRestartResumesFromAcknowledgedPosition stops the site while the hub is
// away and starts it again on the same log: what the hub had is not sent again.
func TestRestartResumesFromAcknowledgedPosition(t *testing.T) {
	hub := startHub(t, t.TempDir())
	dir := t.TempDir()
	s := newSite(t, dir, fastConfig(hub.ClientURL()))
	s.start()
	s.publish("a", "b", bridge.PriorityNormal, 1, 2, 3, 4, 5)
	s.waitAcked(10 * time.Second)
	s.stop()

	s2 := newSite(t, dir, fastConfig(hub.ClientURL()))
	if st := s2.up.Status(); st.AckedSequence != s.hub.LastSequence() || st.Backlog != 0 {
		t.Fatalf("after restart: %+v, want acked %d", st, s.hub.LastSequence())
	}
	s2.start()
	s2.publish("a", "b", bridge.PriorityNormal, 6, 7)
	s2.waitAcked(10 * time.Second)
	got := hubMessages(t, hub.ClientURL())
	checkOnceInOrder(t, got, logSequences(t, s2.j))
	if d := s2.up.Status().Duplicates; d != 0 {
		t.Errorf("%d duplicates sent after a clean restart", d)
	}
}

// TestBudget: the forwarder keeps to its messages-per-second budget (a lower
// bound on time, which a slow machine cannot break).
func TestBudget(t *testing.T) {
	hub := startHub(t, t.TempDir())
	cfg := fastConfig(hub.ClientURL())
	cfg.Budget = uplink.Budget{MessagesPerSecond: 100}
	s := newSite(t, t.TempDir(), cfg)
	for i := range int64(250) {
		s.publish("d", "p", bridge.PriorityNormal, i)
	}
	start := time.Now()
	s.start()
	s.waitAcked(30 * time.Second)
	// A burst of 100, then 150 at 100/s.
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("250 messages at 100/s (burst 100) took %v, want at least 1.4s", took)
	}
	if v := metricValue(t, s.reg, "edgegate_uplink_budget_wait_seconds_total"); v <= 0 {
		t.Errorf("budget wait = %v", v)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"fryer-1": "fryer-1", "a.b": "a_b", "temp °C": "temp__C", "": "_", "*": "_", ">": "_",
		"ns=1;s=Line1.T": "ns_1_s_Line1_T", "ünï": "_n_", "A_b-9": "A_b-9",
	} {
		if got := uplink.Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
		if got := uplink.Sanitize(in); !uplink.IsToken(got) {
			t.Errorf("Sanitize(%q) = %q is not a token", in, got)
		}
	}
	if s := uplink.DataSubject("g", "d.x", "p>"); s != "edgegate.data.g.d_x.p_" {
		t.Errorf("DataSubject: %s", s)
	}
	if !strings.HasPrefix(uplink.MsgID("g", 42), "g:42") {
		t.Errorf("MsgID: %s", uplink.MsgID("g", 42))
	}
}
