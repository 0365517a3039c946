package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// The framing is this package's own. The issue this adapter answers named
// github.com/goburrow/modbus v0.1.0, which the module proxy does not serve.
// github.com/simonvetter/modbus (whose server the simulator uses) has a client, but
// it cannot give what the poller needs: its TCP transport skips a response with
// another transaction id and reads on until the timeout, instead of reporting the
// mismatch so that the connection is dropped; it takes no context, so shutdown
// waits out a request; the unit id and word order are client-wide state; and its RTU
// side has a fixed t3.5 and polls the port every 10 ms. MBAP and RTU framing are
// small; owning them gives each of those a direct answer.

// transport carries one request at a time to a unit and returns its answer. It is
// not safe for concurrent use: one goroutine (the line's) owns it. After any error
// other than a Modbus exception it must be closed: the bytes that follow on the wire
// may belong to the request that failed.
type transport interface {
	// exchange sends req to unit and returns the response PDU (function code and
	// data), valid until the next call.
	exchange(ctx context.Context, unit byte, req request, timeout time.Duration) ([]byte, error)
	close() error
}

// errCanceled marks an exchange cut short by our own context.
var errCanceled = errors.New("modbus: canceled")

// longAgo is a deadline in the past: it makes a blocked read or write return at once.
var longAgo = time.Unix(1, 0)

// ioError turns a read or write error into ErrTimeout, errCanceled or itself.
func ioError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errCanceled, ctx.Err())
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w (%s)", ErrTimeout, what)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed by the device (%s): %w", errIO, what, err)
	}
	return fmt.Errorf("%w: %s: %w", errIO, what, err)
}

// deadline is the earlier of now+timeout and the context's deadline.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// mbapHeader is the Modbus TCP header: transaction id, protocol id, length, unit id.
const mbapHeader = 7

// tcpTransport is Modbus TCP (MBAP framing) over one connection.
type tcpTransport struct {
	conn net.Conn
	txn  uint16
	buf  [mbapHeader + maxPDU]byte
}

func dialTCP(ctx context.Context, addr string, timeout time.Duration) (*tcpTransport, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &tcpTransport{conn: c}, nil
}

func (t *tcpTransport) close() error { return t.conn.Close() }

func (t *tcpTransport) exchange(ctx context.Context, unit byte, req request, timeout time.Duration) ([]byte, error) {
	t.txn++
	n := len(req.pdu) + 1
	b := append(t.buf[:0], byte(t.txn>>8), byte(t.txn), 0, 0, byte(n>>8), byte(n), unit)
	b = append(b, req.pdu...)
	if err := t.conn.SetDeadline(deadline(ctx, timeout)); err != nil {
		return nil, ioError(ctx, "set deadline", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = t.conn.SetDeadline(longAgo) })
	defer stop()
	if _, err := t.conn.Write(b); err != nil {
		return nil, ioError(ctx, "write", err)
	}
	hdr := t.buf[:mbapHeader]
	if _, err := io.ReadFull(t.conn, hdr); err != nil {
		return nil, ioError(ctx, "read", err)
	}
	return t.readBody(ctx, hdr, unit)
}

// readBody checks an MBAP header and reads the PDU it announces: the answer of
// unit to the request last sent.
func (t *tcpTransport) readBody(ctx context.Context, hdr []byte, unit byte) ([]byte, error) {
	_, length, err := parseMBAP(hdr)
	if err != nil {
		return nil, err
	}
	pdu := t.buf[mbapHeader : mbapHeader+length-1]
	if _, err := io.ReadFull(t.conn, pdu); err != nil {
		return nil, ioError(ctx, "read", err)
	}
	if err := answers(hdr, t.txn, unit); err != nil {
		return nil, err
	}
	return pdu, nil
}

// answers checks that a well-formed MBAP header answers the request sent with
// transaction id txn to unit. Either mismatch ends the connection: an answer to an
// earlier request means whatever follows is out of step too, and one from another
// unit (a gateway in front of several, confused) would publish one device's
// registers as another's, with GOOD quality.
func answers(hdr []byte, txn uint16, unit byte) error {
	if got := uint16(hdr[0])<<8 | uint16(hdr[1]); got != txn {
		return fmt.Errorf("%w: sent %d, received %d", ErrTransactionID, txn, got)
	}
	if hdr[6] != unit {
		return fmt.Errorf("%w: answer from unit %d to a request to unit %d", ErrProtocol, hdr[6], unit)
	}
	return nil
}

// parseMBAP checks a Modbus TCP header and returns its transaction id and length
// (unit id and PDU).
func parseMBAP(hdr []byte) (txn uint16, length int, err error) {
	if len(hdr) != mbapHeader {
		return 0, 0, fmt.Errorf("%w: header of %d bytes", ErrProtocol, len(hdr))
	}
	txn = uint16(hdr[0])<<8 | uint16(hdr[1])
	if hdr[2] != 0 || hdr[3] != 0 {
		return 0, 0, fmt.Errorf("%w: protocol identifier %d is not Modbus (0)", ErrProtocol, int(hdr[2])<<8|int(hdr[3]))
	}
	length = int(hdr[4])<<8 | int(hdr[5])
	if length < 2 || length > maxPDU+1 {
		return 0, 0, fmt.Errorf("%w: length %d", ErrProtocol, length)
	}
	return txn, length, nil
}

