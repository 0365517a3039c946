package uplink_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/gatewaychild"

	paho "github.com/eclipse/paho.mqtt.golang"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	_ "github.com/edgegate/edgegate/protocols/all"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
)

// child is a running gateway process.
type child struct {
	cmd  *exec.Cmd
	mqtt string
	kill func()
}

// startChild runs a whole gateway in its own process, to be killed with SIGKILL.
func startChild(t *testing.T, cfgPath string) *child {
	c := gatewaychild.Start(t, cfgPath)
	return &child{cmd: c.Cmd, mqtt: c.MQTT, kill: c.Kill}
}

// device is a simulated MQTT device: it publishes readings at QoS 1 and counts
// the writes it receives.
type device struct {
	c      paho.Client
	mu     sync.Mutex
	writes []string
}

func connectDevice(t *testing.T, addr, id string) *device {
	t.Helper()
	d := &device{}
	d.c = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetAutoReconnect(false).SetConnectRetry(false))
	if tok := d.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	tok := d.c.Subscribe("devices/boiler/setpoint/set", 1, func(_ paho.Client, m paho.Message) {
		d.mu.Lock()
		d.writes = append(d.writes, string(m.Payload()))
		d.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d
}

func (d *device) received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.writes...)
}

// publishRound publishes count readings (every 20th a critical alarm) starting
// at value next; when kill is set it kills the gateway two thirds of the way,
// with publishes in flight. It returns the values the gateway acknowledged.
func publishRound(t *testing.T, d *device, next, count int, kill *child) []int {
	t.Helper()
	var toks []paho.Token
	var values []int
	for i := range count {
		v := next + i
		topic := "devices/boiler/temp"
		if v%20 == 0 {
			topic = "devices/boiler/alarm"
		}
		toks = append(toks, d.c.Publish(topic, 1, false, strconv.Itoa(v)))
		values = append(values, v)
		switch {
		case kill == nil || i < count/2:
			toks[i].WaitTimeout(5 * time.Second)
		case i == count*2/3:
			kill.kill()
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	var acked []int
	for i, tok := range toks {
		if tok.WaitTimeout(time.Until(deadline)) && tok.Error() == nil {
			acked = append(acked, values[i])
		}
	}
	return acked
}

// TestCrashAndOutage runs whole gateways as child processes against a hub the
// test cuts: devices publish while the hub is away, the gateway is killed with
// SIGKILL mid-publish (and again mid-drain once the hub is back), commands are
// sent while it is down. At the end the hub holds every acknowledged reading
// once, in order per subject, critical ones first; the command sent while the
// gateway was down ran once, the expired one never.
func TestCrashAndOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns gateway processes")
	}
	hub := startHub(t, t.TempDir())
	px := newProxy(t, hub.Addr().String())
	px.Cut()
	h := newHubClient(t, hub.ClientURL())
	h.ensureCommandStream()

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgegate.yaml")
	cfg := fmt.Sprintf(`
gateway: {id: %s, data_dir: %s}
journal: {sync: batch, sync_interval: 2ms}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
devices:
  - {id: boiler, protocol: mqtt, points: [{name: alarm, priority: critical}, {name: temp}, {name: setpoint}]}
uplink:
  nats:
    url: %s
    create_streams: true
    reconnect_min: 20ms
    reconnect_max: 200ms
    max_in_flight: 16
    priority_lag: 50
    command_timeout: 500ms
    command_ack_wait: 1s
    budget: {messages_per_second: 300}
`, gatewayID, filepath.Join(dir, "data"), px.URL())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	acked := map[int]bool{}
	add := func(vs []int) {
		for _, v := range vs {
			acked[v] = true
		}
	}

	// The hub is away: two gateway lives, each killed mid-publish.
	next := 0
	for round := range 2 {
		c := startChild(t, cfgPath)
		d := connectDevice(t, c.mqtt, fmt.Sprintf("boiler-%d", round))
		add(publishRound(t, d, next, 300, c))
		next += 300
		d.c.Disconnect(0)
	}
	// Commands while the gateway is down: one to run, one that expires first.
	expires := time.Now().Add(300 * time.Millisecond)
	h.send(&pb.WriteRequest{Device: "boiler", Point: "setpoint", Value: intValue(99), RequestId: "late"}, expires)
	h.send(&pb.WriteRequest{Device: "boiler", Point: "setpoint", Value: intValue(55), RequestId: "c1"}, time.Now().Add(time.Hour))
	waitFor(t, 5*time.Second, "the first command to expire", func() bool { return time.Now().After(expires) })

	// A third life: the device is there, then the hub comes back.
	c := startChild(t, cfgPath)
	d := connectDevice(t, c.mqtt, "boiler-2")
	add(publishRound(t, d, next, 150, nil))
	px.Restore()
	results := map[string]*pb.WriteResponse{}
	for range 2 {
		r := h.result(30 * time.Second)
		results[r.GetRequestId()] = r
	}
	if r := results["c1"]; r == nil || r.GetCode() != int32(codes.OK) {
		t.Errorf("c1 result: %v", r)
	}
	if r := results["late"]; r == nil || r.GetCode() != int32(codes.DeadlineExceeded) {
		t.Errorf("expired command's result: %v", r)
	}
	// Killed again mid-drain (the budget makes the drain last seconds).
	waitFor(t, 30*time.Second, "the drain to be under way", func() bool { return streamMsgs(t, h.js) > 100 })
	c.kill()
	c = startChild(t, cfgPath)
	// Wait for the readings themselves, not for as many messages: readings journaled
	// but not acknowledged when a gateway was killed are on the hub too, and would
	// make the count before the last acknowledged ones arrive.
	waitFor(t, 60*time.Second, "the hub to have every acknowledged reading", func() bool {
		if streamMsgs(t, h.js) < uint64(len(acked)) {
			return false
		}
		have := map[int]bool{}
		for _, m := range hubMessages(t, hub.ClientURL()) {
			have[int(m.msg.GetValue().GetIntValue())] = true
		}
		for v := range acked {
			if !have[v] {
				return false
			}
		}
		return true
	})

	got := hubMessages(t, hub.ClientURL())
	seen := map[int]int{}
	lastBySubject := map[string]uint64{}
	firstNormal, lastCritical := -1, -1
	for i, m := range got {
		v := int(m.msg.GetValue().GetIntValue())
		seen[v]++
		if seq := m.msg.GetSequence(); seq <= lastBySubject[m.subject] {
			t.Errorf("%s: sequence %d after %d", m.subject, seq, lastBySubject[m.subject])
		}
		lastBySubject[m.subject] = m.msg.GetSequence()
		if m.msg.GetPriority() == pb.Priority_PRIORITY_CRITICAL {
			lastCritical = i
		} else if firstNormal < 0 {
			firstNormal = i
		}
	}
	for v := range acked {
		if seen[v] == 0 {
			t.Errorf("acknowledged reading %d is not on the hub", v)
		}
	}
	for v, n := range seen {
		if n > 1 {
			t.Errorf("reading %d is on the hub %d times", v, n)
		}
	}
	if lastCritical < 0 || lastCritical > firstNormal {
		t.Errorf("critical readings not drained first: last critical at %d, first other at %d", lastCritical, firstNormal)
	}
	if w := d.received(); len(w) != 1 || w[0] != "55" {
		t.Errorf("device got writes %v, want exactly [55]", w)
	}
	t.Logf("%d readings acknowledged by the gateway, %d on the hub, %d results", len(acked), len(got), h.count.Load())
	d.c.Disconnect(0)
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()
}

func streamMsgs(t testing.TB, js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "EDGEGATE")
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}
