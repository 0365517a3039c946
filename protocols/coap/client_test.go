package coap

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/tcp"
	tcpServer "github.com/plgd-dev/go-coap/v3/tcp/server"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/edgegate/edgegate/bridge"
	egtls "github.com/edgegate/edgegate/tls"
)

// testDevice is a CoAP device that serves resources, on go-coap's own servers: an
// observable /sensors/temp (notifications carry Max-Age 1, so that a gateway
// registers again a second after they stop), and /actuators/setpoint, which takes
// PUT and does not offer Observe.
type testDevice struct {
	t         *testing.T
	transport string // udp, tcp, dtls (psk, or cert), tls
	psk       []byte
	cert      *tls.Certificate // dtls without psk, and tls: the device's certificate
	clientCAs *x509.CertPool   // with cert: client certificates must chain to it

	mu        sync.Mutex
	temp      string
	setpoint  string
	observers map[string]mux.Conn // by token
	seq       uint32
	puts      chan string

	addr string
	stop func()
}

func newTestDevice(t *testing.T, transport string, psk []byte) *testDevice {
	d := &testDevice{t: t, transport: transport, psk: psk, temp: "20", setpoint: "0", puts: make(chan string, 16)}
	d.start("127.0.0.1:0")
	t.Cleanup(func() { d.stop() })
	return d
}

func (d *testDevice) router() *mux.Router {
	r := mux.NewRouter()
	_ = r.Handle("/sensors/temp", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		d.mu.Lock()
		defer d.mu.Unlock()
		obs, err := req.Options().Observe()
		var opts []message.Option
		switch {
		case err == nil && obs == 0:
			d.observers[string(req.Token())] = w.Conn()
			d.seq++
			opts = append(opts, message.Option{ID: message.Observe, Value: []byte{byte(d.seq + 2)}})
		case err == nil && obs == 1:
			delete(d.observers, string(req.Token()))
		}
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(d.temp)), opts...)
		w.Message().SetOptionUint32(message.MaxAge, 1)
	}))
	_ = r.Handle("/actuators/setpoint", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch req.Code() {
		case codes.PUT:
			b, _ := req.ReadBody()
			d.setpoint = string(b)
			d.puts <- string(b)
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		case codes.GET:
			_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(d.setpoint)))
		default:
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		}
	}))
	return r
}

// start serves on addr (port 0 the first time, the same port after a restart).
func (d *testDevice) start(addr string) {
	t := d.t
	d.mu.Lock()
	d.observers = map[string]mux.Conn{}
	d.mu.Unlock()
	done := make(chan struct{})
	var stopServer func()
	switch d.transport {
	case "udp":
		l, err := coapNet.NewListenUDP("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		d.addr = l.LocalAddr().String()
		s := udp.NewServer(options.WithMux(d.router()), options.WithErrors(func(error) {}), periodic(t))
		go func() { defer close(done); _ = s.Serve(l) }()
		stopServer = func() { s.Stop(); _ = l.Close() }
	case "tcp", "tls":
		var l interface {
			tcpServer.Listener
			Addr() net.Addr
		}
		var err error
		if d.transport == "tcp" {
			l, err = coapNet.NewTCPListener("tcp", addr)
		} else {
			l, err = coapNet.NewTLSListener("tcp", addr, &tls.Config{Certificates: []tls.Certificate{*d.cert},
				ClientCAs: d.clientCAs, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
		}
		if err != nil {
			t.Fatal(err)
		}
		d.addr = l.Addr().String()
		s := tcp.NewServer(options.WithMux(d.router()), options.WithErrors(func(error) {}), periodic(t))
		go func() { defer close(done); _ = s.Serve(l) }()
		stopServer = func() { s.Stop(); _ = l.Close() }
	case "dtls":
		opts := []piondtls.ServerOption{piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8)}
		if key := d.psk; key != nil {
			opts = append(opts, piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }))
		} else {
			opts = []piondtls.ServerOption{piondtls.WithCertificates(*d.cert), piondtls.WithClientCAs(d.clientCAs),
				piondtls.WithClientAuth(piondtls.RequireAndVerifyClientCert),
				piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)}
		}
		l, err := coapNet.NewDTLSListener("udp", addr, coapNet.NewDTLSServerOptions(opts...))
		if err != nil {
			t.Fatal(err)
		}
		d.addr = l.Addr().String()
		s := dtls.NewServer(options.WithMux(d.router()), options.WithErrors(func(error) {}), periodic(t))
		go func() { defer close(done); _ = s.Serve(l) }()
		stopServer = func() { s.Stop(); _ = l.Close() }
	}
	once := sync.Once{}
	d.stop = func() {
		once.Do(func() {
			stopServer()
			select {
			case <-done:
			case <-time.After(waitTimeout):
				t.Error("test device did not stop")
			}
		})
	}
}

