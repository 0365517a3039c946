package mqtt

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/internal/backoff"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// shutdownGrace bounds the goodbye I/O (DISCONNECT packets) at shutdown: a client that
// does not read cannot hold the gateway open longer than this.
const shutdownGrace = 2 * time.Second

// listener is our implementation of mochi's listeners.Listener. mochi's own TCP
// listener runs each connection in a goroutine of its own making, and mochi's packet
// decoders have panicked on malformed input (a v5 SUBSCRIBE cut short, mochi issue
// #501): a panic there would end the whole process. Here every connection runs in a
// goroutine we own, with a deferred recover that logs, counts and closes only that
// connection. mochi reads CONNECT and then every packet of the connection inside the
// establish call (Server.attachClient → Client.Read), so the recover covers the read
// loop; only mochi's per-client write loop runs elsewhere.
//
// It also bounds the connections (max_connections, across all listeners) and gives a
// new connection connect_timeout to finish its TLS handshake and send CONNECT, which
// mochi does not bound.
type listener struct {
	id      string
	proto   string // "tcp" or "tls", for mochi's logs
	ln      net.Listener
	guard   *connGuard
	timeout time.Duration

	mu      sync.Mutex
	closed  bool
	serving bool
	quit    chan struct{} // closed when Close begins
	done    chan struct{} // closed when Serve returns
	conns   map[*conn]struct{}
	wg      sync.WaitGroup // connection goroutines
}

// connGuard is what every listener of one adapter shares.
type connGuard struct {
	slots     chan struct{} // one per open connection: max_connections
	metrics   *metrics
	log       *slog.Logger
	lim       *limiter
	recovered func(c *conn, r any)   // cleans up after a panic
	goodbye   func(cl *mochi.Client) // sends DISCONNECT (server shutting down) and stops the client
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id, proto string, ln net.Listener, guard *connGuard, timeout time.Duration) *listener {
	return &listener{id: id, proto: proto, ln: ln, guard: guard, timeout: timeout,
		quit: make(chan struct{}), done: make(chan struct{}), conns: make(map[*conn]struct{})}
}

// conn is a connection as mochi sees it. It carries the mochi client once the session
// is established, so that the recover can undo what mochi would have done on a normal
// disconnect, and it stops honouring deadline changes once shutdown has set its own.
type conn struct {
	net.Conn
	client   atomic.Pointer[mochi.Client]
	shutdown atomic.Bool
	cert     atomic.Pointer[certLogin] // set by OnConnect for a certificate login
	labels   labelCache                // the labels of the client's latest device topic (ingest.go)
	// connectBy is the connect_timeout deadline, set before the connection's
	// goroutine starts: the wait for a password check counts against it (login.go).
	connectBy time.Time
	// owner is the identity whose session this connection's client is; claimed is
	// its client id, and sessions the registry of the claim, set by OnConnect
	// (session.go). owner is read by other connections under sessions.mu.
	owner, claimed string
	sessions       *sessions
}

func (c *conn) SetDeadline(t time.Time) error {
	if c.shutdown.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	if c.shutdown.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	if c.shutdown.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// ID implements listeners.Listener.
func (l *listener) ID() string { return l.id }

// Address implements listeners.Listener: the bound address (port 0 resolved).
func (l *listener) Address() string { return l.ln.Addr().String() }

// Protocol implements listeners.Listener.
func (l *listener) Protocol() string { return l.proto }

// Init implements listeners.Listener. The socket is bound before mochi sees the
// listener, so that a bind error is Run's error and Addrs is known early.
func (l *listener) Init(*slog.Logger) error { return nil }

// Serve implements listeners.Listener: it accepts until Close.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.serving = true
	l.mu.Unlock()
	defer close(l.done)

	pause := backoff.New(backoff.Accept)
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.isClosed() {
				return
			}
			// Out of file descriptors and the like: wait a little, as net/http does,
			// rather than spin; Close ends the wait by closing the socket.
			wait := pause.Next()
			limitedLog(l.guard.log, l.guard.lim, slog.LevelWarn, "mqtt: accept failed", "listener", l.id, "error", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.quit:
				t.Stop()
				return
			}
			continue
		}
		pause.Reset()
		select {
		case l.guard.slots <- struct{}{}:
		default:
			l.guard.metrics.refused.WithLabelValues(refusedMaxConnections).Inc()
			limitedLog(l.guard.log, l.guard.lim, slog.LevelWarn, "mqtt: connection refused: max_connections reached", "listener", l.id, "remote", nc.RemoteAddr().String())
			_ = nc.Close()
			continue
		}
		connectBy := time.Now().Add(l.timeout)
		_ = nc.SetDeadline(connectBy)
		c := &conn{Conn: nc, connectBy: connectBy}
		if !l.track(c) {
			_ = nc.Close()
			<-l.guard.slots
			return
		}
		l.guard.metrics.accepted.Inc()
		l.guard.metrics.open.Inc()
		go l.serveConn(establish, c)
	}
}

