package bridge

// Report by exception and sampling: a stage of Ingest.Publish that lets through only
// what is worth the bandwidth, for every protocol alike, before the hub orders a
// batch and the journal writes it. See docs/reporting.md.

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// MinSampleInterval is the shortest sample interval and heartbeat a rule may
	// have: shorter saves next to nothing, at the cost of a wake-up per point.
	MinSampleInterval = 10 * time.Millisecond
	// MaxReportRules bounds the rules: every message is matched against them in order.
	MaxReportRules = 1024
)

// Reasons of edgegate_reporting_suppressed_total.
const (
	reasonDeadband = "deadband" // unchanged, or changed less than the deadband
	reasonSample   = "sample"   // held by sampling, then replaced by a newer value
	reasonLost     = "lost"     // held by sampling; the hub closed, or refused it at a reload
)

// ReportRule says how the points it matches are reported. A point is reported by
// exception: a message whose value and quality are those last published for the
// point (or whose number is within the deadband of it) is not published. Rules are
// tried in order and the first that matches a message decides; a message that no
// rule matches is published as it comes.
type ReportRule struct {
	// Devices and Points are glob patterns, as in a Filter (`*` does not match
	// `/`); empty matches all.
	Devices, Points string
	// Protocol restricts the rule to one protocol's messages; ProtocolUnspecified
	// matches all.
	Protocol Protocol
	// Deadband widens "unchanged" for numbers; the zero Deadband means equal.
	Deadband Deadband
	// SampleInterval, when set, publishes at most one message of a point per
	// interval: a changed number that comes sooner than the interval after the
	// point was last published is held, replacing the one held before, and the
	// newest is published when the interval ends. Changes of quality and of values
	// that are not numbers, and CRITICAL messages, are never held.
	SampleInterval time.Duration
	// Heartbeat, when set, lets an unchanged value through once this long has
	// passed since the point was last published. The stage never invents a
	// message: a device that sends nothing stays silent.
	Heartbeat time.Duration
}

// validate is the bridge's own check of a rule; config reports the same problems
// with the keys' names.
func (r ReportRule) validate() error {
	switch {
	case r.Protocol != ProtocolUnspecified && protocolNames[r.Protocol] == "":
		return fmt.Errorf("unknown protocol %d", r.Protocol)
	case !validBand(r.Deadband.Absolute) || !validBand(r.Deadband.Percent):
		return errors.New("deadband must be a number, not negative")
	case r.SampleInterval < 0 || (r.SampleInterval > 0 && r.SampleInterval < MinSampleInterval):
		return fmt.Errorf("sample interval %s is not 0 or at least %s", r.SampleInterval, MinSampleInterval)
	case r.Heartbeat < 0 || (r.Heartbeat > 0 && r.Heartbeat < MinSampleInterval):
		return fmt.Errorf("heartbeat %s is not 0 or at least %s", r.Heartbeat, MinSampleInterval)
	case r.Heartbeat > 0 && r.Heartbeat < r.SampleInterval:
		return fmt.Errorf("heartbeat %s is shorter than the sample interval %s", r.Heartbeat, r.SampleInterval)
	}
	return nil
}

func validBand(f float64) bool { return f >= 0 && !math.IsInf(f, 0) }

// reportRule is a compiled ReportRule.
type reportRule struct {
	ReportRule
	devices, points patterns
}

type reportRules struct{ list []*reportRule }

func compileReportRules(rules []ReportRule) (*reportRules, error) {
	if len(rules) > MaxReportRules {
		return nil, fmt.Errorf("%d reporting rules, more than %d", len(rules), MaxReportRules)
	}
	if len(rules) == 0 {
		return nil, nil
	}
	rs := &reportRules{}
	for i, r := range rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("reporting rule %d: %w", i, err)
		}
		c := &reportRule{ReportRule: r}
		var err error
		if c.devices, err = compilePatterns(glob(r.Devices)); err != nil {
			return nil, fmt.Errorf("reporting rule %d: devices: %w", i, err)
		}
		if c.points, err = compilePatterns(glob(r.Points)); err != nil {
			return nil, fmt.Errorf("reporting rule %d: points: %w", i, err)
		}
		rs.list = append(rs.list, c)
	}
	return rs, nil
}

