package coap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"golang.org/x/time/rate"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/backoff"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
	egtls "github.com/edgegate/edgegate/tls"
)

var (
	// ErrNotRunning is returned by Write when the adapter is not running.
	ErrNotRunning = errors.New("coap: adapter not running")
	// ErrNoObserver is returned by Write to a device that pushes to the gateway when
	// no client observes the point (or the device): the write would reach nobody.
	ErrNoObserver = errors.New("coap: nobody observes the device")
	// ErrNotWritable is returned by Write for a point of a device the gateway is the
	// client of that is not configured `writable: true`.
	ErrNotWritable = errors.New("coap: point is not writable")
)

// logRate and logBurst bound the log lines that peers can cause.
const (
	logRate  = 10 // per second
	logBurst = 10
)

// Internal bounds that are not worth a config key.
const (
	// tickInterval is how often every session's timers are looked at: confirmable
	// retransmissions, block-wise and response-cache expiry, idleness.
	tickInterval = 250 * time.Millisecond
	// responseCacheBudget is each UDP and DTLS session's memory of its responses.
	responseCacheBudget = 32 << 10
	// blockTransfers is how many block-wise uploads one session may have going.
	blockTransfers = 2
	// receivedQueue is go-coap's per-session queue of messages awaiting a handler.
	receivedQueue = 16
	// notifyTimeout bounds a Write's wait for observers' acknowledgements, whatever
	// the caller's context allows: a confirmable message is retransmitted for at
	// most MAX_TRANSMIT_SPAN (45 s).
	notifyTimeout = 50 * time.Second
	// busyRate bounds the 5.03 answers per second (and their burst) to new UDP
	// peers beyond max_connections, per listener.
	busyRate = 100
	// shutdownGrace bounds a graceful stop of what needs I/O (client devices'
	// deregistrations).
	shutdownGrace = 2 * time.Second
)

// Adapter serves CoAP devices that push to the gateway and is the client of those
// that serve resources.
type Adapter struct {
	cfg       *Config
	tlsStore  *egtls.Store // nil: each tls block gets a Source of its own
	log       *slog.Logger
	lim       *limiter
	metrics   *metrics
	resources *resourceMap
	decoder   payload.Decoder
	devices   map[string]deviceInfo
	specs     []*listenerSpec
	clients   map[string]*clientDevice
	pool      *pool.Pool
	slots     *slots
	// handshakes bounds the DTLS sessions still shaking hands, so that peers that
	// never finish (spoofed addresses answered with a cookie they never see) can
	// hold only a share of the session slots.
	handshakes *slots
	// perSource bounds the handshakes one source address may have in progress
	// (max_handshakes_per_source), so that one host cannot take all of them.
	perSource *sourceCounts
	// pending bounds the readings whose answer waits for the durable log
	// (max_pending_responses), each a goroutine (session.process).
	pending *slots
	budget  *byteBudget
	latest  *latestCache
	obs     *observations
	// bigResponses bounds the responses go-coap holds for block-wise transfer.
	bigResponses *expiringBudget

	running atomic.Bool
	state   atomic.Pointer[runState] // set while Run serves

	readyOnce sync.Once
	ready     chan struct{}
	addrsMu   sync.Mutex
	addrs     []net.Addr
}

var (
	_ protocols.Adapter   = (*Adapter)(nil)
	_ protocols.Writer    = (*Adapter)(nil)
	_ protocols.Reader    = (*Adapter)(nil)
	_ protocols.Readier   = (*Adapter)(nil)
	_ protocols.Listening = (*Adapter)(nil)
)

// deviceInfo is what the config says about a device.
type deviceInfo struct {
	labels map[string]string
	points map[string]pointInfo
}

type pointInfo struct {
	unit     string
	priority bridge.Priority
}

// listenerSpec is a listener's config, loaded: certificates, keys, authorization.
type listenerSpec struct {
	index int
	cfg   ListenerConfig
	src   *egtls.Source // tls, and dtls with a certificate: rotates (tls/source.go)
	tls   *tls.Config   // tls listeners: src's configuration
	psk   map[string][]byte
	auth  listenerAuth
}

