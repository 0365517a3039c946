package coap

import (
	"fmt"
	"log/slog"

	"github.com/edgegate/edgegate/protocols/ratelog"
	"github.com/pion/logging"
	"github.com/prometheus/client_golang/prometheus"
)

// limiter is the shared token bucket for log lines (protocols/ratelog): a device
// cannot flood the log.
type limiter = ratelog.Limiter

func newLimiter(perSecond float64, burst int, dropped prometheus.Counter) *limiter {
	return ratelog.New(perSecond, burst, dropped)
}

// limitedLog logs through the adapter's limiter.
func limitedLog(log *slog.Logger, lim *limiter, level slog.Level, msg string, args ...any) {
	lim.Log(log, level, msg, args...)
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
