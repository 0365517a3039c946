package uplink_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
)

func TestCommands(t *testing.T) {
	hub := startHub(t, t.TempDir())
	h := newHubClient(t, hub.ClientURL())
	h.ensureCommandStream()
	s := newSite(t, t.TempDir(), fastConfig(hub.ClientURL()))
	s.publish("pump", "setpoint", bridge.PriorityNormal, 1) // the device is known
	s.start()

	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(42), RequestId: "r1"}, time.Now().Add(time.Hour))
	r := h.result(10 * time.Second)
	if r.GetRequestId() != "r1" || r.GetCode() != int32(codes.OK) || r.GetDevice() != "pump" || r.GetPoint() != "setpoint" {
		t.Errorf("result: %v", r)
	}

	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(43), RequestId: "expired"}, time.Now().Add(-time.Second))
	r = h.result(10 * time.Second)
	if r.GetRequestId() != "expired" || r.GetCode() != int32(codes.DeadlineExceeded) || r.GetError() == "" {
		t.Errorf("expired result: %v", r)
	}

	h.send(&pb.WriteRequest{Device: "nobody", Point: "x", Value: intValue(1), RequestId: "unknown"}, time.Time{})
	r = h.result(10 * time.Second)
	if r.GetCode() != int32(codes.NotFound) {
		t.Errorf("unknown device result: %v", r)
	}

	// Malformed: not a WriteRequest at all; its id is its place in the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.js.Publish(ctx, "edgegate.cmd."+gatewayID, []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	r = h.result(10 * time.Second)
	if r.GetCode() != int32(codes.InvalidArgument) || r.GetRequestId() == "" {
		t.Errorf("malformed result: %v", r)
	}

	// A hub-side retry of r1 (same request_id): answered, not run again.
	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(42), RequestId: "r1"}, time.Time{})
	r = h.result(10 * time.Second)
	if r.GetRequestId() != "r1" || r.GetCode() != int32(codes.OK) {
		t.Errorf("repeated result: %v", r)
	}
	if w := s.writer.list(); len(w) != 1 || w[0] != "pump/setpoint=42" {
		t.Errorf("writes: %v, want exactly pump/setpoint=42", w)
	}
	st := s.up.Status()
	if st.CommandsExecuted != 1 || st.CommandsRefused != 2 || st.CommandsFailed != 1 || st.CommandsRepeated != 1 {
		t.Errorf("status: %+v", st)
	}
}

// TestCommandIDsSurviveRestart: a command id executed before a restart is not
// run again after it.
func TestCommandIDsSurviveRestart(t *testing.T) {
	hub := startHub(t, t.TempDir())
	h := newHubClient(t, hub.ClientURL())
	h.ensureCommandStream()
	dir := t.TempDir()
	s := newSite(t, dir, fastConfig(hub.ClientURL()))
	s.publish("pump", "setpoint", bridge.PriorityNormal, 1)
	s.start()
	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(7), RequestId: "once"}, time.Time{})
	if r := h.result(10 * time.Second); r.GetCode() != 0 {
		t.Fatalf("result: %v", r)
	}
	s.stop()

	s2 := newSite(t, dir, fastConfig(hub.ClientURL()))
	s2.start()
	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(7), RequestId: "once"}, time.Time{})
	if r := h.result(10 * time.Second); r.GetCode() != 0 || r.GetRequestId() != "once" {
		t.Fatalf("result after restart: %v", r)
	}
	if w := s2.writer.list(); len(w) != 0 {
		t.Errorf("ran again after a restart: %v", w)
	}
	if st := s2.up.Status(); st.CommandsRepeated != 1 || st.CommandIDs != 1 {
		t.Errorf("status: %+v", st)
	}
}

