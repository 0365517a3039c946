package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/client"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/protocols"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fastBackoff keeps reconnects quick in tests.
var fastBackoff = client.WithBackoff(client.Backoff{Min: 20 * time.Millisecond, Max: 250 * time.Millisecond})

const durableConfig = `
gateway: {id: client-test, data_dir: %s}
journal: {sync: batch, sync_interval: 2ms}
grpc: {listen: "%s"}
http: {listen: "off"}
`

func publish(t testing.TB, g *inproc, device string, from, to int) {
	t.Helper()
	in := g.g.Hub().Ingest(bridge.ProtocolMQTT)
	for i := from; i < to; i++ {
		if err := in.Publish(context.Background(), &bridge.Message{Device: device, Point: "count", Value: bridge.Int(int64(i))}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// recvN reads n messages, each within the deadline.
func recvN(t *testing.T, sub *client.Subscription, n int) []*client.Message {
	t.Helper()
	out := make([]*client.Message, 0, n)
	for len(out) < n {
		m, err := sub.Recv()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

// checkExactlyOnce says whether msgs carry the values from..to-1 once each, in
// order, with strictly increasing sequences.
func checkExactlyOnce(t *testing.T, msgs []*client.Message, from, to int) {
	t.Helper()
	if len(msgs) != to-from {
		t.Errorf("%d messages, want %d", len(msgs), to-from)
	}
	var prev uint64
	for i, m := range msgs {
		v, ok := m.Value.Int64()
		if !ok || int(v) != from+i {
			t.Fatalf("message %d: value %v, want %d (sequence %d)", i, m.Value, from+i, m.Sequence)
		}
		if m.Sequence <= prev {
			t.Fatalf("message %d: sequence %d after %d", i, m.Sequence, prev)
		}
		prev = m.Sequence
	}
}

// TestSubscribeResumesAcrossRestart stops the gateway mid-stream and starts another
// on the same address and data_dir: the subscription sees every message once, in
// order, with no call of the caller's in between.
func TestSubscribeResumesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	g1 := startGateway(t, fmt.Sprintf(durableConfig, dir, "127.0.0.1:0"))
	addr := g1.g.GRPCAddr().String()
	c, err := client.Dial(addr, fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, client.Filter{Devices: []string{"pump"}}, client.FromEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	publish(t, g1, "pump", 0, 100)
	publish(t, g1, "other", 0, 10) // filtered out
	got := recvN(t, sub, 40)
	g1.stop() // mid-stream: 60 published messages not yet delivered

	g2 := startGateway(t, fmt.Sprintf(durableConfig, dir, addr))
	publish(t, g2, "pump", 100, 200)
	got = append(got, recvN(t, sub, 160)...)
	checkExactlyOnce(t, got, 0, 200)
	st := sub.Stats()
	if st.Reconnects == 0 {
		t.Error("no reconnect counted")
	}
	if st.Skipped != 0 {
		t.Errorf("skipped %d", st.Skipped)
	}
	t.Logf("stats %+v", st)
}

// TestLiveSubscriptionKeepsItsPlace: a live subscription that delivered nothing yet
// still resumes where its stream started, so nothing published while the gateway
// restarted is missed.
func TestLiveSubscriptionKeepsItsPlace(t *testing.T) {
	dir := t.TempDir()
	g1 := startGateway(t, fmt.Sprintf(durableConfig, dir, "127.0.0.1:0"))
	addr := g1.g.GRPCAddr().String()
	publish(t, g1, "pump", 0, 5) // before the subscription: not wanted
	c, err := client.Dial(addr, fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, client.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Recv opens the stream; a message published after that proves it is open.
	first := make(chan *client.Message, 1)
	go func() {
		m, _ := sub.Recv()
		first <- m
	}()
	waitFor(t, ctx, "the subscriber", func() bool { return subscribers(g1) == 1 })
	g1.stop() // the stream ends; Recv reconnects
	g2 := startGateway(t, fmt.Sprintf(durableConfig, dir, addr))
	publish(t, g2, "pump", 5, 10)
	m := <-first
	if m == nil {
		t.Fatal("Recv failed")
	}
	got := append([]*client.Message{m}, recvN(t, sub, 4)...)
	checkExactlyOnce(t, got, 5, 10)
}

func subscribers(g *inproc) int { return len(g.g.Hub().Subscribers()) }

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, ctx, what, cond)
}

// TestDurableConsumerSurvivesKill kills the gateway process with SIGKILL while a
// device publishes at QoS 1 and a durable consumer reads and acknowledges, and
// starts it again on the same ports. The consumer's subscription sees every
// message the broker acknowledged exactly once, in sequence order; a new
// subscription with the same consumer continues after the last acknowledgement.
func TestDurableConsumerSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns gateway processes")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgegate.yaml")
	writeCfg := func(grpcAddr, mqttAddr string) {
		cfg := fmt.Sprintf(`
gateway: {id: kill, data_dir: %s}
journal: {sync: batch, sync_interval: 2ms}
grpc: {listen: "%s"}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: "%s"}], allow_anonymous: true}
`, filepath.Join(dir, "data"), grpcAddr, mqttAddr)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("127.0.0.1:0", "127.0.0.1:0")
	cmd, addrs := startChild(t, cfgPath)
	writeCfg(addrs.GRPC, addrs.MQTT) // restarts keep the addresses

	c, err := client.Dial(addrs.GRPC, fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var (
		mu       sync.Mutex
		got      []*client.Message
		acked    = map[int]bool{} // values the broker acknowledged
		received = make(chan struct{}, 1)
	)
	consume := func(sub *client.Subscription) error {
		for {
			m, err := sub.Recv()
			if err != nil {
				return err
			}
			mu.Lock()
			got = append(got, m)
			mu.Unlock()
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			sub.Ack(actx, m.Sequence) // a failed ack is repaired by a later one
			acancel()
			select {
			case received <- struct{}{}:
			default:
			}
		}
	}
	subCtx, subCancel := context.WithCancel(ctx)
	sub, err := c.Subscribe(subCtx, client.Filter{Devices: []string{"pump"}}, client.Consumer("display"), client.FromEarliest())
	if err != nil {
		t.Fatal(err)
	}
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- consume(sub) }()

	next := 0
	const rounds, perRound = 3, 120
	for round := range rounds {
		dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).
			SetClientID(fmt.Sprintf("pump-%d", round)).SetAutoReconnect(false).SetConnectRetry(false))
		if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("round %d: connect: %v", round, tok.Error())
		}
		var toks []paho.Token
		var vals []int
		for i := range perRound {
			tok := dev.Publish("devices/pump/count", 1, false, strconv.Itoa(next))
			toks, vals = append(toks, tok), append(vals, next)
			next++
			if i < perRound/2 {
				tok.WaitTimeout(5 * time.Second)
			}
			if i == perRound*2/3 {
				cmd.Process.Kill() // mid-stream, with publishes in flight
			}
		}
		cmd.Wait()
		deadline := time.Now().Add(2 * time.Second)
		for i, tok := range toks {
			if tok.WaitTimeout(time.Until(deadline)) && tok.Error() == nil {
				mu.Lock()
				acked[vals[i]] = true
				mu.Unlock()
			}
		}
		dev.Disconnect(0)
		cmd, _ = startChild(t, cfgPath)
	}
	// A last message, acknowledged by the broker, marks the end: once the consumer
	// has it, it has reconnected to the last gateway and acknowledged everything.
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).SetClientID("pump-end").SetAutoReconnect(false))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := dev.Publish("devices/pump/count", 1, false, strconv.Itoa(next)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	acked[next] = true
	next++
	dev.Disconnect(0)
	// Everything acknowledged arrives.
	allSeen := func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[int]bool{}
		for _, m := range got {
			v, _ := m.Value.Int64()
			seen[int(v)] = true
		}
		for v := range acked {
			if !seen[v] {
				return false
			}
		}
		return true
	}
	for !allSeen() {
		select {
		case <-received:
		case <-ctx.Done():
			t.Fatal("timed out waiting for every acknowledged message")
		}
	}
	subCancel()
	if err := <-consumerDone; !errors.Is(err, context.Canceled) {
		t.Errorf("consumer ended with %v", err)
	}
	mu.Lock()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged: the test tested nothing")
	}
	seen := map[int]int{}
	var prev uint64
	for _, m := range got {
		v, _ := m.Value.Int64()
		seen[int(v)]++
		if m.Sequence <= prev {
			t.Errorf("sequence %d after %d", m.Sequence, prev)
		}
		prev = m.Sequence
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("value %d delivered %d times", v, n)
		}
	}
	last := got[len(got)-1].Sequence
	t.Logf("%d acknowledged by the broker, %d delivered, stats %+v", len(acked), len(got), sub.Stats())
	mu.Unlock()

	// A new subscription of the same consumer (a restarted workload) continues
	// after the last acknowledgement: it sees only what comes next.
	dev = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).SetClientID("pump-last").SetAutoReconnect(false))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	for i := range 5 {
		if tok := dev.Publish("devices/pump/count", 1, false, strconv.Itoa(next+i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	dev.Disconnect(0)
	sub2, err := c.Subscribe(ctx, client.Filter{Devices: []string{"pump"}}, client.Consumer("display"), client.FromEarliest())
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	more := recvN(t, sub2, 5)
	if more[0].Sequence <= last {
		t.Errorf("the new subscription started at %d, at or before the last acknowledged %d", more[0].Sequence, last)
	}
	checkExactlyOnce(t, more, next, next+5)

	// The consumer is listed with its position, and can be deleted.
	cs, err := c.Consumers(ctx)
	if err != nil || len(cs) != 1 || cs[0].Name != "display" || !cs[0].Acknowledged || cs[0].Sequence < last || !cs[0].Expires.After(cs[0].LastUsed) {
		t.Errorf("Consumers = %+v, %v", cs, err)
	}
	if err := c.DeleteConsumer(ctx, "display"); err != nil {
		t.Error(err)
	}
	if err := c.DeleteConsumer(ctx, "display"); status.Code(err) != codes.NotFound {
		t.Errorf("delete twice: %v, want NotFound", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func TestSubscribeRefusalsEnd(t *testing.T) {
	g := startGateway(t, `grpc: {listen: "127.0.0.1:0"}
http: {listen: "off"}`)
	c, err := client.Dial(g.g.GRPCAddr().String(), fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, tc := range map[string]struct {
		f    client.Filter
		opts []client.SubscribeOption
		code codes.Code
	}{
		"bad pattern":           {f: client.Filter{Devices: []string{"["}}, code: codes.InvalidArgument},
		"consumer, no data_dir": {opts: []client.SubscribeOption{client.Consumer("x")}, code: codes.FailedPrecondition},
	} {
		t.Run(name, func(t *testing.T) {
			sub, err := c.Subscribe(ctx, tc.f, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			_, err = sub.Recv()
			if status.Code(err) != tc.code {
				t.Fatalf("err %v, want %s", err, tc.code)
			}
			if sub.Stats().Reconnects != 0 {
				t.Error("a refusal was retried")
			}
		})
	}
	if _, err := c.Subscribe(ctx, client.Filter{}, client.FromEarliest(), client.After(3)); err == nil {
		t.Error("FromEarliest and After together accepted")
	}
}

// TestRecvWaitsForTheGateway: a subscription made before its gateway starts waits
// for it rather than failing (a sidecar and its workload start in any order).
func TestRecvWaitsForTheGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there yet
	c, err := client.Dial(addr, fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, _ := c.Subscribe(ctx, client.Filter{}, client.FromEarliest())
	defer sub.Close()
	got := make(chan *client.Message, 1)
	go func() {
		m, _ := sub.Recv()
		got <- m
	}()
	g := startGateway(t, fmt.Sprintf(durableConfig, t.TempDir(), addr))
	publish(t, g, "pump", 0, 1)
	if m := <-got; m == nil {
		t.Fatal("Recv failed instead of waiting for the gateway")
	}
}

// TestMaxAttempts: a gateway that keeps refusing for now (here: no subscriber slot
// free) ends the subscription after MaxAttempts reconnects in a row.
func TestMaxAttempts(t *testing.T) {
	g := startGateway(t, `grpc: {listen: "127.0.0.1:0", max_subscribers: 1}
http: {listen: "off"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c1, err := client.Dial(g.g.GRPCAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	hold, _ := c1.Subscribe(ctx, client.Filter{})
	defer hold.Close()
	go hold.Recv() // takes the one slot; ends at Close
	waitFor(t, ctx, "the first subscriber", func() bool { return subscribers(g) == 1 })

	c2, err := client.Dial(g.g.GRPCAddr().String(), client.WithBackoff(client.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 3}))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	sub, _ := c2.Subscribe(ctx, client.Filter{})
	defer sub.Close()
	_, err = sub.Recv()
	if status.Code(err) != codes.ResourceExhausted || sub.Stats().Reconnects != 3 {
		t.Fatalf("err %v after %d reconnects", err, sub.Stats().Reconnects)
	}
}

const mqttConfig = `
gateway: {id: client-test}
grpc: {listen: "%s"}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
devices:
  - {id: fryer-1, protocol: mqtt, points: [{name: oil_temp, unit: "°C"}]}
`

func mqttAddr(g *inproc) string {
	return g.g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
}

func TestWriteReadDevices(t *testing.T) {
	g := startGateway(t, fmt.Sprintf(mqttConfig, "127.0.0.1:0"))
	c, err := client.Dial(g.g.GRPCAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	fryer := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr(g)).SetClientID("fryer-1").SetAutoReconnect(false))
	if tok := fryer.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer fryer.Disconnect(0)
	writes := make(chan string, 4)
	if tok := fryer.Subscribe("devices/fryer-1/+/set", 1, func(_ paho.Client, m paho.Message) {
		writes <- m.Topic() + "=" + string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sub, err := c.Subscribe(ctx, client.Filter{Devices: []string{"fryer-*"}, Points: []string{"oil_temp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// The stream is open once Recv has its header; publish after it.
	got := make(chan *client.Message, 1)
	go func() {
		m, _ := sub.Recv()
		got <- m
	}()
	waitFor(t, ctx, "the subscriber", func() bool { return subscribers(g) == 1 })
	if tok := fryer.Publish("devices/fryer-1/oil_temp", 1, false, "182.5"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	m := <-got
	if m == nil {
		t.Fatal("no message")
	}
	if f, ok := m.Value.Float64(); !ok || f != 182.5 || m.Unit != "°C" || m.Device != "fryer-1" || m.Protocol != client.ProtocolMQTT || !m.Good() {
		t.Errorf("message %+v", m)
	}

	latest, err := c.Latest(ctx, "fryer-1", "oil_temp")
	if err != nil || latest.Sequence != m.Sequence {
		t.Fatalf("Latest: %v %v", latest, err)
	}
	all, err := c.Read(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("Read all: %d %v", len(all), err)
	}
	if _, err := c.Latest(ctx, "fryer-1", "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("unknown point: %v", err)
	}

	devs, err := c.Devices(ctx, "fryer-*")
	if err != nil || len(devs) != 1 {
		t.Fatalf("Devices: %v %v", devs, err)
	}
	if d := devs[0]; d.ID != "fryer-1" || d.State != client.StateConnected || d.Messages != 1 || d.LastSeen.IsZero() {
		t.Errorf("device %+v", d)
	}

	if err := c.Write(ctx, "fryer-1", "heater", client.Bool(false)); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-writes:
		if w != "devices/fryer-1/heater/set=false" {
			t.Errorf("write arrived as %q", w)
		}
	case <-ctx.Done():
		t.Fatal("the write did not reach the device")
	}
	err = c.Write(ctx, "nobody", "x", client.Int(1))
	if status.Code(err) != codes.NotFound {
		t.Errorf("write to an unknown device: %v", err)
	}
	if err := c.Write(ctx, "fryer-1", "x", client.Value{}); err == nil {
		t.Error("a write without a value was sent")
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "grpc.sock")
	g := startGateway(t, fmt.Sprintf(mqttConfig, "unix://"+sock))
	c, err := client.Dial("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	devs, err := c.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0].ID != "fryer-1" {
		t.Fatalf("Devices over a unix socket: %v %v", devs, err)
	}
	_ = g
}

func TestDialRefusesPlaintextOffLoopback(t *testing.T) {
	if _, err := client.Dial("192.0.2.10:50051"); !errors.Is(err, client.ErrPlaintext) {
		t.Errorf("plaintext to a remote address: %v", err)
	}
	c, err := client.Dial("192.0.2.10:50051", client.WithInsecure())
	if err != nil {
		t.Fatalf("WithInsecure: %v", err)
	}
	c.Close() // nothing was dialled: connections are made on first use
	if _, err := client.Dial("127.0.0.1:1", client.WithTLSFiles("/nonexistent/ca.crt", "", "")); err == nil {
		t.Error("a missing CA file accepted")
	}
	if _, err := client.Dial("127.0.0.1:1", client.WithTLSFiles("", "a.crt", "")); err == nil {
		t.Error("a cert without a key accepted")
	}
}

// TestTLS dials a gateway whose gRPC listener has TLS and asks for client
// certificates, on a non-loopback-looking name: the certificate is checked.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCA(t, dir)
	writeLeaf(t, dir, "server", ca, caKey, true)
	writeLeaf(t, dir, "client", ca, caKey, false)
	g := startGateway(t, fmt.Sprintf(`
grpc:
  listen: 127.0.0.1:0
  tls: {cert_file: %[1]s/server.crt, key_file: %[1]s/server.key, client_ca_file: %[1]s/ca.crt}
http: {listen: "off"}
`, dir))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(g.g.GRPCAddr().String(), client.WithTLSFiles(dir+"/ca.crt", dir+"/client.crt", dir+"/client.key"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Devices(ctx); err != nil {
		t.Fatalf("mTLS: %v", err)
	}
	// Without a client certificate the handshake fails.
	c2, err := client.Dial(g.g.GRPCAddr().String(), client.WithTLSFiles(dir+"/ca.crt", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// The handshake fails (UNAVAILABLE), or the gateway says why (UNAUTHENTICATED).
	if _, err := c2.Devices(ctx); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Unauthenticated {
		t.Errorf("no client certificate: %v", err)
	}
}

func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", der)
	return ca, key
}

func writeLeaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(math.MaxInt64))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+".key"), "PRIVATE KEY", kb)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
