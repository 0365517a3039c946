package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
)

// dtlsEcho serves DTLS with the Source's options on a loopback UDP port; each
// association echoes.
func dtlsEcho(t *testing.T, src *Source) *net.UDPAddr {
	t.Helper()
	opts := append(DTLSServerOptions(src), piondtls.WithCipherSuites(DTLSCertificateSuites...))
	ln, err := piondtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 1500)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.UDPAddr)
}

// dtlsDial handshakes, echoes once, and returns the server's certificate serial.
func dtlsDial(t *testing.T, addr *net.UDPAddr, roots *x509.CertPool, certs ...tls.Certificate) (string, error) {
	t.Helper()
	c, err := piondtls.DialWithOptions("udp", addr, piondtls.WithRootCAs(roots), piondtls.WithServerName("127.0.0.1"),
		piondtls.WithCertificates(certs...), piondtls.WithCipherSuites(DTLSCertificateSuites...))
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return "", err
	}
	if err := echo(c, "coap"); err != nil {
		return "", err
	}
	st, _ := c.ConnectionState()
	leaf, err := x509.ParseCertificate(st.PeerCertificates[0])
	if err != nil {
		return "", err
	}
	return leaf.SerialNumber.String(), nil
}

func TestDTLSServerOptions(t *testing.T) {
	p := newPKI(t, "ca")
	certFile, keyFile, first := p.server()
	store := testStore(t, nil, true)
	src, err := store.Source(&Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: p.caFile()})
	if err != nil {
		t.Fatal(err)
	}
	addr := dtlsEcho(t, src)
	roots := p.ca.Pool()
	serial, err := dtlsDial(t, addr, roots, p.client("sensor-7"))
	if err != nil {
		t.Fatalf("a good client: %v", err)
	}
	if serial != first.Cert.SerialNumber.String() {
		t.Errorf("served %s, want %s", serial, first.Cert.SerialNumber)
	}
	if _, err := dtlsDial(t, addr, roots); err == nil {
		t.Error("a client without a certificate got in")
	}
	if _, err := dtlsDial(t, addr, roots, newPKI(t, "other").client("sensor-7")); err == nil {
		t.Error("a client of another CA got in")
	}

	second, err := p.ca.Issue(Leaf{Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, second.KeyPEM)
	writeFile(t, certFile, second.CertPEM)
	waitFor(t, "a DTLS handshake to present the new certificate", func() bool {
		s, err := dtlsDial(t, addr, roots, p.client("sensor-7"))
		return err == nil && s == second.Cert.SerialNumber.String()
	})
}
