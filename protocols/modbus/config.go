package modbus

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
)

// Name is the config section and the devices' `protocol:` value.
const Name = "modbus"

func init() {
	protocols.Register(func() protocols.Config { return NewConfig() })
}

// Protocol limits (Modbus Application Protocol v1.1b3, 6.1 to 6.4): one read request
// carries at most 125 registers or 2000 coils or discrete inputs.
const (
	MaxReadRegisters = 125
	MaxReadBits      = 2000
	// MaxWriteRegisters is the limit of Write Multiple Registers (0x10).
	MaxWriteRegisters = 123
)

// Defaults of the `modbus:` section. Each is also a bound that keeps one device from
// taking the wire, the memory or the log of a small machine.
const (
	DefaultPollInterval   = time.Second
	DefaultTimeout        = time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultHeartbeat      = time.Minute
	// DefaultMaxGap is how many unused registers a request may read to join two
	// points; DefaultMaxBitGap is the same for coils and discrete inputs.
	DefaultMaxGap    = 8
	DefaultMaxBitGap = 64
	// DefaultBusyRetries bounds the retries of a request the device answered with
	// "server busy" (or "acknowledge"), DefaultBusyBackoff is the first wait and
	// doubles each time up to DefaultBusyBackoffMax.
	DefaultBusyRetries    = 3
	DefaultBusyBackoff    = 50 * time.Millisecond
	DefaultBusyBackoffMax = time.Second
	// DefaultReconnectBackoff is the first wait before reconnecting; it doubles up to
	// DefaultReconnectBackoffMax, each wait up to 40% shorter at random.
	DefaultReconnectBackoff    = 500 * time.Millisecond
	DefaultReconnectBackoffMax = 30 * time.Second
	// DefaultBadPointRetry is how long a point the device refused (illegal address)
	// waits before it is read again.
	DefaultBadPointRetry = 30 * time.Second
	// DefaultMaxPointsPerDevice bounds a device's points.
	DefaultMaxPointsPerDevice = 1024
	// DefaultQueue bounds the writes and on-demand reads waiting for one connection.
	DefaultQueue = 64
	// DefaultFrameDelay is the silence kept on an RTU line between frames when the
	// address names none and the baud rate is above 19200 (the specification's fixed
	// t3.5 of 1.75 ms); at lower rates it is 3.5 character times.
	DefaultFrameDelay = 1750 * time.Microsecond
)

// Config is the `modbus:` section plus the `devices:` entries with `protocol: modbus`.
// Every key of the section is a default for the devices or a bound.
type Config struct {
	PollInterval        time.Duration `yaml:"poll_interval"`
	Timeout             time.Duration `yaml:"timeout"`
	ConnectTimeout      time.Duration `yaml:"connect_timeout"`
	Heartbeat           time.Duration `yaml:"heartbeat"`
	MaxGap              int           `yaml:"max_gap"`
	MaxBitGap           int           `yaml:"max_bit_gap"`
	MaxRegisters        int           `yaml:"max_registers"`
	MaxBits             int           `yaml:"max_bits"`
	BusyRetries         int           `yaml:"busy_retries"`
	BusyBackoff         time.Duration `yaml:"busy_backoff"`
	BusyBackoffMax      time.Duration `yaml:"busy_backoff_max"`
	ReconnectBackoff    time.Duration `yaml:"reconnect_backoff"`
	ReconnectBackoffMax time.Duration `yaml:"reconnect_backoff_max"`
	BadPointRetry       time.Duration `yaml:"bad_point_retry"`
	MaxPointsPerDevice  int           `yaml:"max_points_per_device"`
	Queue               int           `yaml:"queue"`

	// Devices come from the top-level `devices:` list (AddDevice), not this section.
	Devices []DeviceConfig `yaml:"-"`
}

