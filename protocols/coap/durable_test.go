package coap

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
)

// Issue 14's CoAP part: a confirmable reading is acknowledged once it is on disk,
// and the wait for the disk holds up nothing else.

// TestAckAfterJournal: with a durable log, a confirmable POST is answered 2.04, and
// what it acknowledged is in the journal by then.
func TestAckAfterJournal(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{Sync: journal.SyncBatch, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() }) // after the hub's close (cleanups run last first)
	e := startHub(t, testConfig(), bridge.HubConfig{Journal: j, FirstSequence: j.NextSequence()}, nil, nil)
	for i, addr := range []string{e.addr(0), e.addr(1)} {
		var c coapClient
		if i == 0 {
			c = dialUDP(t, addr)
		} else {
			c = dialTCP(t, addr, nil)
		}
		if code, _ := post(t, c, "/devices/d/p", 0, []byte(fmt.Sprint(i))); code != codes.Changed {
			t.Fatalf("POST %d: %v", i, code)
		}
		seq := e.hub.LastSequence()
		if done, err := j.Check(seq); !done || err != nil {
			t.Errorf("acknowledged reading %d (sequence %d) not in the journal: %v, %v", i, seq, done, err)
		}
		e.next(1)
	}
}

// gateJournal is a durable log whose disk the test controls: a batch is durable
// once the test says so (durableTo), or fails with the error it sets (fail).
type gateJournal struct {
	mu        sync.Mutex
	msgs      []*bridge.Message
	durable   uint64
	failed    error // Check's error for what is not durable
	appendErr error // Append's error
	moved     chan struct{}
}

func newGateJournal() *gateJournal { return &gateJournal{moved: make(chan struct{})} }

func (g *gateJournal) Append(msgs []*bridge.Message) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.appendErr != nil {
		return g.appendErr
	}
	g.msgs = append(g.msgs, msgs...)
	return nil
}

func (g *gateJournal) WaitDurable(ctx context.Context, seq uint64) error {
	for {
		moved := g.Moved()
		if done, err := g.Check(seq); done {
			return err
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *gateJournal) Check(seq uint64) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case seq <= g.durable:
		return true, nil
	case g.failed != nil:
		return true, g.failed
	}
	return false, nil
}

func (g *gateJournal) Moved() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.moved
}

// change applies f under the lock and wakes the waiters.
func (g *gateJournal) change(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
	close(g.moved)
	g.moved = make(chan struct{})
}

func (g *gateJournal) durableTo(seq uint64) { g.change(func() { g.durable = seq }) }

func (g *gateJournal) appended() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.msgs)
}

func (g *gateJournal) First() uint64 { return 1 }

func (g *gateJournal) Last() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return uint64(len(g.msgs))
}

func (g *gateJournal) NewReader() bridge.JournalReader { return gateReader{g} }

type gateReader struct{ g *gateJournal }

func (r gateReader) Read(from uint64, out []*bridge.Message) ([]*bridge.Message, error) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	out = out[:0]
	for i := from; i >= 1 && i <= uint64(len(r.g.msgs)) && len(out) < cap(out); i++ {
		out = append(out, r.g.msgs[i-1])
	}
	return out, nil
}

func (gateReader) Close() {}

// TestAckWaitsOnlyForItsReading: while a confirmable reading waits for its fsync
// (a journal that holds it), the same peer's next requests are served (a GET, a
// non-confirmable reading, another confirmable reading that waits in turn), and
// so is another peer; each acknowledgement goes out once its reading is durable.
// A retransmission of a waiting reading is not answered twice. Before, the wait ran
// in the session's only goroutine: nothing of the peer's was read until it ended.
func TestAckWaitsOnlyForItsReading(t *testing.T) {
	g := newGateJournal()
	e := startHub(t, testConfig(), bridge.HubConfig{Journal: g}, nil, nil)
	p := newRawPeer(t, "127.0.0.1", e.addr(0))
	first := rawMessage(typeCON, codes.POST, 1, []byte{1}, pathOptions("devices", "d", "a"), []byte("1"))
	p.send(first)
	waitFor(t, "the first reading in the journal", func() bool { return g.appended() == 1 })
	if n := metric(t, e.a.metrics.pending); n != 1 {
		t.Errorf("pending_responses = %v, want 1", n)
	}
	p.send(first) // a retransmission: dropped while its answer waits
	// The same peer, meanwhile: a GET is answered (the value is visible already).
	r := p.roundTrip(rawMessage(typeCON, codes.GET, 2, []byte{2}, pathOptions("devices", "d", "a"), nil))
	if r.code != codes.Content {
		t.Errorf("GET while a reading waits for the disk: %v", r.code)
	}
	// A non-confirmable reading never waits for the disk.
	p.send(rawMessage(typeNON, codes.POST, 3, []byte{3}, pathOptions("devices", "d", "b"), []byte("2")))
	// (go-coap answers a non-confirmable request with a confirmable response.)
	if r := p.recv(); r.typ == typeACK || r.code != codes.Changed || r.token[0] != 3 {
		t.Errorf("NON reading while another waits: %+v", r)
	} else if r.typ == typeCON {
		p.send(rawMessage(typeACK, 0, r.mid, nil, nil, nil))
	}
	// Another confirmable reading waits in turn.
	p.send(rawMessage(typeCON, codes.POST, 4, []byte{4}, pathOptions("devices", "d", "c"), []byte("3")))
	waitFor(t, "the third reading in the journal", func() bool { return g.appended() == 3 })
	// Another peer is served too.
	other := newRawPeer(t, "127.0.0.1", e.addr(0))
	if r := other.roundTrip(rawMessage(typeCON, codes.GET, 5, []byte{5}, pathOptions("devices", "d", "b"), nil)); r.code != codes.Content {
		t.Errorf("another peer's GET: %v", r.code)
	}
	e.next(3)

	g.durableTo(1)
	if r := p.recv(); r.typ != typeACK || r.mid != 1 || r.code != codes.Changed {
		t.Fatalf("after the first fsync: %+v, want the ACK 2.04 of message 1", r)
	}
	g.durableTo(3)
	if r := p.recv(); r.typ != typeACK || r.mid != 4 || r.code != codes.Changed {
		t.Fatalf("after the second fsync: %+v, want the ACK 2.04 of message 4 (and no second answer to message 1)", r)
	}
	waitFor(t, "no reading pending", func() bool { return metric(t, e.a.metrics.pending) == 0 })
	// The retransmission after the answer gets the same answer, from the cache.
	if r := p.roundTrip(first); r.code != codes.Changed {
		t.Errorf("retransmission after the ACK: %v", r.code)
	}
	e.none()
}

