package coap

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// datagramListener turns one UDP socket into a connection per remote address, for
// CoAP over UDP and for pion's DTLS (as its PacketListener). It exists because
// neither go-coap's UDP server nor pion's listener bounds what a peer can make it
// hold: here every resource has a bound.
//
//   - A datagram from an unknown address opens a connection only when it can start
//     a session (accept: a CoAP request, a DTLS handshake record) and a session slot
//     is free (slots, shared by every listener of the adapter); otherwise it is
//     dropped and counted.
//   - Connections wait in a backlog to be accepted; when it is full, the datagram
//     is dropped, like a SYN on a full TCP backlog. Each connection in it holds a
//     slot already, so the backlog may be as long as the slots allow: a burst of
//     new peers (a fleet reconnecting) is not dropped only for arriving together.
//   - Each connection queues at most queueLen datagrams, and all connections
//     together at most budget bytes; beyond that datagrams are dropped, as a
//     congested network would.
//   - Datagrams larger than maxSize are dropped.
//
// One goroutine reads the socket; it is started by newDatagramListener and ends when
// Close closes the socket (Close waits for it).
type datagramListener struct {
	pc     *net.UDPConn
	accept func(first []byte) bool
	slots  *slots
	// handshakes, when set (DTLS), is a second bound on new connections: released
	// by handshakeDone, or when the connection closes.
	handshakes *slots
	budget     *byteBudget
	maxSize    int
	queueLen   int
	dropped    func(reason string)

	mu      sync.Mutex
	peers   map[netip.AddrPort]*datagramConn
	backlog chan *datagramConn
	closed  bool

	done     chan struct{}
	readDone chan struct{}
}

// Reasons for dropped datagrams (the reason label of datagrams_dropped_total).
const (
	dropTooLarge      = "too_large"
	dropNotSession    = "not_a_session_start"
	dropMaxSessions   = "max_connections"
	dropHandshakes    = "handshakes_in_progress"
	dropBacklog       = "backlog_full"
	dropQueue         = "queue_full"
	dropBudget        = "memory_budget"
	datagramQueueLen  = 32
	datagramBudgetMin = 1 << 20
)

// newDatagramListener starts reading pc. handshakes may be nil.
func newDatagramListener(pc *net.UDPConn, accept func([]byte) bool, sl, handshakes *slots, budget *byteBudget, maxSize, backlog int, dropped func(string)) *datagramListener {
	l := &datagramListener{
		pc:         pc,
		accept:     accept,
		slots:      sl,
		handshakes: handshakes,
		budget:     budget,
		maxSize:    maxSize,
		queueLen:   datagramQueueLen,
		dropped:    dropped,
		peers:      make(map[netip.AddrPort]*datagramConn),
		backlog:    make(chan *datagramConn, backlog),
		done:       make(chan struct{}),
		readDone:   make(chan struct{}),
	}
	go l.readLoop()
	return l
}

func (l *datagramListener) readLoop() {
	defer close(l.readDone)
	buf := make([]byte, l.maxSize+1)
	for {
		n, addr, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.done:
				return
			default:
			}
			// A transient error (ICMP port unreachable surfaces here on some
			// systems): keep reading.
			continue
		}
		if n > l.maxSize {
			l.dropped(dropTooLarge)
			continue
		}
		l.dispatch(netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()), buf[:n])
	}
}

// dispatch hands a datagram to its connection, opening one when it may.
func (l *datagramListener) dispatch(addr netip.AddrPort, b []byte) {
	l.mu.Lock()
	c, ok := l.peers[addr]
	if !ok {
		switch {
		case l.closed:
			l.mu.Unlock()
			return
		case !l.accept(b):
			l.mu.Unlock()
			l.dropped(dropNotSession)
			return
		case l.handshakes != nil && !l.handshakes.tryAcquire():
			l.mu.Unlock()
			l.dropped(dropHandshakes)
			return
		case !l.slots.tryAcquire():
			if l.handshakes != nil {
				l.handshakes.release()
			}
			l.mu.Unlock()
			l.dropped(dropMaxSessions)
			return
		}
		c = newDatagramConn(l, addr)
		c.shaking = l.handshakes != nil
		select {
		case l.backlog <- c:
			l.peers[addr] = c
		default:
			l.mu.Unlock()
			c.releaseHandshake()
			l.slots.release()
			l.dropped(dropBacklog)
			return
		}
	}
	l.mu.Unlock()
	c.deliver(b)
}

// Accept returns the next connection, for CoAP over UDP.
func (l *datagramListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.backlog:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// acceptPacket implements pion's PacketListener through packetListener.
func (l *datagramListener) acceptPacket() (net.PacketConn, net.Addr, error) {
	c, err := l.Accept()
	if err != nil {
		return nil, nil, err
	}
	return c.(*datagramConn), c.RemoteAddr(), nil
}

// Close closes the socket and every connection, and waits for the read loop.
func (l *datagramListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.readDone
		return nil
	}
	l.closed = true
	close(l.done)
	peers := make([]*datagramConn, 0, len(l.peers))
	for _, c := range l.peers {
		peers = append(peers, c)
	}
	l.mu.Unlock()
	err := l.pc.Close()
	<-l.readDone
	for _, c := range peers {
		_ = c.Close()
	}
	return err
}

func (l *datagramListener) Addr() net.Addr { return l.pc.LocalAddr() }

