package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Log is the durable log the uplink forwards from and keeps its positions in
// (bridge/journal implements it).
type Log interface {
	bridge.Journal
	// Ack records a named consumer's position; positions only move forward and
	// survive restarts.
	Ack(name string, seq uint64) error
	// Position returns a named consumer's position, and whether it exists.
	Position(name string) (uint64, bool)
}

// Names of the uplink's positions in the durable log.
const (
	// ConsumerAcked is the sequence up to which the hub has acknowledged every
	// message.
	ConsumerAcked = "uplink"
	// ConsumerPriority is the sequence up to which the hub has acknowledged every
	// high and critical message (the priority pass may run ahead of the rest).
	ConsumerPriority = "uplink-priority"
)

// Options are what the gateway gives the uplink.
type Options struct {
	// Config is the uplink section, validated; its defaults are filled in here.
	Config    *Config
	GatewayID string
	// DataDir is the gateway's data directory; the executed command ids are kept
	// in DataDir/uplink.
	DataDir string
	Log     Log
	// Writer executes commands: the hub, so writes take the same path as the
	// Write RPC.
	Writer  bridge.Writer
	Logger  *slog.Logger
	Metrics prometheus.Registerer // nil: none registered
	// Now is the clock for command expiry; default time.Now.
	Now func() time.Time
}

// Uplink forwards the durable log to a NATS JetStream hub and executes the
// commands the hub sends. Run it; Status says how it is doing.
type Uplink struct {
	cfg    *NATS
	id     string
	dir    string
	jlog   Log
	writer bridge.Writer
	log    *slog.Logger
	codec  codec
	tls    *tls.Config
	urls   string
	now    func() time.Time
	m      *metrics

	acked    atomic.Uint64 // every message up to here is on the hub
	priority atomic.Uint64 // every high and critical message up to here is on the hub
	savedAt  time.Time     // when the positions were last handed to the log (forwarder only)

	mu        sync.Mutex
	connected bool
	since     time.Time
	lastErr   string
	draining  bool
	exec      *executed

	ageMu     sync.Mutex
	ageReader bridge.JournalReader
	ageBuf    []*bridge.Message
	ageDone   bool // Run has returned: the log may be closed
}

