package mqtt

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// Password checks under attack (issue 19.6). A bcrypt comparison costs tens of
// milliseconds of CPU on purpose, so they run a few at a time, in a queue; 300
// CONNECTs with wrong passwords from one host kept a legitimate login waiting 18.5 s
// behind them. Three things keep the queue short and its wait bounded:
//   - a source (an IPv4 address, an IPv6 /64) that failed auth_failure_burst logins
//     gets one more check per auth_failure_interval; beyond that its CONNECTs are
//     refused before any bcrypt runs (v5 CONNACK 0x9F connection rate exceeded,
//     3.1.1 3 server unavailable), counted in edgegate_mqtt_auth_throttled_total. A
//     successful login does not count against its source.
//   - the wait for a check is part of connect_timeout: a CONNECT still waiting at its
//     connection's deadline is refused as busy (v5 0x89, 3.1.1 3) rather than held.
//   - a login that succeeded within auth_cache_ttl is recognised without bcrypt:
//     the cache holds, per username, a keyed SHA-256 of the password (the key is
//     random per process, so the cache holds nothing a password can be tested
//     against elsewhere) and the bcrypt hash it was checked against, so that a
//     changed password_hash invalidates it at the next reload.

// Bounds of the throttle's and the cache's tables. A table that is full forgets its
// least recently used entry: a forgotten source starts again with a full burst, a
// forgotten login goes through bcrypt once more.
const (
	maxLoginSources = 16384 // about 100 bytes each
	maxLoginCache   = 10000 // about 200 bytes each
)

// busyAnswerGrace is how long the CONNACK refusing a login as busy may take to write:
// the connection's own deadline has passed by then.
const busyAnswerGrace = time.Second

// loginGuard is the adapter's: it outlives reloads, which only change its limits.
type loginGuard struct {
	checks  chan struct{} // one per bcrypt comparison running: bounds their CPU
	key     [32]byte      // the cache's HMAC key
	metrics *metrics

	mu      sync.Mutex
	sources *lru[string, *failureBucket]
	cache   *lru[loginKey, loginEntry]

	// compare is bcrypt.CompareHashAndPassword; tests hold it to keep checks under
	// way while they look.
	compare atomic.Pointer[func(hash, password []byte) error]
}

type loginKey struct {
	username string
	mac      [sha256.Size]byte
}

type loginEntry struct {
	hash    string    // the account's password_hash when the password matched it
	checked time.Time // when; the entry is good for auth_cache_ttl as it is now
}

func newLoginGuard(m *metrics) *loginGuard {
	g := &loginGuard{
		// Half the cores: a burst of logins must not take every core from the
		// readings.
		checks:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		metrics: m,
		sources: newLRU[string, *failureBucket](maxLoginSources),
		cache:   newLRU[loginKey, loginEntry](maxLoginCache),
	}
	_, _ = rand.Read(g.key[:]) // crypto/rand.Read does not fail
	compare := bcrypt.CompareHashAndPassword
	g.compare.Store(&compare)
	return g
}

