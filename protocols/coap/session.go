package coap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options/config"
	tcpClient "github.com/plgd-dev/go-coap/v3/tcp/client"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	egtls "github.com/edgegate/edgegate/tls"
)

// session is one peer: a UDP address, a DTLS session, or a TCP or TLS connection.
// It is served by one goroutine of the adapter's (startSession), which runs
// go-coap's connection until it closes.
type session struct {
	a         *Adapter
	st        *runState
	spec      *listenerSpec
	transport string // udp, dtls, tcp, tls
	nc        net.Conn
	identity  string     // PSK identity or certificate common name; "" for none
	peer      netip.Addr // the remote address without its port: per-peer bounds

	// Set once the go-coap connection exists (before it serves).
	udp  *udpClient.Conn // udp, dtls
	tcp  *tcpClient.Conn // tcp, tls
	conn mux.Conn

	closed atomic.Bool

	// lastActive is when the peer last sent anything (unix nanoseconds); the idle
	// monitor compares it with idle_timeout.
	lastActive atomic.Int64

	mu         sync.Mutex
	pendingMID map[int32]*observation // confirmable notifications awaiting an ACK or RST
	// waitingMID are the confirmable readings whose answer waits for the durable
	// log: a retransmission of one of them is dropped (its answer comes, and is
	// cached for later retransmissions, once the reading is on disk).
	waitingMID map[int32]struct{}

	// release, while a reading is handled in a goroutine of its own (process),
	// lets the session's next message be read: the handler calls it once the
	// reading is submitted, before it waits for the disk. Written by the
	// session's receiving goroutine before it starts the handler's, read by that
	// handler before it releases: no lock needed.
	release func()
}

// close ends a registered session.
func (s *session) close() {
	s.closed.Store(true)
	_ = s.conn.Close()
}

func (s *session) checkExpirations(now time.Time) {
	switch {
	case s.udp != nil:
		s.udp.CheckExpirations(now)
	case s.tcp != nil:
		s.tcp.CheckExpirations(now)
	}
}

// register adds a session whose go-coap connection exists to the run, unless the
// run is stopping.
func (st *runState) register(s *session) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closing {
		return false
	}
	st.sessions[s] = struct{}{}
	return true
}

func (st *runState) unregister(s *session) {
	st.mu.Lock()
	delete(st.sessions, s)
	st.mu.Unlock()
}

