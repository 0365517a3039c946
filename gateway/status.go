package gateway

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/prometheus/client_golang/prometheus"
)

// The status page: a read-only view of the gateway for people, served from the
// binary. `/` is the page (static/ holds its HTML, script and style, embedded, with
// no framework and nothing fetched from elsewhere); `/status/events` is a stream of
// Server-Sent Events that feeds it: a snapshot every second (devices with state,
// last seen, last error and message rate; the latest values that changed;
// subscribers and their lag; durable consumers) and the live messages that match
// the page's filter. The first snapshot of a stream also carries the recent values
// of every numeric point, read back from the hub's ring (no storage of its own), for
// the page's sparklines; the page extends them from what follows. It offers no writes.

//go:embed static
var staticFiles embed.FS

// Bounds of the status page's event streams.
const (
	// maxStatusStreams bounds open event streams (browser tabs). A page that finds
	// none free gets 503 and its EventSource retries by itself.
	maxStatusStreams = 16
	// statusMessageRate bounds the live messages one stream forwards each second:
	// a person cannot read more, and a busy gateway must not be slowed by its own
	// status page. What is over is dropped and counted (the page shows it).
	statusMessageRate = 50
	// statusInterval is how often a snapshot is sent.
	statusInterval = time.Second
	// maxStatusLatest bounds the latest values in one snapshot; the rest follow in
	// the next ones (oldest change first).
	maxStatusLatest = 2000
	// statusWriteTimeout bounds one write to a stream: a tab that stopped reading
	// is dropped instead of holding a slot.
	statusWriteTimeout = 10 * time.Second
	// statusBatch is how many hub messages one read takes.
	statusBatch = 256
	// statusHistoryScan bounds how many of the hub's newest messages a stream's
	// first snapshot reads back from the ring for the sparklines: a few thousand
	// are a few milliseconds, once per page load.
	statusHistoryScan = 4096
	// statusHistoryValues is how many recent values one sparkline holds (the
	// page keeps as many).
	statusHistoryValues = 60
	// statusHistoryWait bounds the read-back, in case the gateway stops under it.
	statusHistoryWait = 2 * time.Second
)

type statusServer struct {
	g     *Gateway
	slots chan struct{}

	// Message rates are measured once for every stream, over at least a second.
	rateMu    sync.Mutex
	rateAt    time.Time
	rateCount map[string]uint64
	rates     map[string]float64

	streams prometheus.Gauge
	refused prometheus.Counter
	dropped prometheus.Counter
}

func newStatusServer(g *Gateway) *statusServer {
	s := &statusServer{g: g, slots: make(chan struct{}, maxStatusStreams)}
	s.streams = registerCollector(g.reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edgegate_status_streams", Help: "Open status page event streams.",
	}))
	s.refused = registerCollector(g.reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgegate_status_streams_refused_total", Help: "Status page event streams refused because every slot was taken.",
	}))
	s.dropped = registerCollector(g.reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgegate_status_messages_dropped_total", Help: "Live messages status page streams skipped (over their rate, or too slow for the hub).",
	}))
	return s
}

// registerCollector registers c, or returns the collector the registry already has (the
// HTTP server is built again when the gateway runs again).
func registerCollector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err)
	}
	return c
}

