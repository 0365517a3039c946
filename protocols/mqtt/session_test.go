package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/edgegate/edgegate/bridge"
)

// sessionConfig has pos-1 and pos-2, each allowed its own topics only.
func sessionConfig(t *testing.T) *Config {
	cfg := authConfig(t)
	cfg.Users = append(cfg.Users, UserConfig{Username: "pos-2", PasswordHash: hash(t, "pw2"),
		Publish: []string{"devices/pos-2/#"}, Subscribe: []string{"devices/pos-2/+/set"}})
	return cfg
}

// idRefused is the CONNACK code for a refused client id.
func idRefused(version byte) byte {
	if version == 5 {
		return 0x85
	}
	return 0x02
}

// awaySession connects as owner with client id, subscribes to filter and disconnects,
// leaving a persistent session in the broker.
func awaySession(t *testing.T, e *env, version byte, dial func() (net.Conn, error), id, user, pass, filter string) {
	t.Helper()
	c := dialRaw(t, version, dial)
	if code, _ := c.connect(id, user, pass, false); code != 0 {
		t.Fatalf("%s connects: CONNACK %#x", id, code)
	}
	if got := c.subscribe(filter, 1); got != 1 {
		t.Fatalf("%s subscribes to %s: SUBACK %#x", id, filter, got)
	}
	c.disconnect()
	e.waitFor(id+"'s session kept, its client gone", func() bool {
		cl, ok := e.a.srv.Load().Clients.Get(id)
		return ok && cl.Closed()
	})
}

// tryThief connects with another login and the owner's client id: it must be refused,
// and must not see what was queued for the owner.
func tryThief(t *testing.T, version byte, dial func() (net.Conn, error), id, user, pass string, clean bool) {
	t.Helper()
	c := dialRaw(t, version, dial)
	code, present := c.connect(id, user, pass, clean)
	if code == 0 {
		t.Errorf("%q took client id %s (clean %v, session present %v); it received %v", user, id, clean, present, c.publishesUntilPing())
		return
	}
	if code != idRefused(version) || present {
		t.Errorf("%q with client id %s: CONNACK %#x, session present %v; want %#x", user, id, code, present, idRefused(version))
	}
	expectClosed(t, c.r, "refused CONNECT")
}

// expectQueued reconnects the owner and checks that its session holds what was
// queued for it, and nothing else.
func expectQueued(t *testing.T, version byte, dial func() (net.Conn, error), id, user, pass string, want ...rawPublish) *rawClient {
	t.Helper()
	c := dialRaw(t, version, dial)
	code, present := c.connect(id, user, pass, false)
	if code != 0 || !present {
		t.Fatalf("%s reconnects: CONNACK %#x, session present %v", id, code, present)
	}
	if got := c.publishesUntilPing(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s got %v, want %v", id, got, want)
	}
	return c
}

// TestClientIDTakeover is issue 19.2: pos-1 connected with client id pos-2 and clean
// session off, disconnected the real pos-2, inherited its session and received the
// unlock code a workload wrote for pos-2.
func TestClientIDTakeover(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			e := start(t, sessionConfig(t))
			dial := dialTCP(e.addr())
			awaySession(t, e, version, dial, "pos-2", "pos-2", "pw2", "devices/pos-2/+/set")
			if err := e.a.Write(context.Background(), "pos-2", "unlock_code", bridge.String("987654")); err != nil {
				t.Fatal(err)
			}
			tryThief(t, version, dial, "pos-2", "pos-1", "s3cret", false)
			tryThief(t, version, dial, "pos-2", "pos-1", "s3cret", true) // would wipe the session
			owner := expectQueued(t, version, dial, "pos-2", "pos-2", "pw2", rawPublish{"devices/pos-2/unlock_code/set", "987654"})

			// Connected, the owner is not disconnected by another identity either.
			tryThief(t, version, dial, "pos-2", "pos-1", "s3cret", false)
			if got := owner.publishesUntilPing(); len(got) != 0 {
				t.Errorf("owner got %v", got)
			}
			// The owner's own takeover (a device reconnecting) still works.
			again := dialRaw(t, version, dial)
			if code, present := again.connect("pos-2", "pos-2", "pw2", false); code != 0 || !present {
				t.Errorf("owner's second connection: CONNACK %#x, session present %v", code, present)
			}
			if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedClientIDTaken)); n != 3 {
				t.Errorf("refused for a taken client id: %v, want 3", n)
			}
		})
	}
}

// TestClientIDTakeoverByCertificate: a certificate for another device, or a password
// login, cannot take a certificate login's session, and the other way round.
func TestClientIDTakeoverByCertificate(t *testing.T) {
	m := startMTLS(t, func(c *Config) { c.Users = sessionConfig(t).Users })
	tlsDial := func(cert tls.Certificate) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: m.tlsConfig(cert)}
			return d.Dial("tcp", m.tlsAddr())
		}
	}
	fryer1, fryer2 := tlsDial(m.cert(t, "fryer-1", nil)), tlsDial(m.cert(t, "fryer-2", nil))
	plain := dialTCP(m.addr())

	awaySession(t, m.env, 4, fryer2, "fryer-2", "", "", "devices/fryer-2/+/set")
	if err := m.a.Write(context.Background(), "fryer-2", "unlock_code", bridge.String("987654")); err != nil {
		t.Fatal(err)
	}
	for _, version := range []byte{4, 5} {
		tryThief(t, version, fryer1, "fryer-2", "", "", false)           // another certificate
		tryThief(t, version, plain, "fryer-2", "pos-1", "s3cret", false) // a password login
		tryThief(t, version, tlsDial(m.cert(t, "fryer-1", nil)), "fryer-2", "pos-1", "s3cret", false)
	}
	expectQueued(t, 4, fryer2, "fryer-2", "", "", rawPublish{"devices/fryer-2/unlock_code/set", "987654"})

	// A password login's session is not a certificate's to take either, even one
	// whose identity is the username.
	awaySession(t, m.env, 5, plain, "pos-1", "pos-1", "s3cret", "devices/pos-1/+/set")
	tryThief(t, 5, tlsDial(m.cert(t, "pos-1", nil)), "pos-1", "", "", false)
	expectQueued(t, 5, plain, "pos-1", "pos-1", "s3cret")
}

