package tls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/internal/backoff"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Tunnel defaults.
const (
	// DefaultTunnelMaxConnections: a PLC serves a handful of Modbus connections at
	// once, often fewer than this; the tunnel must not be the one to exhaust it.
	DefaultTunnelMaxConnections = 16
	// DefaultTunnelIdleTimeout closes a connection with no byte either way for this
	// long (a Modbus master polls every few seconds; one silent for minutes is gone).
	DefaultTunnelIdleTimeout = 5 * time.Minute
	// DefaultTunnelConnectTimeout bounds the TLS handshake and, apart, the dial of
	// the target.
	DefaultTunnelConnectTimeout = 10 * time.Second
	// tunnelBuffer is each direction's copy buffer: a Modbus ADU is at most 260
	// bytes, but an OPC UA chunk or a bulk transfer gains from more.
	tunnelBuffer = 32 << 10
)

// TunnelConfig is one `tunnels:` entry: a TLS listener whose connections are each
// forwarded to a plain TCP port, such as Modbus/TCP Security (802) in front of a
// PLC's Modbus/TCP (502).
type TunnelConfig struct {
	// Name names the tunnel in logs and metrics: letters, digits, - and _.
	Name string `yaml:"name"`
	// Listen is the TLS listener's host:port.
	Listen string `yaml:"listen"`
	// Target is the plain TCP host:port each connection is forwarded to.
	Target string `yaml:"target"`
	// TLS is the listener's certificate and the CA client certificates must chain
	// to: client_ca_file is required (mutual TLS is the point of the tunnel).
	TLS *Files `yaml:"tls"`
	// Allow lists the client identities (see Identity) that may connect: exact, or
	// path.Match globs (`*` does not match `/`). Empty: any client whose
	// certificate chains to client_ca_file.
	Allow []string `yaml:"allow"`
	// MaxConnections bounds concurrent connections; default 16.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection after this long without a byte either way;
	// default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ConnectTimeout bounds the TLS handshake, and the dial of the target; default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

var tunnelName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// SetDefaults fills in what the entry leaves out.
func (c *TunnelConfig) SetDefaults() {
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultTunnelMaxConnections
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultTunnelIdleTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultTunnelConnectTimeout
	}
}

// Validate returns every problem, each naming its key (the caller adds which
// tunnel).
func (c *TunnelConfig) Validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !tunnelName.MatchString(c.Name) {
		add("name: %q must be 1 to 64 letters, digits, - or _", c.Name)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q: %v", c.Listen, err)
	}
	if host, port, err := net.SplitHostPort(c.Target); err != nil || host == "" || port == "" || port == "0" {
		add("target: %q is not host:port", c.Target)
	}
	switch {
	case c.TLS == nil:
		add("tls: required: a tunnel is a TLS listener ({cert_file, key_file, client_ca_file})")
	case c.TLS.Validate() != nil:
		add("%v", c.TLS.Validate())
	case c.TLS.ClientCAFile == "":
		add("tls: client_ca_file is required: a tunnel forwards to a device port that trusts whoever reaches it, so only clients with a certificate get through")
	}
	for i, p := range c.Allow {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			add("allow[%d]: %q is not an identity or a glob", i, p)
		}
	}
	if c.MaxConnections < 1 || c.MaxConnections > 65536 {
		add("max_connections: %d is not between 1 and 65536", c.MaxConnections)
	}
	if c.IdleTimeout <= 0 {
		add("idle_timeout: must be positive, got %s", c.IdleTimeout)
	}
	if c.ConnectTimeout <= 0 {
		add("connect_timeout: must be positive, got %s", c.ConnectTimeout)
	}
	return errs
}

// ErrIdentityNotAllowed wraps the refusal of a client whose certificate is good
// but whose identity is not on the tunnel's allow-list.
var ErrIdentityNotAllowed = errors.New("identity not allowed")

// TunnelMetrics are every tunnel's metrics, by tunnel name.
type TunnelMetrics struct {
	conns *prometheus.CounterVec
	open  *prometheus.GaugeVec
	bytes *prometheus.CounterVec
	idle  *prometheus.CounterVec
}

// Results of a connection, the `result` label of edgegate_tunnel_connections_total.
const (
	ResultForwarded      = "forwarded"
	ResultMaxConnections = "max_connections"
	ResultHandshake      = "handshake"   // not TLS, timed out, no certificate, no common suite
	ResultCertificate    = "certificate" // a certificate that does not chain to client_ca_file, or expired
	ResultIdentity       = "identity"    // not on the allow-list
	ResultTarget         = "target"      // the target did not answer
)

