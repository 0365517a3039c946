package coap

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/edgegate/edgegate/bridge"
)

// The attacks of issue 19 (items 4 and 8) against the CoAP adapter, with raw
// clients: hand-built datagrams, so that nothing a client library does (retries,
// re-registrations, deregistration on close) hides what the gateway does.

// rawOption is one option of a hand-built CoAP message.
type rawOption struct {
	id    int
	value []byte
}

// Message types and option numbers of RFC 7252 and 7641, for hand-built messages.
const (
	typeCON = 0
	typeNON = 1
	typeACK = 2

	optObserve       = 6
	optURIPath       = 11
	optContentFormat = 12
	optMaxAge        = 14
)

// rawMessage builds a CoAP-over-UDP message (RFC 7252 section 3); options must be
// in ascending order.
func rawMessage(typ int, code codes.Code, mid uint16, token []byte, opts []rawOption, payload []byte) []byte {
	b := []byte{byte(1<<6 | typ<<4 | len(token)), byte(code), byte(mid >> 8), byte(mid)}
	b = append(b, token...)
	prev := 0
	nibble := func(v int) (int, []byte) {
		switch {
		case v < 13:
			return v, nil
		case v < 269:
			return 13, []byte{byte(v - 13)}
		default:
			return 14, binary.BigEndian.AppendUint16(nil, uint16(v-269))
		}
	}
	for _, o := range opts {
		dn, dx := nibble(o.id - prev)
		ln, lx := nibble(len(o.value))
		b = append(b, byte(dn<<4|ln))
		b = append(b, dx...)
		b = append(b, lx...)
		b = append(b, o.value...)
		prev = o.id
	}
	if len(payload) > 0 {
		b = append(b, 0xff)
		b = append(b, payload...)
	}
	return b
}

// pathOptions is a path's Uri-Path options.
func pathOptions(segs ...string) []rawOption {
	out := make([]rawOption, len(segs))
	for i, s := range segs {
		out[i] = rawOption{id: optURIPath, value: []byte(s)}
	}
	return out
}

// observeRequest is a confirmable GET of /devices/device[/point] with Observe 0.
func observeRequest(mid uint16, token []byte, device, point string) []byte {
	segs := []string{"devices", device}
	if point != "" {
		segs = append(segs, point)
	}
	opts := append([]rawOption{{id: optObserve}}, pathOptions(segs...)...)
	return rawMessage(typeCON, codes.GET, mid, token, opts, nil)
}

// rawResponse is a parsed CoAP message.
type rawResponse struct {
	typ   int
	code  codes.Code
	mid   uint16
	token []byte
	opts  map[int][]byte
}

func parseRaw(t *testing.T, b []byte) rawResponse {
	t.Helper()
	if len(b) < 4 || b[0]>>6 != 1 {
		t.Fatalf("not a CoAP message: % x", b)
	}
	tkl := int(b[0] & 0x0f)
	r := rawResponse{typ: int(b[0]>>4) & 3, code: codes.Code(b[1]), mid: binary.BigEndian.Uint16(b[2:4]), opts: map[int][]byte{}}
	r.token = append([]byte(nil), b[4:4+tkl]...)
	p := b[4+tkl:]
	id := 0
	ext := func(n int) int {
		switch n {
		case 13:
			v := int(p[0]) + 13
			p = p[1:]
			return v
		case 14:
			v := int(binary.BigEndian.Uint16(p)) + 269
			p = p[2:]
			return v
		}
		return n
	}
	for len(p) > 0 && p[0] != 0xff {
		d, l := int(p[0]>>4), int(p[0]&0x0f)
		p = p[1:]
		id += ext(d)
		l = ext(l)
		r.opts[id] = append([]byte(nil), p[:l]...)
		p = p[l:]
	}
	return r
}

// rawPeer is a UDP socket bound to a loopback address of its own choosing (127.0.0.2
// is another source than 127.0.0.1 on Linux).
type rawPeer struct {
	t  *testing.T
	pc *net.UDPConn
	to *net.UDPAddr
}

func newRawPeer(t *testing.T, from, to string) *rawPeer {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ta, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, pc: pc, to: ta}
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.pc.WriteToUDP(b, p.to); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next message the gateway sends this peer.
func (p *rawPeer) recv() rawResponse {
	p.t.Helper()
	_ = p.pc.SetReadDeadline(time.Now().Add(waitTimeout))
	b := make([]byte, 2048)
	n, err := p.pc.Read(b)
	if err != nil {
		p.t.Fatalf("waiting for an answer: %v", err)
	}
	return parseRaw(p.t, b[:n])
}

// roundTrip sends a confirmable request and returns its piggybacked answer.
func (p *rawPeer) roundTrip(req []byte) rawResponse {
	p.t.Helper()
	p.send(req)
	r := p.recv()
	if r.typ != typeACK || r.mid != binary.BigEndian.Uint16(req[2:4]) {
		p.t.Fatalf("answer type %d mid %d to mid %d, want the piggybacked ACK", r.typ, r.mid, binary.BigEndian.Uint16(req[2:4]))
	}
	return r
}

