package tls

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// opensslClient runs `openssl s_client` against addr with args, and returns what
// it printed. OpenSSL is a TLS implementation written apart from Go's.
func opensslClient(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (Debian package openssl)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"s_client", "-connect", addr, "-brief", "-verify_return_error"}, args...)...)
	cmd.Stdin = strings.NewReader("") // end at once after the handshake
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestOpenSSLHandshake(t *testing.T) {
	p := newPKI(t, "ca")
	certFile, keyFile, _ := p.issue("server", Leaf{CommonName: "first", Hosts: []string{"127.0.0.1"}, Server: true})
	clientCert, clientKey, _ := p.issue("client", Leaf{CommonName: "scada", Client: true})
	src, err := testStore(t, nil, true).Source(&Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: p.caFile()})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	withCert := []string{"-CAfile", p.caFile(), "-cert", clientCert, "-key", clientKey}

	out, err := opensslClient(t, addr, withCert...)
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	for _, want := range []string{"Protocol version: TLSv1.3", "Verification: OK", "CN = first"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl s_client printed no %q:\n%s", want, out)
		}
	}
	// TLS 1.2 works, with an AEAD suite only.
	if out, err := opensslClient(t, addr, append(withCert, "-tls1_2")...); err != nil || !strings.Contains(out, "TLSv1.2") {
		t.Errorf("TLS 1.2: %v\n%s", err, out)
	}
	for _, weak := range [][]string{
		{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"},
		{"-tls1_2", "-cipher", "AES128-GCM-SHA256"}, // RSA key exchange: no forward secrecy
		{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"},
	} {
		if out, err := opensslClient(t, addr, append(withCert, weak...)...); err == nil {
			t.Errorf("openssl s_client %v got in:\n%s", weak, out)
		}
	}

	// Rotation: the next handshake presents the new certificate.
	next, err := p.ca.Issue(Leaf{CommonName: "second", Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, next.KeyPEM)
	writeFile(t, certFile, next.CertPEM)
	waitFor(t, "openssl to see the new certificate", func() bool {
		out, err := opensslClient(t, addr, withCert...)
		return err == nil && strings.Contains(out, "CN = second")
	})
}
