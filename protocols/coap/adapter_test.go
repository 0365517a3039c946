package coap

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
)

// TestPushForms sends every payload form over UDP and TCP and checks what reaches
// the hub.
func TestPushForms(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "boiler-1", Protocol: Name, Labels: map[string]string{"site": "a"},
		Points: []PointConfig{{Name: "temp", Unit: "°C", Priority: "high"}}}}
	e := start(t, cfg)
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		path string
		cf   message.MediaType
		body []byte
		want []*bridge.Message
	}{
		{"text number", "/devices/boiler-1/temp", message.TextPlain, []byte("21.5"),
			[]*bridge.Message{{Device: "boiler-1", Point: "temp", Value: bridge.Double(21.5), Unit: "°C", Priority: bridge.PriorityHigh}}},
		{"text bool", "/devices/d2/on", message.TextPlain, []byte("true"),
			[]*bridge.Message{{Device: "d2", Point: "on", Value: bridge.Bool(true)}}},
		{"JSON reading", "/devices/d2/t", message.AppJSON, []byte(`{"value": 3, "ts": "2024-05-01T12:00:00Z", "unit": "%"}`),
			[]*bridge.Message{{Device: "d2", Point: "t", Value: bridge.Int(3), SourceTime: ts, Unit: "%"}}},
		{"CBOR value", "/devices/d2/c", message.AppCBOR, payload.AppendCBOR(nil, bridge.Double(-4.1)),
			[]*bridge.Message{{Device: "d2", Point: "c", Value: bridge.Double(-4.1)}}},
		{"octets", "/devices/d2/raw", message.AppOctets, []byte{0xff, 0, 1},
			[]*bridge.Message{{Device: "d2", Point: "raw", Value: bridge.Bytes([]byte{0xff, 0, 1})}}},
		{"JSON object of points", "/devices/d3", message.AppJSON, []byte(`{"a": 1, "b": "x", "ts": "2024-05-01T12:00:00Z"}`),
			[]*bridge.Message{{Device: "d3", Point: "a", Value: bridge.Int(1), SourceTime: ts}, {Device: "d3", Point: "b", Value: bridge.String("x"), SourceTime: ts}}},
		{"CBOR object of points", "/devices/d3", message.AppCBOR,
			append(payload.AppendCBORText(payload.AppendCBORMapHead(nil, 1), "c"), 0xf4),
			[]*bridge.Message{{Device: "d3", Point: "c", Value: bridge.Bool(false)}}},
	}
	for i, transport := range []string{"udp", "tcp"} {
		var c coapClient
		if transport == "udp" {
			c = dialUDP(t, e.addr(i))
		} else {
			c = dialTCP(t, e.addr(i), nil)
		}
		for _, tc := range cases {
			send := post
			if len(tc.want) == 1 {
				send = put
			}
			code, diag := send(t, c, tc.path, tc.cf, tc.body)
			if code != codes.Changed {
				t.Fatalf("%s %s: %v %q, want 2.04", transport, tc.name, code, diag)
			}
			got := e.next(len(tc.want))
			for j, w := range tc.want {
				g := got[j]
				if g.Device != w.Device || g.Point != w.Point || !g.Value.Equal(w.Value) || !g.SourceTime.Equal(w.SourceTime) ||
					g.Unit != w.Unit || g.Protocol != bridge.ProtocolCoAP {
					t.Errorf("%s %s: got %s/%s=%#v ts=%v unit=%q, want %s/%s=%#v ts=%v unit=%q", transport, tc.name,
						g.Device, g.Point, g.Value, g.SourceTime, g.Unit, w.Device, w.Point, w.Value, w.SourceTime, w.Unit)
				}
				if w.Priority != 0 && g.Priority != w.Priority {
					t.Errorf("%s %s: priority %v, want %v", transport, tc.name, g.Priority, w.Priority)
				}
				if g.Labels[labelPath] != tc.path {
					t.Errorf("%s %s: path label %q", transport, tc.name, g.Labels[labelPath])
				}
			}
			if tc.want[0].Device == "boiler-1" && got[0].Labels["site"] != "a" {
				t.Errorf("configured label missing: %v", got[0].Labels)
			}
		}
	}
	if d := e.device("d2"); d.State != bridge.StateConnected {
		t.Errorf("device d2 state %v, want connected", d.State)
	}
}

