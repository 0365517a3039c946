package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
	"github.com/edgegate/edgegate/protocols/ratelog"
	etls "github.com/edgegate/edgegate/tls"
)

var (
	// ErrNotRunning is returned by Write when the broker is not running.
	ErrNotRunning = errors.New("mqtt: broker not running")
	// ErrNoSubscriber is returned by Write when no client (and no stored session)
	// subscribes to the write topic: the write would reach nobody.
	ErrNoSubscriber = errors.New("mqtt: nobody subscribes to the write topic")
)

// logRate and logBurst bound the log lines that clients can cause.
const (
	logRate  = 10 // per second
	logBurst = 10
)

// Adapter runs the embedded MQTT broker and bridges its device topics.
type Adapter struct {
	cfg       *Config
	log       *slog.Logger
	lim       *limiter // our lines that clients can cause
	brokerLim *limiter // mochi's lines, apart so that its chatter cannot starve ours
	metrics   *metrics
	logins    *loginGuard // password checks: queue, throttle, cache (login.go)
	// live is what a reload can change without touching connections: accounts,
	// topic patterns, configured devices, payload bounds. Swapped whole.
	live     atomic.Pointer[live]
	tlsConfs []*tls.Config // per listener; nil for tcp
	sinkMu   sync.Mutex
	sink     protocols.Sink // Run's, for declaring devices a reload adds

	// sp is the Sparkplug B host application, nil unless mqtt.sparkplug.enabled
	// (sparkplug.go).
	sp *spHost

	running  atomic.Bool
	srv      atomic.Pointer[mochi.Server]
	presence *presence // set by Run before the broker serves

	readyOnce sync.Once
	ready     chan struct{}
	addrsMu   sync.Mutex
	addrs     []net.Addr
}

var (
	_ protocols.Adapter   = (*Adapter)(nil)
	_ protocols.Writer    = (*Adapter)(nil)
	_ protocols.Readier   = (*Adapter)(nil)
	_ protocols.Listening = (*Adapter)(nil)
)

// live is the part of the config that Reconfigure swaps.
type live struct {
	cfg     *Config
	topics  *topicMap
	auth    *authorizer
	decoder payload.Decoder
	devices map[string]deviceInfo
}

// cur returns the config in force.
func (a *Adapter) cur() *live { return a.live.Load() }

// newLive compiles the reloadable part of a config.
func newLive(cfg *Config) (*live, error) {
	l := &live{
		cfg:     cfg,
		auth:    newAuthorizer(cfg),
		decoder: payload.Decoder{MaxSize: cfg.MaxPacketSize, MaxPoints: cfg.MaxPointsPerMessage},
		devices: make(map[string]deviceInfo, len(cfg.Devices)),
	}
	var err error
	if l.topics, err = newTopicMap(cfg.Topics); err != nil {
		return nil, err
	}
	for _, d := range cfg.Devices {
		info := deviceInfo{labels: d.Labels, points: make(map[string]pointInfo, len(d.Points))}
		for _, p := range d.Points {
			prio, _ := bridge.ParsePriority(p.Priority)
			info.points[p.Name] = pointInfo{unit: p.Unit, priority: prio}
		}
		l.devices[d.ID] = info
	}
	return l, nil
}

// deviceInfo is what the config says about a device.
type deviceInfo struct {
	labels map[string]string
	points map[string]pointInfo
}

type pointInfo struct {
	unit     string
	priority bridge.Priority
}

func newAdapter(cfg *Config, env protocols.Env) (*Adapter, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{
		cfg:   cfg,
		log:   log.With("protocol", Name),
		ready: make(chan struct{}),
	}
	a.metrics = newMetrics(&a.srv)
	a.logins = newLoginGuard(a.metrics)
	a.lim = newLimiter(logRate, logBurst, a.metrics.logsDropped)
	a.brokerLim = newLimiter(logRate, logBurst, a.metrics.logsDropped)
	lv, err := newLive(cfg)
	if err != nil {
		return nil, err
	}
	a.live.Store(lv)
	for i, l := range cfg.Listeners {
		var tc *tls.Config
		if l.Type == "tls" {
			// From the gateway's store: the certificate follows its files, and
			// with client_ca_file a client certificate is required and checked
			// against the CA bundle as it is at each handshake.
			src, err := env.TLS.Source(l.TLS)
			if err != nil {
				return nil, fmt.Errorf("mqtt: listeners[%d]: %w", i, err)
			}
			tc = src.ServerConfig()
		}
		a.tlsConfs = append(a.tlsConfs, tc)
	}
	if cfg.Sparkplug.Enabled {
		spm := newSpMetrics()
		a.sp = newSpHost(cfg.Sparkplug, spm)
		a.metrics.collectables = append(a.metrics.collectables, spm.collectors(a.sp)...)
	}
	if err := a.metrics.register(env.Metrics); err != nil {
		return nil, fmt.Errorf("mqtt: registering metrics: %w", err)
	}
	return a, nil
}