func TestClientIDPattern(t *testing.T) {
	m := startMTLS(t, func(c *Config) {
		c.Users = sessionConfig(t).Users
		c.ClientID = "{username}-*"
	})
	plain := dialTCP(m.addr())
	for _, version := range []byte{4, 5} {
		ok := []struct{ id, user, pass string }{
			{"pos-1-a", "pos-1", "s3cret"},
			{"", "pos-1", "s3cret"}, // the broker assigns an id
		}
		for _, c := range ok {
			r := dialRaw(t, version, plain)
			if code, _ := r.connect(c.id, c.user, c.pass, true); code != 0 {
				t.Errorf("v%d: %q as %q: CONNACK %#x", version, c.id, c.user, code)
			}
		}
		for _, id := range []string{"pos-1", "pos-2-a", "x-pos-1-a"} {
			r := dialRaw(t, version, plain)
			if code, _ := r.connect(id, "pos-1", "s3cret", true); code != idRefused(version) {
				t.Errorf("v%d: %q as pos-1: CONNACK %#x, want %#x", version, id, code, idRefused(version))
			}
		}
		// A certificate login: its identity stands for {username}.
		cert := func() (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: m.tlsConfig(m.cert(t, "fryer-1", nil))}
			return d.Dial("tcp", m.tlsAddr())
		}
		if code, _ := dialRaw(t, version, cert).connect("fryer-1-main", "", "", true); code != 0 {
			t.Errorf("v%d: certificate fryer-1 as fryer-1-main: CONNACK %#x", version, code)
		}
		if code, _ := dialRaw(t, version, cert).connect("fryer-2-main", "", "", true); code != idRefused(version) {
			t.Errorf("v%d: certificate fryer-1 as fryer-2-main: CONNACK %#x", version, code)
		}
	}
	if n := m.counter(m.a.metrics.refused.WithLabelValues(refusedClientIDPattern)); n != 8 {
		t.Errorf("refused for the pattern: %v, want 8", n)
	}
}

// TestQueuedMessagesCheckedOnDelivery: the messages a session kept are checked against
// the access list of the client they go to when it comes back, here narrowed by a
// reload while the client was away.
func TestQueuedMessagesCheckedOnDelivery(t *testing.T) {
	cfg := sessionConfig(t)
	e := start(t, cfg)
	dial := dialTCP(e.addr())
	awaySession(t, e, 5, dial, "pos-2", "pos-2", "pw2", "devices/pos-2/+/set")
	for point, v := range map[string]string{"unlock_code": "987654", "temp": "21"} {
		if err := e.a.Write(context.Background(), "pos-2", point, bridge.String(v)); err != nil {
			t.Fatal(err)
		}
	}
	next := *cfg
	next.Users = append([]UserConfig(nil), cfg.Users...)
	next.Users[2].Subscribe = []string{"devices/pos-2/temp/set"}
	if err := e.a.Reconfigure(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	expectQueued(t, 5, dial, "pos-2", "pos-2", "pw2", rawPublish{"devices/pos-2/temp/set", "21"})
	if n := e.counter(e.a.metrics.aclDenied.WithLabelValues(actionQueued)); n != 1 {
		t.Errorf("queued messages dropped: %v, want 1", n)
	}
}

// TestClaimsRace: of two identities that claim a new client id at once, before mochi
// registered either, the second is refused; once the first connection ended without a
// session, the id is free.
func TestClaimsRace(t *testing.T) {
	srv := mochi.New(nil)
	var s sessions
	client := func(id string) (*mochi.Client, *conn) {
		p1, p2 := net.Pipe()
		t.Cleanup(func() { _, _ = p1.Close(), p2.Close() })
		c := &conn{Conn: p1}
		cl := srv.NewClient(c, "test", id, false)
		cl.ID = id
		return cl, c
	}
	a, ca := client("pos-2")
	b, _ := client("pos-2")
	if !s.claim(srv, a, userOwner([]byte("pos-2"))) {
		t.Fatal("first claim refused")
	}
	if s.claim(srv, b, userOwner([]byte("pos-1"))) {
		t.Fatal("another identity's claim on a pending id accepted")
	}
	same, _ := client("pos-2")
	if !s.claim(srv, same, userOwner([]byte("pos-2"))) {
		t.Fatal("the same identity's second claim refused")
	}
	s.settled(ca) // not the latest claim: no effect
	if s.claim(srv, b, userOwner([]byte("pos-1"))) {
		t.Fatal("claim accepted while the same identity's second claim is pending")
	}
	s.settled(same.Net.Conn.(*conn))
	if !s.claim(srv, b, userOwner([]byte("pos-1"))) {
		t.Fatal("the id stayed claimed after the connections ended")
	}
	if len(s.pending) != 1 {
		t.Errorf("pending claims: %d", len(s.pending))
	}
}
