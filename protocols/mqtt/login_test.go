package mqtt

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// checkHold replaces the adapter's bcrypt comparison: it counts the comparisons, and
// holds those of one password until the test releases them (at the latest when it
// ends, before the adapter stops), so that the test decides what is under way.
type checkHold struct {
	count   atomic.Int64
	entered chan struct{} // one per held comparison that started
	release chan struct{}
	once    sync.Once
}

func holdChecks(t *testing.T, e *env, hold string) *checkHold {
	h := &checkHold{entered: make(chan struct{}, 1000), release: make(chan struct{})}
	compare := func(hash, password []byte) error {
		h.count.Add(1)
		if hold != "" && string(password) == hold {
			h.entered <- struct{}{}
			<-h.release
		}
		return bcrypt.CompareHashAndPassword(hash, password)
	}
	e.a.logins.compare.Store(&compare)
	t.Cleanup(h.free)
	return h
}

func (h *checkHold) free() { h.once.Do(func() { close(h.release) }) }

// waitEntered waits for n held comparisons to have started.
func (h *checkHold) waitEntered(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-h.entered:
		case <-time.After(waitTimeout):
			t.Fatal("the password checks did not start")
		}
	}
}

// dialFrom dials addr from the loopback address src (127.0.0.2 is another source).
func dialFrom(src, addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) {
		d := net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return d.Dial("tcp", addr)
	}
}

// connackAsync connects in a goroutine of the test's and sends the CONNACK code on the
// channel (0xff when the connection closed without one).
//
// recvCode takes one code from such a channel, within waitTimeout.
func connackAsync(t *testing.T, wg *sync.WaitGroup, out chan<- byte, version byte, dial func() (net.Conn, error), user, pass string) {
	c := dialRaw(t, version, dial)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := c.conn.Write(c.connectPacket("", user, pass, true)); err != nil {
			out <- 0xff
			return
		}
		typ, body, err := readPacket(c.r)
		if err != nil || typ != 0x20 || len(body) < 2 {
			out <- 0xff
			return
		}
		out <- body[1]
	}()
}

func recvCode(t *testing.T, codes <-chan byte) byte {
	t.Helper()
	select {
	case c := <-codes:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no CONNACK")
		return 0
	}
}

func loginConfig(t *testing.T) *Config {
	cfg := authConfig(t)
	cfg.AuthFailureBurst = 5
	cfg.AuthFailureInterval = 1 << 40 // no refill while the test runs
	return cfg
}

// TestFailedLoginsThrottledBeforeBcrypt is issue 19.6: 300 CONNECTs with wrong
// passwords delayed a legitimate login by 18.5 s. One source gets auth_failure_burst
// password checks; the rest of its flood is refused without one, and goes on being
// refused without one while a login from another source completes.
func TestFailedLoginsThrottledBeforeBcrypt(t *testing.T) {
	e := start(t, loginConfig(t))
	checks := holdChecks(t, e, "wrong")
	attacker := dialFrom("127.0.0.1", e.addr())

	// 60 at once. The 5 checks admitted are held (running, or waiting for one of
	// the slots that the running ones hold) until every other CONNECT of the flood
	// has been answered: those were refused without waiting for a check.
	const flood = 60
	codes := make(chan byte, flood)
	var wg sync.WaitGroup
	for range flood {
		connackAsync(t, &wg, codes, 5, attacker, "pos-1", "wrong")
	}
	running := min(5, cap(e.a.logins.checks))
	checks.waitEntered(t, running)
	for range flood - 5 {
		if code := recvCode(t, codes); code != 0x9f {
			t.Fatalf("a throttled CONNECT got CONNACK %#x, want 0x9f", code)
		}
	}
	checks.free()
	wg.Wait()
	for range 5 {
		if code := recvCode(t, codes); code != 0x86 {
			t.Errorf("a checked wrong password got CONNACK %#x, want 0x86", code)
		}
	}
	if n := e.counter(e.a.metrics.authThrottled); n != flood-5 {
		t.Errorf("throttled: %v, want %d", n, flood-5)
	}

	// The flood goes on, each CONNECT refused without a check (3.1.1: code 3),
	// until a legitimate login from another source has completed.
	legit := make(chan byte, 1)
	connackAsync(t, &wg, legit, 5, dialFrom("127.0.0.2", e.addr()), "pos-1", "s3cret")
	var more int
flood:
	for {
		select {
		case code := <-legit:
			if code != 0 {
				t.Errorf("login from another source during the flood: CONNACK %#x", code)
			}
			break flood
		default:
		}
		if code, _ := dialRaw(t, 4, attacker).connect("", "pos-1", "wrong", true); code != 3 {
			t.Fatalf("3.1.1 throttled CONNECT: CONNACK %#x, want 3", code)
		}
		more++
	}
	wg.Wait()
	if got := checks.count.Load(); got != 5+1 {
		t.Errorf("%d password checks, want the 5 of the burst and the legitimate one (the flood sent %d more)", got, more)
	}

	// The throttled source itself: a password not yet checked is not checked; the
	// one just checked from the other source is known, and needs no check.
	if code, _ := dialRaw(t, 5, attacker).connect("", "reader", "r", true); code != 0x9f {
		t.Errorf("an unchecked login from the throttled source: CONNACK %#x, want 0x9f", code)
	}
	if code, _ := dialRaw(t, 5, attacker).connect("", "pos-1", "s3cret", true); code != 0 {
		t.Errorf("a known login from the throttled source: CONNACK %#x, want 0", code)
	}
	if got := checks.count.Load(); got != 6 {
		t.Errorf("%d password checks, want still 6", got)
	}
}

