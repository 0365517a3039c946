package mqtt

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/bridge"
)

// acker acknowledges QoS 1 and 2 publishes once what they carry is on disk, in the
// order each connection sent them, without holding up the connection's next packet.
//
// mochi acknowledges a publish as soon as OnPublish returns, and reads the
// connection's next packet only then; waiting there for the fsync capped every
// connection near one message per fsync. So OnPublish hands the readings to the
// bridge (Submit: ordered, visible, not yet durable), lets mochi deliver the
// message to MQTT subscribers, and queues the PUBACK or PUBREC here with the
// batch's receipt. One goroutine (run) watches the journal: whenever it moves it
// takes every queued ack whose receipt is ready, from the front, and hands it to
// its connection's writer, a goroutine that exists only while that connection has
// acks to write, so that a client that does not read holds up no one else.
//
// Order: MQTT 3.1.1 and 5.0 §4.6 require a connection's acks in the order of its
// publishes. Receipts of one connection become ready in submission order (the
// journal writes in sequence order; what never reached the hub waits on a barrier
// for everything before it), the queue is taken from the front only, and each
// connection's acks are written by one writer in queue order.
//
// Window: a connection may have at most max_inflight acks pending (the Receive
// Maximum announced to v5 clients); a client that sends more waits in OnPublish,
// so TCP pushes back on it as it would on any slow server.
type acker struct {
	srv     *mochi.Server
	window  int
	metrics *ackMetrics

	mu      sync.Mutex
	queue   []pendingAck // oldest first, from head
	head    int
	clients map[*mochi.Client]*ackState
	kick    chan struct{} // something was queued
	writers sync.WaitGroup
}

// ackState is one connection's acknowledgements. Guarded by acker.mu.
type ackState struct {
	pending int              // queued or being written
	out     []packets.Packet // ready, for the writer
	writing bool             // a writer goroutine runs
	failed  bool             // the connection is being closed: nothing more is written
	space   chan struct{}    // closed (and replaced) when pending drops
}

type pendingAck struct {
	cl *mochi.Client
	st *ackState
	r  bridge.Receipt
	pk packets.Packet
}

func newAcker(srv *mochi.Server, window int, m *ackMetrics) *acker {
	return &acker{srv: srv, window: max(window, 1), metrics: m,
		clients: make(map[*mochi.Client]*ackState), kick: make(chan struct{}, 1)}
}

// reserve takes a place in cl's window for one acknowledgement, waiting while the
// window is full. Every reserve is followed by add or release.
func (a *acker) reserve(ctx context.Context, cl *mochi.Client) (*ackState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.clients[cl]
	if st == nil {
		st = &ackState{space: make(chan struct{})}
		a.clients[cl] = st
	}
	waited := false
	for st.pending >= a.window {
		if !waited {
			a.metrics.windowFull.Inc()
			waited = true
		}
		space := st.space
		a.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			a.mu.Lock()
			return nil, ctx.Err()
		}
		a.mu.Lock()
	}
	st.pending++
	a.metrics.pending.Inc()
	return st, nil
}

// release gives back a place reserve took that no ack will use.
func (a *acker) release(cl *mochi.Client, st *ackState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.doneLocked(cl, st, 1)
}

// add queues ack, to be written to cl once r is ready.
func (a *acker) add(cl *mochi.Client, st *ackState, r bridge.Receipt, ack packets.Packet) {
	a.mu.Lock()
	a.queue = append(a.queue, pendingAck{cl: cl, st: st, r: r, pk: ack})
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// doneLocked accounts for n acks of st that were written or given up.
func (a *acker) doneLocked(cl *mochi.Client, st *ackState, n int) {
	st.pending -= n
	a.metrics.pending.Sub(float64(n))
	close(st.space)
	st.space = make(chan struct{})
	if st.pending == 0 && !st.writing && a.clients[cl] == st {
		delete(a.clients, cl)
	}
}

// run hands out acks as their receipts become ready, until ctx ends. Acks still
// queued then are dropped: the connections are closing, and their clients send the
// messages again.
func (a *acker) run(ctx context.Context) {
	defer a.writers.Wait()
	for {
		moved := a.dispatch()
		select {
		case <-moved: // nil while the queue is empty: then only a kick wakes us
		case <-a.kick:
		case <-ctx.Done():
			return
		}
	}
}

// dispatch moves the ready acks at the front of the queue to their connections'
// writers. It returns what to wait on for the first one that is not ready.
func (a *acker) dispatch() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	var moved <-chan struct{}
	for a.head < len(a.queue) {
		e := &a.queue[a.head]
		ready, mv, err := e.r.Ready()
		if !ready {
			moved = mv
			break
		}
		st, cl := e.st, e.cl
		switch {
		case st.failed:
			a.doneLocked(cl, st, 1)
		case err != nil:
			// The batch will never be on disk (the journal cannot write): no ack.
			// Closing the connection makes the client send it again, after the acks
			// of what came before it, which were written.
			st.failed = true
			a.metrics.unavailable.Inc()
			a.doneLocked(cl, st, 1)
			a.startWriter(cl, st)
		default:
			st.out = append(st.out, e.pk)
			a.startWriter(cl, st)
		}
		*e = pendingAck{}
		a.head++
	}
	if a.head == len(a.queue) {
		a.queue, a.head = a.queue[:0], 0
	} else if a.head > 1024 && a.head > len(a.queue)/2 {
		a.queue, a.head = append(a.queue[:0], a.queue[a.head:]...), 0
	}
	return moved
}

