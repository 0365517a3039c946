package mqtt

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// gateJournal is a journal whose disk the test controls: nothing is durable until
// release says so, and fail makes what is not durable never be.
type gateJournal struct {
	mu      sync.Mutex
	last    uint64
	durable uint64
	err     error
	moved   chan struct{}
}

func newGateJournal() *gateJournal { return &gateJournal{moved: make(chan struct{})} }

func (j *gateJournal) Append(msgs []*bridge.Message) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	j.last = msgs[len(msgs)-1].Sequence
	return nil
}

func (j *gateJournal) Check(seq uint64) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.durable >= seq {
		return true, nil
	}
	return false, j.err
}

func (j *gateJournal) Moved() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.moved
}

func (j *gateJournal) WaitDurable(ctx context.Context, seq uint64) error {
	for {
		moved := j.Moved()
		if done, err := j.Check(seq); done || err != nil {
			return err
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release makes everything appended up to seq durable (everything, for 0).
func (j *gateJournal) release(seq uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if seq == 0 {
		seq = j.last
	}
	j.durable = seq
	close(j.moved)
	j.moved = make(chan struct{})
}

// fail makes what is not durable never be, and refuses appends.
func (j *gateJournal) fail() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.err = fmt.Errorf("disk full: %w", bridge.ErrUnavailable)
	close(j.moved)
	j.moved = make(chan struct{})
}

func (j *gateJournal) First() uint64                   { return math.MaxUint64 }
func (j *gateJournal) Last() uint64                    { j.mu.Lock(); defer j.mu.Unlock(); return j.last }
func (j *gateJournal) NewReader() bridge.JournalReader { return nil }

// publishPacket is a PUBLISH of QoS 1 or 2 with a packet id.
func publishPacket(topic, payload string, qos byte, id uint16) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	body = append(body, payload...)
	return packet(0x30|qos<<1, body)
}

// rawConnected dials, sends CONNECT and reads the CONNACK.
func rawConnected(t *testing.T, addr string, connect []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, r := rawConn(t, addr)
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := readPacket(r); err != nil || typ != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: %#x %v %v", typ, body, err)
	}
	return c, r
}

