package coap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/payload"
)

// The protocol facts a message from a pushing device carries: the path it was sent
// to, and the peer's identity (PSK identity or certificate common name) when the
// listener has one.
const (
	labelPath = "path"
	labelPeer = "identity"
)

// responseWriter is what the handler needs of go-coap's response writers, which
// differ by connection type.
type responseWriter interface {
	SetResponse(code codes.Code, contentFormat message.MediaType, d io.ReadSeeker, opts ...message.Option) error
	Message() *pool.Message
}

// serve handles one request of a session. go-coap calls it (see session.process
// for which goroutine), and sends the response it sets when it returns: for a
// confirmable request, that response is the acknowledgement, so a device's reading
// is acknowledged only once it is on disk.
func (a *Adapter) serve(s *session, w responseWriter, r *pool.Message) {
	release := s.release // before anything lets the session's next message in
	if release == nil {
		release = func() {}
	}
	defer release()
	// The answer is set when this returns, and go-coap caches it before it lets
	// a retransmission of the same message ID in (it holds a lock per message ID
	// until then): from here on a retransmission is answered from the cache.
	defer s.answered(r.MessageID())
	if !isRequest(r.Code()) {
		return
	}
	if !s.st.handlers.enter() {
		// Run is ending: the reading is not taken.
		replyMaxAge(w, codes.ServiceUnavailable, "the gateway is stopping", 5)
		return
	}
	defer s.st.handlers.leave()
	code := codes.InternalServerError
	defer func() {
		if p := recover(); p != nil {
			a.metrics.panics.Inc()
			limitedLog(a.log, a.lim, slog.LevelError, "coap: recovered a panic serving a request", "panic", fmt.Sprint(p), "transport", s.transport)
			code = codes.InternalServerError
			_ = w.SetResponse(code, message.TextPlain, nil)
		}
		a.metrics.requests.WithLabelValues(s.transport, methodName(r.Code()), codeName(code)).Inc()
	}()
	code = a.handle(s, w, r, release)
}

func (a *Adapter) handle(s *session, w responseWriter, r *pool.Message, release func()) codes.Code {
	var buf [maxSegments]string
	n, err := r.Options().GetStrings(message.URIPath, buf[:])
	switch {
	case errors.Is(err, message.ErrOptionNotFound):
		n = 0
	case err != nil:
		return reply(w, codes.NotFound, "no such resource")
	}
	segs := buf[:n]
	m := a.resources.match(segs)
	if m.kind == resourceNone {
		return reply(w, codes.NotFound, "no such resource")
	}
	if err := payload.ValidName(m.device); err != nil {
		return reply(w, codes.BadRequest, "device name: "+err.Error())
	}
	if m.kind == resourcePoint {
		if err := payload.ValidName(m.point); err != nil {
			return reply(w, codes.BadRequest, "point name: "+err.Error())
		}
	}
	if c := s.spec.auth.check(s.identity, m.device); c != 0 {
		if c == codes.Unauthorized {
			return reply(w, c, "this listener needs an identity (a PSK or a client certificate)")
		}
		return reply(w, c, "identity may not write device "+clipString(m.device, 64))
	}
	switch r.Code() {
	case codes.POST, codes.PUT:
		return a.ingest(s, w, r, m, segs, release)
	case codes.GET:
		return a.get(s, w, r, m)
	}
	return reply(w, codes.MethodNotAllowed, "POST or PUT a reading, GET the latest")
}