// NewTunnelMetrics registers the tunnel metrics on reg when it is not nil.
func NewTunnelMetrics(reg prometheus.Registerer) (*TunnelMetrics, error) {
	m := &TunnelMetrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_tunnel_connections_total",
			Help: "Connections to a TLS tunnel, by tunnel and result: forwarded, or refused (max_connections, handshake, certificate, identity, target).",
		}, []string{"tunnel", "result"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_tunnel_open_connections",
			Help: "Connections a TLS tunnel holds now, handshaking or forwarding.",
		}, []string{"tunnel"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_tunnel_bytes_total",
			Help: "Bytes forwarded by a TLS tunnel, by direction: to_target (from the TLS clients) or from_target.",
		}, []string{"tunnel", "direction"}),
		idle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_tunnel_idle_closed_total",
			Help: "Tunnel connections closed after idle_timeout without traffic.",
		}, []string{"tunnel"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conns, m.open, m.bytes, m.idle} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tls: registering tunnel metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Tunnel is one running TLS tunnel: NewTunnel, Listen, then Serve until its
// context ends.
type Tunnel struct {
	cfg     TunnelConfig
	tlsConf *tls.Config
	log     *slog.Logger
	lim     *rate.Limiter // the log lines clients can cause

	toTarget, fromTarget, idle prometheus.Counter
	results                    *prometheus.CounterVec
	open                       prometheus.Gauge

	ln    net.Listener
	slots chan struct{}

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
	wg       sync.WaitGroup
}

// session is one client connection and, once dialled, its target connection.
type session struct {
	client net.Conn
	target net.Conn
}

// NewTunnel checks the config and loads its certificates (from store, which may be
// nil). It opens nothing. m may be nil.
func NewTunnel(cfg TunnelConfig, store *Store, m *TunnelMetrics, log *slog.Logger) (*Tunnel, error) {
	cfg.SetDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("tunnel %q: %w", cfg.Name, errors.Join(errs...))
	}
	src, err := store.Source(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("tunnel %q: %w", cfg.Name, err)
	}
	if log == nil {
		log = slog.Default()
	}
	if m == nil {
		if m, err = NewTunnelMetrics(nil); err != nil {
			return nil, err
		}
	}
	t := &Tunnel{
		cfg:        cfg,
		log:        log.With("tunnel", cfg.Name),
		lim:        rate.NewLimiter(10, 10),
		results:    m.conns.MustCurryWith(prometheus.Labels{"tunnel": cfg.Name}),
		open:       m.open.WithLabelValues(cfg.Name),
		toTarget:   m.bytes.WithLabelValues(cfg.Name, "to_target"),
		fromTarget: m.bytes.WithLabelValues(cfg.Name, "from_target"),
		idle:       m.idle.WithLabelValues(cfg.Name),
		slots:      make(chan struct{}, cfg.MaxConnections),
		sessions:   map[*session]struct{}{},
	}
	tc := src.ServerConfig()
	verify := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			return err
		}
		if id, _ := PeerIdentity(cs); !t.allowed(id) {
			return fmt.Errorf("%w: %q", ErrIdentityNotAllowed, id)
		}
		return nil
	}
	t.tlsConf = tc
	return t, nil
}

func (t *Tunnel) allowed(id string) bool {
	if len(t.cfg.Allow) == 0 {
		return true
	}
	return MatchIdentity(t.cfg.Allow, id)
}

// MatchIdentity reports whether an identity is one of patterns (exact, or
// path.Match globs).
func MatchIdentity(patterns []string, id string) bool {
	for _, p := range patterns {
		if p == id {
			return true
		}
		if ok, _ := path.Match(p, id); ok {
			return true
		}
	}
	return false
}

// Listen binds the listener, so that a port in use fails the start at once.
func (t *Tunnel) Listen() error {
	ln, err := net.Listen("tcp", t.cfg.Listen)
	if err != nil {
		return fmt.Errorf("tunnel %q: listen: %w", t.cfg.Name, err)
	}
	t.ln = ln
	return nil
}

// Close closes a listener that Listen bound and Serve never ran; after Serve,
// ending its context is the way to stop.
func (t *Tunnel) Close() {
	if t.ln != nil {
		t.shutdown()
	}
}

// Addr is the bound address, after Listen.
func (t *Tunnel) Addr() net.Addr {
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Name is the tunnel's name.
func (t *Tunnel) Name() string { return t.cfg.Name }

// Serve accepts and forwards until ctx ends; then it closes the listener and every
// connection and returns once each connection's goroutines have. Listen first.
func (t *Tunnel) Serve(ctx context.Context) error {
	if t.ln == nil {
		return fmt.Errorf("tunnel %q: Serve before Listen", t.cfg.Name)
	}
	stop := context.AfterFunc(ctx, t.shutdown)
	defer stop()
	defer t.wg.Wait()
	t.log.Info("tunnel: serving", "listen", t.ln.Addr().String(), "target", t.cfg.Target, "allow", t.cfg.Allow, "max_connections", t.cfg.MaxConnections)
	pause := backoff.New(backoff.Accept)
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				t.shutdown()
				return nil
			}
			// Out of file descriptors and the like: wait a little rather than spin.
			wait := pause.Next()
			t.logf(slog.LevelWarn, "tunnel: accept failed", "err", err, "retry_in", wait)
			_ = backoff.Sleep(ctx, wait) // the next Accept fails once ctx ends
			continue
		}
		pause.Reset()
		select {
		case t.slots <- struct{}{}:
		default:
			t.results.WithLabelValues(ResultMaxConnections).Inc()
			t.logf(slog.LevelWarn, "tunnel: connection refused: max_connections reached", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		s := &session{client: nc}
		if !t.track(s) {
			nc.Close()
			<-t.slots
			return nil
		}
		go t.handle(ctx, s)
	}
}

