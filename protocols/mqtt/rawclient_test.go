package mqtt

import (
	"bufio"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// rawClient speaks MQTT 3.1.1 (version 4) or 5 byte by byte, so that the tests see
// exactly what the broker sends: CONNACK codes, session present, queued messages.
type rawClient struct {
	t       *testing.T
	conn    net.Conn
	r       *bufio.Reader
	version byte
	nextID  uint16
}

// dialRaw connects over dial (plain TCP or TLS); the connection closes when the test
// ends, and every read and write is bounded by waitTimeout.
func dialRaw(t *testing.T, version byte, dial func() (net.Conn, error)) *rawClient {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return &rawClient{t: t, conn: c, r: bufio.NewReader(c), version: version}
}

func dialTCP(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.DialTimeout("tcp", addr, waitTimeout) }
}

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// packet frames a body with its fixed header.
func packet(typ byte, body []byte) []byte {
	out := []byte{typ}
	n := len(body)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// connectPacket is a CONNECT; user and pass are left out when empty. Without clean,
// a v5 session is kept for an hour after the connection ends.
func (c *rawClient) connectPacket(id, user, pass string, clean bool) []byte {
	var flags byte
	if clean {
		flags |= 0x02
	}
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', c.version, flags, 0, 30}
	if c.version == 5 {
		if clean {
			body = append(body, 0)
		} else {
			body = append(body, 5, 0x11, 0, 0, 0x0e, 0x10) // session expiry 3600 s
		}
	}
	body = append(body, mqttString(id)...)
	if user != "" {
		body = append(body, mqttString(user)...)
	}
	if pass != "" {
		body = append(body, mqttString(pass)...)
	}
	return packet(0x10, body)
}

// connect sends CONNECT and returns the CONNACK's code and session present flag.
func (c *rawClient) connect(id, user, pass string, clean bool) (code byte, present bool) {
	c.t.Helper()
	c.write(c.connectPacket(id, user, pass, clean))
	typ, body, err := readPacket(c.r)
	if err != nil || typ != 0x20 || len(body) < 2 {
		c.t.Fatalf("connect %q as %q: CONNACK %#x %v: %v", id, user, typ, body, err)
	}
	return body[1], body[0]&1 == 1
}

// subscribe subscribes to one filter and returns the SUBACK's code.
func (c *rawClient) subscribe(filter string, qos byte) byte {
	c.t.Helper()
	c.nextID++
	body := binary.BigEndian.AppendUint16(nil, c.nextID)
	if c.version == 5 {
		body = append(body, 0)
	}
	body = append(append(body, mqttString(filter)...), qos)
	c.write(packet(0x82, body))
	for {
		typ, body, err := readPacket(c.r)
		if err != nil {
			c.t.Fatalf("subscribe %s: %v", filter, err)
		}
		if typ == 0x90 {
			return body[len(body)-1]
		}
	}
}

// disconnect ends the connection normally (the session stays, unless clean).
func (c *rawClient) disconnect() {
	c.t.Helper()
	c.write([]byte{0xe0, 0})
	_ = c.conn.Close()
}

type rawPublish struct {
	topic, payload string
}

// parsePublish decodes a PUBLISH (type byte and body) and acknowledges QoS 1.
func (c *rawClient) parsePublish(typ byte, body []byte) rawPublish {
	c.t.Helper()
	n := int(binary.BigEndian.Uint16(body))
	p := rawPublish{topic: string(body[2 : 2+n])}
	rest := body[2+n:]
	if qos := typ >> 1 & 3; qos > 0 {
		if qos == 1 {
			c.write(packet(0x40, rest[:2]))
		}
		rest = rest[2:]
	}
	if c.version == 5 {
		var props, shift int
		for i := 0; ; i++ {
			props |= int(rest[i]&0x7f) << shift
			shift += 7
			if rest[i]&0x80 == 0 {
				rest = rest[i+1:]
				break
			}
		}
		rest = rest[props:]
	}
	p.payload = string(rest)
	return p
}

// publishesUntilPing returns every PUBLISH the broker sends before it answers a
// PINGREQ sent now. mochi resends a session's queued messages before it reads the
// first packet of the connection, so these are all of them.
func (c *rawClient) publishesUntilPing() []rawPublish {
	c.t.Helper()
	c.write([]byte{0xc0, 0})
	var out []rawPublish
	for {
		typ, body, err := readPacket(c.r)
		if err != nil {
			c.t.Fatalf("waiting for PINGRESP: %v", err)
		}
		switch typ >> 4 {
		case 3:
			out = append(out, c.parsePublish(typ, body))
		case 13:
			return out
		}
	}
}
