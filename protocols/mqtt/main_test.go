package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	"github.com/edgegate/edgegate/protocols"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on a condition; generous because the machine is
// shared, and no test sleeps: they wait for what they expect.
const waitTimeout = 15 * time.Second

// testLogger logs to the test output when -v is given, else nowhere.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is a loopback listener on port 0 with anonymous access.
func testConfig() *Config {
	c := NewConfig()
	c.Listeners = []ListenerConfig{{Type: "tcp", Address: "127.0.0.1:0"}}
	c.AllowAnonymous = true
	return c
}

type env struct {
	t   *testing.T
	a   *Adapter
	hub *bridge.Hub
	reg *prometheus.Registry
	sub *bridge.Subscription
}

// start runs an adapter with an in-process hub as its sink, until the test ends.
func start(t *testing.T, cfg *Config) *env {
	t.Helper()
	return startEnv(t, cfg, protocols.Env{})
}

// startEnv is start with an Env to build the adapter with (its Logger and Metrics
// are the test's).
func startEnv(t *testing.T, cfg *Config, pe protocols.Env) *env {
	t.Helper()
	return startHub(t, cfg, pe, bridge.HubConfig{})
}

// startHub is startEnv with a hub of the given configuration (a journal, say).
func startHub(t *testing.T, cfg *Config, pe protocols.Env, hc bridge.HubConfig) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	if pe.Logger == nil {
		pe.Logger = testLogger(t)
	}
	pe.Metrics = reg
	ad, err := cfg.New(pe)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a := ad.(*Adapter)
	hub := bridge.NewHub(hc, nil)
	hub.SetWriter(bridge.ProtocolMQTT, a)
	sub, err := hub.Subscribe(bridge.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, hub.Ingest(bridge.ProtocolMQTT)) }()
	t.Cleanup(func() {
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
	return &env{t: t, a: a, hub: hub, reg: reg, sub: sub}
}

func (e *env) addr() string { return e.a.Addrs()[0].String() }

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

// waitFor polls a condition until it holds.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	waitFor(e.t, what, cond)
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

// counter reads a counter or gauge.
func (e *env) counter(c prometheus.Metric) float64 { return metricValue(e.t, c) }

func metricValue(t *testing.T, c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// hash makes a bcrypt hash at the lowest cost, to keep tests fast.
func hash(t *testing.T, password string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

var clientSeq atomic.Int64

// client3 connects an MQTT 3.1.1 client (paho.mqtt.golang); it disconnects when the
// test ends.
func client3(t *testing.T, addr, id, user, pass string) (paho3.Client, error) {
	t.Helper()
	if id == "" {
		id = fmt.Sprintf("c3-%d", clientSeq.Add(1))
	}
	opts := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(waitTimeout).SetKeepAlive(30 * time.Second).SetCleanSession(true)
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
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

func mustClient3(t *testing.T, addr, id, user, pass string) paho3.Client {
	t.Helper()
	c, err := client3(t, addr, id, user, pass)
	if err != nil {
		t.Fatalf("connect 3.1.1 client: %v", err)
	}
	return c
}

func publish3(t *testing.T, c paho3.Client, topic string, qos byte, payload any) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("publish %s: timed out", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// client5 connects an MQTT v5 client (paho.golang). received gets what it receives on
// its subscriptions.
type client5 struct {
	*paho.Client
	received    chan *paho.Publish
	disconnects chan byte // reason codes of DISCONNECTs from the server
}

func connect5(t *testing.T, addr, id, user, pass string, opts ...func(*paho.Connect)) (*client5, *paho.Connack, error) {
	t.Helper()
	return connect5Dial(t, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, waitTimeout) }, id, user, pass, opts...)
}

// connect5Dial is connect5 over the connection dial makes (TLS, say).
func connect5Dial(t *testing.T, dial func() (net.Conn, error), id, user, pass string, opts ...func(*paho.Connect)) (*client5, *paho.Connack, error) {
	t.Helper()
	if id == "" {
		id = fmt.Sprintf("c5-%d", clientSeq.Add(1))
	}
	nc, err := dial()
	if err != nil {
		return nil, nil, err
	}
	c := &client5{received: make(chan *paho.Publish, 100), disconnects: make(chan byte, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.received <- pr.Packet:
			default:
			}
			return true, nil
		}},
		OnClientError: func(error) {},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disconnects <- d.ReasonCode:
			default:
			}
		},
	})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	for _, o := range opts {
		o(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = nc.Close()
		<-c.Done()
		return nil, ca, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		select {
		case <-c.Done():
		case <-time.After(waitTimeout):
			t.Errorf("v5 client %s did not stop", id)
		}
	})
	return c, ca, nil
}

func mustClient5(t *testing.T, addr, id, user, pass string) *client5 {
	t.Helper()
	c, _, err := connect5(t, addr, id, user, pass)
	if err != nil {
		t.Fatalf("connect v5 client: %v", err)
	}
	return c
}

func (c *client5) publish(t *testing.T, topic string, qos byte, payload string) (*paho.PublishResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
}