func (a *acker) startWriter(cl *mochi.Client, st *ackState) {
	if st.writing {
		return
	}
	st.writing = true
	a.writers.Add(1)
	go a.write(cl, st)
}

// write is a connection's writer: it writes the acks handed to it, in order, and
// ends when there are none. When the connection is to be closed (failed), it
// writes what came before first.
func (a *acker) write(cl *mochi.Client, st *ackState) {
	defer a.writers.Done()
	for {
		a.mu.Lock()
		out, closing := st.out, st.failed
		st.out = nil
		if len(out) == 0 && !closing {
			st.writing = false
			if st.pending == 0 && a.clients[cl] == st {
				delete(a.clients, cl)
			}
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		written := 0
		for _, pk := range out {
			if err := cl.WritePacket(pk); err != nil {
				closing = true
				break
			}
			written++
		}
		a.metrics.written.Add(float64(written))
		a.mu.Lock()
		a.doneLocked(cl, st, len(out))
		if closing {
			st.failed = true
			st.writing = false
			if st.pending == 0 && a.clients[cl] == st {
				delete(a.clients, cl)
			}
			a.mu.Unlock()
			a.closeUnavailable(cl)
			return
		}
		a.mu.Unlock()
	}
}

// closeUnavailable ends a connection whose messages could not be made durable:
// v5 clients are told the server's quota is exhausted (0x97), which they retry.
func (a *acker) closeUnavailable(cl *mochi.Client) {
	if cl.Closed() {
		return
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = a.srv.DisconnectClient(cl, packets.ErrQuotaExceeded)
	}
	cl.Stop(bridge.ErrUnavailable)
}

// ackFor is the positive acknowledgement of a QoS 1 or 2 publish.
func ackFor(pk packets.Packet) packets.Packet {
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    pk.PacketID,
		Created:     time.Now().Unix(),
	}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	return ack
}

// expectRelease records a QoS 2 publish as mochi would have, so that its PUBREL
// finds it and a retransmission of it is answered instead of taken again. It is
// recorded before the PUBREC is written: a retransmission on a new connection before
// the fsync is then answered with a PUBREC at once, a window of one commit in which
// a failing disk could lose a message the client was told was received. A crash
// loses the in-memory session too, so the client sends it again after one.
func expectRelease(srv *mochi.Server, cl *mochi.Client, rec packets.Packet) {
	cl.State.Inflight.DecreaseReceiveQuota()
	if cl.State.Inflight.Set(rec) {
		atomic.AddInt64(&srv.Info.Inflight, 1)
	}
}

type ackMetrics struct {
	pending     prometheus.Gauge
	written     prometheus.Counter
	windowFull  prometheus.Counter
	unavailable prometheus.Counter
}

func newAckMetrics() *ackMetrics {
	return &ackMetrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgegate_mqtt_acks_pending",
			Help: "QoS 1 and 2 acknowledgements waiting for their messages to reach the disk, or being written.",
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_acks_total",
			Help: "QoS 1 and 2 acknowledgements written once their messages were on disk.",
		}),
		windowFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_ack_window_full_total",
			Help: "Times a client had max_inflight acknowledgements pending and its next publish waited.",
		}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgegate_mqtt_unavailable_total",
			Help: "Publishes not acknowledged because the durable log could not write them; their connections were closed.",
		}),
	}
}