// knownDevice reports a configured device.
func (a *Adapter) knownDevice(id string) bool {
	_, ok := a.cur().devices[id]
	return ok
}

// Ready is closed once every listener is bound and the broker serves.
func (a *Adapter) Ready() <-chan struct{} { return a.ready }

// Addrs returns the bound listener addresses in config order, once Ready.
func (a *Adapter) Addrs() []net.Addr {
	a.addrsMu.Lock()
	defer a.addrsMu.Unlock()
	return append([]net.Addr(nil), a.addrs...)
}

// Run binds the listeners, serves MQTT until ctx ends, then disconnects every client
// (within shutdownGrace) and returns nil. Every goroutine it or the broker started
// has ended when it returns.
func (a *Adapter) Run(ctx context.Context, sink protocols.Sink) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("mqtt: adapter already running")
	}
	defer a.running.Store(false)

	lns, err := a.listen()
	if err != nil {
		return err
	}
	closeAll := func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}
	for _, d := range a.cur().cfg.Devices {
		points := make([]string, len(d.Points))
		for i, p := range d.Points {
			points[i] = p.Name
		}
		if err := sink.Declare(d.ID, points...); err != nil {
			closeAll()
			return fmt.Errorf("mqtt: device %q: %w", d.ID, err)
		}
		sink.State(d.ID, bridge.StateDisconnected, nil)
	}

	a.sinkMu.Lock()
	a.sink = sink
	a.sinkMu.Unlock()
	srv := a.newServer()
	a.presence = newPresence(sink)
	acks := newAcker(srv, a.cfg.MaxInflight, a.metrics.acks)
	// The relay delivers QoS 1 and 2 publishes to subscribers while their acks wait
	// for the disk (hook.deliverAndAck); like mochi's own inline client it has no
	// connection and is never in the client list.
	relay := srv.NewClient(nil, mochi.LocalListener, "edgegate-relay", true)
	h := &hook{a: a, srv: srv, ctx: ctx, sink: sink, acks: acks, relay: relay}
	if err := srv.AddHook(h, nil); err != nil {
		closeAll()
		return fmt.Errorf("mqtt: %w", err)
	}
	guard := &connGuard{
		slots:   make(chan struct{}, a.cfg.MaxConnections),
		metrics: a.metrics,
		log:     a.log,
		lim:     a.lim,
	}
	guard.recovered = func(c *conn, _ any) { a.recovered(srv, c) }
	guard.goodbye = func(cl *mochi.Client) { _ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown) }
	addrs := make([]net.Addr, len(lns))
	for i, ln := range lns {
		proto := a.cfg.Listeners[i].Type
		l := newListener(fmt.Sprintf("%s-%d", proto, i), proto, ln, guard, a.cfg.ConnectTimeout)
		if err := srv.AddListener(l); err != nil {
			closeAll()
			return fmt.Errorf("mqtt: listeners[%d]: %w", i, err)
		}
		addrs[i] = ln.Addr()
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("mqtt: %w", err)
	}
	if a.sp != nil {
		a.publishState(srv, true) // before the count below: it does not count against max_retained either
	}
	// Serve has retained the $SYS topics; they do not count against max_retained.
	h.sysRetained.Store(int64(srv.Topics.Retained.Len()))
	a.srv.Store(srv)
	a.addrsMu.Lock()
	a.addrs = addrs
	a.addrsMu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	a.log.Info("mqtt: serving", "addresses", addrs)
	for i, l := range a.cfg.Listeners {
		etls.WarnInsecure(a.log, fmt.Sprintf("mqtt.listeners[%d]", i), l.Address, l.Type == "tls")
	}

	ackCtx, stopAcks := context.WithCancel(context.Background())
	acksDone := make(chan struct{})
	go func() {
		defer close(acksDone)
		acks.run(ackCtx)
	}()

	<-ctx.Done()
	a.srv.Store(nil)
	if a.sp != nil {
		// The host application goes offline with the broker: edge nodes still
		// connected see it before the broker says goodbye (docs/sparkplug.md).
		a.publishState(srv, false)
	}
	// Server.Close closes each listener (see listener.Close: DISCONNECT under a
	// deadline, then every connection closed and its goroutine waited for), stops
	// mochi's event loop and the hooks. The acker runs until then: acks that become
	// ready during the goodbye still go out.
	_ = srv.Close()
	stopAcks()
	<-acksDone
	return nil
}

