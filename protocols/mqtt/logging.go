package mqtt

import (
	"log/slog"

	"github.com/edgegate/edgegate/protocols/ratelog"
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
