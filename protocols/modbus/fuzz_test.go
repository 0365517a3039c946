package modbus

import (
	"errors"
	"testing"
)

// FuzzResponse feeds what a device might send (an MBAP header and PDU, or an RTU
// frame) to the response decoders, as answers to each kind of request. Nothing may
// panic, and what they accept must have the shape the request asked for.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"0001000000090103022b00000064", // MBAP + read holding registers
		"000100000006ff0306022b000000", // short byte count
		"00010000000301810",            // odd
		"0001000000030183 02",
		"0001000000070203042b000000", // MBAP from unit 2 to a request to unit 1
		"01030400010002 2a32",        // RTU
		"0105 00acff00 4c1b",
		"",
	} {
		b := []byte{}
		for i := 0; i+1 < len(s); i += 2 {
			if s[i] == ' ' {
				i--
				continue
			}
			var v byte
			for _, c := range s[i : i+2] {
				v <<= 4
				switch {
				case c >= '0' && c <= '9':
					v |= byte(c - '0')
				case c >= 'a' && c <= 'f':
					v |= byte(c-'a') + 10
				}
			}
			b = append(b, v)
		}
		f.Add(b, uint16(3))
	}
	reqs := func(n uint16) []request {
		n = max(n%2001, 1)
		r := min(n, 125)
		return []request{
			readRequest(kindCoil, 0, n), readRequest(kindDiscreteInput, 7, n),
			readRequest(kindHolding, 0, r), readRequest(kindInput, 100, r),
			writeCoilRequest(1, true), writeRegistersRequest(2, []byte{1, 2}),
			writeRegistersRequest(3, []byte{1, 2, 3, 4}),
		}
	}
	f.Fuzz(func(t *testing.T, wire []byte, count uint16) {
		for _, req := range reqs(count) {
			// As Modbus TCP: header, then the PDU it announces.
			if len(wire) >= mbapHeader {
				if _, n, err := parseMBAP(wire[:mbapHeader]); err == nil && len(wire) >= mbapHeader+n-1 {
					check(t, req, wire[mbapHeader:mbapHeader+n-1])
					// Taken as the answer to transaction 1 to unit 1 only if it is one.
					if answers(wire[:mbapHeader], 1, 1) == nil && (wire[0] != 0 || wire[1] != 1 || wire[6] != 1) {
						t.Fatalf("%x taken as the answer of unit 1 to transaction 1", wire[:mbapHeader])
					}
				}
			}
			// As a bare PDU.
			check(t, req, wire)
			// As an RTU frame.
			if len(wire) >= 3 {
				n, err := rtuFrameLen(req, wire[1], wire[2])
				if err == nil && n <= len(wire) && n >= 5 && checkCRC(wire[:n]) {
					check(t, req, wire[1:n-2])
				}
			}
		}
		// Every type decodes whatever registers come, or refuses them.
		for typ := TypeBool; typ <= TypeString; typ++ {
			for _, o := range []ByteOrder{ABCD, CDAB, BADC, DCBA} {
				v, err := Decode(typ, o, wire)
				if err == nil && v.IsZero() {
					t.Fatalf("Decode(%s, %s, %x) gave no value", typ, o, wire)
				}
			}
		}
	})
}

func check(t *testing.T, req request, pdu []byte) {
	data, err := decodeResponse(req, pdu)
	var ex Exception
	switch {
	case err == nil:
		want := 0
		switch req.fc {
		case fcReadCoils, fcReadDiscreteInputs:
			want = (int(req.count) + 7) / 8
		case fcReadHoldingRegisters, fcReadInputRegisters:
			want = 2 * int(req.count)
		}
		if len(data) != want {
			t.Fatalf("%x answering %x: %d bytes of data, want %d", pdu, req.pdu, len(data), want)
		}
		if want > 0 {
			// The poller's decoders read every point the request covers.
			_ = bit(data, int(req.count)-1)
		}
	case errors.As(err, &ex):
		if len(pdu) != 2 || pdu[0] != req.fc|0x80 {
			t.Fatalf("exception from %x", pdu)
		}
	case !errors.Is(err, ErrProtocol):
		t.Fatalf("%x: unexpected error %v", pdu, err)
	}
}
