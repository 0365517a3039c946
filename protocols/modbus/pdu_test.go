package modbus

import (
	"bytes"
	"errors"
	"testing"
)

// The request and response examples of the Modbus Application Protocol
// specification v1.1b3, section 6, byte for byte.
func TestSpecExamples(t *testing.T) {
	for _, c := range []struct {
		name string
		req  request
		pdu  string // the request PDU
		resp string // the response PDU
		data string // what decodeResponse returns
	}{
		{"6.1 read coils 20-38", readRequest(kindCoil, 0x13, 0x13), "0100130013", "0103cd6b05", "cd6b05"},
		{"6.2 read discrete inputs 197-218", readRequest(kindDiscreteInput, 0xC4, 0x16), "0200c40016", "0203acdb35", "acdb35"},
		{"6.3 read holding registers 108-110", readRequest(kindHolding, 0x6B, 3), "03006b0003", "0306022b00000064", "022b00000064"},
		{"6.4 read input register 9", readRequest(kindInput, 8, 1), "0400080001", "0402000a", "000a"},
		{"6.5 write single coil 173 on", writeCoilRequest(0xAC, true), "0500acff00", "0500acff00", ""},
		{"6.6 write single register 2", writeRegistersRequest(1, []byte{0, 3}), "0600010003", "0600010003", ""},
		{"6.12 write multiple registers 2-3", writeRegistersRequest(1, []byte{0x00, 0x0A, 0x01, 0x02}), "100001000204000a0102", "1000010002", ""},
	} {
		if got := c.req.pdu; !bytes.Equal(got, unhex(t, c.pdu)) {
			t.Errorf("%s: request %x, want %s", c.name, got, c.pdu)
		}
		data, err := decodeResponse(c.req, unhex(t, c.resp))
		if err != nil || !bytes.Equal(data, unhex(t, c.data)) {
			t.Errorf("%s: decodeResponse = %x, %v; want %s", c.name, data, err, c.data)
		}
	}
	// 6.1: coils 27..20 are CD, i.e. 1100 1101: coil 20 on, 21 off, 22 on, 23 on.
	data := unhex(t, "cd6b05")
	want := []bool{true, false, true, true, false, false, true, true, true, true, false, true, false, true, true, false, true, false, true}
	for i, w := range want {
		if bit(data, i) != w {
			t.Errorf("coil %d = %v, want %v", 20+i, !w, w)
		}
	}
}

// Section 7: the exception response is the function code with its high bit set and
// the exception code.
func TestExceptions(t *testing.T) {
	req := readRequest(kindCoil, 0x04A1, 1)
	_, err := decodeResponse(req, []byte{0x81, 0x02})
	if !errors.Is(err, ExceptionIllegalAddress) || classify(err) != classPoint {
		t.Errorf("81 02 = %v (class %v)", err, classify(err))
	}
	for code, class := range map[Exception]errClass{
		ExceptionIllegalFunction: classPoint, ExceptionIllegalAddress: classPoint, ExceptionIllegalValue: classPoint,
		ExceptionDeviceFailure: classDevice, ExceptionAcknowledge: classRetry, ExceptionServerBusy: classRetry,
		ExceptionMemoryParity: classDevice, ExceptionGatewayPath: classDevice, ExceptionGatewayTargetFails: classDevice,
		Exception(0x42): classDevice,
	} {
		_, err := decodeResponse(req, []byte{0x81, byte(code)})
		if !errors.Is(err, code) || classify(err) != class {
			t.Errorf("exception %d: %v, class %v, want %v", code, err, classify(err), class)
		}
		if code.Error() == "" {
			t.Errorf("exception %d has no text", code)
		}
	}
	for _, c := range []error{ErrTimeout, ErrTransactionID, ErrProtocol, errIO} {
		if classify(c) != classReconnect {
			t.Errorf("%v: class %v, want reconnect", c, classify(c))
		}
	}
}

func TestMalformedResponses(t *testing.T) {
	read := readRequest(kindHolding, 0, 2)
	write := writeRegistersRequest(5, []byte{0, 1, 0, 2})
	for _, c := range []struct {
		name string
		req  request
		pdu  string
	}{
		{"empty", read, ""},
		{"other function", read, "0404 00010002"},
		{"short exception", read, "83"},
		{"long exception", read, "830200"},
		{"no byte count", read, "03"},
		{"byte count too small", read, "0302 0001"},
		{"byte count beyond data", read, "0304 0001"},
		{"data beyond byte count", read, "0304 0001000200"},
		{"write echo wrong address", write, "1000060002"},
		{"write echo wrong count", write, "1000050003"},
		{"single write not echoed", writeCoilRequest(1, true), "0500010000"},
	} {
		if _, err := decodeResponse(c.req, unhex(t, c.pdu)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", c.name, err)
		}
	}
}

func TestMBAP(t *testing.T) {
	txn, n, err := parseMBAP(unhex(t, "0001 0000 0006 ff"))
	if err != nil || txn != 1 || n != 6 {
		t.Errorf("parseMBAP = %d %d %v", txn, n, err)
	}
	for _, h := range []string{"00010001000601", "00010000000101", "00010000ffff01", "000100000006"} {
		if _, _, err := parseMBAP(unhex(t, h)); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseMBAP(%s): %v", h, err)
		}
	}
}

// The CRC examples: Modbus over Serial Line v1.02, 6.2.2 ("02 07" has CRC 0x1241,
// sent low byte first) and a read of 10 holding registers from unit 1.
func TestCRC(t *testing.T) {
	if got := appendCRC([]byte{0x02, 0x07}); !bytes.Equal(got, unhex(t, "02074112")) {
		t.Errorf("CRC of 02 07: %x", got)
	}
	if got := appendCRC(unhex(t, "01030000000a")); !bytes.Equal(got, unhex(t, "01030000000ac5cd")) {
		t.Errorf("CRC of 01 03 00 00 00 0a: %x", got)
	}
	if !checkCRC(unhex(t, "01030000000ac5cd")) || checkCRC(unhex(t, "01030000000ac5ce")) || checkCRC([]byte{1}) {
		t.Error("checkCRC")
	}
}

func TestRTUFrameLen(t *testing.T) {
	read := readRequest(kindHolding, 0, 2)
	if n, err := rtuFrameLen(read, 0x83, 0); n != 5 || err != nil {
		t.Errorf("exception frame: %d %v", n, err)
	}
	if _, err := rtuFrameLen(read, 0x03, 0); err != errNeedByteCount {
		t.Errorf("read frame without count: %v", err)
	}
	if n, _ := rtuFrameLen(read, 0x03, 4); n != 9 {
		t.Errorf("read frame of 4 bytes: %d", n)
	}
	if _, err := rtuFrameLen(read, 0x04, 4); !errors.Is(err, ErrProtocol) {
		t.Errorf("other function: %v", err)
	}
	if n, _ := rtuFrameLen(writeCoilRequest(1, true), 0x05, 0); n != 8 {
		t.Errorf("write frame: %d", n)
	}
}
