// Package ratelog bounds the log lines that devices and peers can cause. Anything a
// device can make happen at will or over and over (bad payloads, malformed packets,
// refused logins, failed connects) is logged through a Limiter, so that one
// misbehaving device cannot flood the log; the lines it drops are counted in a metric
// and the count is reported with the next line that passes.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Limiter is a token bucket for log lines (golang.org/x/time/rate) that counts
// the lines it drops. It is safe for concurrent use.
type Limiter struct {
	bucket     *rate.Limiter
	mu         sync.Mutex
	suppressed uint64
	dropped    prometheus.Counter

	// Now is the clock; time.Now unless a test sets another before use.
	Now func() time.Time
}

// New returns a limiter of perSecond lines with bursts of burst; dropped (which may
// be nil) counts the lines it drops.
func New(perSecond float64, burst int, dropped prometheus.Counter) *Limiter {
	return &Limiter{bucket: rate.NewLimiter(rate.Limit(perSecond), burst), Now: time.Now, dropped: dropped}
}

// Allow takes a token. When it returns true, suppressed is how many lines were
// dropped since the last one allowed.
func (l *Limiter) Allow() (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.bucket.AllowN(l.Now(), 1) {
		l.suppressed++
		if l.dropped != nil {
			l.dropped.Inc()
		}
		return false, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// Log logs through the limiter, adding "suppressed" when lines were dropped before.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	if !log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := l.Allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Log(context.Background(), level, msg, args...)
}

// Handler passes a library's records through the limiter, for libraries (mochi,
// pion) that log a line per bad packet.
func Handler(h slog.Handler, l *Limiter) slog.Handler { return handler{Handler: h, lim: l} }

type handler struct {
	slog.Handler
	lim *Limiter
}

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	ok, suppressed := h.lim.Allow()
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r.AddAttrs(slog.Uint64("suppressed", suppressed))
	}
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{Handler: h.Handler.WithAttrs(attrs), lim: h.lim}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{Handler: h.Handler.WithGroup(name), lim: h.lim}
}
