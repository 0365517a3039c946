package modbus

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// limiter is a token bucket for log lines: a device that fails often cannot flood
// the log. The lines it drops are counted and reported with the next line let through.
type limiter struct {
	mu         sync.Mutex
	rate       float64 // tokens per second
	burst      float64
	tokens     float64
	last       time.Time
	suppressed uint64
	dropped    prometheus.Counter
}

func newLimiter(perSecond float64, burst int, dropped prometheus.Counter) *limiter {
	return &limiter{rate: perSecond, burst: float64(burst), tokens: float64(burst), dropped: dropped}
}

// allow takes a token; suppressed is how many lines were dropped since the last one
// allowed.
func (l *limiter) allow() (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
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
