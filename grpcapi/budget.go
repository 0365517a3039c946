package grpcapi

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// Budget is a rate in messages and bytes per second; zero is unlimited.
type Budget struct {
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	BytesPerSecond    float64 `yaml:"bytes_per_second"`
}

// capped returns the requested budget within the cap: a zero request or one above
// the cap takes the cap.
func (b Budget) capped(c Budget) Budget {
	pick := func(req, cap float64) float64 {
		if req <= 0 || (cap > 0 && req > cap) {
			return cap
		}
		return req
	}
	return Budget{MessagesPerSecond: pick(b.MessagesPerSecond, c.MessagesPerSecond), BytesPerSecond: pick(b.BytesPerSecond, c.BytesPerSecond)}
}

// minBytesBurst lets one large message through a small bytes budget: a bucket
// smaller than a message could never send it.
const minBytesBurst = 64 << 10

// bucket is a pair of token buckets (messages, bytes), either of which may be nil.
type bucket struct {
	msgs, bytes *rate.Limiter
}

func newBucket(b Budget) *bucket {
	k := &bucket{}
	if b.MessagesPerSecond > 0 {
		k.msgs = rate.NewLimiter(rate.Limit(b.MessagesPerSecond), max(1, int(b.MessagesPerSecond)))
	}
	if b.BytesPerSecond > 0 {
		k.bytes = rate.NewLimiter(rate.Limit(b.BytesPerSecond), max(minBytesBurst, int(b.BytesPerSecond)))
	}
	if k.msgs == nil && k.bytes == nil {
		return nil
	}
	return k
}

// pacer spends a stream's budget and the gateway's shared one.
type pacer struct {
	own, shared *bucket
}

func (p *pacer) limited() bool { return p.own != nil || p.shared != nil }

func (p *pacer) needsSize() bool {
	return p.own != nil && p.own.bytes != nil || p.shared != nil && p.shared.bytes != nil
}

func (p *pacer) limiters(size int) ([]*rate.Limiter, []int) {
	var ls []*rate.Limiter
	var ns []int
	for _, k := range []*bucket{p.own, p.shared} {
		if k == nil {
			continue
		}
		if k.msgs != nil {
			ls, ns = append(ls, k.msgs), append(ns, 1)
		}
		if k.bytes != nil {
			ls, ns = append(ls, k.bytes), append(ns, min(size, k.bytes.Burst()))
		}
	}
	return ls, ns
}

// allow takes the tokens for a message of size bytes if every bucket has them now,
// and takes nothing otherwise.
func (p *pacer) allow(size int) bool {
	ls, ns := p.limiters(size)
	now := time.Now()
	rs := make([]*rate.Reservation, 0, len(ls))
	for i, l := range ls {
		r := l.ReserveN(now, ns[i])
		if !r.OK() || r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			for _, done := range rs {
				done.CancelAt(now)
			}
			return false
		}
		rs = append(rs, r)
	}
	return true
}

// wait blocks until every bucket has the tokens for a message of size bytes.
func (p *pacer) wait(ctx context.Context, size int) error {
	ls, ns := p.limiters(size)
	for i, l := range ls {
		if err := l.WaitN(ctx, ns[i]); err != nil {
			return err
		}
	}
	return nil
}
