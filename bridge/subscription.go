package bridge

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Start says where a subscription begins.
type Start int

const (
	StartLive     Start = iota // messages published from now on
	StartEarliest              // every retained message, then live
	StartAfter                 // every retained message with a larger sequence than After, then live
)

// SubscribeOptions select what a subscription receives and from where.
type SubscribeOptions struct {
	Match *Matcher // nil matches everything
	Start Start
	After uint64 // with StartAfter
	// Name says who subscribes (a peer address, a consumer name), for status pages.
	Name string
}

// Subscription reads the hub's messages in sequence order. It belongs to one
// goroutine: Next is not safe for concurrent use. Close it when done.
type Subscription struct {
	hub     *Hub
	match   *Matcher
	name    string
	since   time.Time
	cursor  atomic.Uint64 // next sequence to read; atomic for the lag metric
	wake    chan struct{}
	waiting atomic.Bool
	dropped atomic.Uint64
	skipped uint64
	closed  atomic.Bool
	// replaying is set while a subscription that started in the past has not yet
	// come within QueueSize of the newest message: the backlog it asked for is not
	// slowness, so until then only the ring's wrap makes it slow. Next's goroutine
	// alone uses it.
	replaying bool
	// err ends the subscription for good once it was too slow. Next's only.
	err error
	// jr reads from the journal what the ring no longer holds; opened on first use.
	jrMu sync.Mutex
	jr   JournalReader
}

// Subscribe opens a subscription. Messages that matched the start but are no longer
// retained are counted by Skipped.
func (h *Hub) Subscribe(opts SubscribeOptions) (*Subscription, error) {
	select {
	case <-h.closed:
		return nil, ErrClosed
	default:
	}
	s := &Subscription{hub: h, match: opts.Match, name: opts.Name, since: h.cfg.Now(), wake: make(chan struct{}, 1), replaying: opts.Start != StartLive}
	if s.match == nil {
		s.match = &Matcher{}
	}
	// Registering under the read lock means no message can be published between
	// choosing the cursor and being woken for what follows it.
	h.mu.RLock()
	oldest := h.oldestLocked()
	var cursor uint64
	switch opts.Start {
	case StartLive:
		cursor = h.last + 1
	case StartEarliest:
		cursor = oldest
	case StartAfter:
		cursor = opts.After + 1
		if cursor < oldest {
			s.skipped = oldest - cursor
			cursor = oldest
		}
	default:
		h.mu.RUnlock()
		return nil, fmt.Errorf("unknown start %d", opts.Start)
	}
	s.cursor.Store(cursor)
	h.addSub(s)
	h.mu.RUnlock()
	return s, nil
}