// DeviceConfig is a `devices:` entry with `protocol: modbus`. Zero durations and
// sizes take the section's value.
type DeviceConfig struct {
	ID           string            `yaml:"id"`
	Protocol     string            `yaml:"protocol"`
	Address      string            `yaml:"address"`
	UnitID       *int              `yaml:"unit_id"`
	PollInterval time.Duration     `yaml:"poll_interval"`
	Timeout      time.Duration     `yaml:"timeout"`
	Heartbeat    time.Duration     `yaml:"heartbeat"`
	MaxGap       *int              `yaml:"max_gap"`
	MaxRegisters int               `yaml:"max_registers"`
	Labels       map[string]string `yaml:"labels"`
	Points       []PointConfig     `yaml:"points"`
}

// PointConfig is one point of a device: where it is and how it is read.
type PointConfig struct {
	Name      string   `yaml:"name"`
	Register  string   `yaml:"register"`   // coil, discrete_input, input, holding
	Address   *int     `yaml:"address"`    // 0-based protocol address
	Type      string   `yaml:"type"`       // default bool for coils and discrete inputs, uint16 for registers
	ByteOrder string   `yaml:"byte_order"` // ABCD (default), CDAB, BADC, DCBA
	Length    int      `yaml:"length"`     // registers of a string (two bytes each)
	Scale     *float64 `yaml:"scale"`
	Offset    *float64 `yaml:"offset"`
	Deadband  float64  `yaml:"deadband"` // a numeric change smaller than this is not published
	Unit      string   `yaml:"unit"`
	Writable  bool     `yaml:"writable"`
	Priority  string   `yaml:"priority"` // low, normal (default), high, critical
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		PollInterval:        DefaultPollInterval,
		Timeout:             DefaultTimeout,
		ConnectTimeout:      DefaultConnectTimeout,
		Heartbeat:           DefaultHeartbeat,
		MaxGap:              DefaultMaxGap,
		MaxBitGap:           DefaultMaxBitGap,
		MaxRegisters:        MaxReadRegisters,
		MaxBits:             MaxReadBits,
		BusyRetries:         DefaultBusyRetries,
		BusyBackoff:         DefaultBusyBackoff,
		BusyBackoffMax:      DefaultBusyBackoffMax,
		ReconnectBackoff:    DefaultReconnectBackoff,
		ReconnectBackoffMax: DefaultReconnectBackoffMax,
		BadPointRetry:       DefaultBadPointRetry,
		MaxPointsPerDevice:  DefaultMaxPointsPerDevice,
		Queue:               DefaultQueue,
	}
}

var (
	_ protocols.Config      = (*Config)(nil)
	_ protocols.DeviceTaker = (*Config)(nil)
)

// Name implements protocols.Config.
func (c *Config) Name() string { return Name }

// Protocol implements protocols.Config.
func (c *Config) Protocol() bridge.Protocol { return bridge.ProtocolModbus }

// AddDevice takes one `devices:` entry; the rest is checked by Validate.
func (c *Config) AddDevice(node *yaml.Node) error {
	var d DeviceConfig
	if err := protocols.DecodeStrict(node, &d); err != nil {
		return err
	}
	c.Devices = append(c.Devices, d)
	return nil
}