// restart stops the device and serves again on the same address, forgetting its
// observers, as a device that rebooted.
func (d *testDevice) restart(temp string) {
	d.stop()
	d.mu.Lock()
	d.temp = temp
	d.mu.Unlock()
	d.start(d.addr)
}

// set changes the temperature and notifies the observers.
func (d *testDevice) set(temp string) {
	d.mu.Lock()
	d.temp = temp
	d.seq++
	seq := d.seq + 2
	obs := make(map[string]mux.Conn, len(d.observers))
	for k, v := range d.observers {
		obs[k] = v
	}
	d.mu.Unlock()
	for token, cc := range obs {
		m := cc.AcquireMessage(cc.Context())
		m.SetCode(codes.Content)
		m.SetToken([]byte(token))
		m.SetObserve(seq)
		m.SetContentFormat(message.TextPlain)
		m.SetOptionUint32(message.MaxAge, 1)
		m.SetBody(bytes.NewReader([]byte(temp)))
		_ = cc.WriteMessage(m)
		cc.ReleaseMessage(m)
	}
}

func (d *testDevice) observerCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.observers)
}

func clientConfig(id, address string, observe bool) *Config {
	cfg := NewConfig()
	cfg.Devices = []DeviceConfig{{ID: id, Protocol: Name, Address: address, Observe: observe,
		PollInterval: 50 * time.Millisecond, Timeout: time.Second, Labels: map[string]string{"room": "3"},
		Points: []PointConfig{
			{Name: "temp", Path: "/sensors/temp", Unit: "°C"},
			{Name: "setpoint", Path: "/actuators/setpoint", Writable: true},
		}}}
	return cfg
}

// waitValue waits for a reading of point with the value want.
func (e *env) waitValue(device, point, want string) *bridge.Message {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		for _, m := range e.next(1) {
			if m.Device == device && m.Point == point && m.Value.String() == want {
				return m
			}
		}
	}
	e.t.Fatalf("no reading %s/%s = %s", device, point, want)
	return nil
}

