package gateway_test

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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// startChild runs a gateway in its own process, to be killed with SIGKILL.
func startChild(t *testing.T, cfgPath string) (*exec.Cmd, gatewaychild.Addrs) {
	c := gatewaychild.Start(t, cfgPath)
	return c.Cmd, c.Addrs
}

// TestCrashLoopLosesNothingAcknowledged kills a gateway with SIGKILL again and again
// while a device publishes at QoS 1 and a durable consumer reads and acknowledges.
// Every message the broker acknowledged must reach the consumer, in sequence order,
// and the only repeats allowed are those after the consumer's last saved ack.
func TestCrashLoopLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns gateway processes")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgegate.yaml")
	cfg := fmt.Sprintf(`
gateway: {id: crash, data_dir: %s}
journal: {sync: batch, sync_interval: 2ms}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
`, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		acked    = map[int]bool{} // values the broker acknowledged
		seen     = map[int]int{}  // value -> times delivered
		lastSeq  uint64           // the consumer's newest sequence, over all rounds
		repeats  int
		next     int // next value to publish
		disorder []string
	)
	const rounds, perRound = 4, 150
	for round := 0; round <= rounds; round++ {
		cmd, addrs := startChild(t, cfgPath)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)

		// The durable consumer: reads, checks order, acknowledges each message.
		cc, err := grpc.NewClient("passthrough:///"+addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		client := pb.NewGatewayClient(cc)
		stream, err := client.Subscribe(ctx, &pb.SubscribeRequest{Consumer: "crash", Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
		if err != nil {
			t.Fatal(err)
		}
		received := make(chan struct{}, 1)
		consumerDone := make(chan struct{})
		go func() {
			defer close(consumerDone)
			var prevInStream uint64
			for {
				m, err := stream.Recv()
				if err != nil {
					return // the kill, or the end of the round
				}
				v, _ := strconv.Atoi(m.GetValue().String()[len("int_value:"):])
				mu.Lock()
				if m.GetSequence() <= prevInStream {
					disorder = append(disorder, fmt.Sprintf("round %d: sequence %d after %d", round, m.GetSequence(), prevInStream))
				}
				prevInStream = m.GetSequence()
				if m.GetSequence() <= lastSeq {
					repeats++
				}
				lastSeq = max(lastSeq, m.GetSequence())
				seen[v]++
				mu.Unlock()
				client.Ack(ctx, &pb.AckRequest{Consumer: "crash", Sequence: m.GetSequence()})
				select {
				case received <- struct{}{}:
				default:
				}
			}
		}()

		if round == rounds {
			// The last round only drains: everything acknowledged must arrive.
			waitUntil(t, ctx, "every acknowledged message delivered", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for v := range acked {
					if seen[v] == 0 {
						return false
					}
				}
				return true
			}, received)
			cancel()
			<-consumerDone
			cc.Close()
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			break
		}

		// The device publishes at QoS 1; a completed token is an acknowledgement.
		dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).
			SetClientID(fmt.Sprintf("dev-%d", round)).SetAutoReconnect(false).SetConnectRetry(false))
		if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("round %d: connect: %v", round, tok.Error())
		}
		var inflight []paho.Token
		var values []int
		for i := 0; i < perRound; i++ {
			values = append(values, next)
			tok := dev.Publish("devices/pump/count", 1, false, strconv.Itoa(next))
			inflight = append(inflight, tok)
			next++
			switch {
			case i < perRound/2:
				tok.WaitTimeout(5 * time.Second) // acknowledged before the kill
			case i == perRound*2/3:
				// Kill mid-stream, with publishes in flight.
				cmd.Process.Kill()
			}
		}
		cmd.Wait()
		deadline := time.Now().Add(2 * time.Second)
		for i, tok := range inflight {
			if tok.WaitTimeout(time.Until(deadline)) && tok.Error() == nil {
				mu.Lock()
				acked[values[i]] = true
				mu.Unlock()
			}
		}
		dev.Disconnect(0)
		cancel()
		<-consumerDone
		cc.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(disorder) > 0 {
		t.Errorf("out of order: %v", disorder)
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged: the test tested nothing")
	}
	for v := range acked {
		if seen[v] == 0 {
			t.Errorf("acknowledged value %d never delivered", v)
		}
	}
	t.Logf("%d acknowledged, %d distinct delivered, %d repeats after restarts (the at-least-once window)", len(acked), len(seen), repeats)
}

