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
	"golang.org/x/time/rate"
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
	pc *net.UDPConn
	datagramConfig
	queueLen int

	mu      sync.Mutex
	peers   map[netip.AddrPort]*datagramConn
	backlog chan *datagramConn
	closed  bool

	done     chan struct{}
	readDone chan struct{}
}

// datagramConfig is what a datagram listener is built with.
type datagramConfig struct {
	accept func(first []byte) bool
	slots  *slots
	// handshakes, when set (DTLS), is a second bound on new connections: released
	// by handshakeDone, or when the connection closes. perSource bounds the share
	// of it that one source address may hold (set with handshakes).
	handshakes *slots
	perSource  *sourceCounts
	budget     *byteBudget
	maxSize    int
	backlog    int
	dropped    func(reason string)
	// busy, when set (CoAP over UDP), bounds the 5.03 answers per second to new
	// peers beyond max_connections; answeredBusy counts them.
	busy         *rate.Limiter
	answeredBusy func()
}

// Reasons for dropped datagrams (the reason label of datagrams_dropped_total).
const (
	dropTooLarge      = "too_large"
	dropNotSession    = "not_a_session_start"
	dropMaxSessions   = "max_connections"
	dropHandshakes    = "handshakes_in_progress"
	dropPerSource     = "handshakes_per_source"
	dropBacklog       = "backlog_full"
	dropQueue         = "queue_full"
	dropBudget        = "memory_budget"
	datagramQueueLen  = 32
	datagramBudgetMin = 1 << 20
)

// newDatagramListener starts reading pc.
func newDatagramListener(pc *net.UDPConn, cfg datagramConfig) *datagramListener {
	l := &datagramListener{
		pc:             pc,
		datagramConfig: cfg,
		queueLen:       datagramQueueLen,
		peers:          make(map[netip.AddrPort]*datagramConn),
		backlog:        make(chan *datagramConn, cfg.backlog),
		done:           make(chan struct{}),
		readDone:       make(chan struct{}),
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
		case l.handshakes != nil && !l.perSource.tryAcquire(addr.Addr()):
			// Before the shared bound: one host that stalls its handshakes
			// (or spoofs its ports) fills its own share, not everyone's.
			l.mu.Unlock()
			l.dropped(dropPerSource)
			return
		case l.handshakes != nil && !l.handshakes.tryAcquire():
			l.perSource.release(addr.Addr())
			l.mu.Unlock()
			l.dropped(dropHandshakes)
			return
		case !l.slots.tryAcquire():
			if l.handshakes != nil {
				l.handshakes.release()
				l.perSource.release(addr.Addr())
			}
			l.mu.Unlock()
			l.refuse(addr, b)
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

// refuse answers a CoAP request from a new peer that finds every session slot
// taken with 5.03 Service Unavailable and a Max-Age (when to try again), instead of
// silence that a device cannot tell from a dead gateway. The answer is built here,
// without a session: it costs no slot. It is at most 3 bytes longer than the
// request (no diagnostic payload), so a spoofed source gains no amplification,
// and busy bounds how many go out per second; beyond it, and for DTLS (which
// cannot answer before a handshake), the datagram is dropped as before.
func (l *datagramListener) refuse(addr netip.AddrPort, b []byte) {
	if l.busy == nil || !l.busy.Allow() {
		l.dropped(dropMaxSessions)
		return
	}
	resp := busyReply(b, busyMaxAge)
	if resp == nil {
		l.dropped(dropMaxSessions)
		return
	}
	if _, err := l.pc.WriteToUDPAddrPort(resp, addr); err != nil {
		l.dropped(dropMaxSessions)
		return
	}
	l.answeredBusy()
}

// busyMaxAge is the Max-Age of the 5.03 answered when max_connections is reached:
// an idle session ends within idle_timeout, but a retry sooner often finds a slot.
const busyMaxAge = 10

// busyReply is the 5.03 answer to a CoAP request over UDP: an acknowledgement with
// the request's message ID for a confirmable one, else non-confirmable; the
// request's token; Max-Age maxAge. Nil for what is not a request with a valid
// token (an empty message, a response).
func busyReply(req []byte, maxAge uint8) []byte {
	if len(req) < 4 {
		return nil
	}
	tkl := int(req[0] & 0x0f)
	code := req[1]
	if tkl > 8 || len(req) < 4+tkl || code == 0 || code>>5 != 0 {
		return nil
	}
	typ := byte(1) // NON
	if (req[0]>>4)&3 == 0 {
		typ = 2 // ACK
	}
	out := make([]byte, 0, 4+tkl+3)
	out = append(out, 1<<6|typ<<4|byte(tkl), 5<<5|3, req[2], req[3])
	out = append(out, req[4:4+tkl]...)
	// Option Max-Age (14): delta 13 with one extended byte (14-13), length 1.
	return append(out, 13<<4|1, 14-13, maxAge)
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
		c.handshake.Do(func() {
			c.l.handshakes.release()
			c.l.perSource.release(c.raddr.Addr())
		})
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

// sourceCounts bounds what each source address holds (DTLS handshakes in
// progress), adapter-wide: the listeners of the adapter share it. An address that
// holds nothing has no entry, so its memory is bounded by what the addresses hold
// together (the handshake slots).
type sourceCounts struct {
	mu  sync.Mutex
	max int
	n   map[netip.Addr]int
}

func newSourceCounts(max int) *sourceCounts {
	return &sourceCounts{max: max, n: make(map[netip.Addr]int)}
}

func (s *sourceCounts) tryAcquire(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[a] >= s.max {
		return false
	}
	s.n[a]++
	return true
}

func (s *sourceCounts) release(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[a]--; s.n[a] <= 0 {
		delete(s.n, a)
	}
}

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
