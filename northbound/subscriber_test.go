package northbound_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/internal/mosquittotest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// subscriber is a persistent-session QoS 1 subscriber that records every JSON
// message it receives, in order.
type subscriber struct {
	c mqtt.Client

	mu   sync.Mutex
	got  []*pb.Message
	bad  []string
	seen map[uint64]bool
}

func newSubscriber(t testing.TB, b *mosquittotest.Broker, filter string) *subscriber {
	t.Helper()
	s := &subscriber{seen: map[uint64]bool{}}
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("test-sub").
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
