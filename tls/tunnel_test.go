package tls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/simonvetter/modbus"
)

// plainEcho is a plain TCP device port that echoes, counting its connections.
type plainEcho struct {
	addr     string
	accepted atomic.Int64
}

func newPlainEcho(t *testing.T) *plainEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &plainEcho{addr: ln.Addr().String()}
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
			e.accepted.Add(1)
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
	return e
}

type tunnelEnv struct {
	t       *testing.T
	p       *pki
	tun     *Tunnel
	metrics *TunnelMetrics
	cancel  context.CancelFunc
	done    chan error
}

// startTunnel runs a tunnel to target until the test ends (or stop).
func startTunnel(t *testing.T, p *pki, target string, edit func(*TunnelConfig)) *tunnelEnv {
	t.Helper()
	certFile, keyFile, _ := p.server()
	cfg := TunnelConfig{Name: "plc", Listen: "127.0.0.1:0", Target: target,
		TLS: &Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: p.caFile()}}
	if edit != nil {
		edit(&cfg)
	}
	m, err := NewTunnelMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tun, err := NewTunnel(cfg, nil, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tun.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &tunnelEnv{t: t, p: p, tun: tun, metrics: m, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- tun.Serve(ctx) }()
	t.Cleanup(e.stop)
	return e
}

func (e *tunnelEnv) stop() {
	e.t.Helper()
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Serve: %v", err)
		}
		e.done <- nil // for a second stop
	case <-time.After(waitTimeout):
		e.t.Fatal("Serve did not return after its context ended")
	}
}

func (e *tunnelEnv) addr() string { return e.tun.Addr().String() }

func (e *tunnelEnv) result(r string) float64 {
	return value(e.t, e.metrics.conns.WithLabelValues("plc", r))
}

func (e *tunnelEnv) clientConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: e.p.ca.Pool(), Certificates: certs}
}

func TestTunnelForwards(t *testing.T) {
	p := newPKI(t, "ca")
	target := newPlainEcho(t)
	e := startTunnel(t, p, target.addr, func(c *TunnelConfig) { c.Allow = []string{"spiffe://site/scada-*"} })
	c, err := dial(t, e.addr(), e.clientConfig(p.client("spiffe://site/scada-1")))
	if err != nil {
		t.Fatalf("an allowed client: %v", err)
	}
	if err := echo(c, "modbus request"); err != nil {
		t.Fatal(err)
	}
	// A half-close is passed on: the answer still comes back.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("after CloseWrite: %q, %v; want a clean end", b, err)
	}
	waitFor(t, "the connection's end", func() bool { return value(t, e.metrics.open.WithLabelValues("plc")) == 0 })
	if got := e.result(ResultForwarded); got != 1 {
		t.Errorf("forwarded %v, want 1", got)
	}
	// "hello" (the dial's check) and the request, both ways.
	want := float64(len("hello") + len("modbus request"))
	for _, dir := range []string{"to_target", "from_target"} {
		if got := value(t, e.metrics.bytes.WithLabelValues("plc", dir)); got != want {
			t.Errorf("bytes %s: %v, want %v", dir, got, want)
		}
	}
}

