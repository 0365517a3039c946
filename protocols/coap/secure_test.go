package coap

import (
	"crypto/tls"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/edgegate/edgegate/bridge"
)

// TestDTLSPSK: identities write the device named like them, or those their devices
// list names; others are 4.03; an unknown identity or a wrong key does not get a
// session; observe and write work over DTLS.
func TestDTLSPSK(t *testing.T) {
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", PSK: []PSKConfig{
		{Identity: "sensor-7", KeyFile: writeKey(t, "secret-7")},
		{Identity: "gw-1", KeyFile: writeKey(t, "secret-gw"), Devices: []string{"line-?", "oven"}},
	}}}
	cfg.HandshakeTimeout = time.Second // for the refused handshakes, which end by timing out
	e := start(t, cfg)
	addr := e.addr(0)

	s7, err := dialDTLS(t, addr, pskOptions("sensor-7", []byte("secret-7"))...)
	if err != nil {
		t.Fatalf("dial sensor-7: %v", err)
	}
	if code, diag := post(t, s7, "/devices/sensor-7/temp", message.TextPlain, []byte("21")); code != codes.Changed {
		t.Fatalf("sensor-7 writes sensor-7: %v %q", code, diag)
	}
	m := e.next(1)[0]
	if m.Device != "sensor-7" || m.Labels[labelPeer] != "sensor-7" {
		t.Errorf("got %s with labels %v", m.Device, m.Labels)
	}
	if code, _ := post(t, s7, "/devices/sensor-8/temp", message.TextPlain, []byte("21")); code != codes.Forbidden {
		t.Errorf("sensor-7 writes sensor-8: %v, want 4.03", code)
	}
	if code, _, _ := get(t, s7, "/devices/sensor-8/temp"); code != codes.Forbidden {
		t.Errorf("sensor-7 reads sensor-8: %v, want 4.03", code)
	}

	gw, err := dialDTLS(t, addr, pskOptions("gw-1", []byte("secret-gw"))...)
	if err != nil {
		t.Fatalf("dial gw-1: %v", err)
	}
	for path, want := range map[string]codes.Code{
		"/devices/line-1/p": codes.Changed, "/devices/oven/p": codes.Changed,
		"/devices/line-12/p": codes.Forbidden, "/devices/gw-1/p": codes.Forbidden,
	} {
		if code, _ := post(t, gw, path, message.TextPlain, []byte("1")); code != want {
			t.Errorf("gw-1 writes %s: %v, want %v", path, code, want)
		}
	}
	e.next(2)

	// The wrong key or an unknown identity: no session (the handshake fails).
	if _, err := dialDTLS(t, addr, pskOptions("sensor-7", []byte("wrong"))...); err == nil {
		t.Error("a wrong key completed a handshake")
	}
	if _, err := dialDTLS(t, addr, pskOptions("nobody", []byte("x"))...); err == nil {
		t.Error("an unknown identity completed a handshake")
	}
	waitFor(t, "two failed handshakes", func() bool {
		return metric(t, e.a.metrics.refused.WithLabelValues("dtls", refusedHandshake)) >= 2
	})
	e.none()

	// Observe and write over DTLS; the notification is confirmable.
	notes := make(chan string, 4)
	obs, err := s7.Observe(ctxT(t), "/devices/sensor-7/setpoint", func(m *pool.Message) {
		if b, _ := m.ReadBody(); len(b) > 0 {
			notes <- string(b)
		}
	})
	if err != nil || obs.Canceled() {
		t.Fatalf("observe: %v", err)
	}
	if err := e.a.Write(ctxT(t), "sensor-7", "setpoint", bridge.Int(19)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := <-notes; got != "19" {
		t.Errorf("notification %q", got)
	}
	_ = obs.Cancel(ctxT(t))
	if n := metric(t, e.a.metrics.sessions.WithLabelValues("dtls")); n < 2 {
		t.Errorf("dtls sessions gauge %v, want at least 2", n)
	}
}

