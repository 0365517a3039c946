package northbound_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/internal/testwait"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// mosquitto is Debian's broker, run by a test on a port chosen with :0 and
// stopped by its pid. Its persistence file keeps the test subscriber's session
// (and what is queued for it) across a restart.
type mosquitto struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startMosquitto starts mosquitto, or skips the test without it.
func startMosquitto(t testing.TB) *mosquitto {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Skipf("%s not found (Debian package mosquitto): %v", mosquittoBin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := &mosquitto{t: t, dir: t.TempDir(), port: port}
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
max_queued_messages 0
log_dest file %s/mosquitto.log
`, port, b.dir, b.dir)
	if os.Getuid() == 0 {
		// As root, mosquitto would become the user mosquitto, which cannot
		// write its log or persistence file in the test's directory.
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
			t.Logf("mosquitto.log:\n%s", log)
		}
	})
	return b
}

func (b *mosquitto) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }
func (b *mosquitto) url() string  { return "tcp://" + b.addr() }

func (b *mosquitto) start() {
	b.t.Helper()
	b.cmd = exec.Command(mosquittoBin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(b.cmd, b.done)
	testwait.For(b.t, 10*time.Second, "mosquitto to listen on "+b.addr(), func() bool {
		c, err := net.DialTimeout("tcp", b.addr(), 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// stop ends mosquitto with SIGTERM (it saves its persistence file) and waits.
func (b *mosquitto) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// subscriber is a persistent-session QoS 1 subscriber that records every JSON
// message it receives, in order.
type subscriber struct {
	c mqtt.Client

	mu   sync.Mutex
	got  []*pb.Message
	bad  []string
	seen map[uint64]bool
}

func newSubscriber(t testing.TB, b *mosquitto, filter string) *subscriber {
	t.Helper()
	s := &subscriber{seen: map[uint64]bool{}}
	opts := mqtt.NewClientOptions().AddBroker(b.url()).SetClientID("test-sub").
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(20 * time.Millisecond).SetMaxReconnectInterval(100 * time.Millisecond).
		SetOrderMatters(true).SetResumeSubs(true)
	opts.SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) { s.record(msg) })
	s.c = mqtt.NewClient(opts)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	if tok := s.c.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(0) })
	return s
}

func (s *subscriber) record(msg mqtt.Message) {
	if strings.HasSuffix(msg.Topic(), "/set") {
		return // a command, not the link's
	}
	m := &pb.Message{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := protojson.Unmarshal(msg.Payload(), m); err != nil {
		s.bad = append(s.bad, msg.Topic()+": "+err.Error())
		return
	}
	if want := "t/site-1/" + m.GetDevice() + "/" + m.GetPoint(); msg.Topic() != want {
		s.bad = append(s.bad, "topic "+msg.Topic()+", want "+want)
	}
	s.got = append(s.got, m)
	s.seen[m.GetSequence()] = true
}

// distinct is how many different sequences arrived.
func (s *subscriber) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// check says what is wrong with what arrived: every sequence in want arrived,
// nothing else; per point, each sequence seen for the first time is larger
// than every one before it (a repeat is allowed: at least once). It returns
// how many repeats there were.
func (s *subscriber) check(t testing.TB, want []uint64) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) > 0 {
		t.Errorf("bad messages: %q", s.bad[:min(5, len(s.bad))])
	}
	wanted := map[uint64]bool{}
	for _, q := range want {
		wanted[q] = true
		if !s.seen[q] {
			t.Errorf("sequence %d never arrived", q)
		}
	}
	first := map[uint64]bool{}
	last := map[string]uint64{}
	repeats := 0
	for _, m := range s.got {
		q, key := m.GetSequence(), m.GetDevice()+"/"+m.GetPoint()
		if !wanted[q] {
			t.Errorf("sequence %d was not expected", q)
		}
		if first[q] {
			repeats++
			continue
		}
		first[q] = true
		if q <= last[key] {
			t.Errorf("%s: sequence %d arrived after %d", key, q, last[key])
		}
		last[key] = q
	}
	return repeats
}