// Validate returns every problem, each naming its key (and device and point).
func (c *Config) Validate() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	durations := []struct {
		key string
		v   time.Duration
	}{
		{"poll_interval", c.PollInterval}, {"timeout", c.Timeout}, {"connect_timeout", c.ConnectTimeout},
		{"heartbeat", c.Heartbeat}, {"busy_backoff", c.BusyBackoff}, {"busy_backoff_max", c.BusyBackoffMax},
		{"reconnect_backoff", c.ReconnectBackoff}, {"reconnect_backoff_max", c.ReconnectBackoffMax},
		{"bad_point_retry", c.BadPointRetry},
	}
	for _, d := range durations {
		if d.v <= 0 {
			add("modbus: %s: must be positive, got %s", d.key, d.v)
		}
	}
	if c.PollInterval > 0 && c.PollInterval < minPollInterval {
		add("modbus: poll_interval: at least %s, got %s", minPollInterval, c.PollInterval)
	}
	if c.BusyBackoffMax < c.BusyBackoff {
		add("modbus: busy_backoff_max: %s is less than busy_backoff (%s)", c.BusyBackoffMax, c.BusyBackoff)
	}
	if c.ReconnectBackoffMax < c.ReconnectBackoff {
		add("modbus: reconnect_backoff_max: %s is less than reconnect_backoff (%s)", c.ReconnectBackoffMax, c.ReconnectBackoff)
	}
	if c.MaxGap < 0 || c.MaxGap > MaxReadRegisters {
		add("modbus: max_gap: must be 0 to %d, got %d", MaxReadRegisters, c.MaxGap)
	}
	if c.MaxBitGap < 0 || c.MaxBitGap > MaxReadBits {
		add("modbus: max_bit_gap: must be 0 to %d, got %d", MaxReadBits, c.MaxBitGap)
	}
	if c.MaxRegisters < 1 || c.MaxRegisters > MaxReadRegisters {
		add("modbus: max_registers: must be 1 to %d, got %d", MaxReadRegisters, c.MaxRegisters)
	}
	if c.MaxBits < 1 || c.MaxBits > MaxReadBits {
		add("modbus: max_bits: must be 1 to %d, got %d", MaxReadBits, c.MaxBits)
	}
	if c.BusyRetries < 0 || c.BusyRetries > maxBusyRetries {
		add("modbus: busy_retries: must be 0 to %d, got %d", maxBusyRetries, c.BusyRetries)
	}
	if c.MaxPointsPerDevice < 1 || c.MaxPointsPerDevice > maxPointsLimit {
		add("modbus: max_points_per_device: must be 1 to %d, got %d", maxPointsLimit, c.MaxPointsPerDevice)
	}
	if c.Queue < 1 || c.Queue > maxQueue {
		add("modbus: queue: must be 1 to %d, got %d", maxQueue, c.Queue)
	}

	ids := map[string]bool{}
	units := map[string]string{}  // line key + unit id: device
	serial := map[string]string{} // serial path: the first device's line settings
	for i, d := range c.Devices {
		key := fmt.Sprintf("devices[%d]", i)
		if d.ID != "" {
			key = fmt.Sprintf("device %q", d.ID)
		}
		for _, err := range c.validateDevice(d) {
			add("%s: %w", key, err)
		}
		if d.ID != "" && ids[d.ID] {
			add("%s: id: duplicate", key)
		}
		ids[d.ID] = true
		ep, err := parseAddress(d.Address)
		if err != nil || d.UnitID == nil {
			continue
		}
		u := fmt.Sprintf("%s#%d", ep.key(), *d.UnitID)
		if other, dup := units[u]; dup {
			add("%s: unit_id: %d on %s is also device %q", key, *d.UnitID, ep.key(), other)
		} else {
			units[u] = d.ID
		}
		if ep.rtu() {
			if first, ok := serial[ep.path]; ok && first != ep.lineSettings() {
				add("%s: address: the serial line %s is configured differently by another device (%s, here %s)", key, ep.path, first, ep.lineSettings())
			} else if !ok {
				serial[ep.path] = ep.lineSettings()
			}
		}
	}
	return errs
}

// Bounds of the section's own keys.
const (
	minPollInterval = 10 * time.Millisecond
	maxBusyRetries  = 10
	maxPointsLimit  = 65536
	maxQueue        = 4096
	maxStringRegs   = MaxReadRegisters
)

