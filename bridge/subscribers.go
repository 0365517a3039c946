package bridge

import "time"

// SubscriberInfo is a snapshot of one open subscription, for status pages.
type SubscriberInfo struct {
	Name    string    // SubscribeOptions.Name: who subscribed
	Since   time.Time // when it subscribed
	Cursor  uint64    // the sequence it reads next
	Lag     uint64    // messages published that it has not looked at yet
	Dropped uint64    // messages it skipped for being too slow
}

// Subscribers lists the open subscriptions, oldest first.
func (h *Hub) Subscribers() []SubscriberInfo {
	head := h.head.Load()
	subs := h.subscriptions()
	out := make([]SubscriberInfo, 0, len(subs))
	for _, s := range subs {
		c := s.cursor.Load()
		var lag uint64
		if head+1 > c {
			lag = head + 1 - c
		}
		out = append(out, SubscriberInfo{Name: s.name, Since: s.since, Cursor: c, Lag: lag, Dropped: s.dropped.Load()})
	}
	return out
}
