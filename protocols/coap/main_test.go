package coap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/protocols"
	egtls "github.com/edgegate/edgegate/tls"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on a condition; generous because the machine is
// shared, and no test sleeps: they wait for what they expect.
const waitTimeout = 15 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig listens on UDP and TCP on loopback, port 0.
func testConfig() *Config {
	c := NewConfig()
	c.Listeners = []ListenerConfig{
		{Type: "udp", Address: "127.0.0.1:0"},
		{Type: "tcp", Address: "127.0.0.1:0"},
	}
	return c
}

type env struct {
	t    *testing.T
	a    *Adapter
	hub  *bridge.Hub
	reg  *prometheus.Registry
	sub  *bridge.Subscription
	stop func() // stops the adapter now (also done when the test ends)
}

// start runs an adapter with an in-process hub as its sink, until the test ends.
func start(t *testing.T, cfg *Config) *env {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith runs the adapter with a sink that wraps the hub's, when wrap is set.
func startWith(t *testing.T, cfg *Config, wrap func(protocols.Sink) protocols.Sink) *env {
	t.Helper()
	return startEnv(t, cfg, nil, wrap)
}

// startEnv runs the adapter with the gateway's TLS store, when store is set.
func startEnv(t *testing.T, cfg *Config, store *egtls.Store, wrap func(protocols.Sink) protocols.Sink) *env {
	t.Helper()
	return startHub(t, cfg, bridge.HubConfig{}, store, wrap)
}

// startHub runs the adapter into a hub built with hc (a journal: a durable hub).
func startHub(t *testing.T, cfg *Config, hc bridge.HubConfig, store *egtls.Store, wrap func(protocols.Sink) protocols.Sink) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	ad, err := cfg.New(protocols.Env{Logger: testLogger(t), Metrics: reg, TLS: store})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a := ad.(*Adapter)
	hub := bridge.NewHub(hc, nil)
	hub.SetWriter(bridge.ProtocolCoAP, a)
	sub, err := hub.Subscribe(bridge.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sink protocols.Sink = hub.Ingest(bridge.ProtocolCoAP)
	if wrap != nil {
		sink = wrap(sink)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, sink) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Errorf("Run did not return after cancellation; goroutines:\n%s", stacks.String())
		}
	}
	t.Cleanup(func() {
		stop()
		sub.Close()
		hub.Close()
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("adapter not ready")
	}
	return &env{t: t, a: a, hub: hub, reg: reg, sub: sub, stop: stop}
}

func (e *env) addr(i int) string { return e.a.Addrs()[i].String() }

// next waits for n messages from the hub.
func (e *env) next(n int) []*bridge.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out []*bridge.Message
	for len(out) < n {
		got, err := e.sub.Next(ctx, make([]*bridge.Message, 0, n-len(out)))
		if err != nil {
			e.t.Fatalf("waiting for message %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, got...)
	}
	return out
}

// none checks that no message is waiting.
func (e *env) none() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if got, err := e.sub.Next(ctx, make([]*bridge.Message, 0, 1)); err == nil {
		e.t.Fatalf("unexpected message %s/%s = %#v", got[0].Device, got[0].Point, got[0].Value)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, waitTimeout, what, cond)
}

func (e *env) device(id string) bridge.DeviceInfo {
	for _, d := range e.hub.Devices(nil) {
		if d.ID == id {
			return d
		}
	}
	return bridge.DeviceInfo{}
}

// metric reads a counter or gauge.
func metric(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// coapClient is what the tests need of go-coap's clients of every transport.
type coapClient interface {
	mux.Conn
}

func closeClient(t *testing.T, c coapClient) {
	t.Helper()
	_ = c.Close()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Errorf("client did not close")
	}
}

// periodic is a periodic runner for test clients whose goroutine ends with the test
// (go-coap's default sleeps 4 s in a goroutine of its own after the client closed,
// which the leak check would report).
func periodic(t testing.TB) options.PeriodicRunnerOpt {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	return options.WithPeriodicRunner(func(f func(time.Time) bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case now := <-tick.C:
					if !f(now) {
						return
					}
				}
			}
		}()
	})
}

