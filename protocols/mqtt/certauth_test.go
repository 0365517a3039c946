package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	etls "github.com/edgegate/edgegate/tls"
)

// mtls is an adapter with a plain listener (0) and a TLS listener that requires
// client certificates (1), its certificates from a Store checking every 20 ms.
type mtls struct {
	*env
	ca                *etls.CA
	dir               string
	certFile, keyFile string
}

func startMTLS(t *testing.T, edit func(*Config)) *mtls {
	t.Helper()
	ca, err := etls.NewCA("mqtt test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := &mtls{ca: ca, dir: t.TempDir()}
	m.certFile, m.keyFile = filepath.Join(m.dir, "server.crt"), filepath.Join(m.dir, "server.key")
	m.rotate(t)
	caFile := filepath.Join(m.dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.AllowAnonymous = false
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Type: "tls", Address: "127.0.0.1:0",
		TLS: &etls.Files{CertFile: m.certFile, KeyFile: m.keyFile, ClientCAFile: caFile}})
	if edit != nil {
		edit(cfg)
	}
	store, err := etls.NewStore(etls.StoreOptions{Interval: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		store.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	m.env = startEnv(t, cfg, protocols.Env{TLS: store})
	return m
}

// rotate writes a new server certificate over the files; it returns its serial.
func (m *mtls) rotate(t *testing.T) string {
	t.Helper()
	kp, err := m.ca.Issue(etls.Leaf{CommonName: "broker", Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{m.keyFile: kp.KeyPEM, m.certFile: kp.CertPEM} {
		if err := os.WriteFile(name+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".new", name); err != nil {
			t.Fatal(err)
		}
	}
	return kp.Cert.SerialNumber.String()
}

func (m *mtls) tlsAddr() string { return m.a.Addrs()[1].String() }

// cert issues a client certificate; identity spiffe://... goes in a URI SAN, any
// other in the CN.
func (m *mtls) cert(t *testing.T, identity string, ca *etls.CA) tls.Certificate {
	t.Helper()
	if ca == nil {
		ca = m.ca
	}
	l := etls.Leaf{CommonName: identity, Client: true}
	if strings.HasPrefix(identity, "spiffe://") {
		l = etls.Leaf{URIs: []string{identity}, Client: true}
	}
	kp, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return kp.TLS()
}

func (m *mtls) tlsConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: m.ca.Pool(), ServerName: "127.0.0.1", Certificates: certs}
}

// v5 connects an MQTT v5 client over the TLS listener.
func (m *mtls) v5(t *testing.T, id, user, pass string, certs ...tls.Certificate) (*client5, *paho.Connack, error) {
	t.Helper()
	var opts []func(*paho.Connect)
	if pass == "" {
		opts = append(opts, func(c *paho.Connect) { c.Password, c.PasswordFlag = nil, false })
	}
	return connect5Dial(t, func() (net.Conn, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: m.tlsConfig(certs...)}
		return d.Dial("tcp", m.tlsAddr())
	}, id, user, pass, opts...)
}

// v3 connects an MQTT 3.1.1 client over the TLS listener.
func (m *mtls) v3(t *testing.T, id string, certs ...tls.Certificate) (paho3.Client, error) {
	t.Helper()
	opts := paho3.NewClientOptions().AddBroker("tls://" + m.tlsAddr()).SetClientID(id).
		SetTLSConfig(m.tlsConfig(certs...)).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitTimeout)
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func TestCertificateLogin(t *testing.T) {
	m := startMTLS(t, func(c *Config) {
		c.Clients = []ClientConfig{{Identity: "spiffe://site/line-controller", Devices: []string{"oven-*"}}}
	})

	// The CN names the device.
	fryer, err := m.v3(t, "fryer-1", m.cert(t, "fryer-1", nil))
	if err != nil {
		t.Fatalf("certificate login: %v", err)
	}
	publish3(t, fryer, "devices/fryer-1/oil_temp", 1, "180.5")
	if got := m.next(1)[0]; got.Device != "fryer-1" || got.Point != "oil_temp" {
		t.Errorf("got %s/%s", got.Device, got.Point)
	}
	// Its write topic, and a write arrives there.
	writes := make(chan string, 1)
	if tok := fryer.Subscribe("devices/fryer-1/+/set", 1, func(_ paho3.Client, msg paho3.Message) { writes <- string(msg.Payload()) }); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe to its write topic: %v", tok.Error())
	}
	if err := m.hub.Write(context.Background(), "fryer-1", "setpoint", bridge.Double(175)); err != nil {
		t.Fatalf("write: %v", err)
	}
	select {
	case v := <-writes:
		if v != "175" {
			t.Errorf("write payload %q", v)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the write did not arrive")
	}

	// A SPIFFE ID's last segment names the device; another device's topics are
	// refused (v5: PUBACK 0x87, nothing delivered).
	c5, _, err := m.v5(t, "", "", "", m.cert(t, "spiffe://site/fryer-3", nil))
	if err != nil {
		t.Fatalf("SPIFFE certificate login: %v", err)
	}
	if resp, err := c5.publish(t, "devices/fryer-9/oil_temp", 1, "1"); err == nil && resp.ReasonCode < 0x80 {
		t.Errorf("publish on another device's topic: reason %#x", resp.ReasonCode)
	}
	if _, err := c5.publish(t, "devices/fryer-3/oil_temp", 1, "2"); err != nil {
		t.Fatal(err)
	}
	if got := m.next(1)[0]; got.Device != "fryer-3" {
		t.Fatalf("got %s, want fryer-3 (and nothing of fryer-9)", got.Device)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// paho reports the refused ones as an error, with the SUBACK.
	sa, _ := c5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/fryer-9/+/set", QoS: 1}, {Topic: "devices/#", QoS: 1}, {Topic: "devices/fryer-3/temp/set", QoS: 1}}})
	if sa == nil {
		t.Fatal("no SUBACK")
	}
	if r := sa.Reasons; len(r) != 3 || r[0] < 0x80 || r[1] < 0x80 || r[2] >= 0x80 {
		t.Errorf("SUBACK reasons %v: want others' and wildcard topics refused, its own write topic granted", r)
	}

	// A clients: entry grants devices by glob.
	ctl, _, err := m.v5(t, "", "", "", m.cert(t, "spiffe://site/line-controller", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.publish(t, "devices/oven-2", 1, `{"temp": 210, "door": false}`); err != nil {
		t.Fatal(err)
	}
	if got := m.next(2)[0]; got.Device != "oven-2" {
		t.Errorf("got %s", got.Device)
	}
	if resp, err := ctl.publish(t, "devices/line-controller/x", 1, "1"); err == nil && resp.ReasonCode < 0x80 {
		t.Error("a clients: entry also granted the device named like the identity")
	}
	if n := m.counter(m.a.metrics.aclDenied.WithLabelValues("publish")); n < 2 {
		t.Errorf("acl denials counted %v", n)
	}
}

// TestCertificateRefusals: no certificate, a foreign CA, an expired certificate,
// an identity that names no device and a user name that is not the certificate's
// are each refused, with a reason counted, and nothing reaches the bridge.
func TestCertificateRefusals(t *testing.T) {
	m := startMTLS(t, nil)
	other, err := etls.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expiredKP, err := m.ca.Issue(etls.Leaf{CommonName: "fryer-1", Client: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		certs  []tls.Certificate
		reason string
	}{
		{"no certificate", nil, refusedTLS},
		{"another CA", []tls.Certificate{m.cert(t, "fryer-1", other)}, refusedTLS},
		{"expired", []tls.Certificate{expiredKP.TLS()}, refusedTLS},
	} {
		before := m.counter(m.a.metrics.refused.WithLabelValues(c.reason))
		if _, _, err := m.v5(t, "", "", "", c.certs...); err == nil {
			t.Errorf("%s: connected", c.name)
		}
		m.waitFor(c.name+" counted", func() bool { return m.counter(m.a.metrics.refused.WithLabelValues(c.reason)) == before+1 })
	}
	// Identities that name no device: a CN with a slash, a SPIFFE ID ending in /.
	for _, id := range []string{"plant/fryer", "spiffe://site/"} {
		_, ca, err := m.v5(t, "", "", "", m.cert(t, id, nil))
		if err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Errorf("identity %q: %v (connack %+v), want not authorized", id, err, ca)
		}
	}
	if n := m.counter(m.a.metrics.refused.WithLabelValues(refusedNoDevice)); n != 2 {
		t.Errorf("no_device refusals %v", n)
	}
	// A user name that is not the certificate's, without a password.
	if _, ca, err := m.v5(t, "", "fryer-2", "", m.cert(t, "fryer-1", nil)); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Errorf("foreign user name: %v (connack %+v), want bad user name or password", err, ca)
	}
	// And the plain listener has no certificate logins: anonymous is off.
	if _, err := client3(t, m.addr(), "", "", ""); err == nil {
		t.Error("anonymous login on the plain listener")
	}
	// Nothing reached the bridge: the first reading after all that is a good
	// client's.
	good, err := m.v3(t, "fryer-1", m.cert(t, "fryer-1", nil))
	if err != nil {
		t.Fatal(err)
	}
	publish3(t, good, "devices/fryer-1/oil_temp", 1, "1")
	if got := m.next(1)[0]; got.Device != "fryer-1" {
		t.Errorf("first delivered: %s", got.Device)
	}
}

// TestPasswordLoginOverMTLS: a client with a certificate may still log in to an
// account by password, and then has the account's access lists.
func TestPasswordLoginOverMTLS(t *testing.T) {
	m := startMTLS(t, func(c *Config) {
		c.Users = []UserConfig{{Username: "site", PasswordHash: hash(t, "pw"), Publish: []string{"devices/#"}}}
	})
	c, _, err := m.v5(t, "", "site", "pw", m.cert(t, "fryer-1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.publish(t, "devices/boiler-7/temp", 1, "1"); err != nil {
		t.Fatal(err)
	}
	if got := m.next(1)[0]; got.Device != "boiler-7" {
		t.Errorf("got %s", got.Device)
	}
}

// TestMQTTListenerRotation: a new certificate on the TLS listener is presented to
// new connections while a client connected before keeps publishing.
func TestMQTTListenerRotation(t *testing.T) {
	m := startMTLS(t, nil)
	old, err := m.v3(t, "fryer-1", m.cert(t, "fryer-1", nil))
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, err := tls.Dial("tcp", m.tlsAddr(), m.tlsConfig(m.cert(t, "probe", nil)))
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	next := m.rotate(t)
	m.waitFor("the rotated certificate", func() bool { return serial() == next })
	publish3(t, old, "devices/fryer-1/oil_temp", 1, "181")
	if got := m.next(1)[0]; got.Device != "fryer-1" {
		t.Errorf("got %s", got.Device)
	}
}

// TestMosquittoPubCertificate publishes with Debian's mosquitto_pub, logged in by
// its client certificate (--cafile --cert --key) on the TLS listener.
func TestMosquittoPubCertificate(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub is not installed (Debian package mosquitto-clients)")
	}
	m := startMTLS(t, nil)
	kp, err := m.ca.Issue(etls.Leaf{CommonName: "fryer-5", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(m.dir, "client.crt"), filepath.Join(m.dir, "client.key")
	if err := kp.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(m.tlsAddr())
	pub := func(topic, msg string, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		base := []string{"-h", host, "-p", port, "--cafile", filepath.Join(m.dir, "ca.crt"), "-V", "mqttv5", "-q", "1", "-t", topic, "-m", msg}
		return exec.CommandContext(ctx, bin, append(base, args...)...).CombinedOutput()
	}
	if out, err := pub("devices/fryer-5/oil_temp", "179.5", "--cert", certFile, "--key", keyFile); err != nil {
		t.Fatalf("mosquitto_pub --cert: %v: %s", err, out)
	}
	if got := m.next(1)[0]; got.Device != "fryer-5" || !got.Value.Equal(bridge.Double(179.5)) {
		t.Errorf("got %s = %v", got.Device, got.Value)
	}
	// Without a certificate the handshake fails: mosquitto_pub exits non-zero.
	if out, err := pub("devices/fryer-5/oil_temp", "1"); err == nil {
		t.Errorf("mosquitto_pub without a certificate succeeded: %s", out)
	}
	// Another device's topic: refused, nothing delivered.
	pub("devices/fryer-6/oil_temp", "2", "--cert", certFile, "--key", keyFile)
	if out, err := pub("devices/fryer-5/oil_temp", "3", "--cert", certFile, "--key", keyFile); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	if got := m.next(1)[0]; got.Device != "fryer-5" || !got.Value.Equal(bridge.Int(3)) {
		t.Errorf("got %s = %v; want fryer-5 = 3 and nothing of fryer-6", got.Device, got.Value)
	}
}

func TestClientsConfigValidate(t *testing.T) {
	cfg := NewConfig()
	cfg.Clients = []ClientConfig{{Identity: "a"}, {Identity: "[x", Devices: []string{"d"}}, {Identity: "b", Devices: []string{"a/b"}}}
	errs := cfg.Validate()
	joined := errors.Join(errs...).Error()
	for _, want := range []string{`client "a": devices: at least one`, `client "[x": identity: bad glob`, `client "b": devices[0]`, "no tls listener has client_ca_file"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no problem says %q:\n%s", want, joined)
		}
	}
}

// FuzzCertACL feeds the certificate logins' access checks arbitrary identities and
// topic filters: no panic, and whatever is allowed is a write topic of the device
// the identity names, or a reading on one.
func FuzzCertACL(f *testing.F) {
	topics, err := newTopicMap([]TopicConfig{{Pattern: DefaultTopic}})
	if err != nil {
		f.Fatal(err)
	}
	a := newAuthorizer(&Config{Clients: []ClientConfig{{Identity: "ctl-*", Devices: []string{"oven-*"}}}})
	for _, s := range [][2]string{
		{"fryer-1", "devices/fryer-1/+/set"}, {"spiffe://site/fryer-1", "devices/fryer-1/oil/set"},
		{"ctl-1", "devices/oven-2/t"}, {"x", "devices/x/#"}, {"a*b", "devices/a*b/p"}, {"", "$share/g/devices/x/+/set"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, identity, filter string) {
		devices := a.certDevices(identity)
		if a.allowCertRead(identity, filter) {
			levels := strings.Split(unshare(filter), "/")
			if len(levels) != 4 || levels[0] != "devices" || levels[3] != "set" || !matchDevice(devices, levels[1]) {
				t.Fatalf("identity %q may read %q", identity, filter)
			}
		}
		if a.allowCertPublish(identity, topics, filter) {
			m := topics.match(filter)
			if (m.kind != topicPoint && m.kind != topicObject) || !matchDevice(devices, m.device) {
				t.Fatalf("identity %q may publish on %q", identity, filter)
			}
		}
	})
}
