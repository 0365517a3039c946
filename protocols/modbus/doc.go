// Package modbus is the gateway's Modbus adapter: it polls Modbus TCP and RTU
// devices, decodes their registers into typed points, publishes what changed, and
// writes coils and holding registers on request.
//
// The wire is treated as the scarce resource. Points of one device and table that
// lie close together are read in one request (within max_gap unused registers, or
// max_bit_gap bits, and the protocol's 125 registers or 2000 bits). Devices that
// share an address (unit ids behind one TCP gateway, or one RTU serial line) share
// one connection, one request at a time, with the line's inter-frame delay on RTU;
// each connection has a goroutine of its own, so a slow device delays only its
// neighbours on the same wire. Polls run on a fixed grid (a poll does not move the
// next one), each device at its own place within its interval so that many devices
// are not read at the same instant; a poll that cannot run in its slot is skipped and
// counted. Readings are reported by exception: a value is published when it changed
// (by at least its deadband, for numbers) or its quality changed, and otherwise once
// a heartbeat. The deadband is the bridge's (bridge.Deadband), which the gateway's
// reporting rules share; a rule that matches a point applies after the adapter
// (docs/reporting.md).
//
// Errors are classified. A Modbus exception is an Exception that errors.Is matches.
// "Server busy" and "acknowledge" are retried after a growing wait, busy_retries
// times; an illegal address, function or value marks only the refused points BAD
// (a request of several points is split into single reads; the points the device
// answers alone are read with their direct neighbours from then on, without the
// gaps) and the rest are polled as before; other exceptions put the device in error. A timeout, a
// transaction-id mismatch, an answer from another unit id (RTU: address) than
// the one asked, or a malformed frame drops the TCP connection (a late
// answer must never be read as the next one) and reconnects after an exponential
// backoff with jitter; on an RTU line the unit is marked disconnected and the line
// drained, and the other units go on. When a device is lost its published points
// are reported BAD with their last values. A point that never had a value is
// counted BAD (edgegate_modbus_points_bad) but not published until it first reads:
// a BAD message carries a value, and a made-up 0 would read as a reading.
//
// The client framing (MBAP, RTU with CRC, serial lines through termios) is this
// package's own; see transport.go for why. It does not speak Modbus over UDP,
// RTU over TCP, or Modbus/TCP Security (the gateway's TLS tunnels cover that), and
// it does not write with Write Multiple Coils or Mask Write Register.
//
// Config keys (section `modbus:`, all optional) and defaults:
//
//	poll_interval:         1s     devices' default
//	timeout:               1s     a request's answer; devices' default
//	connect_timeout:       5s
//	heartbeat:             1m     an unchanged value is published again after this
//	max_gap:               8      unused registers a request may read to join two points
//	max_bit_gap:           64     the same for coils and discrete inputs
//	max_registers:         125    registers in one read request (some devices take fewer)
//	max_bits:              2000   coils or discrete inputs in one read request
//	busy_retries:          3      (at most 10)
//	busy_backoff:          50ms   first wait after "busy", doubling up to busy_backoff_max (1s)
//	reconnect_backoff:     500ms  first wait before reconnecting, doubling up to
//	reconnect_backoff_max: 30s    (each wait, busy or reconnect, up to 40% shorter at random)
//	bad_point_retry:       30s    a point the device refused is read again after this
//	max_points_per_device: 1024
//	queue:                 64     writes and on-demand reads waiting for one connection
//
// `devices:` entries with `protocol: modbus`:
//
//	id, protocol: modbus
//	address:        tcp://host:port (port 502 when absent) or
//	                rtu:///dev/ttyX?baud=19200&parity=E&stop_bits=1&data_bits=8&frame_delay=2ms
//	                (defaults: 19200 baud, even parity, 1 stop bit, 2 without parity,
//	                8 data bits, frame_delay 3.5 characters, 1.75ms above 19200 baud;
//	                every device on one serial line must give the same settings)
//	unit_id:        required: 0 to 255 on TCP, 1 to 247 on RTU
//	poll_interval, timeout, heartbeat, max_gap, max_registers: the section's, per device
//	labels:         {k: v} static labels (register and address are set by the adapter)
//	points:         [{name, register, address, type, byte_order, length, scale, offset,
//	                  deadband, unit, writable, priority}]
//
// A point's register is coil, discrete_input, input or holding; address is the
// 0-based protocol address; type is bool (the default for coils and discrete
// inputs; a register is true when not zero), int16, uint16 (the default for
// registers), int32, uint32, int64, uint64, float32, float64 or string (length
// registers, two bytes each, ending at the first NUL); byte_order is ABCD (default),
// CDAB, BADC or DCBA (see ByteOrder). A scale or offset makes the value a double,
// raw × scale + offset, reversed (and rounded for integer types) on writes. Only
// coils and holding registers may be writable.
package modbus