// ingest decodes a reading (or an object of readings) and hands it to the bridge as
// one batch. It answers 2.04 Changed once the batch is on disk when the request is
// answered at all (confirmable over UDP and DTLS; every request over TCP and TLS),
// else once the bridge has it: a non-confirmable reading is never acknowledged, so
// it never waits for the disk. Before the wait it calls release, which lets the
// session's next message in (session.process).
func (a *Adapter) ingest(s *session, w responseWriter, r *pool.Message, m resourceMatch, segs []string, release func()) codes.Code {
	cf := formatOf(r.ContentFormat())
	raw, err := r.ReadBody()
	if err != nil {
		return reply(w, codes.BadRequest, "cannot read the payload")
	}
	var readings []payload.Reading
	if m.kind == resourcePoint {
		var rd payload.Reading
		rd, err = decodePoint(a.decoder, cf, raw)
		rd.Point = m.point
		readings = []payload.Reading{rd}
	} else {
		readings, err = decodeObject(a.decoder, cf, raw)
	}
	if err != nil {
		if errors.Is(err, errUnsupportedFormat) {
			return reply(w, codes.UnsupportedMediaType, "content format: text/plain (0), application/json (50), application/cbor (60) or, for one point, application/octet-stream (42)")
		}
		a.metrics.badPayloads.Inc()
		s.st.sink.Invalid(m.device, err)
		limitedLog(a.log, a.lim, slog.LevelDebug, "coap: bad payload", "device", m.device, "transport", s.transport, "err", err)
		code := codes.BadRequest
		if errors.Is(err, payload.ErrTooLarge) {
			code = codes.RequestEntityTooLarge
		}
		return reply(w, code, err.Error())
	}

	dev := a.devices[m.device]
	labels := make(map[string]string, len(dev.labels)+2)
	for k, v := range dev.labels {
		labels[k] = v
	}
	labels[labelPath] = "/" + strings.Join(segs, "/")
	if s.identity != "" {
		labels[labelPeer] = s.identity
	}
	msgs := make([]*bridge.Message, len(readings))
	for i, rd := range readings {
		pt := dev.points[rd.Point]
		unit := rd.Unit
		if unit == "" {
			unit = pt.unit
		}
		msgs[i] = &bridge.Message{
			Device:     m.device,
			Point:      rd.Point,
			Value:      rd.Value,
			Quality:    rd.Quality,
			SourceTime: rd.SourceTime,
			Unit:       unit,
			Labels:     labels, // shared: the messages are immutable once published
			Priority:   pt.priority,
		}
	}
	durable := s.transport == "tcp" || s.transport == "tls" || r.Type() == message.Confirmable
	if durable {
		if !a.pending.tryAcquire() {
			a.metrics.ackRefused.WithLabelValues(ackPendingFull).Inc()
			return replyMaxAge(w, codes.ServiceUnavailable, "too many readings waiting for the durable log", 1)
		}
		defer a.pending.release()
	}
	receipt, err := s.st.sink.Submit(s.st.ctx, msgs...)
	switch {
	case err == nil:
	case errors.Is(err, bridge.ErrUnavailable):
		return a.unavailable(w, err)
	case errors.Is(err, bridge.ErrInvalidMessage):
		return reply(w, codes.BadRequest, err.Error())
	case errors.Is(err, bridge.ErrClosed), s.st.ctx.Err() != nil:
		return replyMaxAge(w, codes.ServiceUnavailable, "the gateway is stopping", 5)
	case errors.Is(err, bridge.ErrTooManyDevices), errors.Is(err, bridge.ErrTooManyPoints):
		return reply(w, codes.Forbidden, err.Error())
	default:
		// A device id that another protocol owns, or another permanent refusal.
		return reply(w, codes.Conflict, err.Error())
	}
	s.st.presence.seen(s, m.device)
	rs := make([]reading, len(msgs))
	for i, msg := range msgs {
		ts := msg.SourceTime
		if ts.IsZero() {
			ts = msg.GatewayTime
		}
		rs[i] = reading{point: msg.Point, value: msg.Value, ts: ts, unit: msg.Unit}
	}
	a.latest.put(m.device, rs)
	if durable {
		release()
		a.metrics.pending.Inc()
		err := receipt.Wait(s.st.ctx)
		a.metrics.pending.Dec()
		switch {
		case err == nil:
		case errors.Is(err, bridge.ErrUnavailable):
			return a.unavailable(w, err)
		default: // the hub closed, or Run ends
			return replyMaxAge(w, codes.ServiceUnavailable, "the gateway is stopping", 5)
		}
	}
	if err := w.SetResponse(codes.Changed, message.TextPlain, nil); err != nil {
		return codes.Changed // NoResponse: the client asked not to hear of success
	}
	return codes.Changed
}

// unavailable answers a reading the durable log could not take: 5.03, never 2.04,
// so that the device sends it again (issue 19.1); the log retries by itself.
func (a *Adapter) unavailable(w responseWriter, err error) codes.Code {
	a.metrics.ackRefused.WithLabelValues(ackUnavailable).Inc()
	limitedLog(a.log, a.lim, slog.LevelWarn, "coap: reading not acknowledged: the durable log is unavailable", "err", err)
	return replyMaxAge(w, codes.ServiceUnavailable, "the durable log is unavailable", 5)
}

