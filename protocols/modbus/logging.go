package modbus

import (
	"github.com/edgegate/edgegate/protocols/ratelog"
	"github.com/prometheus/client_golang/prometheus"
)

// limiter is the shared token bucket for log lines (protocols/ratelog): a device
// cannot flood the log.
type limiter = ratelog.Limiter

func newLimiter(perSecond float64, burst int, dropped prometheus.Counter) *limiter {
	return ratelog.New(perSecond, burst, dropped)
}