func newAdapter(cfg *Config, env protocols.Env) (*Adapter, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{
		cfg:      cfg,
		tlsStore: env.TLS,
		log:      log.With("protocol", Name),
		metrics:  newMetrics(),
		decoder:  payload.Decoder{MaxSize: cfg.MaxPayloadSize, MaxPoints: cfg.MaxPointsPerMessage},
		devices:  make(map[string]deviceInfo, len(cfg.Devices)),
		clients:  make(map[string]*clientDevice),
		// Messages are pooled up to 1024 of them, each keeping at most 2 KiB of
		// buffers: a burst does not pin more than that.
		pool:       pool.New(1024, 2048),
		slots:      newSlots(cfg.MaxConnections),
		handshakes: newSlots(max(16, cfg.MaxConnections/8)),
		perSource:  newSourceCounts(cfg.MaxHandshakesPerSource),
		pending:    newSlots(cfg.MaxPendingResponses),
		budget:     &byteBudget{max: int64(max(datagramBudgetMin, 64*cfg.MaxMessageSize))},
		latest:     newLatestCache(cfg.MaxCachedValues),
		ready:      make(chan struct{}),
		// 4 MiB of large responses in block-wise transfer at once, adapter-wide.
		bigResponses: &expiringBudget{max: 4 << 20},
	}
	a.lim = newLimiter(logRate, logBurst, a.metrics.logsDropped)
	a.obs = newObservations(cfg.MaxObservations, cfg.MaxObservationsPerConnection, cfg.MaxObservationsPerPeer, a.metrics.observations)
	var err error
	if a.resources, err = newResourceMap(cfg.Resources); err != nil {
		return nil, err
	}
	for _, d := range cfg.Devices {
		info := deviceInfo{labels: d.Labels, points: make(map[string]pointInfo, len(d.Points))}
		for _, p := range d.Points {
			prio, _ := bridge.ParsePriority(p.Priority)
			info.points[p.Name] = pointInfo{unit: p.Unit, priority: prio}
		}
		a.devices[d.ID] = info
		if d.Address != "" {
			cd, err := newClientDevice(a, d)
			if err != nil {
				return nil, fmt.Errorf("device %q: %w", d.ID, err)
			}
			a.clients[d.ID] = cd
		}
	}
	for i, l := range cfg.Listeners {
		spec, err := loadListener(i, l, env.TLS)
		if err != nil {
			return nil, fmt.Errorf("coap: listeners[%d]: %w", i, err)
		}
		a.specs = append(a.specs, spec)
	}
	if err := a.metrics.register(env.Metrics); err != nil {
		return nil, fmt.Errorf("coap: registering metrics: %w", err)
	}
	return a, nil
}

// loadListener reads a listener's keys. Its certificate comes from the gateway's
// TLS store, so that it is read again when its files change (a nil store gives a
// Source of its own, which checks at handshakes).
func loadListener(i int, l ListenerConfig, store *egtls.Store) (*listenerSpec, error) {
	spec := &listenerSpec{index: i, cfg: l, auth: newListenerAuth(l)}
	if l.TLS != nil {
		src, err := store.Source(l.TLS)
		if err != nil {
			return nil, err
		}
		spec.src = src
		spec.tls = src.ServerConfig()
	}
	if len(l.PSK) > 0 {
		spec.psk = make(map[string][]byte, len(l.PSK))
		for _, p := range l.PSK {
			key, err := readKeyFile(p.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("psk %q: key_file: %w", p.Identity, err)
			}
			spec.psk[p.Identity] = key
		}
	}
	return spec, nil
}

// Ready is closed once every listener is bound and the adapter serves.
func (a *Adapter) Ready() <-chan struct{} { return a.ready }

// Addrs returns the bound listener addresses in config order, once Ready.
func (a *Adapter) Addrs() []net.Addr {
	a.addrsMu.Lock()
	defer a.addrsMu.Unlock()
	return append([]net.Addr(nil), a.addrs...)
}

