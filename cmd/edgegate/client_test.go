package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/protocols"
)

// lines collects what a command prints and says when a line has arrived.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
	got chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if bytes.Contains(p, []byte("\n")) {
		select {
		case l.got <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestClientCommands runs tail, read, write and devices against a real gateway, with a
// real MQTT device publishing.
func TestClientCommands(t *testing.T) {
	cfg, err := config.Parse([]byte(`
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg).Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server := g.GRPCAddr().String()

	// tail in the background, until its context ends.
	tailOut := &lines{got: make(chan struct{}, 1)}
	tctx, tstop := context.WithCancel(ctx)
	tailDone := make(chan int, 1)
	go func() {
		tailDone <- run(tctx, []string{"tail", "--server", server, "--device", "pos-*", "--rate", "1000", "--shed", "latest"}, tailOut, io.Discard)
	}()

	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()).SetClientID("pos-1"))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer dev.Disconnect(100)
	// Publish until tail has printed a line: tail's subscription may start after the
	// first publish, and live streams do not replay.
	for i := 0; ; i++ {
		dev.Publish("devices/pos-1/sales", 1, false, fmt.Sprint(i)).WaitTimeout(5 * time.Second)
		select {
		case <-tailOut.got:
		case <-time.After(50 * time.Millisecond):
			continue
		case <-ctx.Done():
			t.Fatal("tail printed nothing")
		}
		break
	}
	tstop()
	if code := <-tailDone; code != 0 {
		t.Errorf("tail exit = %d", code)
	}
	first := strings.SplitN(tailOut.String(), "\n", 2)[0]
	var m map[string]any
	if err := json.Unmarshal([]byte(first), &m); err != nil || m["device"] != "pos-1" || m["point"] != "sales" {
		t.Errorf("tail line %q: %v", first, err)
	}

	code, out, errOut := runCmd(t, "read", "--server", server, "pos-1", "sales")
	if code != 0 || !strings.Contains(out, `"device":`) {
		t.Errorf("read = %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "devices", "--server", server)
	if code != 0 || !strings.Contains(out, "pos-1") || !strings.Contains(out, "connected") {
		t.Errorf("devices = %d %q %q", code, out, errOut)
	}
	// The device listens on its set topics; the write reaches it.
	writes := make(chan string, 1)
	if tok := dev.Subscribe("devices/pos-1/+/set", 1, func(_ paho.Client, m paho.Message) { writes <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	code, out, errOut = runCmd(t, "write", "--server", server, "pos-1", "price", "2.5")
	if code != 0 || !strings.Contains(out, "pos-1") {
		t.Errorf("write = %d %q %q", code, out, errOut)
	}
	select {
	case w := <-writes:
		if w != "2.5" {
			t.Errorf("device received %q", w)
		}
	case <-ctx.Done():
		t.Fatal("the write never reached the device")
	}
	code, _, errOut = runCmd(t, "write", "--server", server, "nobody", "price", "2.5")
	if code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Errorf("write to unknown device = %d %q", code, errOut)
	}
}

// TestTailDurableConsumer: a second tail with the same consumer name goes on after
// what the first one printed.
func TestTailDurableConsumer(t *testing.T) {
	g := startDurable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := g.Hub().Ingest(bridge.ProtocolMQTT)
	publish := func(v int) {
		if err := in.Publish(ctx, &bridge.Message{Device: "d", Point: "p", Value: bridge.Int(int64(v))}); err != nil {
			t.Fatal(err)
		}
	}
	tailUntil := func(want int) []string { return tailConsumer(t, ctx, g.GRPCAddr().String(), "kds", want) }
	publish(1)
	publish(2)
	first := tailUntil(2)
	publish(3)
	second := tailUntil(1)
	if len(first) != 2 || len(second) != 1 || !strings.Contains(second[0], `"3"`) {
		t.Fatalf("first tail %q, second %q: the second must start after the first", first, second)
	}
}

// tailConsumer runs tail with a durable consumer from the earliest message until
// it has printed want lines, stops it, and returns its lines.
func tailConsumer(t *testing.T, ctx context.Context, server, consumer string, want int) []string {
	t.Helper()
	out := &lines{got: make(chan struct{}, 1)}
	tctx, tstop := context.WithCancel(ctx)
	defer tstop()
	code := make(chan int, 1)
	go func() {
		code <- run(tctx, []string{"tail", "--server", server, "--consumer", consumer, "--from-earliest"}, out, io.Discard)
	}()
	for strings.Count(out.String(), "\n") < want {
		select {
		case <-out.got:
		case <-ctx.Done():
			t.Fatalf("tail printed %q", out.String())
		}
	}
	tstop()
	if c := <-code; c != 0 {
		t.Fatalf("tail exit %d", c)
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}