// TestTunnelRefusals: a wrong CA, an expired certificate, no certificate and a
// certificate for another identity are each refused at the handshake with a
// reason counted, and the device port never sees a connection.
func TestTunnelRefusals(t *testing.T) {
	p := newPKI(t, "ca")
	target := newPlainEcho(t)
	e := startTunnel(t, p, target.addr, func(c *TunnelConfig) { c.Allow = []string{"scada"} })
	expired, err := p.ca.Issue(Leaf{CommonName: "scada", Client: true, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		certs  []tls.Certificate
		result string
	}{
		{"wrong CA", []tls.Certificate{newPKI(t, "other").client("scada")}, ResultCertificate},
		{"expired", []tls.Certificate{expired.TLS()}, ResultCertificate},
		{"no certificate", nil, ResultHandshake},
		{"another identity", []tls.Certificate{p.client("hmi")}, ResultIdentity},
	} {
		before := e.result(c.result)
		if _, err := dial(t, e.addr(), e.clientConfig(c.certs...)); err == nil {
			t.Errorf("%s: got through", c.name)
			continue
		}
		waitFor(t, c.name+" counted as "+c.result, func() bool { return e.result(c.result) == before+1 })
	}
	if n := target.accepted.Load(); n != 0 {
		t.Errorf("the device port saw %d connections from refused clients", n)
	}
	// Not TLS at all.
	nc, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01")) // a plain Modbus request
	nc.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(nc); err != nil && !isReset(err) {
		t.Errorf("plaintext: %v", err)
	}
	if n := target.accepted.Load(); n != 0 {
		t.Errorf("plaintext reached the device port")
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || errors.Is(err, io.EOF))
}

func TestTunnelMaxConnections(t *testing.T) {
	p := newPKI(t, "ca")
	target := newPlainEcho(t)
	e := startTunnel(t, p, target.addr, func(c *TunnelConfig) { c.MaxConnections = 1 })
	cfg := e.clientConfig(p.client("scada"))
	first, err := dial(t, e.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, e.addr(), cfg); err == nil {
		t.Fatal("a second connection got in with max_connections 1")
	}
	if got := e.result(ResultMaxConnections); got != 1 {
		t.Errorf("max_connections refusals %v, want 1", got)
	}
	first.Close()
	waitFor(t, "a slot after the first connection ended", func() bool {
		c, err := dial(t, e.addr(), cfg)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func TestTunnelIdleTimeout(t *testing.T) {
	p := newPKI(t, "ca")
	target := newPlainEcho(t)
	e := startTunnel(t, p, target.addr, func(c *TunnelConfig) { c.IdleTimeout = 300 * time.Millisecond })
	c, err := dial(t, e.addr(), e.clientConfig(p.client("scada")))
	if err != nil {
		t.Fatal(err)
	}
	// Traffic keeps it open past the idle timeout.
	deadline := time.Now().Add(900 * time.Millisecond)
	tick := time.NewTicker(50 * time.Millisecond) // paces the traffic; not a wait
	for time.Now().Before(deadline) {
		if err := echo(c, "poll"); err != nil {
			t.Fatalf("busy connection closed: %v", err)
		}
		<-tick.C
	}
	tick.Stop()
	// Then silence closes it.
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from an idle connection")
	}
	waitFor(t, "the idle close counted", func() bool { return value(t, e.metrics.idle.WithLabelValues("plc")) == 1 })
}

func TestTunnelTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newPKI(t, "ca")
	e := startTunnel(t, p, addr, nil)
	if _, err := dial(t, e.addr(), e.clientConfig(p.client("scada"))); err == nil {
		t.Fatal("a connection to a dead target stayed open")
	}
	if got := e.result(ResultTarget); got != 1 {
		t.Errorf("target failures %v, want 1", got)
	}
}

func TestTunnelShutdownClosesConnections(t *testing.T) {
	p := newPKI(t, "ca")
	target := newPlainEcho(t)
	e := startTunnel(t, p, target.addr, nil)
	cfg := e.clientConfig(p.client("scada"))
	var conns []*tls.Conn
	for range 3 {
		c, err := dial(t, e.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// One more, stuck in its handshake: TCP only.
	raw, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	e.stop()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("connection %d still open after shutdown", i)
		}
	}
	if _, err := net.Dial("tcp", e.addr()); err == nil {
		t.Error("the listener still accepts after shutdown")
	}
}

func TestTunnelConfigValidate(t *testing.T) {
	good := func() TunnelConfig {
		c := TunnelConfig{Name: "plc", Listen: "0.0.0.0:802", Target: "10.0.0.7:502",
			TLS: &Files{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt"}}
		c.SetDefaults()
		return c
	}
	if c := good(); len(c.Validate()) > 0 {
		errs := c.Validate()
		t.Fatalf("good config: %v", errs)
	}
	for _, c := range []struct {
		edit func(*TunnelConfig)
		want string
	}{
		{func(c *TunnelConfig) { c.Name = "a b" }, "name"},
		{func(c *TunnelConfig) { c.Listen = "802" }, "listen"},
		{func(c *TunnelConfig) { c.Target = "10.0.0.7" }, "target"},
		{func(c *TunnelConfig) { c.Target = ":502" }, "target"},
		{func(c *TunnelConfig) { c.TLS = nil }, "tls: required"},
		{func(c *TunnelConfig) { c.TLS.ClientCAFile = "" }, "client_ca_file is required"},
		{func(c *TunnelConfig) { c.TLS.KeyFile = "" }, "key_file"},
		{func(c *TunnelConfig) { c.Allow = []string{"[bad"} }, "allow[0]"},
		{func(c *TunnelConfig) { c.MaxConnections = -1 }, "max_connections"},
		{func(c *TunnelConfig) { c.IdleTimeout = -time.Second }, "idle_timeout"},
		{func(c *TunnelConfig) { c.ConnectTimeout = -time.Second }, "connect_timeout"},
	} {
		cfg := good()
		c.edit(&cfg)
		errs := cfg.Validate()
		if len(errs) == 0 || !strings.Contains(errors.Join(errs...).Error(), c.want) {
			t.Errorf("want an error about %s, got %v", c.want, errs)
		}
	}
}

// registers is a Modbus device's holding registers, for simonvetter's server.
type registers struct {
	mu   sync.Mutex
	regs [16]uint16
}

func (r *registers) HandleCoils(*modbus.CoilsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (r *registers) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}

func (r *registers) HandleInputRegisters(*modbus.InputRegistersRequest) ([]uint16, error) {
	return nil, modbus.ErrIllegalFunction
}

func (r *registers) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(req.Addr)+int(req.Quantity) > len(r.regs) {
		return nil, modbus.ErrIllegalDataAddress
	}
	if req.IsWrite {
		copy(r.regs[req.Addr:], req.Args)
		return nil, nil
	}
	return append([]uint16(nil), r.regs[req.Addr:req.Addr+req.Quantity]...), nil
}

// TestTunnelModbusTCPSecurity: a Modbus/TCP Security client (simonvetter/modbus,
// tcp+tls with a client certificate) reads and writes a plain Modbus/TCP server
// (simonvetter's, as the device that cannot speak TLS) through the tunnel.
func TestTunnelModbusTCPSecurity(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainAddr := ln.Addr().String()
	ln.Close() // simonvetter's server binds by URL; the port is free again
	dev := &registers{}
	dev.regs[3] = 215
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + plainAddr, Timeout: waitTimeout, MaxClients: 4}, dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Skipf("the port picked for the plain Modbus server was taken meanwhile: %v", err)
	}
	defer srv.Stop()

	p := newPKI(t, "ca")
	e := startTunnel(t, p, plainAddr, func(c *TunnelConfig) { c.Allow = []string{"scada"} })
	cert := p.client("scada")
	client, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL: "tcp+tls://" + e.addr(), Timeout: waitTimeout, TLSClientCert: &cert, TLSRootCAs: p.ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Open(); err != nil {
		t.Fatalf("Modbus/TCP Security handshake through the tunnel: %v", err)
	}
	defer client.Close()
	if v, err := client.ReadRegister(3, modbus.HOLDING_REGISTER); err != nil || v != 215 {
		t.Fatalf("read through the tunnel: %v, %v", v, err)
	}
	if err := client.WriteRegister(4, 42); err != nil {
		t.Fatalf("write through the tunnel: %v", err)
	}
	dev.mu.Lock()
	got := dev.regs[4]
	dev.mu.Unlock()
	if got != 42 {
		t.Errorf("the device holds %d after the write, want 42", got)
	}

	// A Modbus/TCP Security client with a certificate for another identity is refused.
	other := p.client("hmi")
	refused, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL: "tcp+tls://" + e.addr(), Timeout: waitTimeout, TLSClientCert: &other, TLSRootCAs: p.ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := refused.Open(); err == nil {
		_, err = refused.ReadRegister(3, modbus.HOLDING_REGISTER)
		refused.Close()
		if err == nil {
			t.Fatal("a client of another identity read through the tunnel")
		}
	}
}