func glob(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// match returns the first rule that matches m, or nil.
func (rs *reportRules) match(m *Message) *reportRule {
	for _, r := range rs.list {
		if (r.Protocol == ProtocolUnspecified || r.Protocol == m.Protocol) &&
			r.devices.match(m.Device) && r.points.match(m.Point) {
			return r
		}
	}
	return nil
}

// pointState is what the stage remembers of one point that a rule matches.
type pointState struct {
	rule    *reportRule
	last    Value // last published value
	lastQ   Quality
	lastPub time.Time // when the point was last handed to the hub
	pending *Message  // sampling: the newest value held, published at due
	due     time.Time
	held    uint64 // orders values due at the same time: first held, first published
	hidx    int    // index in the reporter's heap; -1 when nothing is pending
}

type verdict uint8

const (
	verdictPass      verdict = iota // published now
	verdictUnchanged                // not published: within the deadband
	verdictHold                     // held by sampling until due
)

// decide says what becomes of m, the point's next message, and updates the state as
// though it had been published; superseded reports that a held value was dropped
// for it.
func (st *pointState) decide(m *Message, now time.Time) (v verdict, superseded bool) {
	r := st.rule
	q := quality(m)
	changed := r.Deadband.Changed(st.last, m.Value)
	superseded = st.pending != nil
	switch {
	case q != st.lastQ:
		// A change of quality always passes, at once.
	case changed && (!m.Value.isNumber() || !st.last.isNumber()):
		// So does a change of state: a bool that flips, a string that changes, a
		// value that changes kind to or from one that is not a number. Sampling
		// would delay it, and could hide a flip and its flip back.
	case changed:
		if r.SampleInterval > 0 && m.Priority != PriorityCritical && now.Sub(st.lastPub) < r.SampleInterval {
			st.pending = m
			st.due = st.lastPub.Add(r.SampleInterval)
			return verdictHold, superseded
		}
	case r.Heartbeat > 0 && now.Sub(st.lastPub) >= r.Heartbeat:
		// Unchanged, but silent for long enough.
	default:
		// Unchanged: and so is the point's newest value, so what was held for it
		// is stale.
		st.pending = nil
		return verdictUnchanged, superseded
	}
	st.pending = nil
	st.published(m.Value, q, now)
	return verdictPass, superseded
}

func (st *pointState) published(v Value, q Quality, now time.Time) {
	st.last, st.lastQ, st.lastPub = v, q, now
}

// quality is m's quality as the hub will publish it.
func quality(m *Message) Quality {
	if m.Quality == QualityUnspecified {
		return QualityGood
	}
	return m.Quality
}

// dueHeap orders the points with a held value by when it is due.
type dueHeap []*pointState

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].held < h[j].held
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *dueHeap) Push(x any) {
	st := x.(*pointState)
	st.hidx = len(*h)
	*h = append(*h, st)
}
func (h *dueHeap) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	st.hidx = -1
	return st
}

// reporter is the stage. Its state is bounded by the device registry: a point gets
// state only once the registry has taken it, and only when a rule matches it; a
// point holds at most one value.
type reporter struct {
	m     *metrics
	rules atomic.Pointer[reportRules] // nil: no rules, the stage is a no-op
	kick  chan struct{}               // the earliest due time moved earlier

	// mu is held across the hub's publish, so that the order of the points' states
	// is the order of the hub.
	mu     sync.Mutex
	points map[pointKey]*pointState
	due    dueHeap
	held   uint64 // values held so far
}

func newReporter(m *metrics) *reporter {
	return &reporter{m: m, kick: make(chan struct{}, 1), points: make(map[pointKey]*pointState)}
}

// reportUndo restores a point's state when the hub refuses a batch.
type reportUndo struct {
	st      *pointState
	key     pointKey
	old     pointState
	created bool
}

// publish runs a batch through the stage and hands the hub what passes, in order.
// It returns the sequence of the last message the hub took and how many it took.
// When the hub refuses the batch, the points' states are as they were.
func (r *reporter) publish(h *Hub, msgs []*Message, now time.Time) (uint64, int, error) {
	rs := r.rules.Load()
	matched := r.match(rs, msgs)
	if matched == nil {
		last, err := h.publish(msgs)
		return last, len(msgs), err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.rules.Load(); cur != rs {
		// SetReporting replaced the rules meanwhile.
		if matched = r.match(cur, msgs); matched == nil {
			last, err := h.publish(msgs)
			return last, len(msgs), err
		}
	}
	select {
	case <-h.closed:
		return 0, 0, ErrClosed
	default:
	}
	out := make([]*Message, 0, len(msgs))
	undo := make([]reportUndo, 0, len(msgs))
	var unchanged, superseded int
	for i, m := range msgs {
		rule := matched[i]
		if rule == nil {
			out = append(out, m)
			continue
		}
		k := pointKey{m.Device, m.Point}
		st, ok := r.points[k]
		if !ok {
			// A point's first message passes.
			st = &pointState{rule: rule, hidx: -1}
			st.published(m.Value, quality(m), now)
			r.points[k] = st
			undo = append(undo, reportUndo{st: st, key: k, created: true})
			out = append(out, m)
			continue
		}
		undo = append(undo, reportUndo{st: st, key: k, old: *st})
		v, sup := st.decide(m, now)
		if sup {
			superseded++
		}
		switch v {
		case verdictPass:
			out = append(out, m)
		case verdictUnchanged:
			unchanged++
		}
		r.place(st)
	}
	var last uint64
	if len(out) > 0 {
		var err error
		if last, err = h.publish(out); err != nil {
			r.rollback(undo)
			return 0, 0, err
		}
	}
	if unchanged > 0 {
		r.m.reportDeadband.Add(float64(unchanged))
	}
	if superseded > 0 {
		r.m.reportSample.Add(float64(superseded))
	}
	r.gauges()
	return last, len(out), nil
}

// match returns each message's rule, or nil when no rule matches any of them.
func (r *reporter) match(rs *reportRules, msgs []*Message) []*reportRule {
	if rs == nil {
		return nil
	}
	var matched []*reportRule
	for i, m := range msgs {
		if rule := rs.match(m); rule != nil {
			if matched == nil {
				matched = make([]*reportRule, len(msgs))
			}
			matched[i] = rule
		}
	}
	return matched
}

// place puts st in the heap when it holds a value and takes it out when it does
// not. A held value's due time never moves: only a publish of the point moves
// lastPub, and that drops what was held.
func (r *reporter) place(st *pointState) {
	switch {
	case st.pending != nil && st.hidx < 0:
		r.held++
		st.held = r.held
		heap.Push(&r.due, st)
		if st.hidx == 0 {
			r.wake()
		}
	case st.pending == nil && st.hidx >= 0:
		heap.Remove(&r.due, st.hidx)
	}
}

func (r *reporter) rollback(undo []reportUndo) {
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		if u.created {
			delete(r.points, u.key)
			u.st.pending = nil
			continue
		}
		hidx := u.st.hidx
		*u.st = u.old
		u.st.hidx = hidx
	}
	// Build the heap again from what holds a value now: rare, so simple.
	in := make(map[*pointState]bool, len(r.due)+len(undo))
	list := make(dueHeap, 0, len(r.due)+len(undo))
	add := func(st *pointState) {
		if st.pending != nil && !in[st] {
			in[st] = true
			list = append(list, st)
		}
	}
	for _, st := range r.due {
		add(st)
		st.hidx = -1
	}
	for _, u := range undo {
		add(u.st)
		u.st.hidx = -1
	}
	for i, st := range list {
		st.hidx = i
	}
	r.due = list
	heap.Init(&r.due)
}