// TestDTLSCertificates: a client certificate's identity (here its common name) is the peer's; a
// clients entry widens it.
func TestDTLSCertificates(t *testing.T) {
	p := newPKI(t)
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", TLS: p.serverFiles(t, true),
		Clients: []ClientConfig{{Identity: "plant-gw", Devices: []string{"plant-?"}}}}}
	e := start(t, cfg)
	dial := func(cn string) coapClient {
		t.Helper()
		c, err := dialDTLS(t, e.addr(0), piondtls.WithCertificates(p.clientCert(t, cn)), piondtls.WithRootCAs(p.pool),
			piondtls.WithServerName("localhost"))
		if err != nil {
			t.Fatalf("dial as %s: %v", cn, err)
		}
		return c
	}
	meter := dial("meter-3")
	if code, diag := post(t, meter, "/devices/meter-3/kwh", message.TextPlain, []byte("12.5")); code != codes.Changed {
		t.Fatalf("meter-3 writes meter-3: %v %q", code, diag)
	}
	if m := e.next(1)[0]; m.Labels[labelPeer] != "meter-3" {
		t.Errorf("identity label %q", m.Labels[labelPeer])
	}
	if code, _ := post(t, meter, "/devices/meter-4/kwh", message.TextPlain, []byte("1")); code != codes.Forbidden {
		t.Errorf("meter-3 writes meter-4: %v, want 4.03", code)
	}
	gw := dial("plant-gw")
	if code, _ := post(t, gw, "/devices/plant-a/x", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Errorf("plant-gw writes plant-a: %v", code)
	}
	if code, _ := post(t, gw, "/devices/plant-gw/x", message.TextPlain, []byte("1")); code != codes.Forbidden {
		t.Errorf("plant-gw writes itself, outside its list: %v, want 4.03", code)
	}
	e.next(1)

	// A certificate from another CA gets no session.
	other := newPKI(t)
	if _, err := dialDTLS(t, e.addr(0), piondtls.WithCertificates(other.clientCert(t, "meter-3")), piondtls.WithRootCAs(p.pool),
		piondtls.WithServerName("localhost")); err == nil {
		t.Error("a certificate of another CA completed a handshake")
	}
	e.none()
}

// TestDTLSWithoutIdentity: on a listener with pre-shared keys and a server
// certificate, a client that shakes hands with the certificate alone has no
// identity: 4.01.
func TestDTLSWithoutIdentity(t *testing.T) {
	p := newPKI(t)
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", TLS: p.serverFiles(t, false),
		PSK: []PSKConfig{{Identity: "s1", KeyFile: writeKey(t, "k")}}}}
	e := start(t, cfg)
	c, err := dialDTLS(t, e.addr(0), piondtls.WithRootCAs(p.pool), piondtls.WithServerName("localhost"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if code, _ := post(t, c, "/devices/s1/x", message.TextPlain, []byte("1")); code != codes.Unauthorized {
		t.Errorf("no identity: %v, want 4.01", code)
	}
	e.none()
}

// TestTLS serves CoAP over TLS, with and without client certificates.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{
		{Type: "tls", Address: "127.0.0.1:0", TLS: p.serverFiles(t, false)},
		{Type: "tls", Address: "127.0.0.1:0", TLS: p.serverFiles(t, true)},
	}
	e := start(t, cfg)
	anon := dialTCP(t, e.addr(0), &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if code, diag := post(t, anon, "/devices/any/x", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Fatalf("TLS without client certificates: %v %q", code, diag)
	}
	if m := e.next(1)[0]; m.Labels[labelPeer] != "" {
		t.Errorf("identity label %q without a certificate", m.Labels[labelPeer])
	}
	cert := p.clientCert(t, "robot-2")
	mtls := dialTCP(t, e.addr(1), &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	if code, diag := post(t, mtls, "/devices/robot-2/x", message.TextPlain, []byte("2")); code != codes.Changed {
		t.Fatalf("mutual TLS, own device: %v %q", code, diag)
	}
	if m := e.next(1)[0]; m.Labels[labelPeer] != "robot-2" {
		t.Errorf("identity label %q", m.Labels[labelPeer])
	}
	if code, _ := post(t, mtls, "/devices/robot-3/x", message.TextPlain, []byte("2")); code != codes.Forbidden {
		t.Errorf("mutual TLS, other device: %v, want 4.03", code)
	}
	e.none()
	if n := metric(t, e.a.metrics.sessions.WithLabelValues("tls")); n != 2 {
		t.Errorf("tls sessions %v, want 2", n)
	}
}
