package modbus_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

// TestTimeoutReconnects: a device that answers too late is dropped and connected
// again; its late answer, sent on the old connection, is never read as the answer
// to a later request.
func TestTimeoutReconnects(t *testing.T) {
	s := newSim(t, sim.Options{})
	p := sim.Point{Register: sim.Holding, Address: 0}
	set(t, s, 1, p, bridge.Uint(1))
	cfg := testConfig(device("slow", s.Addr(), 1, pc("v", "holding", 0, "uint16")))
	cfg.Timeout = 50 * time.Millisecond
	e := start(t, cfg)
	e.point("slow", "v", bridge.QualityGood)
	s.SetDelay(200 * time.Millisecond)
	e.point("slow", "v", bridge.QualityBad)
	waitFor(t, "the device disconnected", func() bool { return e.device("slow").State == bridge.StateDisconnected })
	if d := e.device("slow"); !strings.Contains(d.LastError, "timed out") {
		t.Errorf("last error %q", d.LastError)
	}
	waitFor(t, "a reconnect", func() bool { return e.metric("edgegate_modbus_reconnects_total") >= 1 })
	if n := e.metric("edgegate_modbus_poll_errors_total", "device", "slow", "class", "timeout"); n < 1 {
		t.Errorf("poll_errors_total{class=timeout} = %v", n)
	}
	set(t, s, 1, p, bridge.Uint(2))
	s.SetDelay(0)
	if m := e.point("slow", "v", bridge.QualityGood); !m.Value.Equal(bridge.Uint(2)) {
		t.Errorf("after recovery v = %#v", m.Value)
	}
}

// hostileDevice is a Modbus TCP peer that answers every read with zeros, in an
// MBAP header that mangle may change: the previous request's transaction id, as a
// device does that answered one request late, or another unit's id. It counts the
// connections it accepted.
type hostileDevice struct {
	ln     net.Listener
	mangle func(hdr []byte)
	conns  atomic.Int32
	wg     sync.WaitGroup
}

// newStaleDevice answers with the previous request's transaction id.
func newStaleDevice(t *testing.T) *hostileDevice {
	return newHostileDevice(t, func(hdr []byte) {
		binary.BigEndian.PutUint16(hdr, binary.BigEndian.Uint16(hdr)-1)
	})
}

func newHostileDevice(t *testing.T, mangle func(hdr []byte)) *hostileDevice {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &hostileDevice{ln: ln, mangle: mangle}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.conns.Add(1)
			open = append(open, c)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.wg.Wait()
	})
	return d
}

