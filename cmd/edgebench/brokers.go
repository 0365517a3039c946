package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// broker is one system under test, running: edgegate or the peer.
type broker struct {
	kind     string // "edgegate" or "mosquitto"
	proc     *proc
	mqttAddr string
	grpcAddr string // edgegate only
	httpAddr string // edgegate only
	tempDir  string // a data_dir of its own, removed when it stops
}

func (b *broker) stop() {
	b.proc.stop()
	if b.tempDir != "" {
		os.RemoveAll(b.tempDir)
	}
}

// readyLine is the gateway's "edgegate ready" log line, which names the addresses
// it bound.
type readyLine struct {
	GRPC string `json:"grpc"`
	HTTP string `json:"http"`
}

const (
	kindEdgegate  = "edgegate"
	kindMosquitto = "mosquitto"
)

// brokerSetup is what a measurement asks of a broker.
type brokerSetup struct {
	// queue is how many messages a subscriber may fall behind (edgegate's
	// subscriber_queue, mosquitto's max_queued_messages); 0 leaves the defaults, as
	// the memory test does.
	queue int
	// maxConnections is the MQTT connection limit to configure (0: the default).
	maxConnections int
	// durable starts edgegate with a data_dir of its own (a fresh directory,
	// removed when it stops) and journal.sync: batch, as every deployment runs it;
	// dataDir names the directory instead, kept. The peer runs from memory.
	durable bool
	dataDir string
	// httpAddr is edgegate's HTTP listener (default: a port it picks and logs).
	httpAddr string
}

// startTries bounds the starts of a broker whose free port was taken meanwhile.
const startTries = 3

func (e *env) startBroker(ctx context.Context, kind string, s brokerSetup) (*broker, error) {
	var err error
	for range startTries {
		var b *broker
		switch kind {
		case kindEdgegate:
			b, err = e.startGateway(ctx, s)
		case kindMosquitto:
			b, err = e.startMosquitto(ctx, s)
		default:
			return nil, fmt.Errorf("unknown broker %q", kind)
		}
		if err == nil || ctx.Err() != nil {
			return b, err
		}
		e.logf("%s did not start, trying again: %v", kind, err)
	}
	return nil, err
}

// gatewayConfig is the config the gateway is started with: gRPC and HTTP on loopback
// ports it picks (and logs), MQTT on mqttAddr.
func gatewayConfig(mqttAddr string, s brokerSetup) string {
	var b strings.Builder
	b.WriteString("gateway:\n  id: edgebench\n  log_level: info\n")
	if s.dataDir != "" {
		fmt.Fprintf(&b, "  data_dir: %q\n", s.dataDir)
	}
	if s.queue > 0 {
		// The ring holds twice the queue, so a subscriber that is behind by the
		// whole queue still reads from memory; drop_oldest counts what a slow
		// subscriber skips instead of ending its stream.
		fmt.Fprintf(&b, "  retain: %d\n  subscriber_queue: %d\n  slow_consumer: drop_oldest\n", 2*s.queue, s.queue)
	}
	httpAddr := s.httpAddr
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	fmt.Fprintf(&b, "grpc: {listen: \"127.0.0.1:0\"}\nhttp: {listen: %q}\n", httpAddr)
	if s.dataDir != "" {
		// The default, written out: the mode the durable rows measure.
		b.WriteString("journal: {sync: batch}\n")
	}
	fmt.Fprintf(&b, "mqtt:\n  listeners: [{type: tcp, address: %q}]\n  allow_anonymous: true\n", mqttAddr)
	if s.maxConnections > 0 {
		fmt.Fprintf(&b, "  max_connections: %d\n", s.maxConnections)
	}
	return b.String()
}

func (e *env) startGateway(ctx context.Context, s brokerSetup) (*broker, error) {
	mqttAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	var tempDir string
	if s.durable && s.dataDir == "" {
		if tempDir, err = os.MkdirTemp(e.tmp, "data-"); err != nil {
			return nil, err
		}
		s.dataDir = tempDir
	}
	ok := false
	defer func() {
		if !ok && tempDir != "" {
			os.RemoveAll(tempDir)
		}
	}()
	cfg := filepath.Join(e.tmp, "edgegate.yaml")
	if err := os.WriteFile(cfg, []byte(gatewayConfig(mqttAddr, s)), 0o600); err != nil {
		return nil, err
	}
	readyCh := make(chan readyLine, 1)
	p, err := startProc(kindEdgegate, e.gateway, []string{"serve", "--config", cfg}, func(line string) {
		if !strings.Contains(line, `"edgegate ready"`) {
			return
		}
		var rl readyLine
		if json.Unmarshal([]byte(line), &rl) == nil {
			select {
			case readyCh <- rl:
			default:
			}
		}
	}, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	var rl readyLine
	select {
	case rl = <-readyCh:
	case <-p.done:
		return nil, p.exited()
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("edgegate did not log \"edgegate ready\" within 30s:\n%s", p.output())
	}
	if err := waitDial(ctx, p, mqttAddr); err != nil {
		return nil, err
	}
	ok = true
	return &broker{kind: kindEdgegate, proc: p, mqttAddr: mqttAddr, grpcAddr: rl.GRPC, httpAddr: rl.HTTP, tempDir: tempDir}, nil
}

// mosquittoConfig is the peer's config: one loopback listener, no persistence,
// anonymous access, and the same subscriber bound as the gateway's.
func mosquittoConfig(addr string, s brokerSetup) (string, error) {
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		return "", fmt.Errorf("bad address %q", addr)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listener %s %s\nallow_anonymous true\npersistence false\n", port, host)
	b.WriteString("log_dest stderr\nlog_type error\nlog_type warning\n")
	if s.queue > 0 {
		fmt.Fprintf(&b, "max_queued_messages %d\n", s.queue)
	}
	return b.String(), nil
}

func (e *env) startMosquitto(ctx context.Context, s brokerSetup) (*broker, error) {
	if e.mosquitto == "" {
		return nil, errNoPeer
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	text, err := mosquittoConfig(addr, s)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(e.tmp, "mosquitto.conf")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc(kindMosquitto, e.mosquitto, []string{"-c", cfg}, nil, false)
	if err != nil {
		return nil, err
	}
	if err := waitDial(ctx, p, addr); err != nil {
		p.stop()
		return nil, err
	}
	return &broker{kind: kindMosquitto, proc: p, mqttAddr: addr}, nil
}

// errNoPeer is the peer's cell when mosquitto is not installed.
var errNoPeer = errors.New("mosquitto not found (apt-get install mosquitto)")

// findMosquitto returns the mosquitto binary, or "" when there is none.
func findMosquitto(flagValue string) string {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err == nil {
			return flagValue
		}
		return ""
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	return ""
}

// mosquittoVersion is what `mosquitto -h` says of itself, for the table's header.
func mosquittoVersion(path string) string {
	out, _ := exec.Command(path, "-h").CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	if v, ok := strings.CutPrefix(strings.TrimSpace(first), "mosquitto version "); ok {
		return "mosquitto " + v
	}
	return "mosquitto"
}