// routes adds the status page to mux.
func (s *statusServer) routes(mux *http.ServeMux) {
	sub, _ := fs.Sub(staticFiles, "static")
	files := http.FileServerFS(sub)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		http.ServeFileFS(w, r, sub, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
	mux.HandleFunc("GET /status/events", s.serveEvents)
}

// securityHeaders: the page runs only its own script and style, cannot be framed,
// and sends no referrer.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// statusMessage is one live message on the page.
type statusMessage struct {
	Sequence uint64            `json:"seq"`
	Device   string            `json:"device"`
	Point    string            `json:"point"`
	Protocol string            `json:"protocol"`
	Value    string            `json:"value"`
	Kind     string            `json:"kind"`
	Unit     string            `json:"unit,omitempty"`
	Quality  string            `json:"quality"`
	Priority string            `json:"priority"`
	Time     time.Time         `json:"time"`
	Labels   map[string]string `json:"labels,omitempty"`
}

func toStatusMessage(m *bridge.Message) statusMessage {
	q := "good"
	switch m.Quality {
	case bridge.QualityUncertain:
		q = "uncertain"
	case bridge.QualityBad:
		q = "bad"
	}
	t := m.SourceTime
	if t.IsZero() {
		t = m.GatewayTime
	}
	return statusMessage{
		Sequence: m.Sequence, Device: m.Device, Point: m.Point, Protocol: m.Protocol.String(),
		Value: m.Value.String(), Kind: m.Value.Kind().String(), Unit: m.Unit, Quality: q,
		Priority: m.Priority.String(), Time: t, Labels: m.Labels,
	}
}

type snapshotDevice struct {
	ID         string    `json:"id"`
	Protocol   string    `json:"protocol"`
	State      string    `json:"state"`
	StateSince time.Time `json:"state_since,omitzero"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Messages   uint64    `json:"messages"`
	Errors     uint64    `json:"errors"`
	Writes     uint64    `json:"writes"`
	Points     int       `json:"points"`
	Rate       float64   `json:"rate"` // messages per second since the last snapshot
}

type snapshotSubscriber struct {
	Name    string    `json:"name"`
	Since   time.Time `json:"since"`
	Cursor  uint64    `json:"cursor"`
	Lag     uint64    `json:"lag"`
	Dropped uint64    `json:"dropped"`
}

type snapshotConsumer struct {
	Name     string `json:"name"`
	Position uint64 `json:"position"`
	Lag      uint64 `json:"lag"`
}

type statusSnapshot struct {
	ID           string               `json:"id"`
	Version      string               `json:"version"`
	Ready        bool                 `json:"ready"`
	Uptime       float64              `json:"uptime_seconds"`
	LastSequence uint64               `json:"last_sequence"`
	Devices      []snapshotDevice     `json:"devices"`
	Latest       []statusMessage      `json:"latest"` // changed since the previous snapshot
	Subscribers  []snapshotSubscriber `json:"subscribers"`
	Consumers    []snapshotConsumer   `json:"consumers"`
	// Dropped counts the live messages this stream skipped so far.
	Dropped uint64 `json:"dropped"`
	// Rate is this stream's cap of live messages a second.
	Rate int `json:"rate"`
	// History is the recent values of each numeric point: first snapshot only.
	History []pointHistory `json:"history,omitempty"`
}

// pointHistory is one numeric point's recent values, oldest first, as the hub's
// ring holds them; Seq is the newest one's sequence, so that the page extends the
// line only with what is newer.
type pointHistory struct {
	Device string    `json:"device"`
	Point  string    `json:"point"`
	Values []float64 `json:"values"`
	Seq    uint64    `json:"seq"`
}

// history reads the hub's newest messages (at most statusHistoryScan, and only what
// the ring holds) and returns the last statusHistoryValues values of every numeric
// point among them, in the order the points were first seen.
func (s *statusServer) history(ctx context.Context) []pointHistory {
	hub := s.g.hub
	last := hub.LastSequence()
	scan := uint64(min(statusHistoryScan, hub.Config().Retain))
	var after uint64
	if last > scan {
		after = last - scan
	}
	sub, err := hub.Subscribe(bridge.SubscribeOptions{Start: bridge.StartAfter, After: after, Name: "status page history"})
	if err != nil {
		return nil
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(ctx, statusHistoryWait)
	defer cancel()
	type key struct{ device, point string }
	index := map[key]int{}
	var out []pointHistory
	buf := make([]*bridge.Message, 0, statusBatch)
	for sub.Cursor() <= last {
		batch, err := sub.Next(ctx, buf)
		if err != nil {
			break // the gateway stops, or too slow: the page starts with less
		}
		for _, m := range batch {
			if m.Sequence > last {
				break
			}
			switch m.Value.Kind() {
			case bridge.KindDouble, bridge.KindInt, bridge.KindUint:
			default:
				continue
			}
			f, _ := m.Value.Float()
			k := key{m.Device, m.Point}
			i, ok := index[k]
			if !ok {
				i = len(out)
				index[k] = i
				out = append(out, pointHistory{Device: m.Device, Point: m.Point})
			}
			h := &out[i]
			if len(h.Values) == statusHistoryValues {
				h.Values = append(h.Values[:0], h.Values[1:]...)
			}
			h.Values = append(h.Values, f)
			h.Seq = m.Sequence
		}
	}
	return out
}

// deviceRates returns each device's messages a second, measured over the last
// second or more.
func (s *statusServer) deviceRates(devs []bridge.DeviceInfo, now time.Time) map[string]float64 {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if dt := now.Sub(s.rateAt).Seconds(); s.rateCount == nil || dt >= 1 {
		rates := make(map[string]float64, len(devs))
		counts := make(map[string]uint64, len(devs))
		for _, d := range devs {
			counts[d.ID] = d.Messages
			if prev, ok := s.rateCount[d.ID]; ok && d.Messages >= prev && dt > 0 {
				rates[d.ID] = float64(d.Messages-prev) / dt
			}
		}
		s.rates, s.rateCount, s.rateAt = rates, counts, now
	}
	return s.rates
}

// statusStream is one open event stream's state.
type statusStream struct {
	latestSent uint64 // newest sequence of the latest values sent
	dropped    uint64
	tokens     float64
	tokensAt   time.Time
}

func (s *statusServer) snapshot(st *statusStream, now time.Time) statusSnapshot {
	g := s.g
	last := g.hub.LastSequence()
	snap := statusSnapshot{
		ID: g.config().Gateway.ID, Version: Version, Ready: g.ready.Load(),
		Uptime: now.Sub(g.started).Seconds(), LastSequence: last,
		Devices: []snapshotDevice{}, Latest: []statusMessage{}, Subscribers: []snapshotSubscriber{},
		Consumers: []snapshotConsumer{}, Dropped: st.dropped, Rate: statusMessageRate,
	}
	devs := g.hub.Devices(nil)
	rates := s.deviceRates(devs, now)
	for _, d := range devs {
		sd := snapshotDevice{
			ID: d.ID, Protocol: d.Protocol.String(), State: d.State.String(), StateSince: d.StateSince,
			LastSeen: d.LastSeen, LastError: d.LastError, Messages: d.Messages, Errors: d.Errors,
			Writes: d.Writes, Points: len(d.Points), Rate: rates[d.ID],
		}
		snap.Devices = append(snap.Devices, sd)
	}
	// LatestAll is in sequence order: what changed since the last snapshot is at
	// its end, and the oldest changes go first when there are too many.
	for _, m := range g.hub.LatestAll() {
		if m.Sequence <= st.latestSent {
			continue
		}
		if len(snap.Latest) == maxStatusLatest {
			break
		}
		snap.Latest = append(snap.Latest, toStatusMessage(m))
		st.latestSent = m.Sequence
	}
	for _, sub := range g.hub.Subscribers() {
		snap.Subscribers = append(snap.Subscribers, snapshotSubscriber(sub))
	}
	if g.journal != nil {
		for name, pos := range g.journal.Consumers() {
			c := snapshotConsumer{Name: name, Position: pos}
			if last > pos {
				c.Lag = last - pos
			}
			snap.Consumers = append(snap.Consumers, c)
		}
		sort.Slice(snap.Consumers, func(i, j int) bool { return snap.Consumers[i].Name < snap.Consumers[j].Name })
	}
	return snap
}

// allow takes a token for one live message: statusMessageRate a second, with a
// burst of as many.
func (st *statusStream) allow(now time.Time) bool {
	st.tokens = min(statusMessageRate, st.tokens+now.Sub(st.tokensAt).Seconds()*statusMessageRate)
	st.tokensAt = now
	if st.tokens < 1 {
		return false
	}
	st.tokens--
	return true
}

// filterFromQuery reads the page's filter: device, point (globs) and protocol,
// each repeatable.
func filterFromQuery(r *http.Request) (*bridge.Matcher, error) {
	q := r.URL.Query()
	f := bridge.Filter{Devices: nonEmpty(q["device"]), Points: nonEmpty(q["point"])}
	for _, p := range nonEmpty(q["protocol"]) {
		pr, ok := bridge.ParseProtocol(p)
		if !ok {
			return nil, fmt.Errorf("protocol: unknown protocol %q", p)
		}
		f.Protocols = append(f.Protocols, pr)
	}
	if len(f.Devices)+len(f.Points)+len(f.Protocols) > 64 {
		return nil, errors.New("at most 64 patterns")
	}
	return f.Compile()
}

func nonEmpty(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// serveEvents streams snapshots and live messages until the client goes away or
// the gateway stops.
func (s *statusServer) serveEvents(w http.ResponseWriter, r *http.Request) {
	match, err := filterFromQuery(r)
	if err != nil {
		http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.refused.Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("the status page serves at most %d streams", maxStatusStreams), http.StatusServiceUnavailable)
		return
	}
	s.streams.Inc()
	defer s.streams.Dec()
	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for requests; this one is long.
	// Each write below has its own deadline instead.
	rc.SetReadDeadline(time.Time{})
	opts := bridge.SubscribeOptions{Match: match, Name: "status page @ " + r.RemoteAddr}
	sub, err := s.g.hub.Subscribe(opts)
	if err != nil {
		http.Error(w, "the gateway is stopping", http.StatusServiceUnavailable)
		return
	}
	defer func() { sub.Close() }()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx := r.Context()
	now := time.Now()
	st := &statusStream{tokensAt: now, tokens: statusMessageRate}
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		rc.SetWriteDeadline(time.Now().Add(statusWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return nil
	}
	flush := func() error {
		rc.SetWriteDeadline(time.Now().Add(statusWriteTimeout))
		return rc.Flush()
	}
	// The browser reconnects after this long when the stream breaks.
	fmt.Fprint(w, "retry: 2000\n\n")
	first := s.snapshot(st, now)
	first.History = s.history(ctx)
	if send("snapshot", first) != nil || flush() != nil {
		return
	}
	next := now.Add(statusInterval)
	buf := make([]*bridge.Message, 0, statusBatch)
	for {
		// Wait for messages until the next snapshot is due: one goroutine, no
		// channel between the hub and the writer.
		wctx, cancel := context.WithDeadline(ctx, next)
		batch, err := sub.Next(wctx, buf)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, bridge.ErrSlowConsumer):
			// The hub dropped us for being slow (disconnect policy): carry on live,
			// counting the gap as dropped.
			gap := s.g.hub.LastSequence() + 1 - sub.Cursor()
			st.dropped += gap
			s.dropped.Add(float64(gap))
			sub.Close()
			if sub, err = s.g.hub.Subscribe(opts); err != nil {
				return
			}
		default: // ErrClosed: the gateway stops
			return
		}
		t := time.Now()
		for _, m := range batch {
			if !st.allow(t) {
				st.dropped++
				s.dropped.Inc()
				continue
			}
			if send("message", toStatusMessage(m)) != nil {
				return
			}
		}
		if !t.Before(next) {
			if send("snapshot", s.snapshot(st, t)) != nil {
				return
			}
			next = t.Add(statusInterval)
		}
		if flush() != nil {
			return
		}
	}
}
