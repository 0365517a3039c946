package mqtt

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Raw packets, built by hand so that they can be cut short or bent.
var (
	// CONNECT, MQTT 3.1.1, clean session, keepalive 30, client id "raw".
	rawConnect311 = []byte{0x10, 0x0f, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 3, 'r', 'a', 'w'}
	// CONNECT, MQTT 5, clean start, keepalive 30, no properties, client id "raw5".
	rawConnect5 = []byte{0x10, 0x11, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 4, 'r', 'a', 'w', '5'}
	// SUBSCRIBE, MQTT 5, packet id 1, no properties, filter "a/b" and then nothing:
	// the subscription options byte is missing. mochi v2.7.9 indexes past the end of
	// the packet here and panics (mochi issue #501).
	rawSubscribe5Short = []byte{0x82, 0x08, 0, 1, 0, 0, 3, 'a', '/', 'b'}
)

// readPacket reads one MQTT packet's type byte and body.
func readPacket(r *bufio.Reader) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var n, shift int
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return typ, body, err
}

// rawConn dials the broker; every read and write is bounded by waitTimeout.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return c, bufio.NewReader(c)
}

// expectClosed waits for the server to close the connection.
func expectClosed(t *testing.T, r *bufio.Reader, what string) {
	t.Helper()
	for {
		_, _, err := readPacket(r)
		if err == nil {
			continue // a DISCONNECT or CONNACK before the close
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: the server did not close the connection", what)
		}
		return
	}
}

// stillWorks checks that a well-behaved client still gets a reading to the hub.
func stillWorks(t *testing.T, e *env, point string) {
	t.Helper()
	c := mustClient3(t, e.addr(), "", "", "")
	publish3(t, c, "devices/healthy/"+point, 1, "1")
	if m := e.next(1)[0]; m.Device != "healthy" || m.Point != point {
		t.Fatalf("after %s: got %s/%s", point, m.Device, m.Point)
	}
}

func TestMalformedPackets(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectTimeout = time.Second
	e := start(t, cfg)

	cases := []struct {
		name  string
		bytes [][]byte // written in turn; a CONNACK is read after a complete CONNECT
	}{
		{"truncated_connect", [][]byte{rawConnect311[:9]}},
		{"remaining_length_too_short", [][]byte{append([]byte{0x10, 0x05}, rawConnect311[2:]...)}},
		{"remaining_length_too_long", [][]byte{append([]byte{0x10, 0x7f}, rawConnect311[2:]...)}},
		{"remaining_length_five_bytes", [][]byte{{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}}},
		{"not_connect_first", [][]byte{{0x82, 0x08, 0, 1, 0, 3, 'a', '/', 'b', 0}}},
		{"garbage", [][]byte{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}},
		{"zero_bytes", [][]byte{{0, 0, 0, 0, 0, 0, 0, 0}}},
		{"v5_subscribe_cut_short", [][]byte{rawConnect5, rawSubscribe5Short}},
		{"v311_publish_bad_topic_length", [][]byte{rawConnect311, {0x30, 0x04, 0xff, 0xff, 'a', 'b'}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, r := rawConn(t, e.addr())
			for i, b := range c.bytes {
				if _, err := conn.Write(b); err != nil {
					t.Fatal(err)
				}
				if len(c.bytes) > 1 && i == 0 {
					typ, _, err := readPacket(r)
					if err != nil || typ != 0x20 {
						t.Fatalf("CONNACK: type %#x, %v", typ, err)
					}
				}
			}
			expectClosed(t, r, c.name)
			stillWorks(t, e, c.name)
		})
	}
	// mochi's own deferred cleanup closes the connection while the panic unwinds,
	// before our recover runs: the count may come a moment after the close.
	e.waitFor("the short v5 SUBSCRIBE's panic recovered", func() bool { return e.counter(e.a.metrics.panics) == 1 })
	e.waitFor("the panicked client is forgotten", func() bool {
		_, ok := e.a.srv.Load().Clients.Get("raw5")
		return !ok
	})
	e.waitFor("connections closed", func() bool { return e.counter(e.a.metrics.open) == 0 })
}

func TestSilentConnectionTimesOut(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectTimeout = 200 * time.Millisecond
	e := start(t, cfg)
	_, r := rawConn(t, e.addr())
	expectClosed(t, r, "silent connection")
	stillWorks(t, e, "after_silence")
}

func TestMaxConnections(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 2
	e := start(t, cfg)
	for _, id := range []byte{'1', '2'} {
		conn, r := rawConn(t, e.addr())
		connect := append([]byte(nil), rawConnect5...)
		connect[len(connect)-1] = id // distinct client ids, or the second takes the first's session over
		if _, err := conn.Write(connect); err != nil {
			t.Fatal(err)
		}
		if typ, _, err := readPacket(r); err != nil || typ != 0x20 {
			t.Fatalf("CONNACK: %#x, %v", typ, err)
		}
	}
	_, r := rawConn(t, e.addr())
	expectClosed(t, r, "third connection")
	if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedMaxConnections)); n != 1 {
		t.Errorf("refused for max_connections: %v, want 1", n)
	}
}
