package modbus

import (
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/protocols"
)

func TestRegistered(t *testing.T) {
	newCfg, ok := protocols.Lookup(Name)
	if !ok {
		t.Fatal("modbus is not registered")
	}
	if c := newCfg(); c.Name() != Name || c.Protocol().String() != "modbus" {
		t.Errorf("registered config: %s %s", c.Name(), c.Protocol())
	}
}

// The example devices of docs/modbus.md, as a config file.
const designExample = `
devices:
  - id: boiler-1
    protocol: modbus
    address: tcp://10.0.0.7:502
    unit_id: 1
    poll_interval: 1s
    points:
      - {name: temperature, register: holding, address: 0, type: float32, byte_order: ABCD, unit: "°C"}
      - {name: setpoint, register: holding, address: 10, type: uint16, scale: 0.1, writable: true}
      - {name: alarm, register: coil, address: 0, type: bool, priority: critical}
  - id: meter-7
    protocol: modbus
    address: rtu:///dev/ttyUSB0?baud=19200&parity=E&stop_bits=1
    unit_id: 7
    points:
      - {name: energy, register: input, address: 100, type: uint32, byte_order: CDAB, deadband: 5}
      - {name: model, register: holding, address: 200, type: string, length: 8}
`

func TestDesignExample(t *testing.T) {
	c, err := config.Parse([]byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	mc := c.Protocols[Name].(*Config)
	if len(mc.Devices) != 2 || mc.PollInterval != DefaultPollInterval || mc.Heartbeat != DefaultHeartbeat {
		t.Fatalf("config: %+v", mc)
	}
	a, err := mc.New(protocols.Env{})
	if err != nil {
		t.Fatal(err)
	}
	ad := a.(*Adapter)
	if len(ad.lines) != 2 {
		t.Errorf("%d connections, want 2", len(ad.lines))
	}
	d := ad.devices["boiler-1"]
	if d.interval != time.Second || d.timeout != DefaultTimeout || d.unit != 1 || len(d.blocks) != 2 {
		t.Errorf("boiler-1: %+v (blocks %s)", d, describe(d.blocks))
	}
	sp := d.byName["setpoint"]
	if !sp.scaled || sp.scale != 0.1 || !sp.writable || sp.labels[labelRegister] != "holding" || sp.labels[labelAddress] != "10" {
		t.Errorf("setpoint: %+v", sp)
	}
	if d.byName["alarm"].priority.String() != "critical" {
		t.Errorf("alarm priority %s", d.byName["alarm"].priority)
	}
	ep := ad.lineOf["meter-7"].ep
	if !ep.rtu() || ep.path != "/dev/ttyUSB0" || ep.baud != 19200 || ep.parity != 'E' || ep.stopBits != 1 || ep.frameDelay.Round(time.Millisecond) != 2*time.Millisecond {
		t.Errorf("meter-7 line: %+v", ep)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown type", `{name: temperature, register: holding, address: 0, type: float}`,
			`device "boiler-1": points[0] "temperature": type: unknown type "float"`},
		{"unknown register", `{name: t, register: holdings, address: 0}`, `points[0] "t": register: "holdings" is not coil`},
		{"no address", `{name: t, register: holding}`, `points[0] "t": address: required`},
		{"address too big", `{name: t, register: holding, address: 65536}`, `address: 65536 is not 0 to 65535`},
		{"address plus length", `{name: t, register: holding, address: 65534, type: float64}`, `passes 65535`},
		{"byte order", `{name: t, register: holding, address: 0, type: int32, byte_order: DCAB}`, `byte_order: unknown byte order "DCAB"`},
		{"bit type", `{name: t, register: coil, address: 0, type: int16}`, `type: a coil holds one bit`},
		{"string length", `{name: t, register: holding, address: 0, type: string}`, `length: a string needs its length`},
		{"string word swap", `{name: t, register: holding, address: 0, type: string, length: 2, byte_order: CDAB}`, `byte_order: CDAB swaps words`},
		{"length for a number", `{name: t, register: holding, address: 0, type: int16, length: 2}`, `length: only for type string`},
		{"scaled bool", `{name: t, register: holding, address: 0, type: bool, scale: 2}`, `scale: a bool cannot be scaled`},
		{"scale zero", `{name: t, register: holding, address: 0, scale: 0}`, `scale: must be a finite number other than 0`},
		{"deadband on a string", `{name: t, register: holding, address: 0, type: string, length: 1, deadband: 1}`, `deadband: only for numbers`},
		{"read-only writable", `{name: t, register: input, address: 0, writable: true}`, `writable: a input is read-only`},
		{"priority", `{name: t, register: holding, address: 0, priority: urgent}`, `priority: "urgent" is not low`},
		{"bad name", `{name: "a/b", register: holding, address: 0}`, `name: name holds '/'`},
		{"unknown key", `{name: t, register: holding, address: 0, bogus: 1}`, `field bogus not found`},
	} {
		doc := "devices:\n  - id: boiler-1\n    protocol: modbus\n    address: tcp://127.0.0.1:502\n    unit_id: 1\n    points:\n      - " + c.yaml + "\n"
		_, err := config.Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant an error containing %s", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name, device, want string
	}{
		{"no unit", "address: tcp://127.0.0.1:502", `device "d": unit_id: required`},
		{"unit too big", "address: tcp://127.0.0.1:502\n    unit_id: 256", `unit_id: 256 is not 0 to 255`},
		{"rtu unit 0", "address: rtu:///dev/ttyS0\n    unit_id: 0", `unit_id: 0 is not 1 to 247`},
		{"no address", "unit_id: 1", `device "d": address: required`},
		{"bad scheme", "address: udp://127.0.0.1:502\n    unit_id: 1", `scheme "udp" is not tcp or rtu`},
		{"bad baud", "address: rtu:///dev/ttyS0?baud=12345\n    unit_id: 1", `baud "12345" is not a standard rate`},
		{"bad parity", "address: rtu:///dev/ttyS0?parity=X\n    unit_id: 1", `parity "X" is not N, E or O`},
		{"unknown parameter", "address: rtu:///dev/ttyS0?speed=9600\n    unit_id: 1", `unknown parameter "speed"`},
		{"relative path", "address: rtu://ttyS0\n    unit_id: 1", `three slashes`},
		{"tcp with a path", "address: tcp://127.0.0.1:502/x\n    unit_id: 1", `tcp://host:port and nothing else`},
		{"poll too fast", "address: tcp://127.0.0.1:502\n    unit_id: 1\n    poll_interval: 1ms", `poll_interval: at least 10ms`},
		{"device label", "address: tcp://127.0.0.1:502\n    unit_id: 1\n    labels: {register: x}", `labels: "register" is set by the adapter`},
	} {
		doc := "devices:\n  - id: d\n    protocol: modbus\n    " + c.device + "\n    points: [{name: t, register: holding, address: 0}]\n"
		_, err := config.Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant an error containing %s", c.name, err, c.want)
		}
	}
	// The same unit twice on one connection, and one serial line set up two ways.
	doc := `devices:
  - {id: a, protocol: modbus, address: "tcp://127.0.0.1:502", unit_id: 1, points: [{name: t, register: holding, address: 0}]}
  - {id: b, protocol: modbus, address: "tcp://127.0.0.1", unit_id: 1, points: [{name: t, register: holding, address: 0}]}
  - {id: c, protocol: modbus, address: "rtu:///dev/ttyS0?baud=9600", unit_id: 1, points: [{name: t, register: holding, address: 0}]}
  - {id: d, protocol: modbus, address: "rtu:///dev/ttyS0?baud=19200", unit_id: 2, points: [{name: t, register: holding, address: 0}]}
`
	_, err := config.Parse([]byte(doc))
	for _, want := range []string{`device "b": unit_id: 1 on tcp://127.0.0.1:502 is also device "a"`, `device "d": address: the serial line /dev/ttyS0 is configured differently`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant an error containing %s", err, want)
		}
	}
	// The section's bounds.
	_, err = config.Parse([]byte("modbus: {max_registers: 126, busy_retries: 11, poll_interval: 0s, queue: 0}\n"))
	for _, want := range []string{"max_registers: must be 1 to 125", "busy_retries: must be 0 to 10", "poll_interval: must be positive", "queue: must be 1 to"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant an error containing %s", err, want)
		}
	}
}

func TestT35(t *testing.T) {
	// 9600 baud 8E1: 11 bits a character, 3.5 characters = 4.01 ms.
	if d := t35(9600, 'E', 1); d < 4000*time.Microsecond || d > 4020*time.Microsecond {
		t.Errorf("t3.5 at 9600 8E1 = %s", d)
	}
	if d := t35(115200, 'N', 2); d != 1750*time.Microsecond {
		t.Errorf("t3.5 at 115200 = %s", d)
	}
	ep, err := parseAddress("rtu:///dev/ttyS1?parity=N&frame_delay=5ms")
	if err != nil || ep.stopBits != 2 || ep.frameDelay != 5*time.Millisecond {
		t.Errorf("parity N: %+v %v", ep, err)
	}
}
