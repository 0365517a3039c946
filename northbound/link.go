package northbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/grpcapi"
	"github.com/edgegate/edgegate/internal/backoff"
	"github.com/edgegate/edgegate/protocols/sparkplug"
	"github.com/edgegate/edgegate/uplink"
)

// Log is the durable log a link reads and keeps its position in: the uplink's
// (bridge/journal implements it).
type Log = uplink.Log

// ConsumerPrefix starts the name of every link's durable consumer in the log:
// northbound-<name>.
const ConsumerPrefix = grpcapi.NorthboundConsumerPrefix

// Options are what the gateway gives a link.
type Options struct {
	// Config is the link's entry, validated; its defaults are filled in here.
	Config    *Config
	GatewayID string
	// Hub is where messages come from (a subscription with the link's match,
	// which reads the durable log when it is behind the hub's memory).
	Hub *bridge.Hub
	// Log is the durable log, nil without gateway.data_dir: the link then starts
	// with what is published from now on and keeps its position in memory, so
	// what the hub no longer holds after an outage, or a restart, is lost.
	Log Log
	// Writer executes commands; default Hub. Writes go through grpcapi.Write,
	// the Write RPC's path.
	Writer  bridge.Writer
	Logger  *slog.Logger
	Metrics *Metrics // nil: a set of its own, unregistered
}

// Link streams the messages its match selects to one MQTT broker, and takes
// commands back when accept_commands is set. Run it.
type Link struct {
	cfg      *Config
	id       string
	hub      *bridge.Hub
	jlog     Log
	writer   bridge.Writer
	log      *slog.Logger
	m        *Metrics
	match    *bridge.Matcher
	topic    *template
	url      string
	tls      *tls.Config
	consumer string
	clientID string

	acked   atomic.Uint64 // every selected message up to here is on the broker
	savedAt time.Time     // when acked was last handed to the log (the forwarder's)

	mu        sync.Mutex
	bdSeq     uint64 // the next Sparkplug session's
	connected bool
	since     time.Time
	lastErr   string
}