// TestKnownLoginSkipsTheQueue: with every password check held by a flood, a client
// that logged in recently connects at once (the flood's checks are released only
// after it did), and a new one waits only until connect_timeout, then is refused as
// busy.
func TestKnownLoginSkipsTheQueue(t *testing.T) {
	cfg := authConfig(t)
	cfg.AuthFailureBurst = 1000
	e := start(t, cfg)
	checks := holdChecks(t, e, "wrong")
	if code, _ := dialRaw(t, 5, dialTCP(e.addr())).connect("", "pos-1", "s3cret", true); code != 0 {
		t.Fatalf("first login: CONNACK %#x", code)
	}

	slots := cap(e.a.logins.checks)
	codes := make(chan byte, slots+3)
	var wg sync.WaitGroup
	for range slots + 3 {
		connackAsync(t, &wg, codes, 5, dialTCP(e.addr()), "pos-1", "wrong")
	}
	checks.waitEntered(t, slots)
	e.waitFor("3 CONNECTs waiting for a check", func() bool { return e.counter(e.a.metrics.authQueue) == 3 })

	for _, version := range []byte{4, 5} {
		if code, _ := dialRaw(t, version, dialTCP(e.addr())).connect("", "pos-1", "s3cret", true); code != 0 {
			t.Errorf("v%d: known login while the checks are held: CONNACK %#x", version, code)
		}
	}
	if len(codes) != 0 {
		t.Fatalf("a held check finished")
	}
	checks.free()
	wg.Wait()
	if got := checks.count.Load(); got != int64(1+slots+3) {
		t.Errorf("%d password checks, want %d", got, 1+slots+3)
	}
}

func TestPasswordCheckWaitBoundedByConnectTimeout(t *testing.T) {
	cfg := authConfig(t)
	cfg.AuthFailureBurst = 1000
	cfg.ConnectTimeout = time.Second // long enough to send CONNECT on a loaded machine
	e := start(t, cfg)
	checks := holdChecks(t, e, "wrong")
	slots := cap(e.a.logins.checks)
	codes := make(chan byte, slots)
	var wg sync.WaitGroup
	for range slots {
		connackAsync(t, &wg, codes, 5, dialTCP(e.addr()), "pos-1", "wrong")
	}
	checks.waitEntered(t, slots)

	// Nothing is remembered for reader: it waits for a check that cannot start.
	for version, want := range map[byte]byte{5: 0x89, 4: 3} {
		if code, _ := dialRaw(t, version, dialTCP(e.addr())).connect("", "reader", "r", true); code != want {
			t.Errorf("v%d: CONNECT whose check waited past connect_timeout: CONNACK %#x, want %#x", version, code, want)
		}
	}
	if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedBusy)); n != 2 {
		t.Errorf("refused as busy: %v, want 2", n)
	}
	if n := e.counter(e.a.metrics.authQueue); n != 0 {
		t.Errorf("auth queue %v after the waits ended", n)
	}
	checks.free()
	wg.Wait()
}

// TestLoginCache: a known login skips bcrypt until its account's password_hash
// changes, and with auth_cache_ttl 0 nothing is remembered.
func TestLoginCache(t *testing.T) {
	cfg := authConfig(t)
	e := start(t, cfg)
	checks := holdChecks(t, e, "")
	login := func(pass string) byte {
		code, _ := dialRaw(t, 5, dialTCP(e.addr())).connect("", "pos-1", pass, true)
		return code
	}
	expect := func(pass string, code byte, checked int64) {
		t.Helper()
		if got := login(pass); got != code {
			t.Errorf("login with %q: CONNACK %#x, want %#x", pass, got, code)
		}
		if got := checks.count.Load(); got != checked {
			t.Errorf("after login with %q: %d checks, want %d", pass, got, checked)
		}
	}
	expect("s3cret", 0, 1)
	expect("s3cret", 0, 1) // remembered
	expect("wrong", 0x86, 2)

	next := *cfg
	next.Users = append([]UserConfig(nil), cfg.Users...)
	next.Users[0].PasswordHash = hash(t, "n3w")
	if err := e.a.Reconfigure(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	expect("s3cret", 0x86, 3) // forgotten with the old hash
	expect("n3w", 0, 4)
	expect("n3w", 0, 4)

	noCache := next
	noCache.AuthCacheTTL = 0
	if err := e.a.Reconfigure(context.Background(), &noCache); err != nil {
		t.Fatal(err)
	}
	expect("n3w", 0, 5)
	expect("n3w", 0, 6)
}

func TestSourceOf(t *testing.T) {
	for remote, want := range map[string]string{
		"127.0.0.1:1883":             "127.0.0.1",
		"[::ffff:10.0.0.7]:5000":     "10.0.0.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"pipe":                       "pipe",
	} {
		if got := sourceOf(remote); got != want {
			t.Errorf("sourceOf(%q) = %q, want %q", remote, got, want)
		}
	}
}

func TestLRUForgetsTheLeastRecentlyUsed(t *testing.T) {
	l := newLRU[string, int](2)
	l.put("a", 1)
	l.put("b", 2)
	l.get("a")
	l.put("c", 3)
	if _, ok := l.get("b"); ok {
		t.Error("b, the least recently used, was kept")
	}
	if v, ok := l.get("a"); !ok || v != 1 {
		t.Error("a was forgotten")
	}
	if len(l.items) != 2 || l.order.Len() != 2 {
		t.Errorf("%d items", len(l.items))
	}
}