// runState is what exists while Run serves: the sink, the context that ends with
// Run, and every goroutine and session the adapter owns.
type runState struct {
	ctx      context.Context
	sink     protocols.Sink
	presence *presence

	wg       sync.WaitGroup // accept loops, sessions, the ticker, client devices
	handlers gate           // requests being handled and writes being sent

	mu       sync.Mutex
	sessions map[*session]struct{}
	closing  bool
}

// Run binds the listeners, serves until ctx ends, then closes every listener and
// session and returns nil. Every goroutine it or go-coap started for it has ended
// when it returns.
func (a *Adapter) Run(ctx context.Context, sink protocols.Sink) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("coap: adapter already running")
	}
	defer a.running.Store(false)

	bound, err := a.listen()
	if err != nil {
		return err
	}
	for _, d := range a.cfg.Devices {
		points := make([]string, len(d.Points))
		for i, p := range d.Points {
			points[i] = p.Name
		}
		if err := sink.Declare(d.ID, points...); err != nil {
			closeBound(bound)
			return fmt.Errorf("coap: device %q: %w", d.ID, err)
		}
		sink.State(d.ID, bridge.StateDisconnected, nil)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &runState{
		ctx:      runCtx,
		sink:     sink,
		presence: newPresence(sink),
		sessions: make(map[*session]struct{}),
	}
	a.state.Store(st)
	addrs := make([]net.Addr, len(bound))
	for i, b := range bound {
		addrs[i] = b.addr()
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			a.acceptLoop(st, b)
		}()
	}
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		a.tick(st)
	}()
	for _, cd := range a.clients {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			cd.run(st)
		}()
	}
	a.addrsMu.Lock()
	a.addrs = addrs
	a.addrsMu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	if len(addrs) > 0 {
		a.log.Info("coap: serving", "addresses", addrs)
	}

	<-ctx.Done()
	a.state.Store(nil)
	// Stop in reverse: no new sessions, then no session, then wait for every
	// goroutine (client devices deregister under shutdownGrace).
	cancel()
	closeBound(bound)
	st.mu.Lock()
	st.closing = true
	sessions := make([]*session, 0, len(st.sessions))
	for s := range st.sessions {
		sessions = append(sessions, s)
	}
	st.mu.Unlock()
	for _, s := range sessions {
		s.close()
	}
	st.handlers.close()
	st.wg.Wait()
	return nil
}

// Write sets a point. For a device the gateway is the client of, it PUTs the value
// to the point's resource (which must be writable: true) and waits for 2.04. For a
// device that pushes to the gateway, it notifies the clients that observe the point
// (or the whole device) and returns once one of them has acknowledged it; with no
// observer it returns ErrNoObserver. The value travels as text (Value.String()),
// bytes as application/octet-stream, or as JSON or CBOR where an observer asked
// for it with Accept.
func (a *Adapter) Write(ctx context.Context, device, point string, v bridge.Value) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st := a.state.Load()
	if st == nil {
		return ErrNotRunning
	}
	if err := payload.ValidName(device); err != nil {
		return status.Errorf(grpccodes.InvalidArgument, "coap: write: device %q: %v", device, err)
	}
	if err := payload.ValidName(point); err != nil {
		return status.Errorf(grpccodes.InvalidArgument, "coap: write: device %q: point %q: %v", device, point, err)
	}
	if v.IsZero() {
		return status.Errorf(grpccodes.InvalidArgument, "coap: write: device %q: point %q: no value", device, point)
	}
	if cd := a.clients[device]; cd != nil {
		return cd.write(ctx, point, v)
	}
	return a.writePush(ctx, st, device, point, v)
}

// Read reads a point of a device the gateway is the client of, now: a GET of its
// resource. The reading is returned, not published. A device that pushes to the
// gateway cannot be read on demand: its latest value is in the hub's cache.
func (a *Adapter) Read(ctx context.Context, device, point string) (*bridge.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if a.state.Load() == nil {
		return nil, ErrNotRunning
	}
	cd := a.clients[device]
	if cd == nil {
		return nil, fmt.Errorf("%w: device %q pushes to the gateway; read its latest value from the cache", bridge.ErrNoReader, device)
	}
	return cd.read(ctx, point)
}