// TestRedeliveredCommandNotRunTwice: the hub connection drops while the write
// runs, so the result cannot be published nor the command acknowledged; the hub
// delivers it again after its AckWait, and the gateway answers it from what it
// saved without writing again.
func TestRedeliveredCommandNotRunTwice(t *testing.T) {
	hub := startHub(t, t.TempDir())
	px := newProxy(t, hub.Addr().String())
	h := newHubClient(t, hub.ClientURL())
	h.ensureCommandStream()
	s := newSite(t, t.TempDir(), fastConfig(px.URL()))
	s.publish("pump", "setpoint", bridge.PriorityNormal, 1)
	cutOnce := make(chan struct{}, 1)
	cutOnce <- struct{}{}
	s.writer.hook = func(string, string) error {
		select {
		case <-cutOnce:
			px.Cut() // the hub goes away mid-write
			go func() {
				// ... and comes back after the gateway has noticed.
				waitFor(t, 10*time.Second, "the uplink to see the cut", func() bool { return !s.up.Status().Connected })
				px.Restore()
			}()
		default:
		}
		return nil
	}
	s.start()
	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(5)}, time.Time{})
	r := h.result(30 * time.Second)
	if r.GetCode() != 0 || r.GetRequestId() == "" {
		t.Errorf("result: %v", r)
	}
	if w := s.writer.list(); len(w) != 1 {
		t.Errorf("writes: %v, want one", w)
	}
	waitFor(t, 10*time.Second, "the redelivery to be answered", func() bool { return s.up.Status().CommandsRepeated == 1 })
	if st := s.up.Status(); st.CommandsExecuted != 1 {
		t.Errorf("status: %+v", st)
	}
	// No third delivery: the consumer has nothing pending.
	cons, err := h.js.Consumer(context.Background(), "EDGEGATE_CMD", "edgegate-"+gatewayID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the command to be acknowledged", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
}

// TestCommandJSONEncoding: with encoding json, commands and results are protojson.
func TestCommandJSONEncoding(t *testing.T) {
	hub := startHub(t, t.TempDir())
	h := newHubClient(t, hub.ClientURL())
	h.ensureCommandStream()
	cfg := fastConfig(hub.ClientURL())
	cfg.Encoding = "json"
	s := newSite(t, t.TempDir(), cfg)
	s.publish("pump", "setpoint", bridge.PriorityNormal, 1)
	results := make(chan *nats.Msg, 4) // raw, to see the encoding
	sub, err := h.nc.ChanSubscribe("edgegate.result."+gatewayID, results)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	h.nc.Flush()
	s.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.js.Publish(ctx, "edgegate.cmd."+gatewayID, []byte(`{"device":"pump","point":"setpoint","value":{"doubleValue":21.5},"requestId":"j1"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-results:
		if string(m.Data) == "" || m.Data[0] != '{' {
			t.Errorf("result is not JSON: %q", m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
	}
	if w := s.writer.list(); len(w) != 1 || w[0] != "pump/setpoint=21.5" {
		t.Errorf("writes: %v", w)
	}
	s.waitAcked(10 * time.Second)
	msgs := hubRaw(t, hub.ClientURL())
	if len(msgs) != 1 || msgs[0][0] != '{' {
		t.Errorf("data is not JSON: %q", msgs)
	}
	if r := h.result(time.Second); r.GetRequestId() != "j1" || r.GetCode() != 0 {
		t.Errorf("result: %v", r)
	}
}

// TestInterruptedCommandNotRunAgain: a command the gateway had started when it
// died (its id saved, no result) is answered UNKNOWN when it comes again, and
// not run.
func TestInterruptedCommandNotRunAgain(t *testing.T) {
	hub := startHub(t, t.TempDir())
	h := newHubClient(t, hub.ClientURL())
	h.ensureCommandStream()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "uplink"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uplink", "commands.jsonl"), []byte(`{"id":"req:half","at":"2026-01-01T00:00:00Z"}`+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := newSite(t, dir, fastConfig(hub.ClientURL()))
	s.publish("pump", "setpoint", bridge.PriorityNormal, 1)
	s.start()
	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(4), RequestId: "half"}, time.Time{})
	if r := h.result(10 * time.Second); r.GetCode() != int32(codes.Unknown) || r.GetRequestId() != "half" {
		t.Errorf("result: %v", r)
	}
	if w := s.writer.list(); len(w) != 0 {
		t.Errorf("ran again: %v", w)
	}
	if v := metricValue(t, s.reg, "edgegate_uplink_commands_total", "outcome", "interrupted"); v != 1 {
		t.Errorf("interrupted = %v", v)
	}
}

// TestNoStreamOnHub: without create_streams and without streams on the hub, the
// uplink says what is missing and keeps trying; the site keeps its backlog.
func TestNoStreamOnHub(t *testing.T) {
	hub := startHub(t, t.TempDir())
	cfg := fastConfig(hub.ClientURL())
	cfg.CreateStreams = false
	s := newSite(t, t.TempDir(), cfg)
	s.publish("pump", "flow", bridge.PriorityNormal, 1, 2)
	s.start()
	waitFor(t, 15*time.Second, "the missing stream reported", func() bool {
		return strings.Contains(s.up.Status().LastError, "no stream on the hub takes edgegate.data.site-1.")
	})
	if st := s.up.Status(); st.Backlog != 2 || st.AckedSequence != 0 {
		t.Errorf("status: %+v", st)
	}
}