func (r *reporter) gauges() {
	r.m.reportPending.Set(float64(len(r.due)))
	r.m.reportPoints.Set(float64(len(r.points)))
}

func (r *reporter) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// next returns when the earliest held value is due.
func (r *reporter) next() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.due) == 0 {
		return time.Time{}, false
	}
	return r.due[0].due, true
}

// flush hands the hub, as one batch, the held values due by now, or all of them.
func (r *reporter) flush(h *Hub, now time.Time, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushLocked(h, now, all)
}

func (r *reporter) flushLocked(h *Hub, now time.Time, all bool) error {
	var batch []*Message
	var sts []*pointState
	for len(r.due) > 0 && (all || !r.due[0].due.After(now)) {
		st := heap.Pop(&r.due).(*pointState)
		batch = append(batch, st.pending)
		sts = append(sts, st)
	}
	if len(batch) == 0 {
		return nil
	}
	defer r.gauges()
	if _, err := h.publish(batch); err != nil {
		if errors.Is(err, ErrClosed) {
			for _, st := range sts {
				st.pending = nil
			}
			r.m.reportLost.Add(float64(len(batch)))
			return fmt.Errorf("%d sampled values lost: %w", len(batch), err)
		}
		// The journal refused: try again an interval later, unless a newer value
		// of the point comes first.
		for _, st := range sts {
			st.due = now.Add(st.rule.SampleInterval)
			heap.Push(&r.due, st)
		}
		return fmt.Errorf("%d sampled values not published, tried again in an interval: %w", len(batch), err)
	}
	for _, st := range sts {
		st.published(st.pending.Value, st.pending.Quality, now)
		st.pending = nil
	}
	return nil
}

// SetReporting replaces the reporting rules; none (nil) lets every message through,
// as without the stage. The values that sampling holds are published first and every
// point starts afresh: its next message passes. It fails only on an invalid rule, and
// then changes nothing.
func (h *Hub) SetReporting(rules []ReportRule) error {
	rs, err := compileReportRules(rules)
	if err != nil {
		return err
	}
	r := h.rep
	r.mu.Lock()
	defer r.mu.Unlock()
	// Refused only when the hub is closed or its journal failed: the values are
	// lost then, as at a close.
	_ = r.flushLocked(h, h.cfg.Now(), true)
	r.m.reportLost.Add(float64(len(r.due))) // what the journal refused just now
	for _, st := range r.due {
		st.hidx = -1
	}
	r.due = r.due[:0]
	clear(r.points)
	r.rules.Store(rs)
	r.gauges()
	r.wake()
	return nil
}

// RunReporting publishes each value that sampling holds when its interval ends,
// until ctx ends, and then publishes every value still held, so that a stop loses
// none: run it until the adapters have stopped, and close the hub after it
// returns. onErr, when not nil, hears of each batch the hub refused.
//
// Without RunReporting, a held value waits for the point's next message, which
// replaces it.
func (h *Hub) RunReporting(ctx context.Context, onErr func(error)) {
	r := h.rep
	report := func(err error) {
		if err != nil && onErr != nil {
			onErr(err)
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var fire <-chan time.Time
		if next, ok := r.next(); ok {
			timer.Reset(max(next.Sub(h.cfg.Now()), 0))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			report(r.flush(h, h.cfg.Now(), true))
			return
		case <-fire:
			report(r.flush(h, h.cfg.Now(), false))
		case <-r.kick:
		}
		timer.Stop()
	}
}
