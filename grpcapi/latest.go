package grpcapi

import (
	"container/list"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
)

// DefaultMaxPendingPoints bounds the points a SHED_POLICY_LATEST stream holds a
// pending value for (Options.MaxPendingPoints). A pending value costs a pointer to
// the hub's message and its wire form: 10,000 of them are a few MiB at most.
const DefaultMaxPendingPoints = 10000

// pointKey names a point.
type pointKey struct{ device, point string }

// pendingValue is the latest value of a point that waits for the budget.
type pendingValue struct {
	key  pointKey
	m    *bridge.Message
	pm   *pb.Message
	size int // pm's size when the pacer counts bytes
}

// pendingQueue holds a SHED_POLICY_LATEST stream's pending values: at most one a
// point and at most max points, NORMAL before LOW, each class oldest first. A new
// value of a pending point takes the old one's place and moves to the back: the
// old one was never sent and no longer needs to be. It belongs to the stream's
// goroutine.
type pendingQueue struct {
	max   int
	byKey map[pointKey]*list.Element
	// classes[0] holds NORMAL (and UNSPECIFIED) values, classes[1] LOW ones; HIGH
	// and CRITICAL are never pending.
	classes [2]list.List
}

func newPendingQueue(max int) *pendingQueue {
	return &pendingQueue{max: max, byKey: map[pointKey]*list.Element{}}
}

func class(p bridge.Priority) int {
	if p == bridge.PriorityLow {
		return 1
	}
	return 0
}

func (q *pendingQueue) len() int { return len(q.byKey) }

// put makes v its point's pending value. It returns the value v replaced, if any,
// and false when the queue is full and v's point has no pending value: then v is
// not kept.
func (q *pendingQueue) put(v *pendingValue) (replaced *pendingValue, ok bool) {
	if e, found := q.byKey[v.key]; found {
		replaced = e.Value.(*pendingValue)
		q.classes[class(replaced.m.Priority)].Remove(e)
	} else if len(q.byKey) >= q.max {
		return nil, false
	}
	q.byKey[v.key] = q.classes[class(v.m.Priority)].PushBack(v)
	return replaced, true
}

// blocks says whether a new message m must queue behind a pending value rather
// than go ahead of it: its point has one (a point's values stay in order), or a
// value of its class or a higher one waits (pending values go first, oldest first).
// HIGH and CRITICAL messages queue behind nothing.
func (q *pendingQueue) blocks(m *bridge.Message) bool {
	if len(q.byKey) == 0 || m.Priority >= bridge.PriorityHigh {
		return false
	}
	if _, ok := q.byKey[pointKey{m.Device, m.Point}]; ok {
		return true
	}
	for c := 0; c <= class(m.Priority); c++ {
		if q.classes[c].Len() > 0 {
			return true
		}
	}
	return false
}

// front is the value to send next, or nil.
func (q *pendingQueue) front() *pendingValue {
	for c := range q.classes {
		if e := q.classes[c].Front(); e != nil {
			return e.Value.(*pendingValue)
		}
	}
	return nil
}

// remove takes the front value off the queue once it is sent.
func (q *pendingQueue) remove(v *pendingValue) {
	if e, ok := q.byKey[v.key]; ok && e.Value.(*pendingValue) == v {
		q.classes[class(v.m.Priority)].Remove(e)
		delete(q.byKey, v.key)
	}
}

// drop takes key's pending value off the queue, if it has one, and returns it.
func (q *pendingQueue) drop(key pointKey) *pendingValue {
	e, ok := q.byKey[key]
	if !ok {
		return nil
	}
	v := e.Value.(*pendingValue)
	q.classes[class(v.m.Priority)].Remove(e)
	delete(q.byKey, key)
	return v
}

// counts returns how many values of each priority are pending.
func (q *pendingQueue) counts() map[bridge.Priority]int {
	out := map[bridge.Priority]int{}
	for _, e := range q.byKey {
		out[e.Value.(*pendingValue).m.Priority]++
	}
	return out
}
