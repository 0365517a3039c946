package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SlowPolicy says what happens to a subscriber that falls more than QueueSize
// messages behind the newest (or, while it replays the past it asked for, behind
// the ring).
type SlowPolicy int

const (
	// SlowDisconnect ends the subscription with ErrSlowConsumer.
	SlowDisconnect SlowPolicy = iota
	// SlowDropOldest skips the subscriber ahead, counting what it skipped.
	SlowDropOldest
	// SlowHold lets the subscriber fall behind as far as the journal reaches: what
	// the ring no longer holds is read back from disk. Only with a Journal.
	SlowHold
)

// ParseSlowPolicy reads the config names "disconnect" (the default) and "drop_oldest".
func ParseSlowPolicy(s string) (SlowPolicy, bool) {
	switch s {
	case "", "disconnect":
		return SlowDisconnect, true
	case "drop_oldest":
		return SlowDropOldest, true
	case "hold":
		return SlowHold, true
	}
	return 0, false
}

func (p SlowPolicy) String() string {
	switch p {
	case SlowDropOldest:
		return "drop_oldest"
	case SlowHold:
		return "hold"
	}
	return "disconnect"
}

var (
	// ErrSlowConsumer ends a subscription that fell too far behind.
	ErrSlowConsumer = errors.New("subscriber too slow")
	// ErrClosed is returned once the hub is closed.
	ErrClosed = errors.New("hub closed")
	// ErrNoWriter and ErrNoReader say that a device's adapter cannot do that.
	ErrNoWriter = errors.New("the device's adapter does not take writes")
	ErrNoReader = errors.New("the device's adapter cannot read on demand")
)