// New builds a link. It loads the TLS files and connects to nothing.
func New(o Options) (*Link, error) {
	if o.Config == nil {
		return nil, errors.New("northbound: no config")
	}
	if o.Hub == nil {
		return nil, errors.New("northbound: no hub")
	}
	c := o.Config
	c.SetDefaults()
	if probs := c.Validate(o.GatewayID); len(probs) > 0 {
		errs := make([]error, len(probs))
		for i, p := range probs {
			errs[i] = fmt.Errorf("northbound %q: %w", c.Name, p)
		}
		return nil, errors.Join(errs...)
	}
	match, err := c.Match.compile()
	if err != nil {
		return nil, err
	}
	var topic *template
	if c.Format == FormatJSON {
		if topic, err = parseTemplate(c.Topic); err != nil {
			return nil, err
		}
	}
	url, err := c.MQTT.dialURL()
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if url[:3] == "tls" {
		if tc, err = c.MQTT.tlsConfig(); err != nil {
			return nil, fmt.Errorf("northbound %q: mqtt: %w", c.Name, err)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Writer == nil {
		o.Writer = o.Hub
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	clientID := c.MQTT.ClientID
	if clientID == "" {
		clientID = "edgegate-" + o.GatewayID + "-" + c.Name
	}
	l := &Link{
		cfg: c, id: o.GatewayID, hub: o.Hub, jlog: o.Log, writer: o.Writer, log: o.Logger, m: o.Metrics,
		match: match, topic: topic, url: url, tls: tc, consumer: ConsumerPrefix + c.Name, clientID: clientID,
	}
	if o.Log != nil {
		// A new link starts with everything the log still holds, as the uplink does.
		acked, ok := o.Log.Position(l.consumer)
		if !ok {
			acked = o.Log.First() - 1
		}
		l.acked.Store(acked)
		if err := o.Log.Ack(l.consumer, acked); err != nil {
			return nil, fmt.Errorf("northbound %q: %w", c.Name, err)
		}
	} else {
		l.acked.Store(o.Hub.LastSequence())
	}
	l.m.add(l)
	return l, nil
}

// Name is the link's name.
func (l *Link) Name() string { return l.cfg.Name }

// Backlog is how many messages of the log (or the hub) follow the link's
// acknowledged position, selected by its match or not.
func (l *Link) Backlog() uint64 {
	last := l.hub.LastSequence()
	if l.jlog != nil {
		last = l.jlog.Last()
	}
	if a := l.acked.Load(); last > a {
		return last - a
	}
	return 0
}

// Acked is the sequence up to which every selected message is on the broker.
func (l *Link) Acked() uint64 { return l.acked.Load() }

// Run connects to the broker, streams and takes commands, and connects again
// with the uplink's backoff whenever the connection ends, until ctx ends. It
// returns nil then.
func (l *Link) Run(ctx context.Context) error {
	// The uplink's pacing: doubling from reconnect_min to reconnect_max, each wait
	// drawn from its upper half, so that links that lost a broker at once do not
	// come back at once.
	b := backoff.New(backoff.Policy{Min: l.cfg.MQTT.ReconnectMin, Max: l.cfg.MQTT.ReconnectMax, Jitter: 0.5})
	for {
		if l.attempted() {
			l.m.reconnects.WithLabelValues(l.cfg.Name).Inc()
		}
		start := time.Now()
		progressed, err := l.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.setError(err)
		if progressed || time.Since(start) > 5*l.cfg.MQTT.ReconnectMax {
			b.Reset()
		}
		d := b.Next()
		l.log.Warn("northbound: broker connection ended; connecting again", "name", l.cfg.Name, "err", err, "in", d.Round(time.Millisecond))
		if backoff.Sleep(ctx, d) != nil {
			return nil
		}
	}
}

// attempted reports whether a connection was attempted before (so the next is
// a reconnect).
func (l *Link) attempted() bool {
	return counterValue(l.m.connects.WithLabelValues(l.cfg.Name, "ok"))+counterValue(l.m.connects.WithLabelValues(l.cfg.Name, "error")) > 0
}

// session is one connection: it streams and takes commands until the
// connection fails or ctx ends, and reports whether anything was published.
func (l *Link) session(ctx context.Context) (bool, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m := l.cfg.MQTT
	password, err := m.readPassword()
	if err != nil {
		l.m.connects.WithLabelValues(l.cfg.Name, "error").Inc()
		return false, err
	}
	opts := mqtt.NewClientOptions().
		AddBroker(l.url).
		SetClientID(l.clientID).
		SetUsername(m.Username).
		SetPassword(password).
		// The link reconnects itself, from its acknowledged position: paho's own
		// reconnect would resume its in-flight publishes besides ours.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetCleanSession(true).
		// Commands reach the handler in the order they arrive; it only queues
		// them (never blocking paho, whose reader also handles the PUBACKs).
		SetOrderMatters(true).
		SetConnectTimeout(m.ConnectTimeout).
		SetKeepAlive(m.KeepAlive).
		SetPingTimeout(min(m.KeepAlive, 10*time.Second)).
		SetWriteTimeout(m.AckTimeout).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			cancel(fmt.Errorf("connection lost: %w", err))
		})
	if l.tls != nil {
		opts.SetTLSConfig(l.tls)
	}
	var sp *spNode
	if l.cfg.Format == FormatSparkplug {
		sp = newSpNode(l)
		opts.SetBinaryWill(sp.topic(sparkplug.NDEATH, ""), sp.death(), 1, false)
	}
	client := mqtt.NewClient(opts)
	tok := client.Connect()
	if !waitToken(sctx, tok, m.ConnectTimeout+time.Second) || tok.Error() != nil {
		l.m.connects.WithLabelValues(l.cfg.Name, "error").Inc()
		err := tok.Error()
		if err == nil {
			err = errors.New("timed out")
		}
		client.Disconnect(0)
		return false, fmt.Errorf("connecting to %s: %w", l.url, err)
	}
	l.m.connects.WithLabelValues(l.cfg.Name, "ok").Inc()
	defer client.Disconnect(100)

	var wg sync.WaitGroup
	cmds := make(chan mqtt.Message, commandQueue)
	rebirth := make(chan struct{}, 1)
	subs := map[string]mqtt.MessageHandler{}
	queue := func(_ mqtt.Client, msg mqtt.Message) {
		select {
		case cmds <- msg:
		default:
			l.refuse(msg.Topic(), "queue full", fmt.Errorf("%d commands waiting", commandQueue))
		}
	}
	if sp != nil {
		spHandler := func(_ mqtt.Client, msg mqtt.Message) { l.spCommand(msg, rebirth, cmds) }
		subs[sp.topic(sparkplug.NCMD, "")] = spHandler
		if l.cfg.AcceptCommands {
			subs[sp.topic(sparkplug.DCMD, "+")] = spHandler
		}
	} else if l.cfg.AcceptCommands {
		subs[l.topic.setFilter(l.id)] = queue
	}
	for filter, h := range subs {
		st := client.Subscribe(filter, 1, h)
		if !waitToken(sctx, st, m.AckTimeout) || st.Error() != nil {
			err := st.Error()
			if err == nil {
				err = errors.New("not acknowledged in time")
			}
			return false, fmt.Errorf("subscribing to %s: %w", filter, err)
		}
	}
	if len(subs) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.commands(sctx, cmds, sp)
		}()
	}
	l.setConnected(true)
	defer l.setConnected(false)
	l.log.Info("northbound: connected to the broker", "name", l.cfg.Name, "url", l.url, "acked", l.acked.Load())
	f := &forwarder{l: l, client: client, fail: cancel, sp: sp, rebirth: rebirth}
	if err := f.run(sctx, ctx); err != nil {
		cancel(err)
	}
	if sp != nil && ctx.Err() != nil && client.IsConnectionOpen() {
		// A clean stop: the node says so itself (the will is for the rest).
		t := client.Publish(sp.topic(sparkplug.NDEATH, ""), 1, false, sp.death())
		t.WaitTimeout(time.Second)
	}
	cancel(nil)
	wg.Wait()
	cause := context.Cause(sctx)
	if ctx.Err() != nil {
		cause = errors.New("stopping")
	}
	return f.progressed.Load(), cause
}

