package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Function codes (Modbus Application Protocol v1.1b3, 6).
const (
	fcReadCoils              byte = 0x01
	fcReadDiscreteInputs     byte = 0x02
	fcReadHoldingRegisters   byte = 0x03
	fcReadInputRegisters     byte = 0x04
	fcWriteSingleCoil        byte = 0x05
	fcWriteSingleRegister    byte = 0x06
	fcWriteMultipleCoils     byte = 0x0F
	fcWriteMultipleRegisters byte = 0x10
)

// maxPDU is the largest Modbus PDU (function code and data): 253 bytes.
const maxPDU = 253

// Exception is a Modbus exception code (Modbus Application Protocol v1.1b3, 7). It is
// the byte on the wire and an error that errors.Is matches:
// errors.Is(err, modbus.ExceptionServerBusy).
type Exception byte

const (
	ExceptionIllegalFunction    Exception = 0x01
	ExceptionIllegalAddress     Exception = 0x02
	ExceptionIllegalValue       Exception = 0x03
	ExceptionDeviceFailure      Exception = 0x04
	ExceptionAcknowledge        Exception = 0x05
	ExceptionServerBusy         Exception = 0x06
	ExceptionMemoryParity       Exception = 0x08
	ExceptionGatewayPath        Exception = 0x0A
	ExceptionGatewayTargetFails Exception = 0x0B
)

func (e Exception) Error() string {
	switch e {
	case ExceptionIllegalFunction:
		return "modbus exception 1: illegal function"
	case ExceptionIllegalAddress:
		return "modbus exception 2: illegal data address"
	case ExceptionIllegalValue:
		return "modbus exception 3: illegal data value"
	case ExceptionDeviceFailure:
		return "modbus exception 4: server device failure"
	case ExceptionAcknowledge:
		return "modbus exception 5: acknowledge"
	case ExceptionServerBusy:
		return "modbus exception 6: server device busy"
	case ExceptionMemoryParity:
		return "modbus exception 8: memory parity error"
	case ExceptionGatewayPath:
		return "modbus exception 10: gateway path unavailable"
	case ExceptionGatewayTargetFails:
		return "modbus exception 11: gateway target device failed to respond"
	}
	return fmt.Sprintf("modbus exception %d", byte(e))
}

// Errors of the exchange itself. Each of them ends the connection: after one of
// them the next bytes on the wire cannot be trusted to answer the next request.
var (
	// ErrTimeout: no (complete) response in time. A late response would otherwise be
	// read as the answer to the next request.
	ErrTimeout = errors.New("modbus: response timed out")
	// ErrTransactionID: a Modbus TCP response carried another request's
	// transaction identifier.
	ErrTransactionID = errors.New("modbus: transaction identifier mismatch")
	// ErrProtocol: a response that is not a well-formed answer to the request
	// (wrong function, length, byte count, echo, protocol identifier, unit or CRC).
	ErrProtocol = errors.New("modbus: malformed response")
)

// request is one PDU to send and what its answer must look like.
type request struct {
	fc    byte
	addr  uint16
	count uint16 // registers or bits read or written
	pdu   []byte // function code and data
}

func readRequest(k registerKind, addr, count uint16) request {
	fc := k.readFunction()
	pdu := []byte{fc, byte(addr >> 8), byte(addr), byte(count >> 8), byte(count)}
	return request{fc: fc, addr: addr, count: count, pdu: pdu}
}

// writeCoilRequest is Write Single Coil (0x05): 0xFF00 on, 0x0000 off.
func writeCoilRequest(addr uint16, on bool) request {
	pdu := []byte{fcWriteSingleCoil, byte(addr >> 8), byte(addr), 0, 0}
	if on {
		pdu[3] = 0xFF
	}
	return request{fc: fcWriteSingleCoil, addr: addr, count: 1, pdu: pdu}
}

// writeRegistersRequest is Write Single Register (0x06) for one register and Write
// Multiple Registers (0x10) for more; data is the registers' bytes on the wire.
func writeRegistersRequest(addr uint16, data []byte) request {
	n := uint16(len(data) / 2)
	if n == 1 {
		pdu := []byte{fcWriteSingleRegister, byte(addr >> 8), byte(addr), data[0], data[1]}
		return request{fc: fcWriteSingleRegister, addr: addr, count: 1, pdu: pdu}
	}
	pdu := make([]byte, 0, 6+len(data))
	pdu = append(pdu, fcWriteMultipleRegisters, byte(addr>>8), byte(addr), byte(n>>8), byte(n), byte(len(data)))
	pdu = append(pdu, data...)
	return request{fc: fcWriteMultipleRegisters, addr: addr, count: n, pdu: pdu}
}