// HubConfig bounds the hub. The zero value works: every field has a default.
type HubConfig struct {
	// Retain is how many of the newest messages are kept in memory for replay
	// (from_earliest, after_sequence) and for subscribers that are behind. Rounded up
	// to a power of two. Default 65536.
	Retain int
	// QueueSize is how far behind the newest message a subscriber may fall before
	// SlowPolicy applies. A subscriber that starts in the past (StartEarliest,
	// StartAfter) may be as far behind as the ring reaches until it first comes
	// within QueueSize of the newest. At most Retain. Default 8192.
	QueueSize  int
	SlowPolicy SlowPolicy
	// FirstSequence is the sequence of the first message; default 1. A gateway with
	// no durable log seeds it from the clock so that a restart never reuses one.
	FirstSequence uint64
	// MaxDevices and MaxPointsPerDevice bound the registry; defaults 10000 and 4096.
	MaxDevices         int
	MaxPointsPerDevice int
	// Labels are added to every message (the gateway's static labels, such as its
	// site); a message's own label of the same name wins. Not modified by the hub.
	Labels map[string]string
	// Journal, when set, makes the hub durable: every batch is appended to it under
	// the hub's lock (so the journal is in sequence order), Ingest.Publish returns
	// only once the batch is durable, and subscribers read from it what the ring no
	// longer holds. FirstSequence should then be the journal's NextSequence.
	Journal Journal
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *HubConfig) setDefaults() {
	if c.Retain <= 0 {
		c.Retain = 1 << 16
	}
	c.Retain = 1 << bits.Len(uint(c.Retain-1))
	if c.QueueSize <= 0 {
		c.QueueSize = 8192
	}
	if c.QueueSize > c.Retain {
		c.QueueSize = c.Retain
	}
	if c.FirstSequence == 0 {
		c.FirstSequence = 1
	}
	if c.MaxDevices <= 0 {
		c.MaxDevices = 10000
	}
	if c.MaxPointsPerDevice <= 0 {
		c.MaxPointsPerDevice = 4096
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SlowPolicy == SlowHold && c.Journal == nil {
		// Nothing to hold on without a journal.
		c.SlowPolicy = SlowDisconnect
	}
}

// Journal is the durable log the hub writes through (bridge/journal implements it).
type Journal interface {
	// Append buffers messages whose sequences follow every earlier one. It must be
	// cheap: the hub calls it under its lock.
	Append(msgs []*Message) error
	// WaitDurable returns once the message with sequence seq is on disk.
	WaitDurable(ctx context.Context, seq uint64) error
	// Check says without waiting whether the message with sequence seq is on disk
	// (true, nil), never will be (false, an error wrapping ErrUnavailable or the
	// close), or not yet (false, nil). Moved is closed when that may have changed (a
	// commit, a failure, a recovery, the close), so that one goroutine can wait for
	// many batches without a waiter each.
	Check(seq uint64) (done bool, err error)
	Moved() <-chan struct{}
	// First is the oldest retained sequence (larger than Last when empty).
	First() uint64
	// Last is the newest appended sequence.
	Last() uint64
	// NewReader returns a reader for one subscriber.
	NewReader() JournalReader
}

// JournalReader reads a journal in sequence order for one goroutine.
type JournalReader interface {
	// Read appends to out[:0] up to cap(out) messages with a sequence of at least
	// from. Its error wraps ErrTruncated when from is no longer retained.
	Read(from uint64, out []*Message) ([]*Message, error)
	Close()
}

// ErrTruncated is wrapped by a JournalReader's error for a sequence older than the
// journal retains.
var ErrTruncated = errors.New("sequence no longer retained")

// ErrDataLoss ends a subscription whose next message cannot be read back intact.
var ErrDataLoss = errors.New("durable log unreadable")

// Writer sets a point on a device. Adapters that take writes implement it.
type Writer interface {
	Write(ctx context.Context, device, point string, v Value) error
}

// Reader reads a point from the device now. Adapters that can implement it.
type Reader interface {
	Read(ctx context.Context, device, point string) (*Message, error)
}

type pointKey struct{ device, point string }

// Hub orders every message, keeps the newest in memory, and serves subscribers.
//
// Publishing never blocks on a subscriber: subscribers read from the hub's ring at
// their own pace, each with a cursor, so fan-out costs no copy and a slow subscriber
// costs no memory beyond the ring.
type Hub struct {
	cfg     HubConfig
	metrics *metrics
	reg     *registry
	rep     *reporter // the reporting stage (report.go)

	mu    sync.RWMutex
	ring  []*Message
	mask  uint64
	last  uint64 // last sequence assigned; FirstSequence-1 before any
	lvc   map[pointKey]*Message
	head  atomic.Uint64 // == last, read without the lock
	subMu sync.Mutex
	subs  atomic.Pointer[[]*Subscription]

	rwMu    sync.RWMutex
	writers map[Protocol]Writer
	readers map[Protocol]Reader

	closeOnce sync.Once
	closed    chan struct{}
}

// NewHub returns a hub. Its metrics are registered with reg when reg is not nil.
func NewHub(cfg HubConfig, reg prometheus.Registerer) *Hub {
	cfg.setDefaults()
	h := &Hub{
		cfg:     cfg,
		ring:    make([]*Message, cfg.Retain),
		mask:    uint64(cfg.Retain - 1),
		last:    cfg.FirstSequence - 1,
		lvc:     make(map[pointKey]*Message),
		writers: make(map[Protocol]Writer),
		readers: make(map[Protocol]Reader),
		closed:  make(chan struct{}),
	}
	h.head.Store(h.last)
	h.subs.Store(&[]*Subscription{})
	h.metrics = newMetrics(h, reg)
	h.reg = newRegistry(cfg.MaxDevices, cfg.MaxPointsPerDevice, h.metrics)
	h.rep = newReporter(h.metrics)
	return h
}

// Config returns the hub's configuration with its defaults filled in.
func (h *Hub) Config() HubConfig { return h.cfg }

// Close ends every subscription with ErrClosed, once the subscriber has read what
// was published before. Publishing after Close is an error.
func (h *Hub) Close() {
	h.closeOnce.Do(func() { close(h.closed) })
}

// LastSequence returns the sequence of the newest message, or FirstSequence-1.
func (h *Hub) LastSequence() uint64 { return h.head.Load() }

// publish orders msgs, stores them and wakes the subscribers. Defaults for quality,
// priority and gateway time are filled in here so that every message has them. It
// returns the last sequence of the batch.
func (h *Hub) publish(msgs []*Message) (uint64, error) {
	select {
	case <-h.closed:
		return 0, ErrClosed
	default:
	}
	h.mu.Lock()
	now := h.cfg.Now()
	for i, m := range msgs {
		m.Sequence = h.last + 1 + uint64(i)
		m.GatewayTime = now
		if m.Quality == QualityUnspecified {
			m.Quality = QualityGood
		}
		if m.Priority == PriorityUnspecified {
			m.Priority = PriorityNormal
		}
	}
	if j := h.cfg.Journal; j != nil {
		if err := j.Append(msgs); err != nil {
			h.mu.Unlock()
			return 0, fmt.Errorf("durable log: %w", err)
		}
	}
	for _, m := range msgs {
		h.last++
		h.ring[m.Sequence&h.mask] = m
		h.lvc[pointKey{m.Device, m.Point}] = m
	}
	last := h.last
	h.head.Store(last)
	h.mu.Unlock()
	for _, s := range *h.subs.Load() {
		s.wakeUp()
	}
	return last, nil
}

// Latest returns the newest message of a point from the cache.
func (h *Hub) Latest(device, point string) (*Message, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	m, ok := h.lvc[pointKey{device, point}]
	return m, ok
}

// LatestAll returns every point's newest message, ordered by sequence.
func (h *Hub) LatestAll() []*Message {
	h.mu.RLock()
	out := make([]*Message, 0, len(h.lvc))
	for _, m := range h.lvc {
		out = append(out, m)
	}
	h.mu.RUnlock()
	sortBySequence(out)
	return out
}

// Devices lists the registered devices that match m (nil matches all).
func (h *Hub) Devices(m *Matcher) []DeviceInfo { return h.reg.list(m) }

// SetWriter routes writes for a protocol's devices to w.
func (h *Hub) SetWriter(p Protocol, w Writer) {
	h.rwMu.Lock()
	defer h.rwMu.Unlock()
	h.writers[p] = w
}

// SetReader routes on-demand reads for a protocol's devices to r.
func (h *Hub) SetReader(p Protocol, r Reader) {
	h.rwMu.Lock()
	defer h.rwMu.Unlock()
	h.readers[p] = r
}

// Write routes a write to the adapter that owns the device. The errors are
// ErrUnknownDevice, ErrNoWriter, or what the adapter returns.
func (h *Hub) Write(ctx context.Context, device, point string, v Value) error {
	p, ok := h.reg.protocolOf(device)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownDevice, device)
	}
	h.rwMu.RLock()
	w := h.writers[p]
	h.rwMu.RUnlock()
	if w == nil {
		return fmt.Errorf("%w: device %q (%s)", ErrNoWriter, device, p)
	}
	if err := w.Write(ctx, device, point, v); err != nil {
		return err
	}
	h.reg.wrote(device)
	return nil
}