// TestUnavailableJournal: a reading the durable log cannot write is answered 5.03
// with a Max-Age, never 2.04, whether the log fails the batch after taking it (a
// failed fsync) or refuses it at once (a full disk); the device sends it again.
func TestUnavailableJournal(t *testing.T) {
	g := newGateJournal()
	e := startHub(t, testConfig(), bridge.HubConfig{Journal: g}, nil, nil)
	c := dialUDP(t, e.addr(0))
	g.change(func() { g.failed = fmt.Errorf("fsync: %w", bridge.ErrUnavailable) })
	if code, _ := post(t, c, "/devices/d/p", 0, []byte("1")); code != codes.ServiceUnavailable {
		t.Errorf("a reading whose fsync failed: %v, want 5.03", code)
	}
	g.change(func() { g.appendErr = fmt.Errorf("disk full: %w", bridge.ErrUnavailable) })
	p := newRawPeer(t, "127.0.0.1", e.addr(0))
	r := p.roundTrip(rawMessage(typeCON, codes.POST, 9, []byte{9}, pathOptions("devices", "d", "p"), []byte("2")))
	if r.code != codes.ServiceUnavailable {
		t.Errorf("a reading the log refused: %v, want 5.03", r.code)
	}
	if age := r.opts[optMaxAge]; len(age) != 1 || age[0] == 0 {
		t.Errorf("Max-Age % x, want a retry hint", age)
	}
	if n := metric(t, e.a.metrics.ackRefused.WithLabelValues(ackUnavailable)); n != 2 {
		t.Errorf("readings_unacknowledged_total{durable_log_unavailable} = %v, want 2", n)
	}
}

// TestPendingBound: beyond max_pending_responses a confirmable reading is answered
// 5.03 at once instead of waiting.
func TestPendingBound(t *testing.T) {
	g := newGateJournal()
	cfg := testConfig()
	cfg.MaxPendingResponses = 1
	e := startHub(t, cfg, bridge.HubConfig{Journal: g}, nil, nil)
	p := newRawPeer(t, "127.0.0.1", e.addr(0))
	p.send(rawMessage(typeCON, codes.POST, 1, []byte{1}, pathOptions("devices", "d", "a"), []byte("1")))
	waitFor(t, "the first reading pending", func() bool { return metric(t, e.a.metrics.pending) == 1 })
	r := p.roundTrip(rawMessage(typeCON, codes.POST, 2, []byte{2}, pathOptions("devices", "d", "a"), []byte("2")))
	if r.code != codes.ServiceUnavailable {
		t.Errorf("beyond max_pending_responses: %v, want 5.03", r.code)
	}
	if n := metric(t, e.a.metrics.ackRefused.WithLabelValues(ackPendingFull)); n != 1 {
		t.Errorf("readings_unacknowledged_total{pending_full} = %v, want 1", n)
	}
	g.durableTo(1)
	if r := p.recv(); r.mid != 1 || r.code != codes.Changed {
		t.Errorf("the pending reading: %+v", r)
	}
}

// TestClientDoesNotWaitForDisk: readings of a device the gateway observes are
// submitted without waiting for the durable log (nothing is acknowledged to the
// device): with a log that never syncs, they keep coming. Before, the first
// reading's wait held the device's next ones.
func TestClientDoesNotWaitForDisk(t *testing.T) {
	dev := newTestDevice(t, "udp", nil)
	g := newGateJournal()
	e := startHub(t, clientConfig("dev-9", "coap://"+dev.addr, true), bridge.HubConfig{Journal: g}, nil, nil)
	e.waitValue("dev-9", "temp", "20")
	waitFor(t, "an observer at the device", func() bool { return dev.observerCount() == 1 })
	dev.set("21")
	e.waitValue("dev-9", "temp", "21")
	dev.set("22")
	e.waitValue("dev-9", "temp", "22")
}