// handshakeDone gives back the handshake slot of the connection from addr, once its
// handshake succeeded or failed.
func (l *datagramListener) handshakeDone(addr net.Addr) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	l.mu.Lock()
	c := l.peers[ap]
	l.mu.Unlock()
	if c != nil {
		c.releaseHandshake()
	}
}

func (l *datagramListener) remove(c *datagramConn) {
	l.mu.Lock()
	if l.peers[c.raddr] == c {
		delete(l.peers, c.raddr)
	}
	l.mu.Unlock()
}

// packetListener adapts a datagramListener to pion's dtlsnet.PacketListener.
type packetListener struct{ *datagramListener }

func (p packetListener) Accept() (net.PacketConn, net.Addr, error) { return p.acceptPacket() }

// datagramConn is one remote address's share of the socket. It is a net.Conn (CoAP
// over UDP reads and writes it) and a net.PacketConn (pion's DTLS does).
type datagramConn struct {
	l       *datagramListener
	raddr   netip.AddrPort
	udpAddr *net.UDPAddr
	in      chan []byte
	done    chan struct{}
	once    sync.Once
	read    *deadline.Deadline
	write   *deadline.Deadline

	shaking   bool // holds a handshake slot until releaseHandshake
	handshake sync.Once
}

func (c *datagramConn) releaseHandshake() {
	if c.shaking {
		c.handshake.Do(c.l.handshakes.release)
	}
}

func newDatagramConn(l *datagramListener, addr netip.AddrPort) *datagramConn {
	return &datagramConn{
		l:       l,
		raddr:   addr,
		udpAddr: net.UDPAddrFromAddrPort(addr),
		in:      make(chan []byte, l.queueLen),
		done:    make(chan struct{}),
		read:    deadline.New(),
		write:   deadline.New(),
	}
}

// deliver queues a copy of b, or drops it when the queue or the budget is full.
func (c *datagramConn) deliver(b []byte) {
	if !c.l.budget.take(len(b)) {
		c.l.dropped(dropBudget)
		return
	}
	p := make([]byte, len(b))
	copy(p, b)
	select {
	case <-c.done:
		c.l.budget.give(len(b))
	case c.in <- p:
		// Close may have drained the queue before this send: give back what
		// nobody will read.
		select {
		case <-c.done:
			c.drain()
		default:
		}
	default:
		c.l.budget.give(len(b))
		c.l.dropped(dropQueue)
	}
}

func (c *datagramConn) drain() {
	for {
		select {
		case p := <-c.in:
			c.l.budget.give(len(p))
		default:
			return
		}
	}
}

func (c *datagramConn) Read(b []byte) (int, error) {
	select {
	case p := <-c.in:
		c.l.budget.give(len(p))
		n := copy(b, p)
		if n < len(p) {
			return n, io.ErrShortBuffer
		}
		return n, nil
	case <-c.done:
		return 0, net.ErrClosed
	case <-c.read.Done():
		return 0, os.ErrDeadlineExceeded
	}
}

func (c *datagramConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	return n, c.udpAddr, err
}

func (c *datagramConn) Write(b []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	case <-c.write.Done():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	return c.l.pc.WriteToUDPAddrPort(b, c.raddr)
}

func (c *datagramConn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

// Close releases the connection's slot and queued datagrams. The socket stays open
// for the other connections.
func (c *datagramConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.l.remove(c)
		c.drain()
		c.releaseHandshake()
		c.l.slots.release()
	})
	return nil
}

func (c *datagramConn) LocalAddr() net.Addr  { return c.l.pc.LocalAddr() }
func (c *datagramConn) RemoteAddr() net.Addr { return c.udpAddr }

func (c *datagramConn) SetDeadline(t time.Time) error {
	c.read.Set(t)
	c.write.Set(t)
	return nil
}

func (c *datagramConn) SetReadDeadline(t time.Time) error {
	c.read.Set(t)
	return nil
}

func (c *datagramConn) SetWriteDeadline(t time.Time) error {
	c.write.Set(t)
	return nil
}

// slots is a counting bound, adapter-wide: sessions of every listener share it.
type slots struct {
	n   atomic.Int64
	max int64
}

func newSlots(max int) *slots { return &slots{max: int64(max)} }

func (s *slots) tryAcquire() bool {
	for {
		n := s.n.Load()
		if n >= s.max {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *slots) release()     { s.n.Add(-1) }
func (s *slots) inUse() int64 { return s.n.Load() }

// byteBudget bounds the bytes of datagrams queued by every connection together.
type byteBudget struct {
	n   atomic.Int64
	max int64
}

func (b *byteBudget) take(n int) bool {
	if b.n.Add(int64(n)) > b.max {
		b.n.Add(-int64(n))
		return false
	}
	return true
}

func (b *byteBudget) give(n int) { b.n.Add(-int64(n)) }

// isCoAPRequest reports whether a datagram can open a CoAP-over-UDP session: version
// 1, confirmable or non-confirmable (an acknowledgement or reset from an unknown
// address answers nothing of ours), and at least the 4-byte header.
func isCoAPRequest(b []byte) bool {
	return len(b) >= 4 && b[0]>>6 == 1 && (b[0]>>4)&3 <= 1
}

// isDTLSHandshake reports whether a datagram starts with a DTLS handshake record
// (content type 22, DTLS version major 0xfe, 13-byte record header). Anything else
// from an unknown address belongs to no session.
func isDTLSHandshake(b []byte) bool {
	return len(b) >= 13 && b[0] == 22 && b[1] == 0xfe
}
