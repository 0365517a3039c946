package coap

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/edgegate/edgegate/bridge"
)

// dropCounter counts a datagram listener's drops by reason.
type dropCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *dropCounter) drop(reason string) {
	d.mu.Lock()
	d.n[reason]++
	d.mu.Unlock()
}

func (d *dropCounter) get(reason string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[reason]
}

// TestDatagramListenerBounds exercises every bound of the UDP demultiplexer.
func TestDatagramListenerBounds(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	drops := &dropCounter{n: map[string]int{}}
	sl := newSlots(1)
	l := newDatagramListener(pc, datagramConfig{accept: isCoAPRequest, slots: sl, budget: &byteBudget{max: 1 << 20}, maxSize: 100, backlog: 1, dropped: drops.drop})
	defer l.Close()
	dial := func() *net.UDPConn {
		c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := dial(), dial()
	coapCON := []byte{0x40, 0x01, 0x00, 0x01} // CON GET, message ID 1
	send := func(c *net.UDPConn, p []byte) {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	send(a, []byte("hello"))                      // not CoAP: opens nothing
	send(a, []byte{0x60, 0x00, 0x00, 0x01})       // an ACK from nowhere: opens nothing
	send(a, append(coapCON, make([]byte, 97)...)) // 101 bytes: too large
	waitFor(t, "three drops", func() bool {
		return drops.get(dropNotSession) == 2 && drops.get(dropTooLarge) == 1
	})
	for range datagramQueueLen + 8 {
		send(a, coapCON)
	}
	waitFor(t, "a full queue", func() bool { return drops.get(dropQueue) >= 1 })
	send(b, coapCON) // the only slot is taken
	waitFor(t, "max_connections", func() bool { return drops.get(dropMaxSessions) == 1 })

	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	n, err := nc.Read(buf)
	if err != nil || n != 4 {
		t.Fatalf("read %d, %v", n, err)
	}
	if err := nc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := nc.Read(buf); errors.Is(err, os.ErrDeadlineExceeded) {
			break
		} else if err != nil {
			t.Fatalf("read after the deadline: %v", err)
		}
	}
	nc.Close()
	if sl.inUse() != 0 || l.budget.n.Load() != 0 {
		t.Errorf("after close: %d slots, %d bytes still taken", sl.inUse(), l.budget.n.Load())
	}
	send(b, coapCON) // the slot is free again
	nc2, err := l.Accept()
	if err != nil || nc2.RemoteAddr().String() != b.LocalAddr().String() {
		t.Fatalf("accept b: %v, %v", nc2, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close: %v", err)
	}
	if _, err := nc2.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after the listener closed: %v", err)
	}
	if sl.inUse() != 0 {
		t.Errorf("%d slots taken after close", sl.inUse())
	}
}

// TestMaxConnections: beyond max_connections a UDP peer is answered 5.03 and a TCP
// connection is closed; an idle session gives its place back after idle_timeout.
func TestMaxConnections(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 2
	cfg.IdleTimeout = time.Second
	e := start(t, cfg)
	c1, c2 := dialUDP(t, e.addr(0)), dialUDP(t, e.addr(0))
	for _, c := range []coapClient{c1, c2} {
		if code, _ := post(t, c, "/devices/m/p", message.TextPlain, []byte("1")); code != codes.Changed {
			t.Fatalf("within the limit: %v", code)
		}
	}
	e.next(2)
	c3 := dialUDP(t, e.addr(0))
	if code, _ := post(t, c3, "/devices/m/p", message.TextPlain, []byte("1")); code != codes.ServiceUnavailable {
		t.Fatalf("a third UDP peer with max_connections 2: %v, want 5.03", code)
	}
	if n := metric(t, e.a.metrics.refused.WithLabelValues("udp", refusedMaxConnections)); n < 1 {
		t.Errorf("sessions_refused_total{udp,max_connections} = %v", n)
	}
	if _, err := tcpDialCoAP(e.addr(1)); err == nil {
		t.Error("a TCP connection was served beyond max_connections")
	}
	waitFor(t, "refused tcp", func() bool {
		return metric(t, e.a.metrics.refused.WithLabelValues("tcp", refusedMaxConnections)) >= 1
	})
	// The two sessions go idle and end; the third peer is then served.
	waitFor(t, "idle sessions to end", func() bool { return metric(t, e.a.metrics.sessions.WithLabelValues("udp")) == 0 })
	if code, _ := post(t, c3, "/devices/m/p", message.TextPlain, []byte("3")); code != codes.Changed {
		t.Fatalf("after the idle sessions ended: %v", code)
	}
	e.next(1)
}

// tcpDialCoAP opens a CoAP-over-TCP connection and sends a request, returning an
// error when the server closes it.
func tcpDialCoAP(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	// A CSM (code 7.01) with no options: length 0, token length 0.
	if _, err := c.Write([]byte{0x00, 0xe1}); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	b := make([]byte, 64)
	n, err := c.Read(b)
	return string(b[:n]), err
}

// TestTooManyOptions: a request with more than max_options options is dropped.
func TestTooManyOptions(t *testing.T) {
	cfg := testConfig()
	cfg.MaxOptions = 8
	e := start(t, cfg)
	c := dialUDP(t, e.addr(0))
	var opts message.Options
	for range 10 {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte("q")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := c.Post(ctx, "/devices/x/y", message.TextPlain, strings.NewReader("1"), opts...)
	cancel()
	if err == nil {
		t.Error("a request with 13 options was answered with max_options 8")
	}
	waitFor(t, "a dropped request", func() bool {
		return metric(t, e.a.metrics.requests.WithLabelValues("udp", "POST", "dropped")) >= 1
	})
	if code, _ := post(t, c, "/devices/x/y", message.TextPlain, []byte("1"), opts[:3]...); code != codes.Changed {
		t.Errorf("a request within max_options: %v", code)
	}
	e.next(1)
}

// TestHelloVerify: a DTLS ClientHello without a cookie is answered with a
// HelloVerifyRequest (RFC 6347 section 4.2.1): the server keeps no state for a
// peer that has not shown it can receive at its address.
func TestHelloVerify(t *testing.T) {
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", PSK: []PSKConfig{{Identity: "a", KeyFile: writeKey(t, "k")}}}}
	e := start(t, cfg)
	raw := clientHello(t)
	c, err := net.Dial("udp", e.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	b := make([]byte, 1500)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	if n < 14 || b[0] != byte(protocol.ContentTypeHandshake) || handshake.Type(b[13]) != handshake.TypeHelloVerifyRequest {
		t.Errorf("answer to a ClientHello without a cookie: % x, want a HelloVerifyRequest", b[:min(n, 32)])
	}
}

// TestShutdown: Run ends every session and observation, and Write is refused after.
func TestShutdown(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "s", Protocol: Name}}
	e := start(t, cfg)
	u, k := dialUDP(t, e.addr(0)), dialTCP(t, e.addr(1), nil)
	for _, c := range []coapClient{u, k} {
		if _, err := c.Observe(ctxT(t), "/devices/s/p", func(*pool.Message) {}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two observations", func() bool { return metric(t, e.a.metrics.observations) == 2 })
	e.stop()
	if err := e.a.Write(ctxT(t), "s", "p", bridge.Int(1)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("write after Run returned: %v", err)
	}
	if n := metric(t, e.a.metrics.observations); n != 0 {
		t.Errorf("%v observations after Run returned", n)
	}
	for _, tr := range []string{"udp", "tcp"} {
		if n := metric(t, e.a.metrics.sessions.WithLabelValues(tr)); n != 0 {
			t.Errorf("%v %s sessions after Run returned", n, tr)
		}
	}
	if e.a.slots.inUse() != 0 {
		t.Errorf("%d session slots taken after Run returned", e.a.slots.inUse())
	}
	select {
	case <-k.Done():
	case <-time.After(waitTimeout):
		t.Error("the TCP client's connection stayed open")
	}
}

// TestHandshakeBound: DTLS peers that start handshakes and never finish them (as
// spoofed addresses would: they never see the cookie) take at most their share of
// the session slots; a session established before them goes on, and new ones are
// possible again once the unfinished handshakes time out.
func TestHandshakeBound(t *testing.T) {
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", PSK: []PSKConfig{{Identity: "s1", KeyFile: writeKey(t, "k1")}}}}
	cfg.MaxConnections = 200 // 25 handshakes at once
	cfg.HandshakeTimeout = time.Second
	cfg.MaxHandshakesPerSource = 100 // the shared bound, not the per-source one
	e := start(t, cfg)
	established, err := dialDTLS(t, e.addr(0), pskOptions("s1", []byte("k1"))...)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := post(t, established, "/devices/s1/x", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Fatalf("before the flood: %v", code)
	}
	e.next(1)

	hello := clientHello(t)
	for range 40 {
		c, err := net.Dial("udp", e.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "handshakes refused beyond the bound", func() bool {
		return metric(t, e.a.metrics.dropped.WithLabelValues(dropHandshakes)) >= 15
	})
	if code, _ := post(t, established, "/devices/s1/x", message.TextPlain, []byte("2")); code != codes.Changed {
		t.Errorf("during the flood, the established session: %v", code)
	}
	e.next(1)
	waitFor(t, "the unfinished handshakes to time out", func() bool { return e.a.handshakes.inUse() == 0 })
	late, err := dialDTLS(t, e.addr(0), pskOptions("s1", []byte("k1"))...)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := post(t, late, "/devices/s1/x", message.TextPlain, []byte("3")); code != codes.Changed {
		t.Errorf("a new session after the flood: %v", code)
	}
	e.next(1)
}

func clientHello(t *testing.T) []byte {
	t.Helper()
	var random handshake.Random
	if err := random.Populate(); err != nil {
		t.Fatal(err)
	}
	rec := &recordlayer.RecordLayer{
		Header: recordlayer.Header{Version: protocol.Version1_2},
		Content: &handshake.Handshake{Message: &handshake.MessageClientHello{
			Version: protocol.Version1_2, Random: random, Cookie: []byte{},
			CipherSuiteIDs:     []uint16{0xc0a8}, // TLS_PSK_WITH_AES_128_CCM_8
			CompressionMethods: []*protocol.CompressionMethod{{}},
		}},
	}
	raw, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestSilentObserver: an observer that never acknowledges its notifications holds
// at most maxNotifyInflight of them; further writes skip it at once, and Run's end
// stops the ones waiting.
func TestSilentObserver(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "nr", Protocol: Name}}
	e := start(t, cfg)
	c, err := net.Dial("udp", e.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// GET /devices/nr/p with Observe 0, confirmable, token 0x7a, by hand: this
	// observer answers nothing after its registration.
	req := []byte{0x41, 0x01, 0x12, 0x34, 0x7a, 0x60, 0x57}
	req = append(req, "devices"...)
	req = append(req, 0x02, 'n', 'r', 0x01, 'p')
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the observation", func() bool { return metric(t, e.a.metrics.observations) == 1 })
	for i := range maxNotifyInflight {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := e.a.Write(ctx, "nr", "p", bridge.Int(int64(i)))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write %d to a silent observer: %v, want a deadline", i, err)
		}
	}
	// Refused at once with its own error: a write that waited for room would
	// end in the context's deadline instead.
	err = e.a.Write(ctxT(t), "nr", "p", bridge.Int(99))
	if err == nil || !strings.Contains(err.Error(), "unacknowledged") {
		t.Errorf("write beyond the in-flight bound: %v", err)
	}
	e.stop() // ends the notifications still waiting for their acknowledgement
}