// authenticate checks a CONNECT's credentials against the accounts in force; an
// empty username is anonymous. ctx is Run's.
func (g *loginGuard) authenticate(ctx context.Context, lv *live, cl *mochi.Client, pk packets.Packet) authResult {
	username, password := pk.Connect.Username, pk.Connect.Password
	if len(username) == 0 {
		if lv.auth.anonymous {
			return authOK
		}
		return authNotAuthorized
	}
	cfg := lv.cfg
	acc, known := lv.auth.users[string(username)]
	key := loginKey{username: string(username), mac: g.mac(password)}
	now := time.Now()
	if known && g.cached(key, acc, now, cfg.AuthCacheTTL) {
		return authOK
	}
	bucket := g.admit(sourceOf(cl.Net.Remote), cfg, now)
	if bucket == nil {
		g.metrics.authThrottled.Inc()
		return authThrottled
	}
	failed := true
	defer func() { g.done(bucket, failed, cfg) }()

	if c, ok := cl.Net.Conn.(*conn); ok && !c.connectBy.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.connectBy)
		defer cancel()
	}
	g.metrics.authQueue.Inc()
	select {
	case g.checks <- struct{}{}:
		g.metrics.authQueue.Dec()
		defer func() { <-g.checks }()
	case <-ctx.Done():
		g.metrics.authQueue.Dec()
		failed = false // not checked: not the source's failure
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return authBusy
		}
		return authCancelled
	}
	hash := dummyHash
	if known {
		hash = acc.hash
	}
	if err := (*g.compare.Load())(hash, password); err != nil || !known {
		return authBadCredentials
	}
	failed = false
	if ttl := cfg.AuthCacheTTL; ttl > 0 {
		g.mu.Lock()
		g.cache.put(key, loginEntry{hash: string(acc.hash), checked: time.Now()})
		g.mu.Unlock()
	}
	return authOK
}

func (g *loginGuard) mac(password []byte) (sum [sha256.Size]byte) {
	h := hmac.New(sha256.New, g.key[:])
	h.Write(password)
	h.Sum(sum[:0])
	return sum
}

// cached reports a login that succeeded within ttl with this password, against the
// account's password_hash as it still is.
func (g *loginGuard) cached(key loginKey, acc *account, now time.Time, ttl time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.cache.get(key)
	if !ok {
		return false
	}
	if now.Sub(e.checked) >= ttl || e.hash != string(acc.hash) {
		g.cache.remove(key)
		return false
	}
	return true
}

// failureBucket is a token bucket of failed logins for one source, with the checks
// under way held against it: a check is admitted only while a token is left for
// every check under way, so a flood of simultaneous CONNECTs gets no more checks
// than its burst. (golang.org/x/time/rate cannot give a token back once a check has
// succeeded, which is why this is not a rate.Limiter.)
type failureBucket struct {
	tokens  float64
	last    time.Time
	pending int
}

func (b *failureBucket) refill(cfg *Config, now time.Time) {
	burst := float64(cfg.AuthFailureBurst)
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() / cfg.AuthFailureInterval.Seconds()
	}
	b.tokens, b.last = min(b.tokens, burst), now
}

// admit returns the source's bucket with a check held against it, or nil when the
// source is throttled.
func (g *loginGuard) admit(source string, cfg *Config, now time.Time) *failureBucket {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.sources.get(source)
	if !ok {
		b = &failureBucket{tokens: float64(cfg.AuthFailureBurst), last: now}
		g.sources.put(source, b)
	}
	b.refill(cfg, now)
	if b.tokens-float64(b.pending) < 1 {
		return nil
	}
	b.pending++
	return b
}

// done ends a check admitted by admit; a failed one takes its token.
func (g *loginGuard) done(b *failureBucket, failed bool, cfg *Config) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b.pending--
	if failed {
		b.refill(cfg, time.Now())
		b.tokens = max(b.tokens-1, 0)
	}
}

// sourceOf is the throttle's key for a client's remote address: the IP, or for IPv6
// its /64, which one host commonly has whole.
func sourceOf(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// lru is a map of at most max entries that forgets the least recently used one. It
// is not safe for concurrent use.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry, most recent first
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: make(map[K]*list.Element)}
}

func (l *lru[K, V]) get(k K) (V, bool) {
	e, ok := l.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	l.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

func (l *lru[K, V]) put(k K, v V) {
	if e, ok := l.items[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		l.order.MoveToFront(e)
		return
	}
	if l.order.Len() >= l.max {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.items, oldest.Value.(*lruEntry[K, V]).key)
	}
	l.items[k] = l.order.PushFront(&lruEntry[K, V]{key: k, val: v})
}

func (l *lru[K, V]) remove(k K) {
	if e, ok := l.items[k]; ok {
		l.order.Remove(e)
		delete(l.items, k)
	}
}