// waitToken waits for a token within d, or until ctx ends; it reports whether
// the token completed.
func waitToken(ctx context.Context, tok mqtt.Token, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (l *Link) setConnected(c bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.connected = c
	if c {
		l.since = time.Now()
		l.lastErr = ""
		l.m.connected.WithLabelValues(l.cfg.Name).Set(1)
	} else {
		l.m.connected.WithLabelValues(l.cfg.Name).Set(0)
	}
}

func (l *Link) setError(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err.Error()
}

// savePositionEvery is how often the position is handed to the durable log (as
// the uplink's): the log saves it to disk every 100ms and at close.
const savePositionEvery = 10 * time.Millisecond

// setAcked records the broker's acknowledged position, in the durable log at
// most every savePositionEvery or at once when idle. Calls are serialized by
// the forwarder's mutex.
func (l *Link) setAcked(seq uint64, idle bool) {
	if seq <= l.acked.Load() {
		return
	}
	l.acked.Store(seq)
	if now := time.Now(); idle || now.Sub(l.savedAt) >= savePositionEvery {
		l.savedAt = now
		l.savePosition()
	}
}

func (l *Link) savePosition() {
	if l.jlog == nil {
		return
	}
	if err := l.jlog.Ack(l.consumer, l.acked.Load()); err != nil {
		l.log.Error("northbound: saving the acknowledged position", "name", l.cfg.Name, "err", err)
	}
}

// Status is a link's state for the HTTP status page.
type Status struct {
	Name          string    `json:"name"`
	URL           string    `json:"url"`
	Connected     bool      `json:"connected"`
	Since         time.Time `json:"connected_since,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	AckedSequence uint64    `json:"acked_sequence"`
	Backlog       uint64    `json:"backlog"`
	Published     uint64    `json:"published"`
	Lost          uint64    `json:"lost"`
	Reconnects    uint64    `json:"reconnects"`
	Accepted      uint64    `json:"commands_accepted"`
	Refused       uint64    `json:"commands_refused"`
	Failed        uint64    `json:"commands_failed"`
}

// Status returns the link's current state.
func (l *Link) Status() Status {
	n := l.cfg.Name
	l.mu.Lock()
	st := Status{Name: n, URL: l.url, Connected: l.connected, Since: l.since, LastError: l.lastErr}
	l.mu.Unlock()
	if !st.Connected {
		st.Since = time.Time{}
	}
	st.AckedSequence = l.acked.Load()
	st.Backlog = l.Backlog()
	st.Published = counterValue(l.m.published.WithLabelValues(n))
	st.Lost = counterValue(l.m.lost.WithLabelValues(n))
	st.Reconnects = counterValue(l.m.reconnects.WithLabelValues(n))
	st.Accepted = counterValue(l.m.commands.WithLabelValues(n, "accepted"))
	st.Refused = counterValue(l.m.commands.WithLabelValues(n, "refused"))
	st.Failed = counterValue(l.m.commands.WithLabelValues(n, "failed"))
	return st
}