// New builds an uplink. It loads the TLS files but connects to nothing.
func New(o Options) (*Uplink, error) {
	if o.Config == nil || o.Config.NATS == nil {
		return nil, errors.New("uplink: nats: required")
	}
	if o.Log == nil {
		return nil, errors.New("uplink: needs the durable log (gateway.data_dir, journal.sync not none)")
	}
	o.Config.SetDefaults()
	if probs := o.Config.Validate(o.GatewayID); len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	n := o.Config.NATS
	tc, err := n.tlsConfig()
	if err != nil {
		return nil, err
	}
	urls, _ := n.urls()
	list := make([]string, len(urls))
	for i, u := range urls {
		list[i] = u.String()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	u := &Uplink{
		cfg: n, id: o.GatewayID, dir: filepath.Join(o.DataDir, "uplink"), jlog: o.Log, writer: o.Writer,
		log: o.Logger, codec: newCodec(n.Encoding), tls: tc, urls: strings.Join(list, ","), now: o.Now,
	}
	// A new uplink starts with everything the log still holds.
	acked, ok := o.Log.Position(ConsumerAcked)
	if !ok {
		acked = o.Log.First() - 1
	}
	prio, _ := o.Log.Position(ConsumerPriority)
	u.acked.Store(acked)
	u.priority.Store(max(prio, acked))
	if err := o.Log.Ack(ConsumerAcked, acked); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	if err := o.Log.Ack(ConsumerPriority, u.priority.Load()); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	u.m = newMetrics(u, o.Metrics)
	return u, nil
}

// Run connects to the hub, forwards and executes commands, and connects again
// with backoff whenever the connection ends, until ctx ends. It returns nil
// then, or an error when it cannot start at all.
func (u *Uplink) Run(ctx context.Context) error {
	exec, err := openExecuted(u.dir, u.cfg.MaxCommandIDs)
	if err != nil {
		return fmt.Errorf("uplink: command ids: %w", err)
	}
	u.mu.Lock()
	u.exec = exec
	u.mu.Unlock()
	defer func() {
		u.ageMu.Lock()
		u.ageDone = true
		if u.ageReader != nil {
			u.ageReader.Close()
			u.ageReader = nil
		}
		u.ageMu.Unlock()
		if err := exec.close(); err != nil {
			u.log.Error("uplink: closing the command log", "err", err)
		}
	}()
	attempt := 0
	for {
		start := time.Now()
		progressed, err := u.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		u.setError(err)
		if progressed || time.Since(start) > 5*u.cfg.ReconnectMax {
			attempt = 0
		}
		d := Backoff(u.cfg.ReconnectMin, u.cfg.ReconnectMax, attempt)
		attempt++
		u.log.Warn("uplink: hub connection ended; connecting again", "err", err, "in", d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Backoff is the wait before connection attempt n+1 after n failures: doubling
// from lo up to hi, each wait drawn at random from its upper half, so that a
// fleet that lost its hub at once does not come back at once. The northbound
// MQTT links wait the same way.
func Backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// errStopping ends a session because the uplink stops.
var errStopping = errors.New("uplink stopping")

// session is one connection to the hub: it forwards and executes commands until
// the connection fails or ctx ends. It reports whether anything was achieved.
func (u *Uplink) session(ctx context.Context) (bool, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	opts := []nats.Option{
		nats.Name("edgegate " + u.id),
		// Replies (publish acknowledgements, pulled commands) come to inboxes
		// of the site's own, so the hub can keep sites out of each other's.
		nats.CustomInboxPrefix(InboxPrefix(u.id)),
		// The uplink reconnects itself, from its acknowledged position: nats.go's
		// reconnect would replay buffered publishes out of order.
		nats.NoReconnect(),
		nats.Timeout(u.cfg.ConnectTimeout),
		// A hub that vanished without closing the connection is noticed within
		// about a minute even when nothing is sent.
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		// Bounds every write, also the last flush of Close.
		nats.FlusherTimeout(u.cfg.AckTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				err = nats.ErrConnectionClosed
			}
			cancel(fmt.Errorf("disconnected: %w", err))
		}),
		nats.ClosedHandler(func(*nats.Conn) { cancel(nats.ErrConnectionClosed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			u.log.Warn("uplink: asynchronous error from the hub", "err", err)
		}),
	}
	if u.tls != nil {
		opts = append(opts, nats.Secure(u.tls))
	}
	if f := u.cfg.CredentialsFile; f != "" {
		opts = append(opts, nats.UserCredentials(f))
	}
	nc, err := nats.Connect(u.urls, opts...)
	if err != nil {
		u.m.connects.WithLabelValues("error").Inc()
		return false, fmt.Errorf("connecting to %s: %w", u.urls, err)
	}
	u.m.connects.WithLabelValues("ok").Inc()
	defer nc.Close()
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(u.cfg.MaxInFlight+1),
		jetstream.WithPublishAsyncTimeout(u.cfg.AckTimeout))
	if err != nil {
		return false, err
	}
	defer js.CleanupPublisher()
	if u.cfg.CreateStreams {
		if err := u.ensureStreams(sctx, js); err != nil {
			return false, err
		}
	}
	u.setConnected(true)
	defer u.setConnected(false)
	u.log.Info("uplink: connected to the hub", "url", nc.ConnectedUrlRedacted(), "acked", u.acked.Load())

	var wg sync.WaitGroup
	var forwarded, commanded atomic.Bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		f := newForwarder(u, js, cancel)
		if err := f.run(sctx, ctx); err != nil {
			cancel(err)
		}
		forwarded.Store(f.progressed)
	}()
	go func() {
		defer wg.Done()
		if err := u.commands(sctx, js, nc, &commanded); err != nil {
			cancel(err)
		}
	}()
	wg.Wait()
	cause := context.Cause(sctx)
	if ctx.Err() != nil {
		cause = errStopping
	}
	return forwarded.Load() || commanded.Load(), cause
}

// ensureStreams creates the hub's streams when they are missing (create_streams).
func (u *Uplink) ensureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, sc := range []jetstream.StreamConfig{
		{Name: DataStream, Subjects: []string{"edgegate.data.>"}, Storage: jetstream.FileStorage, Duplicates: u.cfg.DuplicateWindow},
		{Name: CommandStream, Subjects: []string{"edgegate.cmd.>"}, Storage: jetstream.FileStorage, Duplicates: u.cfg.DuplicateWindow},
	} {
		if _, err := js.Stream(ctx, sc.Name); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("looking up stream %s: %w", sc.Name, err)
		}
		if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("creating stream %s (uplink.nats.create_streams): %w", sc.Name, err)
		}
		u.log.Info("uplink: created hub stream", "stream", sc.Name)
	}
	return nil
}

func (u *Uplink) setConnected(c bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.connected = c
	if c {
		u.since = time.Now()
		u.lastErr = ""
		u.m.connected.Set(1)
	} else {
		u.m.connected.Set(0)
		u.draining = false
	}
}