func (t *Tunnel) track(s *session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.sessions[s] = struct{}{}
	t.wg.Add(1)
	t.open.Inc()
	return true
}

func (t *Tunnel) untrack(s *session) {
	t.mu.Lock()
	delete(t.sessions, s)
	t.mu.Unlock()
	t.open.Dec()
	<-t.slots
	t.wg.Done()
}

// shutdown closes the listener and every connection; Serve then returns.
func (t *Tunnel) shutdown() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	list := make([]*session, 0, len(t.sessions))
	for s := range t.sessions {
		list = append(list, s)
	}
	t.mu.Unlock()
	t.ln.Close()
	for _, s := range list {
		t.closeSession(s)
	}
}

func (t *Tunnel) closeSession(s *session) {
	// A deadline in the past first: a TLS close_notify to a client that does not
	// read must not hold the shutdown.
	s.client.SetDeadline(time.Unix(1, 0))
	s.client.Close()
	t.mu.Lock()
	target := s.target
	t.mu.Unlock()
	if target != nil {
		target.Close()
	}
}

func (t *Tunnel) logf(level slog.Level, msg string, args ...any) {
	if t.lim.Allow() {
		t.log.Log(context.Background(), level, msg, args...)
	}
}

// handle runs one connection: handshake, allow-list, dial, forward.
func (t *Tunnel) handle(ctx context.Context, s *session) {
	defer t.untrack(s)
	defer s.client.Close()
	remote := s.client.RemoteAddr().String()
	tc := tls.Server(s.client, t.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		result := ResultHandshake
		switch {
		case errors.Is(err, ErrIdentityNotAllowed):
			result = ResultIdentity
		case errors.Is(err, ErrClientCertificate):
			result = ResultCertificate
		}
		t.results.WithLabelValues(result).Inc()
		if ctx.Err() == nil {
			t.logf(slog.LevelInfo, "tunnel: connection refused", "reason", result, "remote", remote, "err", err)
		}
		return
	}
	id, _ := PeerIdentity(tc.ConnectionState())
	d := net.Dialer{Timeout: t.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	target, err := d.DialContext(ctx, "tcp", t.cfg.Target)
	if err != nil {
		t.results.WithLabelValues(ResultTarget).Inc()
		if ctx.Err() == nil {
			t.logf(slog.LevelWarn, "tunnel: target did not answer; connection closed", "target", t.cfg.Target, "remote", remote, "identity", id, "err", err)
		}
		return
	}
	t.mu.Lock()
	s.target = target
	closed := t.closed
	t.mu.Unlock()
	defer target.Close()
	if closed {
		return // shutdown ran before the target was known
	}
	t.results.WithLabelValues(ResultForwarded).Inc()
	t.log.Debug("tunnel: forwarding", "remote", remote, "identity", id)
	start := time.Now()
	idle := t.forward(tc, target)
	t.log.Debug("tunnel: connection ended", "remote", remote, "identity", id, "duration", time.Since(start), "idle", idle)
}

// forward copies both ways until both sides have finished sending, either fails,
// or no byte has moved either way for idle_timeout. It reports an idle close.
func (t *Tunnel) forward(client *tls.Conn, target net.Conn) bool {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var idled atomic.Bool
	done := make(chan bool, 2) // true: the direction ended cleanly (EOF)
	pipe := func(dst, src net.Conn, count prometheus.Counter) {
		buf := make([]byte, tunnelBuffer)
		for {
			_ = src.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				_ = dst.SetWriteDeadline(time.Now().Add(t.cfg.IdleTimeout))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					done <- false
					return
				}
				count.Add(float64(n))
			}
			if err == nil {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, last.Load())) < t.cfg.IdleTimeout {
					continue // the other direction is busy: not idle
				}
				idled.Store(true)
			}
			if errors.Is(err, io.EOF) {
				// Pass the half-close on, so that a request-then-close client
				// still gets its answer.
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
				done <- true
				return
			}
			done <- false
			return
		}
	}
	go pipe(target, client, t.toTarget)
	go pipe(client, target, t.fromTarget)
	clean := <-done
	if !clean {
		// One side failed or idled: end the other at once. Closing (not a
		// deadline, which the other loop would move) ends its read for good.
		client.NetConn().Close()
		target.Close()
	}
	<-done
	if idled.Load() {
		t.idle.Inc()
	}
	return idled.Load()
}