// decodeResponse checks that pdu (function code and data) answers req and returns
// its data: the register bytes or packed bits of a read, nil for a write. A Modbus
// exception is returned as an Exception; anything else malformed wraps ErrProtocol.
// It never panics and never reads beyond pdu, whatever the device sent.
func decodeResponse(req request, pdu []byte) ([]byte, error) {
	if len(pdu) == 0 {
		return nil, fmt.Errorf("%w: empty PDU", ErrProtocol)
	}
	if len(pdu) > maxPDU {
		return nil, fmt.Errorf("%w: PDU of %d bytes", ErrProtocol, len(pdu))
	}
	if pdu[0] == req.fc|0x80 {
		if len(pdu) != 2 {
			return nil, fmt.Errorf("%w: exception response of %d bytes", ErrProtocol, len(pdu))
		}
		return nil, Exception(pdu[1])
	}
	if pdu[0] != req.fc {
		return nil, fmt.Errorf("%w: function 0x%02x answers 0x%02x", ErrProtocol, pdu[0], req.fc)
	}
	switch req.fc {
	case fcReadCoils, fcReadDiscreteInputs, fcReadHoldingRegisters, fcReadInputRegisters:
		want := int(req.count) * 2
		if req.fc == fcReadCoils || req.fc == fcReadDiscreteInputs {
			want = (int(req.count) + 7) / 8
		}
		if len(pdu) < 2 || int(pdu[1]) != want || len(pdu) != 2+want {
			return nil, fmt.Errorf("%w: read of %d answered with %d bytes (byte count %d, want %d)", ErrProtocol, req.count, len(pdu)-1, byteCount(pdu), want)
		}
		return pdu[2:], nil
	case fcWriteSingleCoil, fcWriteSingleRegister:
		// The response echoes the request.
		if len(pdu) != 5 || string(pdu) != string(req.pdu) {
			return nil, fmt.Errorf("%w: write not echoed", ErrProtocol)
		}
		return nil, nil
	case fcWriteMultipleCoils, fcWriteMultipleRegisters:
		if len(pdu) != 5 || binary.BigEndian.Uint16(pdu[1:]) != req.addr || binary.BigEndian.Uint16(pdu[3:]) != req.count {
			return nil, fmt.Errorf("%w: write of %d at %d not confirmed", ErrProtocol, req.count, req.addr)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("%w: function 0x%02x", ErrProtocol, req.fc)
}

func byteCount(pdu []byte) int {
	if len(pdu) < 2 {
		return -1
	}
	return int(pdu[1])
}

// bit returns bit i of packed coil data (LSB of the first byte is the first coil).
func bit(data []byte, i int) bool { return data[i/8]>>(uint(i)%8)&1 == 1 }

// errClass is what an error means for the connection and the poll.
type errClass int

const (
	classNone      errClass = iota
	classRetry              // busy or acknowledge: the same request again, after a wait
	classPoint              // the device refuses these addresses: those points are BAD
	classDevice             // the device (or the gateway in front of it) fails: the device is in error
	classReconnect          // timeout, transaction id, malformed frame, I/O: drop the connection
	classCanceled           // our own shutdown
)

var classNames = [...]string{
	classNone: "none", classRetry: "busy", classPoint: "illegal_address", classDevice: "device",
	classReconnect: "connection", classCanceled: "canceled",
}

func (c errClass) String() string { return classNames[c] }

func classify(err error) errClass {
	var ex Exception
	switch {
	case err == nil:
		return classNone
	case errors.As(err, &ex):
		switch ex {
		case ExceptionServerBusy, ExceptionAcknowledge:
			return classRetry
		case ExceptionIllegalFunction, ExceptionIllegalAddress, ExceptionIllegalValue:
			return classPoint
		}
		return classDevice
	case errors.Is(err, errCanceled):
		return classCanceled
	}
	return classReconnect
}