func (u *Uplink) setError(err error) {
	if err == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lastErr = err.Error()
}

func (u *Uplink) setDraining(d bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.draining = d
}

// savePositionsEvery is how often the positions are handed to the durable log,
// which itself saves them to disk every 100ms and at close: handing over every
// acknowledgement would cost more than it gains.
const savePositionsEvery = 10 * time.Millisecond

// setPositions records the hub's acknowledged positions in memory, and in the
// durable log at most every savePositionsEvery, or at once when nothing is in
// flight (idle is true), so that a quiet uplink's log is never behind. Calls are
// serialized by the forwarder.
func (u *Uplink) setPositions(acked, prio uint64, idle bool) {
	if acked > u.acked.Load() {
		u.acked.Store(acked)
	}
	if prio > u.priority.Load() {
		u.priority.Store(prio)
	}
	if now := time.Now(); idle || now.Sub(u.savedAt) >= savePositionsEvery {
		u.savedAt = now
		u.savePositions()
	}
}

// savePositions hands the positions to the durable log.
func (u *Uplink) savePositions() {
	if err := u.jlog.Ack(ConsumerAcked, u.acked.Load()); err != nil {
		u.log.Error("uplink: saving the acknowledged position", "err", err)
	}
	if err := u.jlog.Ack(ConsumerPriority, u.priority.Load()); err != nil {
		u.log.Error("uplink: saving the priority position", "err", err)
	}
}

// Status is the uplink's state for the HTTP status page.
type Status struct {
	URL       string    `json:"url"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"connected_since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// AckedSequence: every message up to it is on the hub.
	AckedSequence uint64 `json:"acked_sequence"`
	// Backlog is how many messages the hub does not have yet; BacklogAge how old
	// the oldest of them is.
	Backlog    uint64  `json:"backlog"`
	BacklogAge float64 `json:"backlog_age_seconds"`
	// Draining: high and critical messages are being sent ahead of a backlog.
	Draining          bool   `json:"draining"`
	Published         uint64 `json:"published"`
	Duplicates        uint64 `json:"duplicates"`
	Lost              uint64 `json:"lost"`
	CommandsExecuted  uint64 `json:"commands_executed"`
	CommandsFailed    uint64 `json:"commands_failed"`
	CommandsRefused   uint64 `json:"commands_refused"`
	CommandsRepeated  uint64 `json:"commands_repeated"`
	CommandIDs        int    `json:"command_ids"`
	ConnectedAttempts uint64 `json:"connects"`
}

// Status returns the uplink's current state.
func (u *Uplink) Status() Status {
	u.mu.Lock()
	st := Status{URL: redact(u.urls), Connected: u.connected, Since: u.since, LastError: u.lastErr, Draining: u.draining}
	exec := u.exec
	u.mu.Unlock()
	if !st.Connected {
		st.Since = time.Time{}
	}
	st.AckedSequence = u.acked.Load()
	st.Backlog, st.BacklogAge = u.backlog()
	st.Published = uint64(counterValue(u.m.published))
	st.Duplicates = uint64(counterValue(u.m.duplicates))
	st.Lost = uint64(counterValue(u.m.lost))
	st.CommandsExecuted = uint64(counterValue(u.m.commands.WithLabelValues("executed")))
	st.CommandsFailed = uint64(counterValue(u.m.commands.WithLabelValues("failed")))
	st.CommandsRefused = uint64(counterValue(u.m.commands.WithLabelValues("refused")))
	st.CommandsRepeated = uint64(counterValue(u.m.commands.WithLabelValues("repeated")))
	st.ConnectedAttempts = uint64(counterValue(u.m.connects.WithLabelValues("ok")))
	if exec != nil {
		st.CommandIDs = exec.size()
	}
	return st
}

// backlog is how many messages the hub lacks and the age of the oldest.
func (u *Uplink) backlog() (uint64, float64) {
	acked, last := u.acked.Load(), u.jlog.Last()
	if last <= acked {
		return 0, 0
	}
	u.ageMu.Lock()
	defer u.ageMu.Unlock()
	if u.ageDone {
		return last - acked, 0
	}
	if u.ageReader == nil {
		u.ageReader = u.jlog.NewReader()
		u.ageBuf = make([]*bridge.Message, 0, 1)
	}
	got, err := u.ageReader.Read(acked+1, u.ageBuf)
	if err != nil || len(got) == 0 {
		return last - acked, 0
	}
	return last - acked, max(0, time.Since(got[0].GatewayTime).Seconds())
}

// redact drops user information from the URLs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[redacted]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