func (c *Config) validateDevice(d DeviceConfig) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if err := payload.ValidName(d.ID); err != nil {
		add("id: %w", err)
	}
	if d.Protocol != Name {
		add("protocol: %q is not %s", d.Protocol, Name)
	}
	ep, err := parseAddress(d.Address)
	if err != nil {
		add("address: %w", err)
	}
	switch {
	case d.UnitID == nil:
		add("unit_id: required (0 to 255 on TCP, 1 to 247 on RTU)")
	case ep != nil && ep.rtu() && (*d.UnitID < 1 || *d.UnitID > 247):
		add("unit_id: %d is not 1 to 247 (an RTU address)", *d.UnitID)
	case *d.UnitID < 0 || *d.UnitID > 255:
		add("unit_id: %d is not 0 to 255", *d.UnitID)
	}
	if d.PollInterval < 0 || (d.PollInterval > 0 && d.PollInterval < minPollInterval) {
		add("poll_interval: at least %s, got %s", minPollInterval, d.PollInterval)
	}
	if d.Timeout < 0 {
		add("timeout: must be positive, got %s", d.Timeout)
	}
	if d.Heartbeat < 0 {
		add("heartbeat: must be positive, got %s", d.Heartbeat)
	}
	if d.MaxGap != nil && (*d.MaxGap < 0 || *d.MaxGap > MaxReadRegisters) {
		add("max_gap: must be 0 to %d, got %d", MaxReadRegisters, *d.MaxGap)
	}
	if d.MaxRegisters < 0 || d.MaxRegisters > MaxReadRegisters {
		add("max_registers: must be 1 to %d, got %d", MaxReadRegisters, d.MaxRegisters)
	}
	for k, v := range d.Labels {
		if k == labelRegister || k == labelAddress {
			add("labels: %q is set by the adapter", k)
		}
		if k == "" || len(k) > bridge.MaxNameLen || len(v) > bridge.MaxNameLen {
			add("labels: %q: key must be 1 to %d bytes, value at most %d", k, bridge.MaxNameLen, bridge.MaxNameLen)
		}
	}
	if len(d.Points) == 0 {
		add("points: at least one is required")
	}
	if len(d.Points) > c.MaxPointsPerDevice {
		add("points: %d is more than max_points_per_device (%d)", len(d.Points), c.MaxPointsPerDevice)
		return errs
	}
	maxRegs := c.MaxRegisters
	if d.MaxRegisters > 0 {
		maxRegs = d.MaxRegisters
	}
	names := map[string]bool{}
	for i, p := range d.Points {
		key := fmt.Sprintf("points[%d]", i)
		if p.Name != "" {
			key = fmt.Sprintf("points[%d] %q", i, p.Name)
		}
		if names[p.Name] && p.Name != "" {
			add("%s: name: duplicate", key)
		}
		names[p.Name] = true
		_, perrs := compilePoint(p, maxRegs)
		for _, err := range perrs {
			add("%s: %w", key, err)
		}
	}
	return errs
}