// registered checks that r registered an observation: 2.05 with Observe.
func registered(t *testing.T, r rawResponse, what string) {
	t.Helper()
	if _, ok := r.opts[optObserve]; r.code != codes.Content || !ok {
		t.Errorf("%s: %v, observe %v; want 2.05 with Observe", what, r.code, ok)
	}
}

// TestObserveOnlyWhatExists: an observation of a device that is neither configured
// nor seen is 4.04 (it was 2.05 with Observe, holding a place for nothing); a
// configured device, and one that has sent a reading, may be observed.
func TestObserveOnlyWhatExists(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "valve", Protocol: Name}}
	e := start(t, cfg)
	p := newRawPeer(t, "127.0.0.1", e.addr(0))

	r := p.roundTrip(observeRequest(1, []byte{1}, "ghost", "p"))
	if r.code != codes.NotFound {
		t.Errorf("observe an unknown device: %v, want 4.04", r.code)
	}
	if _, ok := r.opts[optObserve]; ok {
		t.Error("the 4.04 carries Observe")
	}
	r = p.roundTrip(observeRequest(2, []byte{2}, "ghost", ""))
	if r.code != codes.NotFound {
		t.Errorf("observe an unknown device's resource: %v, want 4.04", r.code)
	}
	if n := metric(t, e.a.metrics.obsRefused.WithLabelValues(obsNotFound)); n != 2 {
		t.Errorf("observations_refused_total{not_found} = %v, want 2", n)
	}
	if n := metric(t, e.a.metrics.observations); n != 0 {
		t.Fatalf("%v observations of nothing", n)
	}

	// A configured device: its setpoint need not have a value.
	r = p.roundTrip(observeRequest(3, []byte{3}, "valve", "setpoint"))
	registered(t, r, "observe a configured device")
	// A device seen by the gateway.
	post := rawMessage(typeCON, codes.POST, 4, []byte{4}, pathOptions("devices", "seen", "t"), []byte("1"))
	if r := p.roundTrip(post); r.code != codes.Changed {
		t.Fatalf("POST: %v", r.code)
	}
	e.next(1)
	r = p.roundTrip(observeRequest(5, []byte{5}, "seen", ""))
	registered(t, r, "observe a device that sent a reading")
	if n := metric(t, e.a.metrics.observations); n != 2 {
		t.Errorf("%v observations, want 2", n)
	}
}

// TestObservationExpiresWhenIdle: holding an observation is not activity. An
// observer that sends nothing loses its session (and the observation) after
// idle_timeout (it held its session slot for ever); one that re-registers (RFC 7641
// section 3.3.1: the same GET with Observe 0) keeps it.
func TestObservationExpiresWhenIdle(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 2 * time.Second
	cfg.Devices = []DeviceConfig{{ID: "valve", Protocol: Name}}
	e := start(t, cfg)
	silent := newRawPeer(t, "127.0.0.1", e.addr(0))
	if r := silent.roundTrip(observeRequest(1, []byte{1}, "valve", "setpoint")); r.code != codes.Content {
		t.Fatalf("observe: %v", r.code)
	}
	active := newRawPeer(t, "127.0.0.1", e.addr(0))
	mid := uint16(100)
	reregister := func() {
		mid++
		if r := active.roundTrip(observeRequest(mid, []byte{9}, "valve", "setpoint")); r.code != codes.Content {
			t.Fatalf("re-register: %v", r.code)
		}
	}
	reregister()
	waitFor(t, "two observations", func() bool { return metric(t, e.a.metrics.observations) == 2 })
	// The active observer re-registers well within idle_timeout while the silent
	// one's session runs out.
	last := time.Now()
	waitFor(t, "the silent observer's session to end", func() bool {
		if time.Since(last) > cfg.IdleTimeout/5 {
			reregister()
			last = time.Now()
		}
		return metric(t, e.a.metrics.observations) == 1
	})
	if n := metric(t, e.a.metrics.sessions.WithLabelValues("udp")); n != 1 {
		t.Errorf("%v UDP sessions, want the active observer's alone", n)
	}
	// The write reaches the observer that re-registered, and returns once it
	// acknowledged.
	written := make(chan error, 1)
	go func() { written <- e.a.Write(ctxT(t), "valve", "setpoint", bridge.Int(3)) }()
	n := active.recv()
	if n.typ != typeCON || n.code != codes.Content || !bytes.Equal(n.token, []byte{9}) {
		t.Fatalf("notification: %+v", n)
	}
	active.send(rawMessage(typeACK, 0, n.mid, nil, nil, nil))
	if err := <-written; err != nil {
		t.Fatalf("write to the re-registered observer: %v", err)
	}
}