func dialUDP(t *testing.T, addr string) coapClient {
	t.Helper()
	c, err := udp.Dial(addr, options.WithErrors(func(error) {}), periodic(t))
	if err != nil {
		t.Fatalf("dial udp %s: %v", addr, err)
	}
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

func dialTCP(t *testing.T, addr string, tc *tls.Config) coapClient {
	t.Helper()
	opts := []tcp.Option{options.WithErrors(func(error) {}), periodic(t)}
	if tc != nil {
		opts = append(opts, options.WithTLS(tc))
	}
	c, err := tcp.Dial(addr, opts...)
	if err != nil {
		t.Fatalf("dial tcp %s: %v", addr, err)
	}
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

// dialDTLS connects with pion options and shakes hands within a few seconds; it
// returns the handshake's error instead of failing, for tests that expect a
// refusal. (go-coap's dtls.Dial leaves the handshake to the first read, without a
// deadline: a refused handshake would then hang the first request.)
func dialDTLS(t *testing.T, addr string, opts ...piondtls.ClientOption) (coapClient, error) {
	t.Helper()
	nc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := piondtls.ClientWithOptions(dtlsnet.PacketConnFromConn(nc), nc.RemoteAddr(), opts...)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()
		return nil, err
	}
	c := dtls.Client(dc, options.WithErrors(func(error) {}), periodic(t), options.WithCloseSocket())
	t.Cleanup(func() { closeClient(t, c) })
	return c, nil
}

func pskOptions(identity string, key []byte) []piondtls.ClientOption {
	return []piondtls.ClientOption{
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint([]byte(identity)),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// post sends a confirmable POST and returns the response code and payload.
func post(t *testing.T, c coapClient, path string, cf message.MediaType, body []byte, opts ...message.Option) (codes.Code, string) {
	t.Helper()
	resp, err := c.Post(ctxT(t), path, cf, bytes.NewReader(body), opts...)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer c.ReleaseMessage(resp)
	return resp.Code(), readBody(t, resp)
}

func put(t *testing.T, c coapClient, path string, cf message.MediaType, body []byte, _ ...message.Option) (codes.Code, string) {
	t.Helper()
	resp, err := c.Put(ctxT(t), path, cf, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	defer c.ReleaseMessage(resp)
	return resp.Code(), readBody(t, resp)
}

// get sends a GET and returns the response code, content format and payload.
func get(t *testing.T, c coapClient, path string, opts ...message.Option) (codes.Code, message.MediaType, string) {
	t.Helper()
	resp, err := c.Get(ctxT(t), path, opts...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer c.ReleaseMessage(resp)
	cf, _ := resp.ContentFormat()
	return resp.Code(), cf, readBody(t, resp)
}

func readBody(t *testing.T, m *pool.Message) string {
	t.Helper()
	b, err := m.ReadBody()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

func accept(cf message.MediaType) message.Option {
	return message.Option{ID: message.Accept, Value: []byte{byte(cf)}}
}

// pki is a test CA with a server certificate for 127.0.0.1 and client
// certificates, as PEM files in a temporary directory.
type pki struct {
	dir    string
	pool   *x509.CertPool
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgegate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), pool: x509.NewCertPool(), caCert: ca, caKey: key}
	p.pool.AddCert(ca)
	writePEM(t, filepath.Join(p.dir, "ca.crt"), "CERTIFICATE", der)
	return p
}

var serial int64 = 1

// issue makes a certificate for name (a server for 127.0.0.1 when server is set)
// and returns the paths of its certificate and key files.
func (p *pki) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.dir, name+".crt")
	keyFile = filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.crt") }

// serverFiles is a listener's tls section; with clientCA, clients must present a
// certificate.
func (p *pki) serverFiles(t *testing.T, clientCA bool) *egtls.Files {
	cert, key := p.issue(t, "server", true)
	f := &egtls.Files{CertFile: cert, KeyFile: key}
	if clientCA {
		f.ClientCAFile = p.caFile()
	}
	return f
}

func (p *pki) clientCert(t *testing.T, name string) tls.Certificate {
	cert, key := p.issue(t, name, false)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeKey writes a pre-shared key file (with a trailing newline, as an editor
// leaves it) and returns its path.
func writeKey(t *testing.T, key string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "psk.key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