// serialPort is an open serial line with read deadlines (an *os.File in the
// runtime's poller).
type serialPort interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// rtuTransport is Modbus RTU over a serial line: one request at a time, with the
// line silent for frameDelay between frames.
type rtuTransport struct {
	port       serialPort
	frameDelay time.Duration
	charTime   time.Duration // one character on the wire
	last       time.Time     // when the line last fell silent
	buf        [1 + maxPDU + 2]byte
}

func newRTU(port serialPort, ep *endpoint) *rtuTransport {
	bits := 1 + 8 + ep.stopBits
	if ep.parity != 'N' {
		bits++
	}
	return &rtuTransport{
		port:       port,
		frameDelay: ep.frameDelay,
		charTime:   time.Duration(float64(time.Second) * float64(bits) / float64(ep.baud)),
	}
}

func (t *rtuTransport) close() error { return t.port.Close() }

func (t *rtuTransport) exchange(ctx context.Context, unit byte, req request, timeout time.Duration) ([]byte, error) {
	// Keep the line silent for the inter-frame delay since the last frame.
	if wait := time.Until(t.last.Add(t.frameDelay)); wait > 0 {
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return nil, fmt.Errorf("%w: %w", errCanceled, ctx.Err())
		}
	}
	b := append(t.buf[:0], unit)
	b = append(b, req.pdu...)
	b = appendCRC(b)
	// The request takes its own time to leave at the line's speed.
	sending := time.Duration(len(b)) * t.charTime
	dl := deadline(ctx, timeout+sending)
	if err := t.port.SetWriteDeadline(dl); err != nil {
		return nil, ioError(ctx, "set deadline", err)
	}
	if err := t.port.SetReadDeadline(dl); err != nil {
		return nil, ioError(ctx, "set deadline", err)
	}
	stop := context.AfterFunc(ctx, func() {
		_ = t.port.SetReadDeadline(longAgo)
		_ = t.port.SetWriteDeadline(longAgo)
	})
	defer stop()
	if _, err := t.port.Write(b); err != nil {
		return nil, ioError(ctx, "write", err)
	}
	frame, err := t.readFrame(ctx, req)
	t.last = time.Now()
	if err != nil {
		return nil, err
	}
	if frame[0] != unit {
		return nil, fmt.Errorf("%w: answer from unit %d to a request to unit %d", ErrProtocol, frame[0], unit)
	}
	return frame[1 : len(frame)-2], nil
}

// readFrame reads one RTU response frame; its length follows from its function
// code (RTU frames carry none).
func (t *rtuTransport) readFrame(ctx context.Context, req request) ([]byte, error) {
	b := t.buf[:2]
	if _, err := io.ReadFull(t.port, b); err != nil {
		return nil, ioError(ctx, "read", err)
	}
	n, err := rtuFrameLen(req, b[1], 0)
	if err == errNeedByteCount {
		b = t.buf[:3]
		if _, err := io.ReadFull(t.port, b[2:]); err != nil {
			return nil, ioError(ctx, "read", err)
		}
		n, err = rtuFrameLen(req, b[1], b[2])
		if err == errNeedByteCount {
			err = fmt.Errorf("%w: byte count 0", ErrProtocol)
		}
	}
	if err != nil {
		return nil, err
	}
	if n > len(t.buf) {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, n)
	}
	frame := t.buf[:n]
	if _, err := io.ReadFull(t.port, frame[len(b):]); err != nil {
		return nil, ioError(ctx, "read", err)
	}
	if !checkCRC(frame) {
		return nil, fmt.Errorf("%w: CRC", ErrProtocol)
	}
	return frame, nil
}

// drain discards what arrives until the line has been silent for a few frame
// delays (at most a second): the rest of a late or broken answer.
func (t *rtuTransport) drain(ctx context.Context) {
	quiet := max(4*t.frameDelay, 10*time.Millisecond)
	end := time.Now().Add(time.Second)
	for ctx.Err() == nil && time.Now().Before(end) {
		if err := t.port.SetReadDeadline(time.Now().Add(quiet)); err != nil {
			return
		}
		n, err := t.port.Read(t.buf[:])
		if err != nil || n == 0 {
			break
		}
	}
	t.last = time.Now()
}

var errNeedByteCount = errors.New("need the byte count")

// rtuFrameLen is the length of a response frame (address, PDU, CRC) with function
// code fc, once the byte count is known for reads.
func rtuFrameLen(req request, fc, count byte) (int, error) {
	switch {
	case fc == req.fc|0x80:
		return 5, nil
	case fc != req.fc:
		return 0, fmt.Errorf("%w: function 0x%02x answers 0x%02x", ErrProtocol, fc, req.fc)
	}
	switch fc {
	case fcReadCoils, fcReadDiscreteInputs, fcReadHoldingRegisters, fcReadInputRegisters:
		if count == 0 {
			return 0, errNeedByteCount
		}
		return 3 + int(count) + 2, nil
	case fcWriteSingleCoil, fcWriteSingleRegister, fcWriteMultipleCoils, fcWriteMultipleRegisters:
		return 8, nil
	}
	return 0, fmt.Errorf("%w: function 0x%02x", ErrProtocol, fc)
}

// crc16 is the Modbus CRC (polynomial 0xA001 reflected, initial 0xFFFF).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// appendCRC appends the CRC, low byte first as RTU sends it.
func appendCRC(b []byte) []byte {
	c := crc16(b)
	return append(b, byte(c), byte(c>>8))
}

func checkCRC(frame []byte) bool {
	if len(frame) < 4 {
		return false
	}
	n := len(frame) - 2
	c := crc16(frame[:n])
	return frame[n] == byte(c) && frame[n+1] == byte(c>>8)
}