// Close ends the subscription: a Next blocked in another goroutine returns ErrClosed.
// It is safe to call more than once.
func (s *Subscription) Close() {
	if s.closed.CompareAndSwap(false, true) {
		s.hub.removeSub(s)
		s.jrMu.Lock()
		if s.jr != nil {
			s.jr.Close()
			s.jr = nil
		}
		s.jrMu.Unlock()
		// Wake a Next that sleeps: it sees closed when it looks again.
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Dropped counts the messages this subscription skipped for being too slow. When it
// fell behind even the ring, the messages overwritten before it could look at them
// are counted only if it has no filter: whether they matched is no longer known.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Skipped counts messages after the requested start that were no longer retained.
func (s *Subscription) Skipped() uint64 { return s.skipped }

// Cursor is the sequence the subscription reads next.
func (s *Subscription) Cursor() uint64 { return s.cursor.Load() }

func (s *Subscription) wakeUp() {
	if s.waiting.Load() && s.waiting.CompareAndSwap(true, false) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Next waits for matching messages and appends up to cap(buf) of them to buf[:0].
// It returns ctx's error when ctx ends, ErrClosed when the hub or the subscription
// closes, and an error wrapping ErrSlowConsumer when the subscriber fell too far
// behind under the disconnect policy; that error ends the subscription.
func (s *Subscription) Next(ctx context.Context, buf []*Message) ([]*Message, error) {
	if cap(buf) == 0 {
		buf = make([]*Message, 0, 64)
	}
	h := s.hub
	for {
		if s.closed.Load() {
			return nil, ErrClosed
		}
		if s.err != nil {
			return nil, s.err
		}
		if h.head.Load() >= s.cursor.Load() {
			out, err := s.read(buf[:0])
			if err != nil {
				s.err = err
				return nil, err
			}
			if len(out) > 0 {
				return out, nil
			}
			continue
		}
		// Announce that we sleep, then look again: a publisher either sees the flag
		// or we see its message.
		s.waiting.Store(true)
		if h.head.Load() >= s.cursor.Load() {
			s.waiting.Store(false)
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			s.waiting.Store(false)
			return nil, ctx.Err()
		case <-h.closed:
			return nil, ErrClosed
		}
	}
}

// scanLimit bounds how many ring slots one read looks at, so that a subscriber with a
// narrow filter does not hold the read lock for a whole ring.
const scanLimit = 4096

func (s *Subscription) read(out []*Message) ([]*Message, error) {
	h := s.hub
	h.mu.RLock()
	cursor := s.cursor.Load()
	if h.cfg.Journal != nil && cursor < h.ringOldestLocked() {
		// Behind the ring: read from disk, without the hub's lock.
		h.mu.RUnlock()
		return s.readJournal(cursor, out)
	}
	defer h.mu.RUnlock()
	lag := h.last + 1 - cursor
	limit := uint64(h.cfg.QueueSize)
	if s.replaying && lag > limit || h.cfg.SlowPolicy == SlowHold {
		limit = uint64(len(h.ring))
	}
	if lag > limit && h.cfg.SlowPolicy == SlowHold {
		// The ring wrapped past the cursor between the check above and now: the
		// journal has it.
		return out, nil
	}
	if lag > limit {
		if h.cfg.SlowPolicy == SlowDisconnect {
			h.metrics.dropped.WithLabelValues("disconnect").Inc()
			return nil, fmt.Errorf("%w: %d messages behind, limit %d", ErrSlowConsumer, lag, limit)
		}
		next := h.last + 1 - uint64(h.cfg.QueueSize)
		s.replaying = false
		// The ring is at least QueueSize long and the cursor is behind it only when
		// the ring wrapped past it: count what is still there and matched, and what
		// was overwritten when everything matches.
		var n uint64
		oldest := h.oldestLocked()
		if cursor < oldest && s.match.matchesAll() {
			n = oldest - cursor
		}
		for seq := max(cursor, oldest); seq < next; seq++ {
			if s.match.Match(h.ring[seq&h.mask]) {
				n++
			}
		}
		if n > 0 {
			s.dropped.Add(n)
			h.metrics.dropped.WithLabelValues("drop_oldest").Add(float64(n))
		}
		cursor = next
	}
	end := min(h.last+1, cursor+scanLimit)
	for ; cursor < end && len(out) < cap(out); cursor++ {
		if m := h.ring[cursor&h.mask]; s.match.Match(m) {
			out = append(out, m)
		}
	}
	s.cursor.Store(cursor)
	if s.replaying && h.last+1-cursor <= uint64(h.cfg.QueueSize) {
		s.replaying = false
	}
	return out, nil
}

// readJournal reads what the ring no longer holds. A cursor older than the journal
// retains (retention removed it while the subscriber was behind) skips to the oldest
// retained, counting what it skipped where that is knowable.
func (s *Subscription) readJournal(cursor uint64, out []*Message) ([]*Message, error) {
	h := s.hub
	s.jrMu.Lock()
	defer s.jrMu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.jr == nil {
		s.jr = h.cfg.Journal.NewReader()
	}
	got, err := s.jr.Read(cursor, out[:0])
	if errors.Is(err, ErrTruncated) {
		first := h.cfg.Journal.First()
		if first > cursor && s.match.matchesAll() {
			s.dropped.Add(first - cursor)
			h.metrics.dropped.WithLabelValues("retention").Add(float64(first - cursor))
		}
		s.cursor.Store(max(first, cursor))
		return out[:0], nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataLoss, err)
	}
	if len(got) == 0 {
		h.mu.RLock()
		ringOldest := h.ringOldestLocked()
		h.mu.RUnlock()
		if h.cfg.Journal.Last() < cursor {
			// A gap: sequences reserved before a restart were never used. What
			// follows is in the ring.
			s.cursor.Store(max(cursor, ringOldest))
			return got, nil
		}
		// Appended but not yet written by the journal's committer (the ring wrapped
		// faster than a commit): let it run.
		runtime.Gosched()
		return got, nil
	}
	s.cursor.Store(got[len(got)-1].Sequence + 1)
	kept := got[:0]
	for _, m := range got {
		if s.match.Match(m) {
			h.reg.attach(m)
			kept = append(kept, m)
		}
	}
	return kept, nil
}