// boundListener is a listener bound by Run.
type boundListener struct {
	spec     *listenerSpec
	datagram *datagramListener // udp, dtls
	dtls     net.Listener      // dtls: pion's listener over datagram
	stream   net.Listener      // tcp, tls
}

func (b *boundListener) addr() net.Addr {
	if b.datagram != nil {
		return b.datagram.Addr()
	}
	return b.stream.Addr()
}

func (b *boundListener) close() {
	if b.dtls != nil {
		_ = b.dtls.Close()
	}
	if b.datagram != nil {
		_ = b.datagram.Close()
	}
	if b.stream != nil {
		_ = b.stream.Close()
	}
}

func closeBound(bound []*boundListener) {
	for _, b := range bound {
		b.close()
	}
}

// listen binds every configured listener, or none.
func (a *Adapter) listen() ([]*boundListener, error) {
	var bound []*boundListener
	fail := func(i int, addr string, err error) ([]*boundListener, error) {
		closeBound(bound)
		return nil, fmt.Errorf("coap: listeners[%d]: address %q: %w", i, addr, err)
	}
	for i, spec := range a.specs {
		l := spec.cfg
		b := &boundListener{spec: spec}
		switch l.Type {
		case "udp", "dtls":
			uaddr, err := net.ResolveUDPAddr("udp", l.Address)
			if err != nil {
				return fail(i, l.Address, err)
			}
			pc, err := net.ListenUDP("udp", uaddr)
			if err != nil {
				return fail(i, l.Address, err)
			}
			// A larger kernel buffer rides out bursts from many peers at once (the
			// kernel caps it at net.core.rmem_max); what it cannot hold is dropped,
			// and confirmable requests are retransmitted by their senders.
			_ = pc.SetReadBuffer(4 << 20)
			accept := isCoAPRequest
			if l.Type == "dtls" {
				accept = isDTLSHandshake
			}
			dropped := a.metrics.dropped
			dc := datagramConfig{
				accept:  accept,
				slots:   a.slots,
				budget:  a.budget,
				maxSize: a.cfg.MaxMessageSize + dtlsOverhead(l.Type),
				backlog: a.cfg.MaxConnections,
				dropped: func(reason string) { dropped.WithLabelValues(reason).Inc() },
			}
			if l.Type == "dtls" {
				dc.handshakes, dc.perSource = a.handshakes, a.perSource
			} else {
				busy := a.metrics.refused.WithLabelValues(l.Type, refusedMaxConnections)
				dc.busy = rate.NewLimiter(busyRate, busyRate)
				dc.answeredBusy = busy.Inc
			}
			b.datagram = newDatagramListener(pc, dc)
			if l.Type == "dtls" {
				dl, err := piondtls.NewListenerWithOptions(packetListener{b.datagram}, a.dtlsServerOptions(spec)...)
				if err != nil {
					b.close()
					return fail(i, l.Address, err)
				}
				b.dtls = dl
			}
		default:
			ln, err := net.Listen("tcp", l.Address)
			if err != nil {
				return fail(i, l.Address, err)
			}
			b.stream = ln
		}
		bound = append(bound, b)
	}
	return bound, nil
}

// dtlsOverhead is what a DTLS record adds to the CoAP message it carries: the
// datagram limit is the message limit plus this.
func dtlsOverhead(typ string) int {
	if typ == "dtls" {
		return 128
	}
	return 0
}

