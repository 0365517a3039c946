package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func parseMQTT(t *testing.T, args ...string) (*mqttOptions, error) {
	t.Helper()
	fs := flag.NewFlagSet("mqtt", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o mqttOptions
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return &o, o.validate()
}

func TestMQTTFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  string // a substring of the error; "" for valid flags
	}{
		{args: nil},
		{args: []string{"--devices", "100000", "--rate", "0.1", "--points", "1024", "--qos", "1", "--payload", "number"}},
		{args: []string{"--load", "--rate", "0"}}, // rate does not matter under load
		{args: []string{"--broker", "ssl://127.0.0.1:8883", "--cacert", "ca.crt"}},
		{args: []string{"--username", "{device}", "--password", "x"}},
		{args: []string{"--devices", "0"}, bad: "--devices"},
		{args: []string{"--devices", "100001"}, bad: "--devices"},
		{args: []string{"--rate", "0"}, bad: "--rate"},
		{args: []string{"--rate", "-1"}, bad: "--rate"},
		{args: []string{"--rate", "NaN"}, bad: "--rate"},
		{args: []string{"--rate", "1000000"}, bad: "--rate"},
		{args: []string{"--points", "0"}, bad: "--points"},
		{args: []string{"--points", "1025"}, bad: "--points"},
		{args: []string{"--qos", "2"}, bad: "--qos"},
		{args: []string{"--payload", "xml"}, bad: "--payload"},
		{args: []string{"--inflight", "0"}, bad: "--inflight"},
		{args: []string{"--duration", "-1s"}, bad: "--duration"},
		{args: []string{"--prefix", "a/b"}, bad: "--prefix"},
		{args: []string{"--prefix", "a+"}, bad: "--prefix"},
		{args: []string{"--prefix", strings.Repeat("x", 300)}, bad: "--prefix"},
		{args: []string{"--password", "x"}, bad: "--password needs --username"},
		{args: []string{"--cert", "c.crt"}, bad: "--cert and --key"},
		{args: []string{"--broker", "localhost"}, bad: "--broker"},
		{args: []string{"--broker", "ws://localhost:80"}, bad: "--broker"},
		{args: []string{"--broker", "tcp://localhost:1883", "--tls"}, bad: "--broker"},
	} {
		_, err := parseMQTT(t, tc.args...)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%q: error %v, want one about %s", tc.args, err, tc.bad)
		case err != nil && !errors.Is(err, errUsage):
			t.Errorf("%q: %v is not a usage error", tc.args, err)
		}
	}
}

func TestMQTTFlagsReportEveryProblem(t *testing.T) {
	_, err := parseMQTT(t, "--devices", "0", "--qos", "5", "--payload", "x")
	for _, want := range []string{"--devices", "--qos", "--payload"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestBrokerURL(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--broker", "127.0.0.1:1883"}, "tcp://127.0.0.1:1883"},
		{[]string{"--broker", "127.0.0.1:8883", "--tls"}, "ssl://127.0.0.1:8883"},
		{[]string{"--broker", "127.0.0.1:8883", "--cacert", "ca.crt"}, "ssl://127.0.0.1:8883"},
		{[]string{"--broker", "mqtts://gw:8883"}, "ssl://gw:8883"},
		{[]string{"--broker", "mqtt://[::1]:1883"}, "tcp://[::1]:1883"},
	} {
		o, err := parseMQTT(t, tc.args...)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got, _ := o.brokerURL(); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestUnknownSubcommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"nope"}, &out, &errOut); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

// broker is an in-process mochi broker on a loopback port, with a record of what
// was published.
type broker struct {
	srv  *mochi.Server
	addr string
	mu   sync.Mutex
	got  map[string][]string // topic -> payloads
	cond *sync.Cond
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &broker{srv: srv, addr: ln.Address(), got: map[string][]string{}}
	b.cond = sync.NewCond(&b.mu)
	err := srv.Subscribe("devices/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		b.mu.Lock()
		b.got[pk.TopicName] = append(b.got[pk.TopicName], string(pk.Payload))
		b.mu.Unlock()
		b.cond.Broadcast()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return b
}

// waitFor waits until ok holds for what was published, or fails the test.
func (b *broker) waitFor(t *testing.T, what string, ok func(map[string][]string) bool) {
	t.Helper()
	timeout := time.AfterFunc(10*time.Second, func() {
		b.mu.Lock()
		b.got = nil // tells the waiter to give up
		b.mu.Unlock()
		b.cond.Broadcast()
	})
	defer timeout.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.got != nil && !ok(b.got) {
		b.cond.Wait()
	}
	if b.got == nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestSimulatorPublishesAndTakesWrites(t *testing.T) {
	b := newBroker(t)
	o, err := parseMQTT(t, "--broker", b.addr, "--devices", "3", "--rate", "50", "--points", "2", "--qos", "1", "--seed", "1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runMQTT(ctx, o, slog.New(slog.NewTextHandler(&logs, nil)), io.Discard)
	}()

	b.waitFor(t, "readings from every device", func(got map[string][]string) bool {
		for _, id := range []string{"sim-1", "sim-2", "sim-3"} {
			if len(got["devices/"+id+"/temperature"]) == 0 || len(got["devices/"+id+"/counter"]) == 0 {
				return false
			}
		}
		return true
	})
	// The simulator subscribes to its write topic once connected; publish the write
	// until its report shows up.
	wrote := func(got map[string][]string) bool {
		for _, p := range got["devices/sim-2/setpoint"] {
			if strings.HasPrefix(p, `{"value":42.5,`) {
				return true
			}
		}
		return false
	}
	stop := make(chan struct{})
	go func() {
		for {
			if err := b.srv.Publish("devices/sim-2/setpoint/set", []byte("42.5"), false, 1); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	b.waitFor(t, "the write's report", wrote)
	close(stop)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the simulator did not stop")
	}
	if !strings.Contains(logs.String(), "write applied") {
		t.Errorf("no write logged:\n%s", logs.String())
	}
}

func TestSimulatorFailsWithoutBroker(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o, err := parseMQTT(t, "--broker", addr, "--devices", "2")
	if err != nil {
		t.Fatal(err)
	}
	err = runMQTT(context.Background(), o, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no device could connect") {
		t.Fatalf("err = %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
