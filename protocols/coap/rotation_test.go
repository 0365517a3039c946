package coap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	egtls "github.com/edgegate/edgegate/tls"
)

// secretVolume lays out certificate files as a Kubernetes Secret volume does:
// dir/tls.crt -> ..data/tls.crt, ..data -> a timestamped directory. swap writes
// a new directory and points ..data at it with a rename, as the kubelet (and so
// cert-manager's renewals) does.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *secretVolume) files() *egtls.Files {
	return &egtls.Files{CertFile: filepath.Join(v.dir, "tls.crt"), KeyFile: filepath.Join(v.dir, "tls.key")}
}

func (v *secretVolume) swap(cert, key []byte) {
	v.t.Helper()
	v.n++
	ts := filepath.Join(v.dir, "..2026_11_26_"+string(rune('a'+v.n)))
	if err := os.Mkdir(ts, 0o700); err != nil {
		v.t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tls.crt": cert, "tls.key": key} {
		if err := os.WriteFile(filepath.Join(ts, name), b, 0o600); err != nil {
			v.t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}

// swapIssued puts a new server certificate of p's into the volume and returns
// its serial.
func (v *secretVolume) swapIssued(p *pki) string {
	v.t.Helper()
	certFile, keyFile := p.issue(v.t, "server", true)
	cert, err := os.ReadFile(certFile)
	if err != nil {
		v.t.Fatal(err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		v.t.Fatal(err)
	}
	v.swap(cert, key)
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		v.t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.String()
}

// dtlsServerSerial shakes hands with a DTLS listener and returns the serial of
// the certificate it presented.
func dtlsServerSerial(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	nc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := piondtls.ClientWithOptions(dtlsnet.PacketConnFromConn(nc), nc.RemoteAddr(),
		piondtls.WithRootCAs(roots), piondtls.WithServerName("localhost"))
	if err != nil {
		_ = nc.Close()
		t.Fatal(err)
	}
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		t.Fatalf("DTLS handshake: %v", err)
	}
	state, ok := dc.ConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		t.Fatal("no DTLS peer certificate")
	}
	leaf, err := x509.ParseCertificate(state.PeerCertificates[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

// tlsServerSerial does the same with a TLS listener.
func tlsServerSerial(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestCertificateRotation: the DTLS and TLS listeners take their certificate
// from the gateway's TLS store. When the Secret volume's ..data symlink is
// swapped, the next handshakes present the new certificate while sessions that
// shook hands before go on; files that do not load leave the last good
// certificate in use.
func TestCertificateRotation(t *testing.T) {
	p := newPKI(t)
	vol := newSecretVolume(t)
	first := vol.swapIssued(p)
	store, err := egtls.NewStore(egtls.StoreOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{
		{Type: "dtls", Address: "127.0.0.1:0", TLS: vol.files()},
		{Type: "tls", Address: "127.0.0.1:0", TLS: vol.files()},
	}
	e := startEnv(t, cfg, store, nil)
	if got := dtlsServerSerial(t, e.addr(0), p.pool); got != first {
		t.Fatalf("DTLS serial %s, want %s", got, first)
	}
	if got := tlsServerSerial(t, e.addr(1), p.pool); got != first {
		t.Fatalf("TLS serial %s, want %s", got, first)
	}
	oldDTLS, err := dialDTLS(t, e.addr(0), piondtls.WithRootCAs(p.pool), piondtls.WithServerName("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	oldTLS := dialTCP(t, e.addr(1), &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})

	// The store checks every few seconds (and handshakes check too); Check is
	// what both run, called here so that the test does not wait for a tick.
	src, err := store.Source(vol.files())
	if err != nil {
		t.Fatal(err)
	}
	second := vol.swapIssued(p)
	if changed, err := src.Check(); !changed || err != nil {
		t.Fatalf("Check after the swap: %v %v", changed, err)
	}
	if got := dtlsServerSerial(t, e.addr(0), p.pool); got != second {
		t.Errorf("DTLS serial after rotation %s, want %s", got, second)
	}
	if got := tlsServerSerial(t, e.addr(1), p.pool); got != second {
		t.Errorf("TLS serial after rotation %s, want %s", got, second)
	}
	for i, c := range []coapClient{oldDTLS, oldTLS} {
		if code, diag := post(t, c, "/devices/d/p", message.TextPlain, []byte("1")); code != codes.Changed {
			t.Errorf("session %d opened before the rotation: %v %q", i, code, diag)
		}
	}
	e.next(2)

	// A half-written file: logged and counted, the second certificate stays.
	vol.swap([]byte("-----BEGIN CERTIFICATE-----\nnot a certificate"), []byte("nor a key"))
	if _, err := src.Check(); err == nil {
		t.Error("Check accepted files that do not load")
	}
	if got := dtlsServerSerial(t, e.addr(0), p.pool); got != second {
		t.Errorf("DTLS serial after a bad swap %s, want the last good %s", got, second)
	}
	if got := tlsServerSerial(t, e.addr(1), p.pool); got != second {
		t.Errorf("TLS serial after a bad swap %s, want the last good %s", got, second)
	}
}
