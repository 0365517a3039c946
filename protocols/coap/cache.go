package coap

import (
	"sort"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/edgegate/edgegate/bridge"
)

// latestCache holds the newest value the adapter ingested for each point, for GET.
// It is bounded: beyond max points an arbitrary point is forgotten (a GET for it is
// then 4.04 until its next reading). See Adapter.latest for why the adapter keeps
// its own rather than reading the hub's.
type latestCache struct {
	mu      sync.RWMutex
	max     int
	n       int
	devices map[string]map[string]reading
}

func newLatestCache(max int) *latestCache {
	return &latestCache{max: max, devices: make(map[string]map[string]reading)}
}

func (c *latestCache) put(device string, rs []reading) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pts := c.devices[device]
	if pts == nil {
		pts = make(map[string]reading, len(rs))
		c.devices[device] = pts
	}
	for _, r := range rs {
		if _, ok := pts[r.point]; !ok {
			if c.n >= c.max {
				c.evictLocked(device)
			}
			c.n++
		}
		pts[r.point] = r
	}
}

// evictLocked forgets one point, preferably of another device than keep.
func (c *latestCache) evictLocked(keep string) {
	for d, pts := range c.devices {
		if d == keep && len(c.devices) > 1 {
			continue
		}
		for p := range pts {
			delete(pts, p)
			c.n--
			if len(pts) == 0 && d != keep {
				delete(c.devices, d)
			}
			return
		}
	}
}

func (c *latestCache) get(device, point string) (reading, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.devices[device][point]
	return r, ok
}

// has says whether the cache holds a value of the device.
func (c *latestCache) has(device string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.devices[device]) > 0
}

// device returns a device's points, sorted by name, at most max of them.
func (c *latestCache) device(device string, max int) []reading {
	c.mu.RLock()
	pts := c.devices[device]
	out := make([]reading, 0, min(len(pts), max))
	for _, r := range pts {
		out = append(out, r)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].point < out[j].point })
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// latestReader is what the adapter would rather read than keep its own cache: the
// hub's last-value cache, offered by the sink. bridge.Ingest does not have it (yet);
// when it does, GET answers for points the adapter's own cache no longer holds.
type latestReader interface {
	Latest(device, point string) (*bridge.Message, bool)
}

// responseCache is a CoAP-over-UDP session's memory of the responses it sent, so
// that a retransmitted request (the same message ID) gets the same response instead
// of being processed twice (RFC 7252 section 4.5). go-coap's own cache keeps every
// response for EXCHANGE_LIFETIME (247 s) without a bound, which would let a peer
// hold up to 65536 responses; this one keeps them for the same time but within a
// byte budget per session, forgetting the oldest first. Retransmissions come within
// MAX_TRANSMIT_SPAN (45 s), so the budget only matters for a peer sending hundreds
// of requests in that span, which then risks a duplicate reading, not memory.
type responseCache struct {
	mu     sync.Mutex
	budget int
	used   int
	m      map[string]*cachedResponse
	fifo   []*cachedResponse
	head   int
}

type cachedResponse struct {
	key     string
	raw     []byte
	expires time.Time
}

// cachedResponseOverhead approximates the memory of an entry beyond its bytes.
const cachedResponseOverhead = 96

var _ client.MessageCache = (*responseCache)(nil)

func newResponseCache(budget int) *responseCache {
	return &responseCache{budget: budget, m: make(map[string]*cachedResponse)}
}

func (c *responseCache) Load(key string, msg *pool.Message) (bool, error) {
	c.mu.Lock()
	e, ok := c.m[key]
	var raw []byte
	if ok && time.Now().Before(e.expires) {
		raw = e.raw
	}
	c.mu.Unlock()
	if raw == nil {
		return false, nil
	}
	if _, err := msg.UnmarshalWithDecoder(coder.DefaultCoder, raw); err != nil {
		return false, err
	}
	return true, nil
}

func (c *responseCache) Store(key string, msg *pool.Message) error {
	raw, err := msg.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		return err
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok && now.Before(e.expires) {
		return nil // the first response stands, as in go-coap's cache
	}
	e := &cachedResponse{key: key, raw: append([]byte(nil), raw...), expires: now.Add(client.ExchangeLifetime)}
	c.m[key] = e
	c.fifo = append(c.fifo, e)
	c.used += len(e.raw) + len(key) + cachedResponseOverhead
	c.trimLocked(now)
	return nil
}

func (c *responseCache) CheckExpirations(now time.Time) {
	c.mu.Lock()
	c.trimLocked(now)
	c.mu.Unlock()
}

// trimLocked forgets expired entries and, beyond the budget, the oldest. Entries
// expire in the order they were stored.
func (c *responseCache) trimLocked(now time.Time) {
	for c.head < len(c.fifo) {
		e := c.fifo[c.head]
		if c.used <= c.budget && now.Before(e.expires) {
			break
		}
		c.fifo[c.head] = nil
		c.head++
		c.used -= len(e.raw) + len(e.key) + cachedResponseOverhead
		if c.m[e.key] == e {
			delete(c.m, e.key)
		}
	}
	if c.head > 64 && c.head > len(c.fifo)/2 {
		c.fifo = append(c.fifo[:0:0], c.fifo[c.head:]...)
		c.head = 0
	}
}
