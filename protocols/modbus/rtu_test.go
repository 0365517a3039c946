package modbus_test

import (
	"encoding/binary"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/modbus"
)

// crcTable is the Modbus CRC as a lookup table, written apart from the package's
// bitwise one so that each checks the other.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

func tableCRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^x]
	}
	return crc
}

// rtuResponder is a serial device for units 1 and 2 that answers Read Holding
// Registers with register i = 100 × unit + i. It records when each request
// arrived and when each answer was about to be written.
type rtuResponder struct {
	mu       sync.Mutex
	requests []time.Time
	answers  []time.Time
	units    map[byte]int
	// as answers a unit's requests with another address byte (a device that
	// answers for another).
	as map[byte]byte
}

func (r *rtuResponder) serve(f *os.File) {
	req := make([]byte, 8)
	for {
		if _, err := io.ReadFull(f, req); err != nil {
			return
		}
		now := time.Now()
		r.mu.Lock()
		r.requests = append(r.requests, now)
		r.units[req[0]]++
		r.mu.Unlock()
		if binary.LittleEndian.Uint16(req[6:]) != tableCRC(req[:6]) || req[1] != 0x03 || (req[0] != 1 && req[0] != 2) {
			continue // a real device stays silent
		}
		addr, n := binary.BigEndian.Uint16(req[2:]), binary.BigEndian.Uint16(req[4:])
		from := req[0]
		if a, ok := r.as[from]; ok {
			from = a
		}
		resp := []byte{from, 0x03, byte(2 * n)}
		for i := range n {
			resp = binary.BigEndian.AppendUint16(resp, 100*uint16(req[0])+addr+i)
		}
		resp = binary.LittleEndian.AppendUint16(resp, tableCRC(resp))
		// Stamp the answer before writing it: the gateway can only have read it
		// after this instant, so a gap measured from here is never longer than
		// the one the gateway kept, however late this goroutine runs after the
		// write (a stamp taken after Write made the test flaky under -race).
		r.mu.Lock()
		r.answers = append(r.answers, time.Now())
		r.mu.Unlock()
		if _, err := f.Write(resp); err != nil {
			return
		}
	}
}

// start serves r on the far end of a pty pair until the test ends, and returns the
// gateway's end.
func (r *rtuResponder) start(t *testing.T) string {
	t.Helper()
	ours, theirs := serialPair(t)
	fd, err := unix.Open(theirs, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev := os.NewFile(uintptr(fd), theirs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.serve(dev)
	}()
	t.Cleanup(func() {
		dev.Close()
		<-done
	})
	return ours
}

// TestRTUAnswerFromAnotherAddress: on RTU the address byte names the unit that
// answers; an answer to unit 2 from address 1 is a protocol error, never a GOOD
// reading of unit 2, while unit 1 goes on.
func TestRTUAnswerFromAnotherAddress(t *testing.T) {
	r := &rtuResponder{units: map[byte]int{}, as: map[byte]byte{2: 1}}
	addr := "rtu://" + r.start(t) + "?baud=115200&parity=N&stop_bits=1"
	mk := func(id string, unit int) modbus.DeviceConfig {
		return modbus.DeviceConfig{ID: id, Protocol: "modbus", Address: addr, UnitID: &unit,
			Points: []modbus.PointConfig{pc("a", "holding", 4, "uint16")}}
	}
	cfg := testConfig(mk("u1", 1), mk("u2", 2))
	cfg.PollInterval = 10 * time.Millisecond
	cfg.Timeout = 100 * time.Millisecond
	e := start(t, cfg)
	waitFor(t, "u2's error", func() bool {
		return strings.Contains(e.device("u2").LastError, "answer from unit 1 to a request to unit 2")
	})
	e.polls("u1", 2)
	e.stop()
	if m, ok := e.hub.Latest("u2", "a"); ok && m.Quality == bridge.QualityGood {
		t.Errorf("unit 1's answer was published as unit 2's: %v", m)
	}
}

// TestRTUFrameDelay polls two units on one serial line (a pty pair) with a long
// inter-frame delay: every request must come at least that long after the answer
// before it, and the units take turns on the line. Unit 3 is not there.
func TestRTUFrameDelay(t *testing.T) {
	r := &rtuResponder{units: map[byte]int{}}
	ours := r.start(t)

	const frameDelay = 30 * time.Millisecond
	addr := "rtu://" + ours + "?baud=115200&parity=N&stop_bits=1&frame_delay=30ms"
	mk := func(id string, unit int) modbus.DeviceConfig {
		return modbus.DeviceConfig{ID: id, Protocol: "modbus", Address: addr, UnitID: &unit,
			Points: []modbus.PointConfig{pc("a", "holding", 4, "uint16"), pc("b", "holding", 5, "uint16")}}
	}
	cfg := testConfig(mk("u1", 1), mk("u2", 2), mk("u3", 3))
	cfg.PollInterval = 10 * time.Millisecond
	cfg.Timeout = 100 * time.Millisecond
	e := start(t, cfg)
	for _, c := range []struct {
		id   string
		want uint64
	}{{"u1", 104}, {"u1", 105}, {"u2", 204}, {"u2", 205}} {
		pt := map[uint64]string{104: "a", 105: "b", 204: "a", 205: "b"}[c.want]
		if m := e.point(c.id, pt, bridge.QualityGood); !m.Value.Equal(bridge.Uint(c.want)) {
			t.Errorf("%s %s = %#v, want %d", c.id, pt, m.Value, c.want)
		}
	}
	waitFor(t, "u3 disconnected", func() bool { return e.device("u3").State == bridge.StateDisconnected })
	e.polls("u1", 3)
	e.polls("u2", 3)
	e.stop()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.units[3] == 0 || r.units[1] < 4 || r.units[2] < 4 {
		t.Errorf("requests by unit: %v", r.units)
	}
	// Each request after an answer came at least the frame delay after it (the
	// answers are written before the next request is read, one at a time).
	j := 0
	for i, req := range r.requests {
		for j < len(r.answers) && r.answers[j].Before(req) {
			j++
		}
		if j == 0 {
			continue
		}
		if gap := req.Sub(r.answers[j-1]); gap < frameDelay {
			t.Errorf("request %d came %v after the previous answer, less than the frame delay %v", i, gap, frameDelay)
		}
	}
}