// TestRefusals checks the answers to requests the adapter does not take, and that
// nothing reaches the hub for them.
func TestRefusals(t *testing.T) {
	e := start(t, testConfig())
	c := dialUDP(t, e.addr(0))
	cases := []struct {
		name string
		path string
		cf   message.MediaType
		body []byte
		want codes.Code
	}{
		{"empty payload", "/devices/d/p", message.TextPlain, nil, codes.BadRequest},
		{"bad JSON", "/devices/d/p", message.AppJSON, []byte(`{"value": `), codes.BadRequest},
		{"application/json that is not JSON", "/devices/d/p", message.AppJSON, []byte(`hello`), codes.BadRequest},
		{"bad CBOR", "/devices/d/p", message.AppCBOR, []byte{0x1c}, codes.BadRequest},
		{"CBOR null", "/devices/d/p", message.AppCBOR, []byte{0xf6}, codes.BadRequest},
		{"scalar for an object", "/devices/d", message.AppJSON, []byte(`21`), codes.BadRequest},
		{"unknown content format", "/devices/d/p", message.AppXML, []byte(`<a/>`), codes.UnsupportedMediaType},
		{"octets for an object", "/devices/d", message.AppOctets, []byte{1}, codes.UnsupportedMediaType},
		{"no such resource", "/other/d/p", message.TextPlain, []byte("1"), codes.NotFound},
		{"too deep", "/devices/d/p/q", message.TextPlain, []byte("1"), codes.NotFound},
		{"bad device name", "/devices/a+b/p", message.TextPlain, []byte("1"), codes.BadRequest},
		{"too large", "/devices/d/p", message.TextPlain, bytes.Repeat([]byte("1"), DefaultMaxPayloadSize+1), codes.RequestEntityTooLarge},
	}
	for _, tc := range cases {
		code, diag := post(t, c, tc.path, tc.cf, tc.body)
		if code != tc.want {
			t.Errorf("%s: %v %q, want %v", tc.name, code, diag, tc.want)
		}
	}
	resp, err := c.Delete(ctxT(t), "/devices/d/p")
	if err != nil || resp.Code() != codes.MethodNotAllowed {
		t.Errorf("DELETE: %v, %v", resp, err)
	}
	e.none()
	if n := metric(t, e.a.metrics.badPayloads); n != 6 {
		t.Errorf("bad payloads counted %v, want 6", n)
	}
	if d := e.device("d"); d.Errors == 0 || d.LastError == "" {
		t.Errorf("device d: %d errors, last %q; want the bad payloads counted", d.Errors, d.LastError)
	}
	if n := metric(t, e.a.metrics.requests.WithLabelValues("udp", "POST", "4.00")); n != 7 {
		t.Errorf("requests{udp,POST,4.00} = %v, want 7 (6 payloads, 1 name)", n)
	}
}

