package tls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgegate/edgegate/tls/tlsbase"
)

func TestWriteDevSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteDevSet(dir, []string{"gateway.local", "127.0.0.1"}, "spiffe://site/kitchen-display"); err != nil {
		t.Fatal(err)
	}
	for _, n := range DevFiles {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if filepath.Ext(n) == ".key" {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", n, fi.Mode().Perm(), want)
		}
	}
	pool, err := tlsbase.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"gateway.local", "127.0.0.1"} {
		if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := cl.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if got := Identity(cl.Leaf); got != "spiffe://site/kitchen-display" {
		t.Errorf("client identity %q", got)
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the server certificate is good for client authentication too")
	}
	// Used as they are: a server of these files accepts the client's certificate.
	src, err := (&Files{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCAFile: filepath.Join(dir, "ca.crt")}).Source(true)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, src.ServerConfig())
	if _, err := dial(t, addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cl}}); err != nil {
		t.Errorf("handshake with the generated files: %v", err)
	}

	// Never overwritten.
	if err := WriteDevSet(dir, []string{"x"}, "y"); !errors.Is(err, ErrExists) {
		t.Errorf("second WriteDevSet into the same dir: %v", err)
	}
}

func TestWriteDevSetRefuses(t *testing.T) {
	for _, c := range []struct {
		hosts  []string
		client string
	}{
		{nil, "c"},
		{[]string{"a b"}, "c"},
		{[]string{"h"}, ""},
		{[]string{"h"}, "spiffe://"},
		{[]string{"h"}, string(make([]byte, 65))},
	} {
		if err := WriteDevSet(t.TempDir(), c.hosts, c.client); err == nil {
			t.Errorf("WriteDevSet(%q, %q) succeeded", c.hosts, c.client)
		}
	}
}