// TestObservationsPerPeer: one source address gets at most
// max_observations_per_peer observations whatever the number of its sessions (its
// ports); beyond, the answer is 2.05 without Observe (RFC 7641 section 4.1: not
// registered). Another address is not affected.
func TestObservationsPerPeer(t *testing.T) {
	cfg := testConfig()
	cfg.MaxObservationsPerPeer = 2
	cfg.Devices = []DeviceConfig{{ID: "valve", Protocol: Name}}
	e := start(t, cfg)
	for i := range 3 {
		p := newRawPeer(t, "127.0.0.1", e.addr(0))
		r := p.roundTrip(observeRequest(uint16(i), []byte{byte(i)}, "valve", "setpoint"))
		_, observing := r.opts[optObserve]
		if r.code != codes.Content || observing != (i < 2) {
			t.Errorf("observer %d from 127.0.0.1: %v, observe %v", i, r.code, observing)
		}
	}
	if n := metric(t, e.a.metrics.obsRefused.WithLabelValues(obsPerPeer)); n != 1 {
		t.Errorf("observations_refused_total{per_peer} = %v, want 1", n)
	}
	other := newRawPeer(t, "127.0.0.2", e.addr(0))
	r := other.roundTrip(observeRequest(7, []byte{7}, "valve", "setpoint"))
	registered(t, r, "observer from 127.0.0.2")
	if n := metric(t, e.a.metrics.observations); n != 3 {
		t.Errorf("%v observations, want 3", n)
	}
}

// TestBusyAnswered: a new UDP peer that finds max_connections taken is answered
// 5.03 with a Max-Age (it heard nothing, and could not tell a full gateway from a
// dead one), with its request's message ID and token; a non-confirmable request
// gets a non-confirmable 5.03.
func TestBusyAnswered(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 1
	e := start(t, cfg)
	holder := newRawPeer(t, "127.0.0.1", e.addr(0))
	if r := holder.roundTrip(rawMessage(typeCON, codes.POST, 1, []byte{1}, pathOptions("devices", "d", "p"), []byte("1"))); r.code != codes.Changed {
		t.Fatalf("the first peer: %v", r.code)
	}
	e.next(1)
	late := newRawPeer(t, "127.0.0.1", e.addr(0))
	r := late.roundTrip(rawMessage(typeCON, codes.POST, 0xbeef, []byte{0xaa, 0xbb}, pathOptions("devices", "d", "p"), []byte("2")))
	if r.code != codes.ServiceUnavailable || !bytes.Equal(r.token, []byte{0xaa, 0xbb}) {
		t.Errorf("beyond max_connections: %v token % x, want 5.03 with the request's token", r.code, r.token)
	}
	if age := r.opts[optMaxAge]; len(age) != 1 || age[0] != busyMaxAge {
		t.Errorf("Max-Age % x, want %d", age, busyMaxAge)
	}
	late.send(rawMessage(typeNON, codes.POST, 0xbef0, []byte{0xcc}, pathOptions("devices", "d", "p"), []byte("3")))
	if r := late.recv(); r.typ != typeNON || r.code != codes.ServiceUnavailable || !bytes.Equal(r.token, []byte{0xcc}) {
		t.Errorf("a NON request beyond max_connections: %+v", r)
	}
	if n := metric(t, e.a.metrics.refused.WithLabelValues("udp", refusedMaxConnections)); n != 2 {
		t.Errorf("sessions_refused_total{udp,max_connections} = %v, want 2", n)
	}
	e.none()
}

// TestHandshakesPerSource: one host that starts DTLS handshakes from many ports and
// never finishes them holds at most max_handshakes_per_source of the handshake
// slots (it held all of them until handshake_timeout), so that a client from
// another address shakes hands meanwhile.
func TestHandshakesPerSource(t *testing.T) {
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", PSK: []PSKConfig{{Identity: "s1", KeyFile: writeKey(t, "k1")}}}}
	cfg.MaxConnections = 200 // 25 handshakes at once
	cfg.HandshakeTimeout = time.Minute
	e := start(t, cfg)
	hello := clientHello(t)
	const stalled = 40
	for range stalled {
		newRawPeer(t, "127.0.0.2", e.addr(0)).send(hello)
	}
	waitFor(t, "the attacker's handshakes beyond its share refused", func() bool {
		return metric(t, e.a.metrics.dropped.WithLabelValues(dropPerSource)) == stalled-DefaultMaxHandshakesPerSource
	})
	if n := e.a.handshakes.inUse(); n != DefaultMaxHandshakesPerSource {
		t.Errorf("%d handshakes in progress, want the attacker's %d", n, DefaultMaxHandshakesPerSource)
	}
	c, err := dialDTLS(t, e.addr(0), pskOptions("s1", []byte("k1"))...)
	if err != nil {
		t.Fatalf("a client from 127.0.0.1 during the stalled handshakes from 127.0.0.2: %v", err)
	}
	if code, _ := post(t, c, "/devices/s1/x", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Errorf("POST: %v", code)
	}
	e.next(1)
}