// ReadDevice asks the device's adapter for a point's value now.
func (h *Hub) ReadDevice(ctx context.Context, device, point string) (*Message, error) {
	p, ok := h.reg.protocolOf(device)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDevice, device)
	}
	h.rwMu.RLock()
	r := h.readers[p]
	h.rwMu.RUnlock()
	if r == nil {
		return nil, fmt.Errorf("%w: device %q (%s)", ErrNoReader, device, p)
	}
	return r.Read(ctx, device, point)
}

// HasPoint reports whether the device has seen or declared the point.
func (h *Hub) HasPoint(device, point string) bool { return h.reg.hasPoint(device, point) }

// oldestLocked is the oldest sequence still in the ring.
func (h *Hub) oldestLocked() uint64 {
	if h.cfg.Journal != nil {
		if first := h.cfg.Journal.First(); first <= h.last {
			return first
		}
	}
	return h.ringOldestLocked()
}

// ringOldestLocked is the oldest sequence still in the ring.
func (h *Hub) ringOldestLocked() uint64 {
	first := h.cfg.FirstSequence
	if h.last+1-first > uint64(len(h.ring)) {
		return h.last + 1 - uint64(len(h.ring))
	}
	return first
}

func (h *Hub) retained() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.last + 1 - h.oldestLocked()
}

func (h *Hub) subscriptions() []*Subscription { return *h.subs.Load() }

func (h *Hub) maxLag() uint64 {
	head := h.head.Load()
	var max uint64
	for _, s := range h.subscriptions() {
		if c := s.cursor.Load(); head+1 > c && head+1-c > max {
			max = head + 1 - c
		}
	}
	return max
}

func (h *Hub) addSub(s *Subscription) {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	old := *h.subs.Load()
	next := make([]*Subscription, len(old), len(old)+1)
	copy(next, old)
	next = append(next, s)
	h.subs.Store(&next)
}

func (h *Hub) removeSub(s *Subscription) {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	old := *h.subs.Load()
	next := make([]*Subscription, 0, len(old))
	for _, o := range old {
		if o != s {
			next = append(next, o)
		}
	}
	h.subs.Store(&next)
}

func sortBySequence(ms []*Message) {
	slices.SortFunc(ms, func(a, b *Message) int { return cmp.Compare(a.Sequence, b.Sequence) })
}