func send(t *testing.T, c net.Conn, pkts ...[]byte) {
	t.Helper()
	for _, p := range pkts {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

// expectAck reads the next packet and checks that it is the ack typ of id.
func expectAck(t *testing.T, r *bufio.Reader, typ byte, id uint16) {
	t.Helper()
	got, body, err := readPacket(r)
	if err != nil {
		t.Fatalf("waiting for ack %#x of packet %d: %v", typ, id, err)
	}
	if got&0xf0 != typ || len(body) < 2 || binary.BigEndian.Uint16(body) != id {
		t.Fatalf("got packet %#x %v, want ack %#x of packet %d", got, body, typ, id)
	}
}

func durableEnv(t *testing.T, cfg *Config) (*env, *gateJournal) {
	j := newGateJournal()
	return startHub(t, cfg, protocols.Env{}, bridge.HubConfig{Journal: j}), j
}

// TestAckAfterDisk: a connection's publishes are read and published while none of
// them is on disk, and each is acknowledged only once it is, in the order sent.
// Before acks waited for the disk off the read loop, the second publish was not
// read until the first was durable.
func TestAckAfterDisk(t *testing.T) {
	e, j := durableEnv(t, testConfig())
	c, r := rawConnected(t, e.addr(), rawConnect311)
	send(t, c, publishPacket("devices/d1/t", "1", 1, 1), publishPacket("devices/d1/t", "2", 1, 2), publishPacket("devices/d1/t", "3", 1, 3))
	got := e.next(3) // all three read and visible while none is durable
	if n := e.counter(e.a.metrics.acks.written); n != 0 {
		t.Fatalf("%v acks written before anything was on disk", n)
	}
	e.waitFor("three acks pending", func() bool { return e.counter(e.a.metrics.acks.pending) == 3 })

	j.release(got[1].Sequence)
	expectAck(t, r, packets.Puback<<4, 1)
	expectAck(t, r, packets.Puback<<4, 2)
	e.waitFor("the third still pending", func() bool { return e.counter(e.a.metrics.acks.written) == 2 })
	if n := e.counter(e.a.metrics.acks.pending); n != 1 {
		t.Fatalf("pending acks: %v, want 1 (the third is not on disk)", n)
	}
	j.release(0)
	expectAck(t, r, packets.Puback<<4, 3)
}

// TestAckOrderAcrossTopics: a QoS 1 publish that is not a reading (no device
// topic) is acknowledged after the readings the connection sent before it, not at
// once: MQTT requires acks in publish order. It is still delivered to subscribers.
func TestAckOrderAcrossTopics(t *testing.T) {
	e, j := durableEnv(t, testConfig())
	sub := mustClient3(t, e.addr(), "", "", "")
	delivered := make(chan string, 4)
	if tok := sub.Subscribe("other/#", 1, func(_ paho3.Client, m paho3.Message) { delivered <- m.Topic() }); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c, r := rawConnected(t, e.addr(), rawConnect311)
	send(t, c, publishPacket("devices/d1/t", "1", 1, 1), publishPacket("other/x", "hello", 1, 2), publishPacket("devices/d1/t", "3", 1, 3))
	e.next(2)
	select {
	case topic := <-delivered:
		if topic != "other/x" {
			t.Fatalf("delivered %q", topic)
		}
	case <-time.After(waitTimeout):
		t.Fatal("other/x was not delivered to the subscriber before the disk")
	}
	e.waitFor("three acks pending", func() bool { return e.counter(e.a.metrics.acks.pending) == 3 })
	if n := e.counter(e.a.metrics.acks.written); n != 0 {
		t.Fatalf("%v acks written before anything was on disk", n)
	}
	j.release(0)
	for id := uint16(1); id <= 3; id++ {
		expectAck(t, r, packets.Puback<<4, id)
	}
}

// TestAckQoS2: PUBREC once on disk, then PUBREL gets PUBCOMP; a retransmission of
// the publish before the PUBREL is not taken twice.
func TestAckQoS2(t *testing.T) {
	e, j := durableEnv(t, testConfig())
	c, r := rawConnected(t, e.addr(), rawConnect311)
	send(t, c, publishPacket("devices/d1/t", "1", 2, 7))
	e.next(1)
	e.waitFor("the PUBREC pending", func() bool { return e.counter(e.a.metrics.acks.pending) == 1 })
	j.release(0)
	expectAck(t, r, packets.Pubrec<<4, 7)
	dup := publishPacket("devices/d1/t", "1", 2, 7)
	dup[0] |= 0x08
	send(t, c, dup)
	expectAck(t, r, packets.Pubrec<<4, 7)
	send(t, c, []byte{0x62, 2, 0, 7}) // PUBREL
	expectAck(t, r, packets.Pubcomp<<4, 7)
	send(t, c, publishPacket("devices/d1/t", "2", 1, 8))
	if m := e.next(1)[0]; m.Value.String() != "2" {
		t.Fatalf("after the retransmission the hub got %v, want the next reading 2", m.Value)
	}
}

// TestAckWindow: a client with max_inflight acks pending waits before its next
// publish is read, so that pending acks are bounded per connection.
func TestAckWindow(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInflight = 2
	e, j := durableEnv(t, cfg)
	c, r := rawConnected(t, e.addr(), rawConnect311)
	send(t, c, publishPacket("devices/d1/t", "1", 1, 1), publishPacket("devices/d1/t", "2", 1, 2), publishPacket("devices/d1/t", "3", 1, 3))
	e.next(2)
	e.waitFor("the third publish waiting for a place", func() bool { return e.counter(e.a.metrics.acks.windowFull) == 1 })
	if got := e.hub.LastSequence(); got != 2 {
		t.Fatalf("the hub has %d messages while the window is full, want 2", got)
	}
	j.release(0)
	expectAck(t, r, packets.Puback<<4, 1)
	expectAck(t, r, packets.Puback<<4, 2)
	e.next(1)
	j.release(0)
	expectAck(t, r, packets.Puback<<4, 3)
}

// TestAckUnavailable: when the durable log cannot write (a full disk), the
// publishes waiting for it are not acknowledged and the connection is closed so
// that the client sends them again; a v5 client is told 0x97 first. A new publish
// while the log is unavailable is refused the same way. Before, a failed journal
// answered v5 clients 0x83 (a permanent refusal) and 3.1.1 clients with a PUBACK.
func TestAckUnavailable(t *testing.T) {
	e, j := durableEnv(t, testConfig())
	c, r := rawConnected(t, e.addr(), rawConnect5)
	send(t, c, publishPacket5("devices/d1/t", "1", 1, 1))
	e.next(1)
	j.fail()
	typ, body, err := readPacket(r)
	if err != nil || typ != 0xe0 || len(body) < 1 || body[0] != packets.ErrQuotaExceeded.Code {
		t.Fatalf("got %#x %v %v, want DISCONNECT 0x97", typ, body, err)
	}
	expectClosed(t, r, "v5 publish not on disk")
	if n := e.counter(e.a.metrics.acks.written); n != 0 {
		t.Fatalf("%v acks written for a message that never reached the disk", n)
	}

	c3, r3 := rawConnected(t, e.addr(), rawConnect311)
	send(t, c3, publishPacket("devices/d1/t", "2", 1, 1))
	expectClosed(t, r3, "3.1.1 publish while the log is unavailable")
	if n := e.counter(e.a.metrics.acks.written); n != 0 {
		t.Fatalf("%v acks written while the log is unavailable", n)
	}
}

// publishPacket5 is an MQTT 5 PUBLISH with no properties.
func publishPacket5(topic, payload string, qos byte, id uint16) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	body = append(body, 0) // properties
	body = append(body, payload...)
	return packet(0x30|qos<<1, body)
}