func (d *hostileDevice) serve(c net.Conn) {
	defer c.Close()
	hdr := make([]byte, 7)
	for {
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
		if _, err := io.ReadFull(c, pdu); err != nil {
			return
		}
		n := binary.BigEndian.Uint16(pdu[3:])
		resp := []byte{pdu[0], byte(2 * n)}
		resp = append(resp, make([]byte, 2*n)...)
		out := []byte{hdr[0], hdr[1], 0, 0, 0, byte(len(resp) + 1), hdr[6]}
		d.mangle(out)
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

func TestTransactionIDMismatchReconnects(t *testing.T) {
	d := newStaleDevice(t)
	e := start(t, testConfig(device("stale", d.ln.Addr().String(), 1, pc("v", "holding", 0, "uint16"))))
	waitFor(t, "reconnects", func() bool { return d.conns.Load() >= 3 })
	waitFor(t, "the error counted", func() bool {
		return e.metric("edgegate_modbus_poll_errors_total", "device", "stale", "class", "transaction_id") >= 2
	})
	if info := e.device("stale"); info.State != bridge.StateDisconnected || !strings.Contains(info.LastError, "transaction") {
		t.Errorf("device: %v %q", info.State, info.LastError)
	}
	e.stop()
	if _, ok := e.hub.Latest("stale", "v"); ok {
		t.Error("a reading was published from answers to other requests")
	}
}

// TestWrongUnitIDReconnects: an answer from another unit than the one asked (a
// confused gateway in front of several) is a protocol error, never a GOOD reading
// of the device asked: the connection is dropped as for a transaction id mismatch.
func TestWrongUnitIDReconnects(t *testing.T) {
	d := newHostileDevice(t, func(hdr []byte) { hdr[6]++ })
	e := start(t, testConfig(device("other", d.ln.Addr().String(), 1, pc("v", "holding", 0, "uint16"))))
	waitFor(t, "reconnects", func() bool { return d.conns.Load() >= 3 })
	waitFor(t, "the error counted", func() bool {
		return e.metric("edgegate_modbus_poll_errors_total", "device", "other", "class", "protocol") >= 2
	})
	if info := e.device("other"); !strings.Contains(info.LastError, "answer from unit 2 to a request to unit 1") {
		t.Errorf("device: %v %q", info.State, info.LastError)
	}
	e.stop()
	if m, ok := e.hub.Latest("other", "v"); ok && m.Quality == bridge.QualityGood {
		t.Errorf("another unit's answer was published as GOOD: %v", m)
	}
}

// TestRestart: the device goes away and comes back on the same address.
func TestRestart(t *testing.T) {
	s := newSim(t, sim.Options{})
	p := sim.Point{Register: sim.Input, Address: 1, Type: "int32"}
	set(t, s, 1, p, bridge.Int(-7))
	e := start(t, testConfig(device("r", s.Addr(), 1, pc("v", "input", 1, "int32"))))
	e.point("r", "v", bridge.QualityGood)
	s.Stop()
	if m := e.point("r", "v", bridge.QualityBad); !m.Value.Equal(bridge.Int(-7)) {
		t.Errorf("BAD keeps the last value: %#v", m.Value)
	}
	waitFor(t, "the device disconnected", func() bool { return e.device("r").State == bridge.StateDisconnected })
	waitFor(t, "failed reconnects", func() bool { return e.metric("edgegate_modbus_reconnects_total") >= 2 })
	set(t, s, 1, p, bridge.Int(8))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if m := e.point("r", "v", bridge.QualityGood); !m.Value.Equal(bridge.Int(8)) {
		t.Errorf("after the restart v = %#v", m.Value)
	}
	waitFor(t, "the device connected", func() bool { return e.device("r").State == bridge.StateConnected })
}

// TestSlowDeviceAlone: a device that never answers delays nobody on other
// connections.
func TestSlowDeviceAlone(t *testing.T) {
	silent := newSim(t, sim.Options{})
	fast := newSim(t, sim.Options{})
	silent.SetSilent(true)
	cfg := testConfig(
		device("silent", silent.Addr(), 1, pc("v", "holding", 0, "uint16")),
		device("fast", fast.Addr(), 1, pc("v", "holding", 0, "uint16")),
	)
	cfg.Timeout = time.Minute
	e := start(t, cfg)
	waitFor(t, "the silent device asked", func() bool { return silent.Requests() >= 1 })
	e.polls("fast", 20)
	if n := silent.Requests(); n != 1 {
		t.Errorf("the silent device got %d requests while one was open", n)
	}
	if n := e.metric("edgegate_modbus_polls_total", "device", "silent"); n != 0 {
		t.Errorf("silent device polls: %v", n)
	}
}

// TestUnitsShareAConnection: several unit ids behind one address (a gateway) are
// polled over one connection, one request at a time.
func TestUnitsShareAConnection(t *testing.T) {
	s := newSim(t, sim.Options{Units: []uint8{1, 2, 3}})
	for u := uint8(1); u <= 3; u++ {
		set(t, s, u, sim.Point{Register: sim.Holding, Address: 0}, bridge.Uint(100*uint64(u)))
	}
	e := start(t, testConfig(
		device("u1", s.Addr(), 1, pc("v", "holding", 0, "uint16")),
		device("u2", s.Addr(), 2, pc("v", "holding", 0, "uint16")),
		device("u3", s.Addr(), 3, pc("v", "holding", 0, "uint16")),
		device("u4", s.Addr(), 4, pc("v", "holding", 0, "uint16")), // not behind the gateway
	))
	for u := 1; u <= 3; u++ {
		id := "u" + string(rune('0'+u))
		if m := e.point(id, "v", bridge.QualityGood); !m.Value.Equal(bridge.Uint(uint64(100 * u))) {
			t.Errorf("%s = %#v", id, m.Value)
		}
	}
	waitFor(t, "u4 in error", func() bool { return e.device("u4").State == bridge.StateError })
	if d := e.device("u4"); !strings.Contains(d.LastError, "gateway target") {
		t.Errorf("u4: %q", d.LastError)
	}
	if n := e.metric("edgegate_modbus_reconnects_total"); n != 0 {
		t.Errorf("%v reconnects: an exception must not drop the connection", n)
	}
}

// recorder is a slog.Handler that keeps the messages logged.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// TestLogsStateChanges: a device that cannot be reached is logged once, not at
// every attempt, and again once when it connects.
func TestLogsStateChanges(t *testing.T) {
	s := newSim(t, sim.Options{})
	addr := s.Addr()
	s.Stop()
	rec := &recorder{}
	e := startWith(t, testConfig(device("down", addr, 1, pc("v", "holding", 0, "uint16"))), slog.New(rec))
	waitFor(t, "reconnect attempts", func() bool { return e.metric("edgegate_modbus_reconnects_total") >= 5 })
	if n := rec.count("modbus: device disconnected"); n != 1 {
		t.Errorf("%d lines for a device down at every attempt, want 1", n)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	e.point("down", "v", bridge.QualityGood)
	waitFor(t, "the connection logged", func() bool { return rec.count("modbus: device connected") == 1 })
}