// TestGetLatest reads back the latest value in each content format.
func TestGetLatest(t *testing.T) {
	e := start(t, testConfig())
	c := dialUDP(t, e.addr(0))
	if code, _, _ := get(t, c, "/devices/g/t"); code != codes.NotFound {
		t.Errorf("GET before any value: %v, want 4.04", code)
	}
	if code, _ := post(t, c, "/devices/g/t", message.AppJSON, []byte(`{"value": 21.5, "ts": "2024-05-01T12:00:00Z", "unit": "°C"}`)); code != codes.Changed {
		t.Fatalf("POST: %v", code)
	}
	e.next(1)
	if code, cf, body := get(t, c, "/devices/g/t"); code != codes.Content || cf != message.TextPlain || body != "21.5" {
		t.Errorf("GET text: %v %v %q", code, cf, body)
	}
	if code, cf, body := get(t, c, "/devices/g/t", accept(message.AppJSON)); code != codes.Content || cf != message.AppJSON ||
		body != `{"value":21.5,"ts":"2024-05-01T12:00:00Z","unit":"°C"}` {
		t.Errorf("GET JSON: %v %v %s", code, cf, body)
	}
	code, cf, body := get(t, c, "/devices/g/t", accept(message.AppCBOR))
	if code != codes.Content || cf != message.AppCBOR {
		t.Fatalf("GET CBOR: %v %v", code, cf)
	}
	r, err := payload.Decoder{}.DecodeCBOR([]byte(body))
	if err != nil || !r.Value.Equal(bridge.Double(21.5)) || r.Unit != "°C" || !r.SourceTime.Equal(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("GET CBOR decodes to %#v, %v", r, err)
	}
	if code, _, _ := get(t, c, "/devices/g/t", accept(message.AppXML)); code != codes.NotAcceptable {
		t.Errorf("GET XML: %v, want 4.06", code)
	}
	post(t, c, "/devices/g", message.AppJSON, []byte(`{"h": 40}`))
	e.next(1)
	if code, cf, body := get(t, c, "/devices/g"); code != codes.Content || cf != message.AppJSON || body != `{"h":40,"t":21.5}` {
		t.Errorf("GET device: %v %v %s", code, cf, body)
	}
}

// TestBlockwise uploads a payload larger than a block in blocks over UDP (and in
// one message over TCP, where go-coap's client sends whole messages to a server
// whose CSM does not announce block-wise transfer), and refuses one larger than
// max_payload_size with 4.13 on both.
func TestBlockwise(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPayloadSize = 4000
	e := start(t, cfg)
	var obj strings.Builder
	obj.WriteString("{")
	for i := range 200 {
		if i > 0 {
			obj.WriteString(",")
		}
		obj.WriteString(`"p` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `": ` + "21.5")
	}
	obj.WriteString("}")
	if obj.Len() < 2500 || obj.Len() > 4000 {
		t.Fatalf("test object is %d bytes", obj.Len())
	}
	for i := range 2 {
		var c coapClient
		if i == 0 {
			c = dialUDP(t, e.addr(0))
		} else {
			c = dialTCP(t, e.addr(1), nil)
		}
		if code, diag := post(t, c, "/devices/big", message.AppJSON, []byte(obj.String())); code != codes.Changed {
			t.Fatalf("block-wise POST: %v %q", code, diag)
		}
		if got := e.next(200); got[199].Device != "big" {
			t.Errorf("got %v", got[199])
		}
		big := `"` + strings.Repeat("y", 6000) + `"`
		if code, _ := post(t, c, "/devices/big/s", message.AppJSON, []byte(big)); code != codes.RequestEntityTooLarge {
			t.Errorf("POST of 6000 bytes with max_payload_size 4000: %v, want 4.13", code)
		}
	}
	e.none()
}

// blockingSink holds every Submit until released, to show that a confirmable
// request is acknowledged only after the bridge accepted its reading.
type blockingSink struct {
	protocols.Sink
	entered chan struct{}
	release chan error
}

func (b *blockingSink) Submit(ctx context.Context, msgs ...*bridge.Message) (bridge.Receipt, error) {
	b.entered <- struct{}{}
	select {
	case err := <-b.release:
		if err != nil {
			return bridge.Receipt{}, err
		}
	case <-ctx.Done():
		return bridge.Receipt{}, ctx.Err()
	}
	return b.Sink.Submit(ctx, msgs...)
}

