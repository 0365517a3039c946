package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testStore is a Store checking every 20 ms, running until the test ends.
func testStore(t *testing.T, reg prometheus.Registerer, run bool) *Store {
	t.Helper()
	s, err := NewStore(StoreOptions{Interval: 20 * time.Millisecond, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Run(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			wg.Wait()
		})
	}
	return s
}

// servedSerial handshakes with addr and returns the serial of the certificate the
// server presented.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	c, err := dial(t, addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestRotationFileReplaced(t *testing.T) {
	for _, run := range []bool{true, false} {
		name := "store running"
		if !run {
			name = "checked at handshakes"
		}
		t.Run(name, func(t *testing.T) {
			p := newPKI(t, "ca")
			certFile, keyFile, first := p.server()
			reg := prometheus.NewRegistry()
			store := testStore(t, reg, run)
			src, err := store.Source(&Files{CertFile: certFile, KeyFile: keyFile})
			if err != nil {
				t.Fatal(err)
			}
			addr := tlsServer(t, src.ServerConfig())
			roots := p.ca.Pool()
			if got := servedSerial(t, addr, roots); got != first.Cert.SerialNumber.String() {
				t.Fatalf("served %s, want the first certificate %s", got, first.Cert.SerialNumber)
			}
			old, err := dial(t, addr, &tls.Config{RootCAs: roots})
			if err != nil {
				t.Fatal(err)
			}

			second, err := p.ca.Issue(Leaf{CommonName: "gateway", Hosts: []string{"127.0.0.1"}, Server: true})
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, keyFile, second.KeyPEM)
			writeFile(t, certFile, second.CertPEM)
			waitFor(t, "a new handshake to present the new certificate", func() bool {
				return servedSerial(t, addr, roots) == second.Cert.SerialNumber.String()
			})
			// The connection made before the change is still served.
			if err := echo(old, "still here"); err != nil {
				t.Fatalf("old connection after the rotation: %v", err)
			}
			if run {
				waitFor(t, "the reload metric", func() bool {
					return value(t, store.metrics.reloads.WithLabelValues(certFile, "ok")) >= 1
				})
				if got := value(t, store.metrics.notAfter.WithLabelValues(certFile)); got != float64(second.Cert.NotAfter.Unix()) {
					t.Errorf("expiry gauge %v, want %v", got, second.Cert.NotAfter.Unix())
				}
			}
		})
	}
}

