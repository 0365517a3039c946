package grpcapi

import (
	"container/list"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// DefaultHandshakeTimeout bounds a connection's TLS and HTTP/2 handshake
// (grpc.handshake_timeout): a socket that has not sent the HTTP/2 preface by then
// is closed. grpc-go's own default is 120 seconds, which let 1,100 idle sockets
// hold every connection slot (issue 19.5).
const DefaultHandshakeTimeout = 5 * time.Second

// HandshakeTimeout is the server option that bounds each connection's handshake
// (d <= 0: DefaultHandshakeTimeout). Listener counts the connections it closes.
func HandshakeTimeout(d time.Duration) grpc.ServerOption {
	if d <= 0 {
		d = DefaultHandshakeTimeout
	}
	return grpc.ConnectionTimeout(d)
}

// ListenerOptions bound a gRPC listener.
type ListenerOptions struct {
	// MaxConnections bounds open connections; 0: no bound.
	MaxConnections int
	// Metrics registers the connection metrics when not nil.
	Metrics prometheus.Registerer
}

// Listener bounds the gRPC server's connections and counts refusals. Unlike
// netutil.LimitListener, it does not stop accepting when full, which left new
// clients (health probes among them) in the kernel's queue behind sockets that
// never speak: when every slot is taken, a new connection takes the slot of the
// oldest connection still in its handshake, which is closed; only when every
// slot holds an established connection is the new one closed at once. With the
// handshake bounded (HandshakeTimeout), an idle socket holds a slot for at most
// that long, and a probe that completes its handshake in less time than it takes
// the other side to open MaxConnections sockets gets through.
//
// A connection is in its handshake until the gRPC server clears the deadline it
// set on it for the handshake (grpc-go's handleRawConn), which it does once the
// TLS handshake and the client's HTTP/2 preface are through.
type Listener struct {
	net.Listener
	max         int
	mu          sync.Mutex
	open        int
	handshaking list.List // *guardedConn, oldest first
	closed      *prometheus.CounterVec
}

// NewListener wraps ln.
func NewListener(ln net.Listener, o ListenerOptions) *Listener {
	l := &Listener{Listener: ln, max: o.MaxConnections, closed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgegate_grpc_connections_closed_total",
		Help: "gRPC connections the gateway closed before they were established: handshake_timeout (no TLS/HTTP/2 handshake within grpc.handshake_timeout), evicted (the oldest connection still in its handshake, to make room for a new one at grpc.max_connections), refused (a new connection while grpc.max_connections are established).",
	}, []string{"reason"})}
	for _, r := range []string{"handshake_timeout", "evicted", "refused"} {
		l.closed.WithLabelValues(r)
	}
	if o.Metrics != nil {
		o.Metrics.MustRegister(l.closed,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "edgegate_grpc_connections", Help: "Open gRPC connections, in their handshake or established (bounded by grpc.max_connections).",
			}, func() float64 { return float64(l.counts()[0]) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "edgegate_grpc_connections_handshaking", Help: "Open gRPC connections still in their TLS/HTTP/2 handshake.",
			}, func() float64 { return float64(l.counts()[1]) }))
	}
	return l
}

// counts returns the open connections and those in their handshake.
func (l *Listener) counts() [2]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return [2]int{l.open, l.handshaking.Len()}
}

// Accept returns the next connection, making room for it as the type says.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var victim *guardedConn
		full := l.max > 0 && l.open >= l.max
		if full {
			if e := l.handshaking.Front(); e != nil {
				victim = l.handshaking.Remove(e).(*guardedConn)
				victim.elem = nil
			}
		}
		var c *guardedConn
		if !full || victim != nil {
			c = &guardedConn{Conn: raw, l: l}
			c.elem = l.handshaking.PushBack(c)
			l.open++ // the victim's Close gives its slot back
		}
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
			l.closed.WithLabelValues("evicted").Inc()
		}
		if c == nil {
			raw.Close()
			l.closed.WithLabelValues("refused").Inc()
			continue
		}
		return c, nil
	}
}

// guardedConn is an accepted connection: it tells the listener when its
// handshake is over and when it closes.
type guardedConn struct {
	net.Conn
	l        *Listener
	elem     *list.Element // in l.handshaking while in the handshake; under l.mu
	done     atomic.Bool   // the handshake is over
	timedOut atomic.Bool
	once     sync.Once
}

// SetDeadline sees the gRPC server clear the handshake's deadline: the
// connection is established.
func (c *guardedConn) SetDeadline(t time.Time) error {
	if t.IsZero() && !c.done.Swap(true) {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.handshaking.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
	}
	return c.Conn.SetDeadline(t)
}

// Read counts a handshake that ran out of time (the server closes the
// connection after it).
func (c *guardedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !c.done.Load() && errors.Is(err, os.ErrDeadlineExceeded) && !c.timedOut.Swap(true) {
		c.l.closed.WithLabelValues("handshake_timeout").Inc()
	}
	return n, err
}

// Close gives the connection's slot back, once.
func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.handshaking.Remove(c.elem)
			c.elem = nil
		}
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