// get answers the latest value of a point, or of every point of a device; with
// Observe 0 it also registers the client for the device's writes.
func (a *Adapter) get(s *session, w responseWriter, r *pool.Message, m resourceMatch) codes.Code {
	accept := formatOf(r.Accept())
	if !acceptable(accept) {
		return reply(w, codes.NotAcceptable, "accept: text/plain (0), application/json (50) or application/cbor (60)")
	}
	var o *observation
	observing := false // a registration or a deregistration: no 4.04 without a value
	if obs, err := r.Observe(); err == nil {
		observing = obs <= 1
		switch obs {
		case 0:
			if !a.exists(s, m.device, m.point) {
				// Only what exists is observed: an observation costs memory and a
				// share of the bounds, and one of a name nobody uses would only
				// hold them.
				a.metrics.obsRefused.WithLabelValues(obsNotFound).Inc()
				return reply(w, codes.NotFound, "no such device: neither configured nor seen")
			}
			o = &observation{s: s, token: append(message.Token(nil), r.Token()...), device: m.device, point: m.point, accept: accept}
			if err := a.obs.add(o); err != nil {
				// RFC 7641 section 4.1: answer without Observe, the client knows it
				// is not registered.
				a.metrics.obsRefused.WithLabelValues(err.Error()).Inc()
				limitedLog(a.log, a.lim, slog.LevelDebug, "coap: observation refused", "device", m.device, "err", err)
				o = nil
			}
		case 1:
			a.obs.cancel(s, r.Token())
		}
	}
	var cf format
	var body []byte
	if m.kind == resourcePoint {
		rd, ok := a.lookup(s, m.device, m.point)
		switch {
		case ok:
			cf, body = encodeReading(accept, rd)
		case !observing:
			return reply(w, codes.NotFound, "no value yet")
		}
	} else {
		rs := a.latest.device(m.device, a.cfg.MaxPointsPerMessage)
		if len(rs) == 0 && !observing {
			return reply(w, codes.NotFound, "no value yet")
		}
		if len(rs) > 0 {
			cf, body = encodeObject(accept, rs)
		}
	}
	if len(body) > blockSize && !a.bigResponses.take(len(body), time.Now().Add(a.cfg.BlockTimeout)) {
		// A response larger than a block is kept for block-wise transfer until it
		// is fetched or block_timeout passes; all of those together are bounded.
		return replyMaxAge(w, codes.ServiceUnavailable, "too many large responses in transfer", 1)
	}
	var rd io.ReadSeeker
	if body != nil {
		rd = bytes.NewReader(body)
	}
	if err := w.SetResponse(codes.Content, cf.media(), rd); err != nil {
		return codes.Content
	}
	if o != nil {
		w.Message().SetObserve(o.nextSeq())
		a.metrics.notifications.WithLabelValues(notifySent).Inc()
	}
	return codes.Content
}

// exists says whether a device may be observed: it is configured (a `devices:`
// entry of this protocol), or the gateway has a value from it (the adapter's
// cache, or the hub's last-value cache for the point). A point need not exist
// itself: an observer may wait for writes to a setpoint its device never reports.
func (a *Adapter) exists(s *session, device, point string) bool {
	if _, ok := a.devices[device]; ok {
		return true
	}
	if a.latest.has(device) {
		return true
	}
	if point != "" {
		_, ok := a.lookup(s, device, point)
		return ok
	}
	return false
}

// lookup finds a point's latest value: in the adapter's cache, else in the hub's
// last-value cache when the sink offers it.
func (a *Adapter) lookup(s *session, device, point string) (reading, bool) {
	if rd, ok := a.latest.get(device, point); ok {
		return rd, true
	}
	if lr, ok := s.st.sink.(latestReader); ok {
		if m, ok := lr.Latest(device, point); ok {
			ts := m.SourceTime
			if ts.IsZero() {
				ts = m.GatewayTime
			}
			return reading{point: point, value: m.Value, ts: ts, unit: m.Unit}, true
		}
	}
	return reading{}, false
}

// reply sets a response with a diagnostic payload (RFC 7252 section 5.5.2).
func reply(w responseWriter, code codes.Code, diagnostic string) codes.Code {
	var body io.ReadSeeker
	if diagnostic != "" {
		body = strings.NewReader(clipString(diagnostic, 200))
	}
	_ = w.SetResponse(code, message.TextPlain, body)
	return code
}

// replyMaxAge is reply with a Max-Age: when to try again.
func replyMaxAge(w responseWriter, code codes.Code, diagnostic string, seconds uint32) codes.Code {
	reply(w, code, diagnostic)
	w.Message().SetOptionUint32(message.MaxAge, seconds)
	return code
}

func isRequest(c codes.Code) bool { return c >= codes.GET && c <= codes.IPATCH }

func methodName(c codes.Code) string {
	switch c {
	case codes.GET:
		return "GET"
	case codes.POST:
		return "POST"
	case codes.PUT:
		return "PUT"
	case codes.DELETE:
		return "DELETE"
	case codes.FETCH:
		return "FETCH"
	case codes.PATCH:
		return "PATCH"
	case codes.IPATCH:
		return "iPATCH"
	}
	return "other"
}

var codeNames sync.Map // codes.Code -> "2.04"

// codeName writes a response code as CoAP does: class.detail, "2.04".
func codeName(c codes.Code) string {
	if s, ok := codeNames.Load(c); ok {
		return s.(string)
	}
	s := fmt.Sprintf("%d.%02d", uint8(c)>>5, uint8(c)&0x1f)
	codeNames.Store(c, s)
	return s
}

// blockSize is the payload size above which go-coap answers block-wise (SZX 1024).
const blockSize = 1024

// expiringBudget bounds a quantity whose parts each expire at a known time: the
// bytes of large responses go-coap keeps for block-wise transfer.
type expiringBudget struct {
	mu    sync.Mutex
	max   int
	used  int
	parts []budgetPart
}

type budgetPart struct {
	size    int
	expires time.Time
}

func (b *expiringBudget) take(size int, expires time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	i := 0
	for i < len(b.parts) && now.After(b.parts[i].expires) {
		b.used -= b.parts[i].size
		i++
	}
	b.parts = b.parts[i:]
	if b.used+size > b.max {
		return false
	}
	b.used += size
	b.parts = append(b.parts, budgetPart{size: size, expires: expires})
	return true
}
