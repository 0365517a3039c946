package coap

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/prometheus/client_golang/prometheus"
)

// limiter is a token bucket for log lines. Anything a peer can trigger at will (bad
// payloads, malformed messages, failed handshakes) is logged through it, so that one
// misbehaving device cannot flood the log; the lines it drops are counted and the
// count is reported with the next line that passes. (The same as the MQTT adapter's,
// which this package does not import.)
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

// pionLogger routes pion/dtls's log lines into the adapter's rate-limited log: its
// warnings and errors at debug level (a failed handshake is a peer's doing, and is
// counted in the metrics), the rest nowhere.
type pionLogger struct {
	log *slog.Logger
	lim *limiter
}

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLeveled{log: p.log.With("component", "dtls", "scope", scope), lim: p.lim}
}

type pionLeveled struct {
	log *slog.Logger
	lim *limiter
}

func (p pionLeveled) line(msg string) { limitedLog(p.log, p.lim, slog.LevelDebug, msg) }

func (pionLeveled) Trace(string)                  {}
func (pionLeveled) Tracef(string, ...any)         {}
func (pionLeveled) Debug(string)                  {}
func (pionLeveled) Debugf(string, ...any)         {}
func (pionLeveled) Info(string)                   {}
func (pionLeveled) Infof(string, ...any)          {}
func (p pionLeveled) Warn(msg string)             { p.line(msg) }
func (p pionLeveled) Warnf(f string, args ...any) { p.line(fmt.Sprintf(f, args...)) }
func (p pionLeveled) Error(msg string)            { p.line(msg) }
func (p pionLeveled) Errorf(f string, a ...any)   { p.line(fmt.Sprintf(f, a...)) }
