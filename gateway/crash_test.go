package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// childEnv names the config file when the test binary runs as a gateway child.
const childEnv = "EDGEGATE_TEST_CHILD_CONFIG"

type childAddrs struct {
	GRPC string `json:"grpc"`
	MQTT string `json:"mqtt"`
}

// runChild is a gateway in its own process: it prints its addresses as one JSON
// line once ready, and runs until SIGTERM (or SIGKILL, which is the point).
func runChild(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-g.Ready():
		case <-ctx.Done():
			return
		}
		b, _ := json.Marshal(childAddrs{GRPC: g.GRPCAddr().String(), MQTT: g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()})
		os.Stdout.Write(append(b, '\n'))
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func startChild(t *testing.T, cfgPath string) (*exec.Cmd, childAddrs) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("child gateway did not report ready: %v", err)
	}
	go io.Copy(io.Discard, out)
	var a childAddrs
	if err := json.Unmarshal(line, &a); err != nil {
		t.Fatal(err)
	}
	return cmd, a
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