// startSession serves one accepted connection in a goroutine of the run's: the DTLS
// or TLS handshake under handshake_timeout (Run's end cancels it), the peer's
// identity, then go-coap's connection until it closes. The session is registered
// (for the ticker and for Run's end) once its go-coap connection exists.
func (a *Adapter) startSession(st *runState, b *boundListener, nc net.Conn) {
	spec := b.spec
	typ := spec.cfg.Type
	s := &session{a: a, st: st, spec: spec, transport: typ, nc: nc, peer: remoteIP(nc.RemoteAddr()), pendingMID: map[int32]*observation{}, waitingMID: map[int32]struct{}{}}
	s.lastActive.Store(time.Now().UnixNano())
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		defer nc.Close()
		err := s.handshake()
		if b.datagram != nil {
			b.datagram.handshakeDone(nc.RemoteAddr())
		}
		if err != nil {
			if st.ctx.Err() == nil {
				a.metrics.refused.WithLabelValues(typ, refusedHandshake).Inc()
				limitedLog(a.log, a.lim, slog.LevelDebug, "coap: handshake failed", "transport", typ, "remote", nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		var run func() error
		switch typ {
		case "udp", "dtls":
			s.udp = a.newDatagramConn(s)
			s.conn = s.udp
			run = s.udp.Run
		default:
			s.tcp = a.newStreamConn(s)
			s.conn = s.tcp
			run = s.tcp.Run
		}
		registered := st.register(s)
		if registered {
			a.metrics.sessions.WithLabelValues(typ).Inc()
			a.metrics.sessionsTotal.WithLabelValues(typ).Inc()
		} else {
			// Run is stopping: Run below returns at once, and ends go-coap's
			// goroutines for this connection.
			a.metrics.refused.WithLabelValues(typ, refusedShuttingDown).Inc()
			s.closed.Store(true)
			_ = s.conn.Close()
		}
		if err := run(); err != nil && st.ctx.Err() == nil && !s.closed.Load() && !coapNet.IsCancelOrCloseError(err) {
			limitedLog(a.log, a.lim, slog.LevelDebug, "coap: session ended", "transport", typ, "remote", nc.RemoteAddr().String(), "err", err)
		}
		<-s.conn.Done()
		if registered {
			st.unregister(s)
			a.sessionEnded(s)
			a.metrics.sessions.WithLabelValues(typ).Dec()
		}
	}()
}

// handshake completes a DTLS or TLS handshake and takes the peer's identity.
func (s *session) handshake() error {
	ctx, cancel := context.WithTimeout(s.st.ctx, s.a.cfg.HandshakeTimeout)
	defer cancel()
	switch c := s.nc.(type) {
	case *piondtls.Conn:
		if err := c.HandshakeContext(ctx); err != nil {
			return err
		}
		state, ok := c.ConnectionState()
		if !ok {
			return fmt.Errorf("no DTLS connection state")
		}
		if len(state.IdentityHint) > 0 {
			s.identity = string(state.IdentityHint)
		} else if len(state.PeerCertificates) > 0 {
			leaf, err := x509.ParseCertificate(state.PeerCertificates[0])
			if err != nil {
				return err
			}
			s.identity = egtls.Identity(leaf)
		}
	case *tls.Conn:
		if err := c.HandshakeContext(ctx); err != nil {
			return err
		}
		if certs := c.ConnectionState().PeerCertificates; len(certs) > 0 {
			s.identity = egtls.Identity(certs[0])
		}
	}
	return nil
}

// newDatagramConn makes go-coap's connection for a UDP peer or DTLS session, over
// the session's network connection, with the adapter's bounds: its own response
// cache, block-wise uploads limited in size and number, the idle monitor, and the
// request monitor.
func (a *Adapter) newDatagramConn(s *session) *udpClient.Conn {
	cfg := udpClient.DefaultConfig
	cfg.Handler = func(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message) { a.serve(s, w, r) }
	cfg.ProcessReceivedMessage = func(req *pool.Message, cc *udpClient.Conn, h config.HandlerFunc[*udpClient.Conn]) {
		s.process(req, func() { cc.ProcessReceivedMessageWithHandler(req, h) }, func() { cc.ReleaseMessage(req) })
	}
	cfg.Errors = a.coapErrors
	cfg.MessagePool = a.pool
	cfg.BlockwiseEnable = true
	cfg.BlockwiseSZX = blockwise.SZX1024
	cfg.BlockwiseTransferTimeout = a.cfg.BlockTimeout
	cfg.ReceivedMessageQueueSize = receivedQueue
	cfg.MTU = uint16(min(a.cfg.MaxMessageSize, 65507))
	cfg.MaxPendingMessages = udpClient.DefaultMaxPendingMessages
	cfg.QBlockwiseSecure = s.transport == "dtls"
	maxMsg := uint32(a.cfg.MaxMessageSize)
	sess := dtlsServer.NewSession(s.st.ctx, coapNet.NewConn(s.nc), maxMsg, uint16(min(a.cfg.MaxMessageSize+dtlsOverhead(s.transport), 65507)), true)
	cc := udpClient.NewConnWithOpts(sess, &cfg,
		udpClient.WithBlockWise(func(c *udpClient.Conn) *blockwise.BlockWise[*udpClient.Conn] {
			bw := blockwise.New(c, a.cfg.BlockTimeout, a.coapErrors, func(token message.Token) (*pool.Message, bool) {
				return c.GetObservationRequest(token)
			})
			bw.SetReceivingMessagesCacheMaxEntries(blockTransfers)
			bw.SetMaxReceiveBodySize(int64(a.cfg.MaxPayloadSize))
			return bw
		}),
		udpClient.WithInactivityMonitor(&idleMonitor[*udpClient.Conn]{s: s}),
		udpClient.WithRequestMonitor(func(_ *udpClient.Conn, m *pool.Message) (bool, error) { return a.monitor(s, m), nil }),
		udpClient.WithResponseMessageCache(newResponseCache(responseCacheBudget)),
	)
	return cc
}

// newStreamConn makes go-coap's connection for a TCP or TLS connection (RFC 8323).
func (a *Adapter) newStreamConn(s *session) *tcpClient.Conn {
	cfg := tcpClient.DefaultConfig
	cfg.Ctx = s.st.ctx
	cfg.Handler = func(w *responsewriter.ResponseWriter[*tcpClient.Conn], r *pool.Message) { a.serve(s, w, r) }
	cfg.ProcessReceivedMessage = func(req *pool.Message, cc *tcpClient.Conn, h config.HandlerFunc[*tcpClient.Conn]) {
		s.process(req, func() { cc.ProcessReceivedMessageWithHandler(req, h) }, func() { cc.ReleaseMessage(req) })
	}
	cfg.Errors = a.coapErrors
	cfg.MessagePool = a.pool
	cfg.MaxMessageSize = uint32(a.cfg.MaxMessageSize)
	cfg.BlockwiseEnable = true
	cfg.BlockwiseSZX = blockwise.SZX1024
	cfg.BlockwiseTransferTimeout = a.cfg.BlockTimeout
	cfg.ReceivedMessageQueueSize = receivedQueue
	cfg.CloseSocket = true
	cfg.ConnectionCacheSize = uint16(min(a.cfg.MaxMessageSize, 8192))
	return tcpClient.NewConnWithOpts(coapNet.NewConn(s.nc), &cfg,
		tcpClient.WithBlockWise(func(c *tcpClient.Conn) *blockwise.BlockWise[*tcpClient.Conn] {
			bw := blockwise.New(c, a.cfg.BlockTimeout, a.coapErrors, nil)
			bw.SetReceivingMessagesCacheMaxEntries(blockTransfers)
			bw.SetMaxReceiveBodySize(int64(a.cfg.MaxPayloadSize))
			return bw
		}),
		tcpClient.WithInactivityMonitor(&idleMonitor[*tcpClient.Conn]{s: s}),
		tcpClient.WithRequestMonitor(func(_ *tcpClient.Conn, m *pool.Message) (bool, error) { return a.monitor(s, m), nil }),
	)
}

// process handles one message the peer sent, in go-coap's receiving goroutine of
// the session, which reads the session's next message only once this returns. A
// reading that must be answered only once it is on disk (a confirmable POST or PUT
// over UDP and DTLS; every one over TCP and TLS, where each request is answered) is
// handled in a goroutine of its own, and process returns as soon as the handler has
// submitted it (release) or is done: readings are submitted in the order they
// came, their answers wait for the disk in parallel, and the peer's other requests
// are served meanwhile. Those goroutines are bounded by max_pending_responses (the
// handler answers 5.03 beyond it, without waiting) and by the run's gate.
// Everything else is handled here, in order, as go-coap would.
func (s *session) process(req *pool.Message, run, drop func()) {
	datagram := s.transport == "udp" || s.transport == "dtls"
	if c := req.Code(); (c != codes.POST && c != codes.PUT) || (datagram && req.Type() != message.Confirmable) {
		s.release = nil
		run()
		return
	}
	mid := req.MessageID()
	if datagram {
		s.mu.Lock()
		_, dup := s.waitingMID[mid]
		if !dup {
			s.waitingMID[mid] = struct{}{}
		}
		s.mu.Unlock()
		if dup {
			drop()
			return
		}
	}
	forget := func() {
		if datagram {
			s.answered(mid)
		}
	}
	if !s.st.handlers.enter() {
		// Run is ending: the handler answers 5.03 at once.
		s.release = nil
		run()
		forget()
		return
	}
	released := make(chan struct{})
	var once sync.Once
	s.release = func() { once.Do(func() { close(released) }) }
	done := make(chan struct{})
	go func() {
		defer s.st.handlers.leave()
		defer close(done)
		// serve forgets the message ID once its answer is set; this is for a
		// message that never reached it (a block of a block-wise transfer).
		defer forget()
		run()
	}()
	select {
	case <-released:
	case <-done:
	}
}

// answered forgets a confirmable reading whose answer no longer waits.
func (s *session) answered(mid int32) {
	s.mu.Lock()
	delete(s.waitingMID, mid)
	s.mu.Unlock()
}

// monitor sees every message a peer sends, before go-coap processes it. It drops
// requests with more options than max_options (they would only be refused later,
// after more work), and notes a reset that answers one of our notifications: the
// observer is no longer interested (RFC 7641 section 3.6).
func (a *Adapter) monitor(s *session, m *pool.Message) (drop bool) {
	s.lastActive.Store(time.Now().UnixNano())
	if m.Type() == message.Reset {
		s.mu.Lock()
		o := s.pendingMID[m.MessageID()]
		s.mu.Unlock()
		if o != nil {
			o.reset.Store(true)
			a.obs.remove(o)
		}
		return false
	}
	if len(m.Options()) > a.cfg.MaxOptions {
		a.metrics.requests.WithLabelValues(s.transport, methodName(m.Code()), "dropped").Inc()
		return true
	}
	return false
}

// idleMonitor ends a session that sent nothing for idle_timeout, observations and
// all. Holding an observation is not activity: a peer that registered (or a
// spoofed address that did) and then fell silent would otherwise keep its session
// slot for ever. An observer stays by sending something within idle_timeout: RFC
// 7641 section 3.3.1's re-registration (the same GET with Observe 0 again), or the
// acknowledgements of its notifications.
type idleMonitor[C interface{ Close() error }] struct {
	s *session
}

func (m *idleMonitor[C]) Notify() { m.s.lastActive.Store(time.Now().UnixNano()) }

func (m *idleMonitor[C]) CheckInactivity(now time.Time, cc C) {
	if now.UnixNano()-m.s.lastActive.Load() > int64(m.s.a.cfg.IdleTimeout) {
		_ = cc.Close()
	}
}

// remoteIP is a peer's address without its port (the zero Addr for another kind of
// address), IPv4-mapped addresses unmapped so that both forms count as one peer.
func remoteIP(addr net.Addr) netip.Addr {
	switch a := addr.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// sessionEnded forgets what the session held: its observations and the devices
// it spoke for.
func (a *Adapter) sessionEnded(s *session) {
	a.obs.removeSession(s)
	s.st.presence.gone(s)
}

// coapErrors receives go-coap's errors: a peer's doing, rate-limited, at debug level.
func (a *Adapter) coapErrors(err error) {
	if coapNet.IsCancelOrCloseError(err) {
		return
	}
	limitedLog(a.log, a.lim, slog.LevelDebug, "coap: go-coap", "err", err)
}
