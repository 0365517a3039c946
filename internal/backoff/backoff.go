// Package backoff is the one retry pacing of the gateway and its client library:
// exponential waits between Min and Max with jitter, so that many peers that lost
// the same thing at once do not all come back in the same instant. It uses the
// standard library only, so that the client library can use it too.
//
// A Backoff counts the failures in a row; Next is the wait after one more, Reset
// starts again after a success. Waits on the caller's context (Wait, Sleep) end
// when the context does, so a loop built on them is bounded by its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy says how long to wait after failures in a row: Min after the first,
// multiplied by Factor after each further one, up to Max; then Jitter of the wait
// is drawn at random: a wait of d is drawn uniformly from [d-Jitter·d, d]. Jitter 0
// is no jitter, 0.5 "equal jitter", 1 "full jitter". A wait is never more than Max.
type Policy struct {
	Min, Max time.Duration
	// Factor is the growth from one wait to the next; below 1 (the zero value)
	// it is 2.
	Factor float64
	// Jitter is the fraction of each wait drawn at random, from 0 to 1.
	Jitter float64
}

// Base is the wait after n failures in a row (n ≥ 1) before jitter: the most
// Delay(n) can be.
func (p Policy) Base(n int) time.Duration {
	f := p.Factor
	if f < 1 {
		f = 2
	}
	d := float64(p.Min)
	for i := 1; i < n && d < float64(p.Max); i++ {
		d *= f
	}
	return time.Duration(min(d, float64(max(p.Max, p.Min))))
}

// Delay is the wait after n failures in a row (n ≥ 1), with jitter.
func (p Policy) Delay(n int) time.Duration { return p.delay(n, rand.Float64()) }

// delay is Delay with the random draw u in [0, 1) given.
func (p Policy) delay(n int, u float64) time.Duration {
	d := p.Base(n)
	j := min(max(p.Jitter, 0), 1)
	return d - time.Duration(j*u*float64(d))
}

// Backoff is a Policy and the failures in a row so far. Its zero Policy waits
// nothing. It is not safe for concurrent use.
type Backoff struct {
	Policy
	n int
}

// New returns a Backoff of p with no failures yet.
func New(p Policy) *Backoff { return &Backoff{Policy: p} }

// Next counts one more failure and returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	b.n++
	return b.Delay(b.n)
}

// Reset forgets the failures: the next wait is Min again.
func (b *Backoff) Reset() { b.n = 0 }

// Failures is how many failures in a row Next has counted since the last Reset.
func (b *Backoff) Failures() int { return b.n }

// Ceiling is the most the next wait can be.
func (b *Backoff) Ceiling() time.Duration { return b.Base(b.n + 1) }

// Wait waits Next() or until ctx ends, whichever is first; it returns ctx's error
// when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits d or until ctx ends, whichever is first; it returns ctx's error when
// ctx ended first (also when it had ended before).
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept paces a listener whose Accept fails (out of file descriptors and the
// like) so that it does not spin, as net/http does: 5ms doubling to 1s, reset by
// the next connection accepted. No jitter: the cause is local.
var Accept = Policy{Min: 5 * time.Millisecond, Max: time.Second}