// compilePoint checks a point's config and turns it into what the poller uses.
func compilePoint(p PointConfig, maxRegs int) (*point, []error) {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if err := payload.ValidName(p.Name); err != nil {
		add("name: %w", err)
	}
	pt := &point{name: p.Name, unit: p.Unit, writable: p.Writable, deadband: bridge.Deadband{Absolute: p.Deadband}}
	kind, ok := parseRegister(p.Register)
	if !ok {
		if p.Register == "" {
			add("register: required (coil, discrete_input, input or holding)")
		} else {
			add("register: %q is not coil, discrete_input, input or holding", p.Register)
		}
	}
	pt.kind = kind
	if p.Address == nil {
		add("address: required (the 0-based protocol address)")
	} else if *p.Address < 0 || *p.Address > 0xFFFF {
		add("address: %d is not 0 to 65535", *p.Address)
	} else {
		pt.addr = uint16(*p.Address)
	}
	typ := p.Type
	if typ == "" {
		typ = "uint16"
		if kind.bits() {
			typ = "bool"
		}
	}
	t, err := ParseType(typ)
	if err != nil {
		add("type: %w", err)
	}
	pt.typ = t
	o, err := ParseByteOrder(p.ByteOrder)
	if err != nil {
		add("byte_order: %w", err)
	}
	pt.order = o
	if ok && err == nil && kind.bits() && t != TypeBool {
		add("type: a %s holds one bit: the type is bool, not %s", kind, t)
	}
	if t == TypeString {
		switch {
		case p.Length < 1 || p.Length > maxStringRegs:
			add("length: a string needs its length in registers, 1 to %d", maxStringRegs)
		case o == CDAB || o == DCBA:
			add("byte_order: %s swaps words, which a string does not have; use ABCD or BADC", o)
		}
		pt.regs = p.Length
	} else {
		if p.Length != 0 {
			add("length: only for type string")
		}
		pt.regs = t.Registers()
	}
	if kind.bits() {
		pt.regs = 1
	}
	if p.Address != nil && *p.Address >= 0 && *p.Address+pt.regs-1 > 0xFFFF {
		add("address: %d plus %d registers passes 65535", *p.Address, pt.regs)
	}
	if !kind.bits() && pt.regs > maxRegs {
		add("length: %d registers is more than one request carries (%d)", pt.regs, maxRegs)
	}
	if p.Scale != nil || p.Offset != nil {
		if t == TypeBool || t == TypeString {
			add("scale: a %s cannot be scaled", t)
		}
		pt.scaled = true
		pt.scale, pt.offset = 1, 0
		if p.Scale != nil {
			pt.scale = *p.Scale
			if pt.scale == 0 || math.IsNaN(pt.scale) || math.IsInf(pt.scale, 0) {
				add("scale: must be a finite number other than 0, got %v", pt.scale)
			}
		}
		if p.Offset != nil {
			pt.offset = *p.Offset
			if math.IsNaN(pt.offset) || math.IsInf(pt.offset, 0) {
				add("offset: must be a finite number, got %v", pt.offset)
			}
		}
	}
	if p.Deadband < 0 || math.IsNaN(p.Deadband) {
		add("deadband: must not be negative, got %v", p.Deadband)
	} else if p.Deadband > 0 && (t == TypeBool || t == TypeString) {
		add("deadband: only for numbers, not %s", t)
	}
	if p.Writable && ok && !kind.writable() {
		add("writable: a %s is read-only in Modbus (only coils and holding registers are written)", kind)
	}
	prio, ok := bridge.ParsePriority(p.Priority)
	if !ok {
		add("priority: %q is not low, normal, high or critical", p.Priority)
	}
	pt.priority = prio
	if len(p.Unit) > bridge.MaxNameLen {
		add("unit: longer than %d bytes", bridge.MaxNameLen)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return pt, nil
}

// endpoint is a parsed device address: a TCP host:port or a serial line.
type endpoint struct {
	scheme     string // tcp or rtu
	host       string // tcp: host:port
	path       string // rtu: the device file
	baud       int
	parity     byte // 'N', 'E', 'O'
	stopBits   int
	dataBits   int
	frameDelay time.Duration
}

func (e *endpoint) rtu() bool { return e.scheme == "rtu" }

// key names the connection: devices with the same key share it.
func (e *endpoint) key() string {
	if e.rtu() {
		return "rtu://" + e.path
	}
	return "tcp://" + e.host
}

func (e *endpoint) lineSettings() string {
	return fmt.Sprintf("baud=%d parity=%c data_bits=%d stop_bits=%d frame_delay=%s", e.baud, e.parity, e.dataBits, e.stopBits, e.frameDelay)
}

// parseAddress reads tcp://host:port (port 502 when absent) and
// rtu:///dev/ttyX?baud=19200&parity=E&stop_bits=1&data_bits=8&frame_delay=2ms.
func parseAddress(s string) (*endpoint, error) {
	if s == "" {
		return nil, errors.New("required (tcp://host:port or rtu:///dev/tty...)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp":
		if u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("%q: a TCP address is tcp://host:port and nothing else", s)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(strings.Trim(u.Host, "[]"), "502")
		}
		h, port, err := net.SplitHostPort(host)
		if err != nil || h == "" {
			return nil, fmt.Errorf("%q: no host", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: port %q is not 1 to 65535", s, port)
		}
		return &endpoint{scheme: "tcp", host: host}, nil
	case "rtu":
		if u.Host != "" || u.Path == "" {
			return nil, fmt.Errorf("%q: an RTU address is rtu:///dev/ttyX (three slashes, an absolute path)", s)
		}
		e := &endpoint{scheme: "rtu", path: u.Path, baud: 19200, parity: 'E', dataBits: 8}
		q := u.Query()
		for k := range q {
			switch k {
			case "baud", "parity", "stop_bits", "data_bits", "frame_delay":
			default:
				return nil, fmt.Errorf("%q: unknown parameter %q (known: baud, parity, stop_bits, data_bits, frame_delay)", s, k)
			}
		}
		if v := q.Get("baud"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || !validBaud(n) {
				return nil, fmt.Errorf("%q: baud %q is not a standard rate (%s)", s, v, baudList())
			}
			e.baud = n
		}
		if v := q.Get("parity"); v != "" {
			switch strings.ToUpper(v) {
			case "N", "NONE":
				e.parity = 'N'
			case "E", "EVEN":
				e.parity = 'E'
			case "O", "ODD":
				e.parity = 'O'
			default:
				return nil, fmt.Errorf("%q: parity %q is not N, E or O", s, v)
			}
		}
		// The serial line specification asks for two stop bits without parity.
		e.stopBits = 1
		if e.parity == 'N' {
			e.stopBits = 2
		}
		if v := q.Get("stop_bits"); v != "" {
			if v != "1" && v != "2" {
				return nil, fmt.Errorf("%q: stop_bits %q is not 1 or 2", s, v)
			}
			e.stopBits = int(v[0] - '0')
		}
		if v := q.Get("data_bits"); v != "" {
			if v != "7" && v != "8" {
				return nil, fmt.Errorf("%q: data_bits %q is not 7 or 8 (RTU needs 8)", s, v)
			}
			e.dataBits = int(v[0] - '0')
		}
		if e.dataBits != 8 {
			return nil, fmt.Errorf("%q: data_bits: Modbus RTU needs 8 data bits", s)
		}
		e.frameDelay = t35(e.baud, e.parity, e.stopBits)
		if v := q.Get("frame_delay"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Second {
				return nil, fmt.Errorf("%q: frame_delay %q is not a duration of 0 to 1s", s, v)
			}
			e.frameDelay = d
		}
		return e, nil
	case "":
		return nil, fmt.Errorf("%q: no scheme (tcp:// or rtu://)", s)
	}
	return nil, fmt.Errorf("%q: scheme %q is not tcp or rtu", s, u.Scheme)
}

var bauds = []int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

func validBaud(n int) bool {
	for _, b := range bauds {
		if b == n {
			return true
		}
	}
	return false
}

func baudList() string {
	s := make([]string, len(bauds))
	for i, b := range bauds {
		s[i] = strconv.Itoa(b)
	}
	return strings.Join(s, ", ")
}

// t35 is the RTU inter-frame silence: 3.5 character times, or a fixed 1.75 ms above
// 19200 baud (Modbus over serial line v1.02, 2.5.1.1).
func t35(baud int, parity byte, stopBits int) time.Duration {
	if baud > 19200 {
		return DefaultFrameDelay
	}
	bits := 1 + 8 + stopBits
	if parity != 'N' {
		bits++
	}
	return time.Duration(float64(time.Second) * 3.5 * float64(bits) / float64(baud))
}

// New builds the adapter. It opens nothing; Run connects.
func (c *Config) New(env protocols.Env) (protocols.Adapter, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newAdapter(c, env)
}