// listen binds every configured listener, or none.
func (a *Adapter) listen() ([]net.Listener, error) {
	var lns []net.Listener
	for i, l := range a.cfg.Listeners {
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			for _, o := range lns {
				_ = o.Close()
			}
			return nil, fmt.Errorf("mqtt: listeners[%d]: address %q: %w", i, l.Address, err)
		}
		if tc := a.tlsConfs[i]; tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// newServer configures mochi within the config's bounds.
func (a *Adapter) newServer() *mochi.Server {
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(a.cfg.MaxConnections)
	caps.MaximumPacketSize = uint32(a.cfg.MaxPacketSize)
	caps.ReceiveMaximum = uint16(a.cfg.MaxInflight)
	caps.MaximumInflight = uint16(a.cfg.MaxInflight)
	// The outbound queue is allocated per client up front (8 bytes a slot): mochi's
	// default of 8192 would cost 64 KiB per client before any traffic.
	caps.MaximumClientWritesPending = int32(min(4*a.cfg.MaxInflight, 4096))
	caps.MaximumSessionExpiryInterval = uint32(min(a.cfg.SessionExpiry.Seconds(), math.MaxUint32))
	// Each inbound alias holds a topic name for the life of the connection; mochi's
	// default (65535) lets one client pin 65535 topics.
	caps.TopicAliasMaximum = 16
	return mochi.New(&mochi.Options{
		Capabilities: caps,
		InlineClient: true, // Write publishes through it, without a loopback client
		// No secret reaches the log: mochi logs whole packets (logging.go).
		Logger: slog.New(redactPackets(ratelog.Handler(a.log.With("component", "broker").Handler(), a.brokerLim))),
		// $SYS topics are refreshed every 10s rather than every second: nobody on a
		// small gateway needs them fresher, and each refresh is a publish.
		SysTopicResendInterval: 10,
	})
}

// recovered undoes what mochi would have done at the end of a connection whose
// goroutine panicked: mochi's deferred cleanup closed the connection and counted the
// client out, but its disconnect hook did not run and the session stayed registered.
func (a *Adapter) recovered(srv *mochi.Server, c *conn) {
	cl := c.client.Load()
	if cl == nil {
		return // before the session existed: nothing registered
	}
	a.presence.gone(cl)
	expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
		(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean)
	if expire && !cl.IsTakenOver() {
		cl.ClearInflights()
		srv.UnsubscribeClient(cl)
		if cur, ok := srv.Clients.Get(cl.ID); ok && cur == cl {
			srv.Clients.Delete(cl.ID)
		}
	}
}

// Write publishes a value on devices/{device}/{point}/set, as text (Value.String),
// or raw for bytes, with QoS 1 and without retain. To a Sparkplug device (one an
// edge node's BIRTH declared) it publishes a DCMD, or an NCMD for a node's own
// metric, with the metric's name and datatype from the BIRTH, QoS 0 (sparkplug.go).
func (a *Adapter) Write(ctx context.Context, device, point string, v bridge.Value) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	srv := a.srv.Load()
	if srv == nil {
		return ErrNotRunning
	}
	if err := payload.ValidName(device); err != nil {
		return fmt.Errorf("mqtt: write: device %q: %w", device, err)
	}
	if err := payload.ValidName(point); err != nil {
		return fmt.Errorf("mqtt: write: device %q: point %q: %w", device, point, err)
	}
	if v.IsZero() {
		return fmt.Errorf("mqtt: write: device %q: point %q: no value", device, point)
	}
	topic := writeTopic(device, point)
	body := []byte(v.String())
	if b, ok := v.AsBytes(); ok {
		body = b
	}
	qos := byte(1)
	if a.sp != nil {
		switch t, b, err := a.sp.command(device, point, v, time.Now()); {
		case err == nil:
			// NCMD and DCMD are QoS 0 (Sparkplug 3.0).
			topic, body, qos = t, b, 0
		case !errors.Is(err, errNotSparkplugDevice):
			return err
		}
	}
	subs := srv.Topics.Subscribers(topic)
	if len(subs.Subscriptions) == 0 && len(subs.Shared) == 0 && len(subs.InlineSubscriptions) == 0 {
		return fmt.Errorf("%w: %s", ErrNoSubscriber, topic)
	}
	defer func() {
		// The inline publish runs mochi's code in the caller's goroutine.
		if r := recover(); r != nil {
			a.metrics.panics.Inc()
			err = fmt.Errorf("mqtt: write to %s: broker panicked: %v", topic, r)
		}
	}()
	if err := srv.Publish(topic, body, false, qos); err != nil {
		return fmt.Errorf("mqtt: write to %s: %w", topic, err)
	}
	return nil
}