func TestAcknowledgedAfterPublish(t *testing.T) {
	bs := &blockingSink{entered: make(chan struct{}, 1), release: make(chan error, 1)}
	e := startWith(t, testConfig(), func(s protocols.Sink) protocols.Sink { bs.Sink = s; return bs })
	c := dialUDP(t, e.addr(0))
	type result struct {
		code codes.Code
		err  error
	}
	done := make(chan result, 1)
	send := func() {
		go func() {
			resp, err := c.Post(ctxT(t), "/devices/ack/p", message.TextPlain, strings.NewReader("1"))
			r := result{err: err}
			if err == nil {
				r.code = resp.Code()
				c.ReleaseMessage(resp)
			}
			done <- r
		}()
	}
	send()
	<-bs.entered
	// The request is in Publish: no acknowledgement may have been sent. go-coap
	// retransmits the confirmable request meanwhile; the adapter must not answer
	// the retransmissions either (they are duplicates in flight).
	select {
	case r := <-done:
		t.Fatalf("answered %v, %v before Publish returned", r.code, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	bs.release <- nil
	if r := <-done; r.err != nil || r.code != codes.Changed {
		t.Fatalf("after Publish: %v, %v", r.code, r.err)
	}
	e.next(1)

	// A refusal by the bridge is not a 2.04.
	send()
	<-bs.entered
	bs.release <- bridge.ErrClosed
	if r := <-done; r.err != nil || r.code != codes.ServiceUnavailable {
		t.Fatalf("refused by a closed hub: %v, %v; want 5.03", r.code, r.err)
	}
	send()
	<-bs.entered
	bs.release <- bridge.ErrTooManyDevices
	if r := <-done; r.err != nil || r.code != codes.Forbidden {
		t.Fatalf("refused for too many devices: %v, %v; want 4.03", r.code, r.err)
	}
	e.none()
}

// TestObserveWrite registers observers over UDP and TCP and delivers writes to them.
func TestObserveWrite(t *testing.T) {
	cfg := testConfig()
	cfg.Devices = []DeviceConfig{{ID: "valve", Protocol: Name}}
	e := start(t, cfg)
	ctx := ctxT(t)
	if err := e.a.Write(ctx, "valve", "setpoint", bridge.Double(1)); !errors.Is(err, ErrNoObserver) {
		t.Fatalf("write without observer: %v, want ErrNoObserver", err)
	}
	u := dialUDP(t, e.addr(0))
	k := dialTCP(t, e.addr(1), nil)
	type note struct {
		path string
		cf   message.MediaType
		body string
	}
	notes := make(chan note, 16)
	observe := func(c coapClient, path string, opts ...message.Option) {
		t.Helper()
		first := make(chan struct{}, 1)
		obs, err := c.Observe(ctx, path, func(m *pool.Message) {
			if _, err := m.Observe(); err != nil {
				return
			}
			cf, _ := m.ContentFormat()
			b, _ := m.ReadBody()
			select {
			case first <- struct{}{}:
				return // the registration's answer
			default:
			}
			notes <- note{path: path, cf: cf, body: string(b)}
		}, opts...)
		if err != nil {
			t.Fatalf("observe %s: %v", path, err)
		}
		if obs.Canceled() {
			t.Fatalf("observe %s: not registered", path)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_ = obs.Cancel(cctx)
		})
	}
	observe(u, "/devices/valve/setpoint")
	observe(k, "/devices/valve", accept(message.AppCBOR))
	waitFor(t, "two observations", func() bool { return metric(t, e.a.metrics.observations) == 2 })

	if err := e.a.Write(ctx, "valve", "setpoint", bridge.Double(21.5)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := map[string]note{}
	for range 2 {
		select {
		case n := <-notes:
			got[n.path] = n
		case <-time.After(waitTimeout):
			t.Fatalf("notifications: got %v", got)
		}
	}
	if n := got["/devices/valve/setpoint"]; n.body != "21.5" || n.cf != message.TextPlain {
		t.Errorf("point notification: %+v", n)
	}
	n := got["/devices/valve"]
	rs, err := payload.Decoder{}.DecodeObjectCBOR([]byte(n.body))
	if n.cf != message.AppCBOR || err != nil || len(rs) != 1 || rs[0].Point != "setpoint" || !rs[0].Value.Equal(bridge.Double(21.5)) {
		t.Errorf("device notification: %+v: %v %v", n, rs, err)
	}
	// Another point reaches only the device observer.
	if err := e.a.Write(ctx, "valve", "mode", bridge.String("auto")); err != nil {
		t.Fatalf("write mode: %v", err)
	}
	select {
	case n := <-notes:
		if n.path != "/devices/valve" {
			t.Errorf("mode reached %s", n.path)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no notification of mode")
	}
	waitFor(t, "three acknowledged notifications", func() bool {
		return metric(t, e.a.metrics.notifications.WithLabelValues(notifyAcknowledged)) == 3
	})
	// Writes also arrive through the hub's routing.
	if err := e.hub.Write(ctx, "valve", "setpoint", bridge.Int(7)); err == nil {
		t.Log("hub routed a write to a device it has not seen") // the registry does not know valve
	}
}

// TestObserveLimits: an observer beyond max_observations_per_connection is answered
// without Observe, and deregistration frees its place.
func TestObserveLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxObservationsPerConnection = 1
	e := start(t, cfg)
	c := dialUDP(t, e.addr(0))
	ctx := ctxT(t)
	// Beyond the limit the answer is a plain GET's: the latest value.
	post(t, c, "/devices/x/b", message.TextPlain, []byte("1"))
	e.next(1)
	obs, err := c.Observe(ctx, "/devices/x/a", func(*pool.Message) {})
	if err != nil || obs.Canceled() {
		t.Fatalf("first observation: %v", err)
	}
	obs2, err := c.Observe(ctx, "/devices/x/b", func(*pool.Message) {})
	if err != nil {
		t.Fatalf("second observation: %v", err)
	}
	if !obs2.Canceled() {
		t.Error("second observation registered beyond the limit")
	}
	if err := obs.Cancel(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	waitFor(t, "no observation", func() bool { return metric(t, e.a.metrics.observations) == 0 })
	obs3, err := c.Observe(ctx, "/devices/x/b", func(*pool.Message) {})
	if err != nil || obs3.Canceled() {
		t.Fatalf("observation after a cancel: %v", err)
	}
	_ = obs3.Cancel(ctx)
}

// BenchmarkPushUDP measures confirmable POSTs over UDP through the adapter into a
// hub, from parallel clients each with one request in flight.
func BenchmarkPushUDP(b *testing.B) {
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "udp", Address: "127.0.0.1:0"}}
	benchPush(b, cfg)
}

func benchPush(b *testing.B, cfg *Config) {
	ad, err := cfg.New(protocols.Env{})
	if err != nil {
		b.Fatal(err)
	}
	a := ad.(*Adapter)
	hub := bridge.NewHub(bridge.HubConfig{Retain: 1 << 16, SlowPolicy: bridge.SlowDropOldest}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, hub.Ingest(bridge.ProtocolCoAP)) }()
	defer func() {
		cancel()
		<-done
		hub.Close()
	}()
	<-a.Ready()
	addr := a.Addrs()[0].String()
	body := []byte(`{"value": 21.5, "ts": "2024-05-01T12:00:00Z", "unit": "°C"}`)
	var n atomic.Int64
	runner := periodic(b)
	b.SetParallelism(16) // 32 clients on 2 CPUs, each with one request in flight
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := udp.Dial(addr, options.WithErrors(func(error) {}), runner)
		if err != nil {
			b.Error(err)
			return
		}
		defer func() { _ = c.Close(); <-c.Done() }()
		path := "/devices/bench-" + strconv.FormatInt(n.Add(1), 10) + "/temp"
		for pb.Next() {
			resp, err := c.Post(context.Background(), path, message.AppJSON, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			if resp.Code() != codes.Changed {
				b.Errorf("code %v", resp.Code())
			}
			c.ReleaseMessage(resp)
		}
	})
}