func (l *listener) isClosed() bool {
	select {
	case <-l.quit:
		return true
	default:
		return false
	}
}

// track registers a connection, or reports false once the listener is closing.
func (l *listener) track(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *listener) untrack(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// serveConn runs mochi's whole life of one connection, and contains its panics.
func (l *listener) serveConn(establish listeners.EstablishFn, c *conn) {
	defer l.wg.Done()
	defer func() {
		if c.sessions != nil {
			c.sessions.settled(c) // a claim that mochi never registered (session.go)
		}
		l.untrack(c)
		l.guard.metrics.open.Dec()
		<-l.guard.slots
	}()
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		l.guard.metrics.panics.Inc()
		_ = c.Close() // mochi's deferred Client.Stop has closed it already, as a rule
		limitedLog(l.guard.log, l.guard.lim, slog.LevelError, "mqtt: recovered from a panic serving a connection; closed it",
			"listener", l.id, "remote", c.RemoteAddr().String(), "panic", r, "stack", string(debug.Stack()))
		l.guard.recovered(c, r)
	}()
	if tc, ok := c.Conn.(*tls.Conn); ok {
		// The handshake first, under the connect deadline, so that a refused
		// certificate is counted as such (mochi would only see a read error).
		if err := tc.Handshake(); err != nil {
			l.guard.metrics.refused.WithLabelValues(refusedTLS).Inc()
			limitedLog(l.guard.log, l.guard.lim, slog.LevelInfo, "mqtt: TLS handshake failed", "listener", l.id, "remote", c.RemoteAddr().String(), "error", err)
			_ = c.Close()
			return
		}
	}
	if err := establish(l.id, c); err != nil {
		// Refused logins, clients that hang up, malformed packets: all the client's
		// doing, so debug level and rate-limited.
		limitedLog(l.guard.log, l.guard.lim, slog.LevelDebug, "mqtt: connection ended", "listener", l.id, "remote", c.RemoteAddr().String(), "error", err)
	}
}

// Close implements listeners.Listener. mochi calls it from Server.Close. It bounds the
// goodbye writes with a deadline, disconnects the clients, then closes the socket and
// every connection (those still in CONNECT too) and waits for their goroutines.
//
// It does not call mochi's closeClients: in mochi v2.7.9 that is
// Server.closeListenerClients → Clients.GetByListener, which takes the clients' read
// lock twice (GetByListener calls Len under its own RLock) and so deadlocks against a
// client disconnecting at the same moment (Clients.Delete waiting for the write lock).
// We know our connections and their clients, and say goodbye to each directly, as
// closeListenerClients would.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.quit)
	serving := l.serving
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	deadline := time.Now().Add(shutdownGrace)
	for _, c := range conns {
		_ = c.Conn.SetDeadline(deadline)
		c.shutdown.Store(true)
	}
	for _, c := range conns {
		if cl := c.client.Load(); cl != nil && !cl.Closed() {
			l.guard.goodbye(cl)
		}
	}
	_ = l.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	if serving {
		<-l.done
	}
	l.wg.Wait()
}
