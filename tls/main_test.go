package tls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on a condition: generous, because the machine is
// shared. No test sleeps to wait; they poll for what they expect.
const waitTimeout = 15 * time.Second

// pki is a CA with its files in a directory.
type pki struct {
	t   *testing.T
	ca  *CA
	dir string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	ca, err := NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, ca: ca, dir: t.TempDir()}
	writeFile(t, filepath.Join(p.dir, "ca.crt"), ca.CertPEM())
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.crt") }

// issue writes a certificate and key named name.crt and name.key.
func (p *pki) issue(name string, l Leaf) (certFile, keyFile string, kp *KeyPair) {
	p.t.Helper()
	kp, err := p.ca.Issue(l)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	if err := kp.Write(certFile, keyFile); err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile, kp
}

func (p *pki) server() (certFile, keyFile string, kp *KeyPair) {
	return p.issue("server", Leaf{CommonName: "gateway", Hosts: []string{"127.0.0.1", "localhost"}, Server: true})
}

func (p *pki) client(id string) tls.Certificate {
	p.t.Helper()
	l := Leaf{CommonName: id, Client: true}
	if len(id) > 9 && id[:9] == "spiffe://" {
		l = Leaf{URIs: []string{id}, Client: true}
	}
	kp, err := p.ca.Issue(l)
	if err != nil {
		p.t.Fatal(err)
	}
	return kp.TLS()
}

// writeFile replaces a file atomically (write a temporary file, rename it over).
func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, waitTimeout, what, cond)
}

// tlsServer serves cfg on a loopback port: each connection echoes what it reads
// until the client closes it or the test ends.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
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
				_, _ = io.Copy(c, c)
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
	return ln.Addr().String()
}

// dial handshakes with addr and returns the connection; it is closed when the test
// ends.
func dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := nc.(*tls.Conn)
	t.Cleanup(func() { c.Close() })
	// TLS 1.3: the server's verdict on our certificate comes after our side of
	// the handshake; a round trip shows it.
	if err := echo(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func echo(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(waitTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
	}
	if string(buf) != msg {
		return errors.New("echo: got " + string(buf))
	}
	return nil
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
