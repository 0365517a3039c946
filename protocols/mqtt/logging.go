package mqtt

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// limiter is a token bucket for log lines. Anything a client can trigger at will
// (bad payloads, malformed packets, refused logins) is logged through it, so that one
// misbehaving device cannot flood the log; the lines it drops are counted and the
// count is reported with the next line that passes.
type limiter struct {
	mu         sync.Mutex
	rate       float64 // tokens per second
	burst      float64
	tokens     float64
	last       time.Time
	suppressed uint64
	now        func() time.Time
	dropped    prometheus.Counter
}

func newLimiter(perSecond float64, burst int, dropped prometheus.Counter) *limiter {
	return &limiter{rate: perSecond, burst: float64(burst), tokens: float64(burst), now: time.Now, dropped: dropped}
}

// allow takes a token. When it returns true, suppressed is how many lines were
// dropped since the last one allowed.
func (l *limiter) allow() (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		l.dropped.Inc()
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// limitedHandler is a slog.Handler that passes records through a limiter. mochi's
// own logger goes through it: mochi logs a line per bad packet and per short
// keepalive, each of which a client controls.
type limitedHandler struct {
	slog.Handler
	lim *limiter
}

func (h limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	ok, suppressed := h.lim.allow()
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r.AddAttrs(slog.Uint64("suppressed", suppressed))
	}
	return h.Handler.Handle(ctx, r)
}

func (h limitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return limitedHandler{Handler: h.Handler.WithAttrs(attrs), lim: h.lim}
}

func (h limitedHandler) WithGroup(name string) slog.Handler {
	return limitedHandler{Handler: h.Handler.WithGroup(name), lim: h.lim}
}

// limitedLog logs through the adapter's limiter.
func limitedLog(log *slog.Logger, lim *limiter, level slog.Level, msg string, args ...any) {
	if !log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := lim.allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Log(context.Background(), level, msg, args...)
}