// TestRotationKubernetesSecret swaps a Secret volume as the kubelet does: the files
// are symlinks through ..data, a symlink to a timestamped directory, and an update
// writes a new directory and renames a new ..data symlink over the old one.
func TestRotationKubernetesSecret(t *testing.T) {
	p := newPKI(t, "ca")
	vol := t.TempDir()
	writeVersion := func(name string, kp *KeyPair) {
		dir := filepath.Join(vol, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := kp.Write(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first, err := p.ca.Issue(Leaf{Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writeVersion("..2026_01_01_00_00_00.1", first)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(vol, f)); err != nil {
			t.Fatal(err)
		}
	}
	store := testStore(t, nil, true)
	src, err := store.Source(&Files{CertFile: filepath.Join(vol, "tls.crt"), KeyFile: filepath.Join(vol, "tls.key")})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	roots := p.ca.Pool()
	if got := servedSerial(t, addr, roots); got != first.Cert.SerialNumber.String() {
		t.Fatalf("served %s, want %s", got, first.Cert.SerialNumber)
	}
	old, err := dial(t, addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.ca.Issue(Leaf{Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writeVersion("..2026_03_01_00_00_00.2", second)
	waitFor(t, "the new certificate after the ..data swap", func() bool {
		return servedSerial(t, addr, roots) == second.Cert.SerialNumber.String()
	})
	if err := echo(old, "still here"); err != nil {
		t.Fatalf("old connection after the swap: %v", err)
	}
}

func TestKeepLastGood(t *testing.T) {
	p := newPKI(t, "ca")
	certFile, keyFile, first := p.server()
	store := testStore(t, prometheus.NewRegistry(), false)
	src, err := store.Source(&Files{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	roots := p.ca.Pool()

	// A half-written certificate, then a certificate whose key is another's.
	other, err := p.ca.Issue(Leaf{Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{first.CertPEM[:len(first.CertPEM)/2], other.CertPEM} {
		writeFile(t, certFile, bad)
		changed, err := src.Check()
		if changed || err == nil {
			t.Fatalf("Check after a bad file: changed %v, err %v", changed, err)
		}
		if got := servedSerial(t, addr, roots); got != first.Cert.SerialNumber.String() {
			t.Fatalf("served %s after a bad file, want the last good %s", got, first.Cert.SerialNumber)
		}
	}
	// The same bad files are not reported again.
	if _, err := src.Check(); err != nil {
		t.Errorf("unchanged bad files reported again: %v", err)
	}
	if got := value(t, store.metrics.reloads.WithLabelValues(certFile, "error")); got != 2 {
		t.Errorf("reload errors counted %v, want 2", got)
	}
	// The key catches up: good again.
	writeFile(t, keyFile, other.KeyPEM)
	if changed, err := src.Check(); !changed || err != nil {
		t.Fatalf("Check after the key caught up: changed %v, err %v", changed, err)
	}
	if got := servedSerial(t, addr, roots); got != other.Cert.SerialNumber.String() {
		t.Errorf("served %s, want %s", got, other.Cert.SerialNumber)
	}
	// A file that disappears (mid-swap) keeps the last good too.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Check(); err == nil {
		t.Error("Check with the file gone: no error")
	}
	if got := servedSerial(t, addr, roots); got != other.Cert.SerialNumber.String() {
		t.Errorf("served %s with the file gone, want %s", got, other.Cert.SerialNumber)
	}
}

// TestClientAuthRefusals: a wrong CA, an expired certificate and no certificate are
// each refused at the handshake, with nothing echoed.
func TestClientAuthRefusals(t *testing.T) {
	p := newPKI(t, "ca")
	certFile, keyFile, _ := p.server()
	src, err := testStore(t, nil, false).Source(&Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: p.caFile()})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	roots := p.ca.Pool()
	good := p.client("spiffe://site/display")
	if _, err := dial(t, addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{good}}); err != nil {
		t.Fatalf("a good client certificate: %v", err)
	}
	other := newPKI(t, "another ca").client("intruder")
	expiredKP, err := p.ca.Issue(Leaf{CommonName: "old", Client: true, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, err := p.ca.Issue(Leaf{CommonName: "not-a-client", Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"wrong CA", []tls.Certificate{other}, "bad certificate"},
		{"expired", []tls.Certificate{expiredKP.TLS()}, "bad certificate"},
		{"server-only key usage", []tls.Certificate{serverOnly.TLS()}, "bad certificate"},
		{"no certificate", nil, "certificate required"},
	} {
		_, err := dial(t, addr, &tls.Config{RootCAs: roots, Certificates: c.certs})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestClientCARotation(t *testing.T) {
	p1, p2 := newPKI(t, "ca-1"), newPKI(t, "ca-2")
	certFile, keyFile, _ := p1.server()
	caFile := filepath.Join(t.TempDir(), "clients.crt")
	writeFile(t, caFile, p1.ca.CertPEM())
	src, err := testStore(t, nil, true).Source(&Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	roots := p1.ca.Pool()
	c1 := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{p1.client("one")}}
	c2 := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{p2.client("two")}}
	old, err := dial(t, addr, c1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, addr, c2); err == nil {
		t.Fatal("a client of the second CA got in before the rotation")
	}
	writeFile(t, caFile, p2.ca.CertPEM())
	waitFor(t, "the second CA's client to get in", func() bool {
		_, err := dial(t, addr, c2)
		return err == nil
	})
	if _, err := dial(t, addr, c1); err == nil {
		t.Error("a client of the first CA still gets in after the rotation")
	}
	// Also without a full handshake: a resumed session is checked again.
	if err := echo(old, "open streams are not dropped"); err != nil {
		t.Errorf("connection made before the rotation: %v", err)
	}
}

func TestResumedSessionCheckedAgainstNewCA(t *testing.T) {
	p1, p2 := newPKI(t, "ca-1"), newPKI(t, "ca-2")
	certFile, keyFile, _ := p1.server()
	caFile := filepath.Join(t.TempDir(), "clients.crt")
	writeFile(t, caFile, p1.ca.CertPEM())
	src, err := testStore(t, nil, false).Source(&Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	cfg := &tls.Config{RootCAs: p1.ca.Pool(), Certificates: []tls.Certificate{p1.client("one")},
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	c, err := dial(t, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	writeFile(t, caFile, p2.ca.CertPEM())
	if _, err := src.Check(); err != nil {
		t.Fatal(err)
	}
	c, err = dial(t, addr, cfg)
	if err == nil {
		t.Fatalf("resumed (%v) a session of a client whose CA is gone", c.ConnectionState().DidResume)
	}
}

func TestClientConfigRotation(t *testing.T) {
	p1, p2 := newPKI(t, "ca-1"), newPKI(t, "ca-2")
	s1, k1, _ := p1.server()
	s2, k2, _ := p2.server()
	addr1 := tlsServer(t, mustServerConfig(t, s1, k1))
	addr2 := tlsServer(t, mustServerConfig(t, s2, k2))

	caFile := filepath.Join(t.TempDir(), "roots.crt")
	writeFile(t, caFile, p1.ca.CertPEM())
	src, err := testStore(t, nil, true).ClientSource(&Files{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	cfg := src.ClientConfig()
	if _, err := dial(t, addr1, cfg); err != nil {
		t.Fatalf("server of the trusted CA: %v", err)
	}
	if _, err := dial(t, addr2, cfg); err == nil {
		t.Fatal("server of an untrusted CA accepted")
	}
	wrongName := cfg.Clone()
	wrongName.ServerName = "elsewhere.example"
	if _, err := dial(t, addr1, wrongName); err == nil {
		t.Fatal("a certificate for another name accepted")
	}
	writeFile(t, caFile, p2.ca.CertPEM())
	waitFor(t, "the client to trust the new CA", func() bool {
		_, err := dial(t, addr2, cfg)
		return err == nil
	})
}

func mustServerConfig(t *testing.T, cert, key string) *tls.Config {
	t.Helper()
	cfg, err := (&Files{CertFile: cert, KeyFile: key}).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSourceErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	_, err := (&Files{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}).Source(true)
	if err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("got %v, want an error naming missing.crt", err)
	}
	p := newPKI(t, "ca")
	c, k, _ := p.server()
	_, err = (&Files{CertFile: c, KeyFile: k, ClientCAFile: c + ".nope"}).Source(true)
	if err == nil || !strings.Contains(err.Error(), ".nope") {
		t.Errorf("got %v, want an error naming the CA file", err)
	}
	var store *Store
	if _, err := store.Source(nil); err == nil {
		t.Error("no error for a missing tls block")
	}
}

func TestStoreSharesSources(t *testing.T) {
	p := newPKI(t, "ca")
	c, k, _ := p.server()
	store := testStore(t, nil, false)
	a, err := store.Source(&Files{CertFile: c, KeyFile: k})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := store.Source(&Files{CertFile: c, KeyFile: k})
	if a != b {
		t.Error("two listeners with the same files got two Sources")
	}
	d, _ := store.Source(&Files{CertFile: c, KeyFile: k, ClientCAFile: p.caFile()})
	if d == a {
		t.Error("different files share a Source")
	}
}

func TestVersionsAndSuites(t *testing.T) {
	p := newPKI(t, "ca")
	c, k, _ := p.server()
	src, err := (&Files{CertFile: c, KeyFile: k}).Source(true)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	roots := p.ca.Pool()
	conn, err := dial(t, addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3 when both sides have it", tls.VersionName(v))
	}
	if _, err := dial(t, addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	weak := &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
	if _, err := dial(t, addr, weak); err == nil {
		t.Error("a CBC suite accepted")
	}
	if _, err := dial(t, addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("TLS 1.2 with an AEAD suite: %v", err)
	}
	src13, err := (&Files{CertFile: c, KeyFile: k, MinVersion: "1.3"}).Source(true)
	if err != nil {
		t.Fatal(err)
	}
	addr13 := tlsServer(t, src13.ServerConfig())
	if _, err := dial(t, addr13, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 accepted with min_version 1.3")
	}
}

func TestFilesValidate(t *testing.T) {
	for _, c := range []struct {
		f      Files
		server bool
		want   string
	}{
		{Files{CertFile: "c", KeyFile: "k"}, true, ""},
		{Files{KeyFile: "k"}, true, "cert_file"},
		{Files{CertFile: "c"}, true, "key_file"},
		{Files{CertFile: "c", KeyFile: "k", MinVersion: "1.1"}, true, "min_version"},
		{Files{CertFile: "c", KeyFile: "k", MinVersion: "1.3"}, true, ""},
		{Files{CertFile: "c", KeyFile: "k", ServerName: "x"}, true, "server_name"},
		{Files{CertFile: "c", KeyFile: "k", InsecureSkipVerify: true}, true, "insecure_skip_verify"},
		{Files{CertFile: "c", KeyFile: "k", CAFile: "x"}, true, "ca_file"},
		{Files{}, false, ""},
		{Files{CAFile: "ca", ServerName: "h"}, false, ""},
		{Files{CertFile: "c"}, false, "go together"},
		{Files{CAFile: "a", ClientCAFile: "b"}, false, "ca_file"},
	} {
		var err error
		if c.server {
			err = c.f.Validate()
		} else {
			err = c.f.ValidateClient()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.f, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: got %v, want an error about %s", c.f, err, c.want)
		}
	}
}

func TestVerifyClientParsesGarbage(t *testing.T) {
	p := newPKI(t, "ca")
	c, k, _ := p.server()
	src, err := (&Files{CertFile: c, KeyFile: k, ClientCAFile: p.caFile()}).Source(true)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.VerifyClient([][]byte{[]byte("not DER")}, nil); !errors.Is(err, ErrClientCertificate) {
		t.Errorf("garbage: %v", err)
	}
	if err := src.VerifyClient(nil, nil); !errors.Is(err, ErrClientCertificate) {
		t.Errorf("none: %v", err)
	}
	good := p.client("x")
	if err := src.VerifyClient(good.Certificate, nil); err != nil {
		t.Errorf("good: %v", err)
	}
}

// FuzzVerifyClient feeds VerifyClient (the DTLS listeners' check of what a client
// sends) arbitrary certificate chains: it must refuse them without panicking.
func FuzzVerifyClient(f *testing.F) {
	ca, err := NewCA("fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	kp, err := ca.Issue(Leaf{CommonName: "c", Client: true})
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		f.Fatal(err)
	}
	srv, err := ca.Issue(Leaf{Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Write(filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")); err != nil {
		f.Fatal(err)
	}
	src, err := (&Files{CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key"), ClientCAFile: caFile}).Source(true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kp.Cert.Raw, []byte(nil))
	f.Add(kp.Cert.Raw, ca.Cert.Raw)
	f.Add([]byte{0x30, 0x82, 0xff, 0xff}, []byte{})
	f.Fuzz(func(t *testing.T, leaf, inter []byte) {
		chain := [][]byte{leaf}
		if len(inter) > 0 {
			chain = append(chain, inter)
		}
		err := src.VerifyClient(chain, nil)
		if err != nil && !errors.Is(err, ErrClientCertificate) {
			t.Fatalf("error not wrapping ErrClientCertificate: %v", err)
		}
		if err == nil && string(leaf) != string(kp.Cert.Raw) {
			t.Fatalf("accepted a chain whose leaf the CA did not issue")
		}
	})
}

func TestVerifyLater(t *testing.T) {
	p := newPKI(t, "ca")
	c, k, _ := p.server()
	src, err := (&Files{CertFile: c, KeyFile: k, ClientCAFile: p.caFile()}).Source(true)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfigVerifyLater())
	roots := p.ca.Pool()
	for _, cc := range []struct {
		name  string
		certs []tls.Certificate
		id    string
		want  error
	}{
		{"good", []tls.Certificate{p.client("spiffe://site/a")}, "spiffe://site/a", nil},
		{"none", nil, "", ErrNoClientCertificate},
		{"wrong CA", []tls.Certificate{newPKI(t, "other").client("b")}, "", ErrClientCertificate},
	} {
		// The handshake lets each through; VerifyPeer decides.
		conn, err := dial(t, addr, &tls.Config{RootCAs: roots, Certificates: cc.certs})
		if err != nil {
			t.Fatalf("%s: handshake: %v", cc.name, err)
		}
		// What the server saw is what the client sent: check it as the server would.
		cs := conn.ConnectionState()
		cs.PeerCertificates = nil
		for _, cert := range cc.certs {
			leaf, _ := x509.ParseCertificate(cert.Certificate[0])
			cs.PeerCertificates = append(cs.PeerCertificates, leaf)
		}
		id, err := src.VerifyPeer(cs)
		if !errors.Is(err, cc.want) || id != cc.id {
			t.Errorf("%s: VerifyPeer = %q, %v; want %q, %v", cc.name, id, err, cc.id, cc.want)
		}
	}
}