// TestClientObserve: the gateway observes a device's resource, polls the one that
// is not observable, writes by PUT, and registers again after the device restarts.
func TestClientObserve(t *testing.T) {
	dev := newTestDevice(t, "udp", nil)
	e := start(t, clientConfig("dev-1", "coap://"+dev.addr, true))
	m := e.waitValue("dev-1", "temp", "20")
	if m.Unit != "°C" || m.Labels["room"] != "3" || m.Labels[labelPath] != "/sensors/temp" {
		t.Errorf("first reading: unit %q labels %v", m.Unit, m.Labels)
	}
	e.waitValue("dev-1", "setpoint", "0")
	waitFor(t, "an observer at the device", func() bool { return dev.observerCount() == 1 })
	waitFor(t, "dev-1 connected", func() bool { return e.device("dev-1").State == bridge.StateConnected })
	if n := metric(t, e.a.metrics.clientObserved); n != 1 {
		t.Errorf("observed resources %v, want 1 (setpoint is polled)", n)
	}

	dev.set("21.5")
	e.waitValue("dev-1", "temp", "21.5")
	if m, err := e.a.Read(ctxT(t), "dev-1", "temp"); err != nil || m.Value.String() != "21.5" || m.Unit != "°C" {
		t.Errorf("Read: %v, %v", m, err)
	}
	if _, err := e.a.Read(ctxT(t), "pusher", "temp"); !errors.Is(err, bridge.ErrNoReader) {
		t.Errorf("Read of a device that pushes: %v, want ErrNoReader", err)
	}
	if _, err := e.a.Read(ctxT(t), "dev-1", "nope"); !errors.Is(err, bridge.ErrUnknownPoint) {
		t.Errorf("Read of an unknown point: %v", err)
	}

	if err := e.a.Write(ctxT(t), "dev-1", "setpoint", bridge.Double(18.5)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := <-dev.puts; got != "18.5" {
		t.Errorf("device received %q", got)
	}
	e.waitValue("dev-1", "setpoint", "18.5") // polled back
	if err := e.a.Write(ctxT(t), "dev-1", "temp", bridge.Int(1)); err == nil {
		t.Error("write to a point that is not writable succeeded")
	}
	if err := e.a.Write(ctxT(t), "dev-1", "nope", bridge.Int(1)); err == nil {
		t.Error("write to an unknown point succeeded")
	}

	// The device restarts and forgets its observers; the gateway's registration is
	// overdue a second after the last notification, and it registers again.
	dev.restart("30")
	e.waitValue("dev-1", "temp", "30")
	waitFor(t, "the observer back at the device", func() bool { return dev.observerCount() == 1 })
	dev.set("31")
	e.waitValue("dev-1", "temp", "31")
}

// TestClientPoll reads points by polling, over TCP.
func TestClientPoll(t *testing.T) {
	dev := newTestDevice(t, "tcp", nil)
	e := start(t, clientConfig("dev-2", "coap+tcp://"+dev.addr, false))
	e.waitValue("dev-2", "temp", "20")
	dev.set("25")
	e.waitValue("dev-2", "temp", "25")
	if dev.observerCount() != 0 {
		t.Error("a polled device got an observer")
	}
	if err := e.a.Write(ctxT(t), "dev-2", "setpoint", bridge.String("7")); err != nil {
		t.Fatalf("write over TCP: %v", err)
	}
	if got := <-dev.puts; got != "7" {
		t.Errorf("device received %q", got)
	}
}

// TestClientDTLS observes a device over DTLS with a pre-shared key.
func TestClientDTLS(t *testing.T) {
	dev := newTestDevice(t, "dtls", []byte("dev-key"))
	cfg := clientConfig("dev-3", "coaps://"+dev.addr, true)
	cfg.Devices[0].PSK = &DevicePSK{Identity: "gateway", KeyFile: writeKey(t, "dev-key")}
	e := start(t, cfg)
	e.waitValue("dev-3", "temp", "20")
	waitFor(t, "an observer at the device", func() bool { return dev.observerCount() == 1 })
	dev.set("22")
	e.waitValue("dev-3", "temp", "22")
	if err := e.a.Write(ctxT(t), "dev-3", "setpoint", bridge.Int(3)); err != nil {
		t.Fatalf("write over DTLS: %v", err)
	}
	if got := <-dev.puts; got != "3" {
		t.Errorf("device received %q", got)
	}
}

// TestClientCertificates: the gateway dials devices that present certificates
// and require the gateway's, over DTLS (coaps://) and TLS (coaps+tcp://), with a
// `tls:` block of the one shape (ca_file, cert_file, key_file). A device whose
// certificate does not chain to ca_file gets no session, and nothing from it is
// delivered.
func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	certFile, keyFile := p.issue(t, "device", true)
	devCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	gwCert, gwKey := p.issue(t, "gateway", false)
	for _, c := range []struct{ transport, scheme string }{{"dtls", "coaps://"}, {"tls", "coaps+tcp://"}} {
		t.Run(c.transport, func(t *testing.T) {
			dev := &testDevice{t: t, transport: c.transport, cert: &devCert, clientCAs: p.pool, temp: "20", setpoint: "0", puts: make(chan string, 16)}
			dev.start("127.0.0.1:0")
			t.Cleanup(func() { dev.stop() })
			cfg := clientConfig("dev-c", c.scheme+dev.addr, false)
			cfg.Devices[0].TLS = &egtls.Files{CAFile: p.caFile(), CertFile: gwCert, KeyFile: gwKey, ServerName: "localhost"}
			e := start(t, cfg)
			e.waitValue("dev-c", "temp", "20")
			if err := e.a.Write(ctxT(t), "dev-c", "setpoint", bridge.Int(4)); err != nil {
				t.Fatalf("write: %v", err)
			}
			// The write was acknowledged, so the device has it already.
			select {
			case got := <-dev.puts:
				if got != "4" {
					t.Errorf("device received %q", got)
				}
			case <-ctxT(t).Done():
				t.Fatal("the device did not receive the write")
			}

			// The same device, checked against another CA: refused, never read.
			other := newPKI(t)
			cfg = clientConfig("dev-x", c.scheme+dev.addr, false)
			cfg.Devices[0].TLS = &egtls.Files{CAFile: other.caFile(), CertFile: gwCert, KeyFile: gwKey, ServerName: "localhost"}
			ex := start(t, cfg)
			waitFor(t, "dev-x in error", func() bool {
				d := ex.device("dev-x")
				return d.State == bridge.StateError && d.LastError != ""
			})
			ex.none()
		})
	}
}

// TestClientUnreachable: a device that does not answer is in the error state, and
// is connected once it appears.
func TestClientUnreachable(t *testing.T) {
	// A TCP port that refuses: listen and close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	e := start(t, clientConfig("dev-4", "coap+tcp://"+addr, true))
	waitFor(t, "dev-4 in error", func() bool {
		d := e.device("dev-4")
		return d.State == bridge.StateError && d.LastError != ""
	})
	if err := e.a.Write(ctxT(t), "dev-4", "setpoint", bridge.Int(1)); err == nil {
		t.Error("write to an unreachable device succeeded")
	}
	_, port, _ := net.SplitHostPort(addr)
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
}