// dtlsServerOptions configures pion for a listener: pre-shared keys and/or a
// certificate, client certificates when client_ca_file is set, the cipher suites
// RFC 7252 names first, HelloVerify cookies (pion's default, never skipped), and
// pion's logs through the adapter's rate limit.
func (a *Adapter) dtlsServerOptions(spec *listenerSpec) []piondtls.ServerOption {
	var suites []piondtls.CipherSuiteID
	opts := []piondtls.ServerOption{
		piondtls.WithLoggerFactory(pionLogger{log: a.log, lim: a.lim}),
		piondtls.WithExtendedMasterSecret(piondtls.RequestExtendedMasterSecret),
		piondtls.WithInsecureSkipVerifyHello(false),
	}
	if len(spec.psk) > 0 {
		keys := spec.psk
		opts = append(opts, piondtls.WithPSK(func(identity []byte) ([]byte, error) {
			if key, ok := keys[string(identity)]; ok {
				return key, nil
			}
			return nil, fmt.Errorf("unknown PSK identity %q", clipString(string(identity), 64))
		}))
		suites = append(suites,
			piondtls.TLS_PSK_WITH_AES_128_CCM_8, // RFC 7252 section 9.1.3.1
			piondtls.TLS_PSK_WITH_AES_128_CCM,
			piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
			piondtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
			piondtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
			piondtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
		)
	}
	if spec.src != nil {
		// The certificate and the client CA bundle as they are at each handshake,
		// and the suites with RFC 7252's mandatory CCM_8 first.
		opts = append(opts, egtls.DTLSServerOptions(spec.src)...)
		suites = append(suites, egtls.DTLSCertificateSuites...)
	}
	return append(opts, piondtls.WithCipherSuites(suites...))
}

// acceptLoop accepts sessions until the listener is closed.
func (a *Adapter) acceptLoop(st *runState, b *boundListener) {
	typ := b.spec.cfg.Type
	pause := backoff.New(backoff.Accept)
	for {
		var nc net.Conn
		var err error
		switch {
		case b.dtls != nil:
			nc, err = b.dtls.Accept()
		case b.datagram != nil:
			nc, err = b.datagram.Accept()
		default:
			nc, err = b.stream.Accept()
		}
		if err != nil {
			if st.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if b.dtls != nil {
				// pion could not set up one connection: the others go on.
				a.metrics.refused.WithLabelValues(typ, refusedHandshake).Inc()
				continue
			}
			// EMFILE and such: do not spin.
			wait := pause.Next()
			limitedLog(a.log, a.lim, slog.LevelWarn, "coap: accept", "listener", b.spec.index, "err", err, "retry_in", wait)
			if backoff.Sleep(st.ctx, wait) != nil {
				return
			}
			continue
		}
		pause.Reset()
		if b.stream != nil {
			// UDP and DTLS peers took a slot in the datagram listener already.
			if !a.slots.tryAcquire() {
				a.metrics.refused.WithLabelValues(typ, refusedMaxConnections).Inc()
				_ = nc.Close()
				continue
			}
			nc = &streamConn{Conn: nc, slots: a.slots}
			if typ == "tls" {
				nc = tls.Server(nc, b.spec.tls)
			}
		}
		a.startSession(st, b, nc)
	}
}

// streamConn is an accepted TCP connection: it gives its session slot back when
// closed, and every write has a deadline, so that a peer that stops reading (with a
// notification on its way) costs a write timeout, not a goroutine forever.
type streamConn struct {
	net.Conn
	slots *slots
	once  sync.Once
}

// writeTimeout bounds one write to a TCP or TLS peer.
const writeTimeout = 10 * time.Second

func (c *streamConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.Conn.Write(b)
}

func (c *streamConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.slots.release)
	return err
}

// tick runs every session's timers until Run ends.
func (a *Adapter) tick(st *runState) {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			return
		case now := <-t.C:
			st.mu.Lock()
			sessions := make([]*session, 0, len(st.sessions))
			for s := range st.sessions {
				sessions = append(sessions, s)
			}
			st.mu.Unlock()
			for _, s := range sessions {
				s.checkExpirations(now)
			}
			for _, cd := range a.clients {
				cd.checkExpirations(now)
			}
		}
	}
}

// gate counts work in progress and, once closed, admits no more; close waits for
// what is in progress.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) leave() { g.wg.Done() }

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
