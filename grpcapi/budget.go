package grpcapi

import (
	"context"
	"math"
	"time"

	"github.com/edgegate/edgegate/bridge"
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

// burstSeconds is a bucket's size in seconds of its rate: one second that every
// priority may spend, and half a second more kept for the higher ones (headroom).
// So traffic within its budget that comes in bursts of up to a second's worth (a
// poll cycle, a payload of many points) is never shed, whatever its priority.
const burstSeconds = 1.5

// bucket is a pair of token buckets (messages, bytes), either of which may be nil.
type bucket struct {
	msgs, bytes *rate.Limiter
}

func newBucket(b Budget) *bucket {
	k := &bucket{}
	if b.MessagesPerSecond > 0 {
		k.msgs = rate.NewLimiter(rate.Limit(b.MessagesPerSecond), max(1, int(math.Ceil(burstSeconds*b.MessagesPerSecond))))
	}
	if b.BytesPerSecond > 0 {
		k.bytes = rate.NewLimiter(rate.Limit(b.BytesPerSecond), max(minBytesBurst, int(math.Ceil(burstSeconds*b.BytesPerSecond))))
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

// Priority headroom. A bucket's last tokens are kept for HIGH and CRITICAL
// messages: a LOW message may take tokens only while half a second of the rate
// would be left after it (a third of the burst of 1.5 seconds), a NORMAL one
// while a quarter of a second would (a sixth); HIGH and CRITICAL take whatever
// there is. Without it, the LOW and NORMAL messages of an overloaded stream spend
// the bucket down to nothing, and a CRITICAL message that comes next waits for the
// refill behind them; with it, the bucket of an overloaded stream hovers at a
// quarter of a second's tokens (where NORMAL stops) instead of empty, so a
// CRITICAL message (or a burst of up to a quarter of a second's budget of them)
// goes out at once. The headroom lies above the one second's worth every priority
// may spend at once (burstSeconds), so it sheds nothing that keeps to its budget.
// A simple rule, kept the same for every shed policy and for the gateway's shared
// bucket (where another stream's CRITICAL messages are the ones protected).
func headroom(prio bridge.Priority) float64 {
	switch {
	case prio >= bridge.PriorityHigh:
		return 0
	case prio == bridge.PriorityLow:
		return 0.5 / burstSeconds
	}
	return 0.25 / burstSeconds // NORMAL, and UNSPECIFIED, which the hub makes NORMAL
}

// reserve is how many of l's tokens a message of priority prio that needs n of
// them must leave. A full bucket always admits a message, however large: a LOW
// message of most of a bytes burst would otherwise never go.
func reserve(l *rate.Limiter, prio bridge.Priority, n int) float64 {
	h := headroom(prio)
	if h == 0 {
		return 0
	}
	return min(math.Floor(h*float64(l.Burst())), float64(l.Burst()-n))
}

// allow takes the tokens for a message of priority prio and size bytes if every
// bucket has them now, above prio's headroom, and takes nothing otherwise. On the
// shared bucket another stream may take tokens between the look and the taking,
// so a LOW or NORMAL message may spend a token or so of the headroom: the headroom
// is a soft bound, the budget itself is not.
func (p *pacer) allow(prio bridge.Priority, size int) bool {
	return p.allowAt(time.Now(), prio, size)
}

func (p *pacer) allowAt(now time.Time, prio bridge.Priority, size int) bool {
	ls, ns := p.limiters(size)
	if headroom(prio) > 0 {
		for i, l := range ls {
			if l.TokensAt(now)-float64(ns[i]) < reserve(l, prio, ns[i]) {
				return false
			}
		}
	}
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

// minWake bounds how soon a pacer that waits looks again, so that rounding never
// makes it spin.
const minWake = time.Millisecond

// delay is how long until allow may succeed for a message of priority prio and
// size bytes, counting the refill only (on the shared bucket other streams may
// take the tokens first; the caller looks again).
func (p *pacer) delay(prio bridge.Priority, size int) time.Duration {
	return p.delayAt(time.Now(), prio, size)
}

func (p *pacer) delayAt(now time.Time, prio bridge.Priority, size int) time.Duration {
	ls, ns := p.limiters(size)
	var d time.Duration
	for i, l := range ls {
		short := float64(ns[i]) + reserve(l, prio, ns[i]) - l.TokensAt(now)
		if short > 0 {
			d = max(d, time.Duration(short/float64(l.Limit())*float64(time.Second)))
		}
	}
	return max(d, minWake)
}

// wait blocks until a message of priority prio and size bytes has its tokens in
// every bucket (the HOLD policy: a message waits its turn, whatever its
// priority). HIGH and CRITICAL messages reserve them at once (a bucket may go
// below zero: the refill pays it back, and LOW and NORMAL ones wait the longer).
// LOW and NORMAL ones wait on the stream's own bucket until allow admits them
// above their headroom: only this stream spends that bucket, so its refill comes.
// On the gateway's shared bucket they reserve their tokens, headroom or not,
// because other streams keep spending it: a LOW message waiting there for the
// headroom could wait for ever, and a HOLD stream with it (and the CRITICAL
// messages behind it).
func (p *pacer) wait(ctx context.Context, prio bridge.Priority, size int) error {
	reserveAll := func(b *bucket) error {
		if b == nil {
			return nil
		}
		ls, ns := (&pacer{own: b}).limiters(size)
		for i, l := range ls {
			if err := l.WaitN(ctx, ns[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if headroom(prio) == 0 || p.own == nil {
		if err := reserveAll(p.own); err != nil {
			return err
		}
		return reserveAll(p.shared)
	}
	own := &pacer{own: p.own}
	var t *time.Timer
	for !own.allow(prio, size) {
		d := own.delay(prio, size)
		if t == nil {
			t = time.NewTimer(d)
			defer t.Stop()
		} else {
			t.Reset(d)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return reserveAll(p.shared)
}