// waitUntil checks cond whenever a message arrives (or every 50ms) until ctx ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool, poke <-chan struct{}) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-poke:
		case <-tick.C:
		}
	}
}

// TestCrashPipelinedManyClients kills a gateway with SIGKILL while many clients
// publish at QoS 1 as fast as they can, each with many publishes in flight (acks
// wait for the disk off the read loop, so a connection pipelines). After a restart
// every acknowledged message is in the log, and no message is in it twice: the
// clients never send one again, so a repeat would be the gateway's.
func TestCrashPipelinedManyClients(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns gateway processes")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgegate.yaml")
	cfg := fmt.Sprintf(`
gateway: {id: crash, data_dir: %s, retain: 262144}
journal: {sync: batch}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
`, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const clients, perClient, killAfter = 16, 4000, 8000

	cmd, addrs := startChild(t, cfgPath)
	var (
		mu      sync.Mutex
		acked   = map[string]bool{} // "device/value" the broker acknowledged
		nAcked  int
		killed  = make(chan struct{})
		killing sync.Once
		wg      sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).
			SetClientID(fmt.Sprintf("pipe-%d", c)).SetAutoReconnect(false).SetConnectRetry(false))
		if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("client %d: connect: %v", c, tok.Error())
		}
		wg.Add(1)
		go func(c int, dev paho.Client) {
			defer wg.Done()
			defer dev.Disconnect(0)
			device := fmt.Sprintf("pipe-%d", c)
			toks := make([]paho.Token, 0, perClient)
			for v := 0; v < perClient; v++ {
				select {
				case <-killed:
				default:
					toks = append(toks, dev.Publish("devices/"+device+"/count", 1, false, strconv.Itoa(v)))
				}
			}
			for v, tok := range toks {
				select {
				case <-tok.Done():
				case <-killed:
					// Whatever completes within a moment of the kill was acked before it.
					if !tok.WaitTimeout(2 * time.Second) {
						continue
					}
				}
				if tok.Error() != nil {
					continue
				}
				mu.Lock()
				acked[device+"/"+strconv.Itoa(v)] = true
				nAcked++
				if nAcked == killAfter {
					killing.Do(func() { cmd.Process.Kill(); close(killed) })
				}
				mu.Unlock()
			}
		}(c, dev)
	}
	wg.Wait()
	killing.Do(func() { cmd.Process.Kill(); close(killed) })
	cmd.Wait()

	// Restart and read back everything retained.
	cmd, addrs = startChild(t, cfgPath)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc, err := grpc.NewClient("passthrough:///"+addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := pb.NewGatewayClient(cc)
	stream, err := client.Subscribe(ctx, &pb.SubscribeRequest{Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var prev uint64
	missing := len(acked)
	for missing > 0 {
		m, err := stream.Recv()
		if err != nil {
			var some []string
			for k := range acked {
				if seen[k] == 0 && len(some) < 10 {
					some = append(some, k)
				}
			}
			t.Fatalf("reading back after %d messages (last sequence %d): %v; %d acknowledged messages not seen, such as %v", len(seen), prev, err, missing, some)
		}
		if m.GetSequence() <= prev {
			t.Fatalf("sequence %d after %d", m.GetSequence(), prev)
		}
		prev = m.GetSequence()
		k := m.GetDevice() + "/" + strconv.FormatInt(m.GetValue().GetIntValue(), 10)
		seen[k]++
		if seen[k] > 1 {
			t.Fatalf("%s is in the log twice", k)
		}
		if acked[k] {
			missing--
		}
	}
	if len(acked) < killAfter {
		t.Fatalf("only %d acknowledged before the kill: the test did not load the gateway", len(acked))
	}
	t.Logf("%d acknowledged by %d pipelining clients before SIGKILL, all in the log once", len(acked), clients)
}
