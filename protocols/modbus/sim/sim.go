// Package sim is a simulated Modbus TCP device: a register map served by a real
// Modbus server (github.com/simonvetter/modbus), values that move, and the faults
// of real devices on demand: answers that come slowly, "server busy", no answer at
// all, and addresses the device refuses. The gateway's tests, edgesim and edgebench
// use it. It is not a conformance reference: it answers what the server library
// accepts, and it speaks TCP only.
package sim

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/modbus"
)

// Register tables.
const (
	Coil          = "coil"
	DiscreteInput = "discrete_input"
	Input         = "input"
	Holding       = "holding"
)

// DefaultSize is the number of addresses in each table unless Options say otherwise;
// an address beyond it is refused with "illegal data address".
const DefaultSize = 1024

// MaxSize bounds a table.
const MaxSize = 65536

// Options configure a Server. The zero value serves every unit id from one bank
// of DefaultSize addresses per table, on a loopback port picked at start.
type Options struct {
	// Addr is host:port to listen on; port 0 picks a free one. Default 127.0.0.1:0.
	Addr string
	// Units are the unit ids served, each with a bank of its own; others are
	// answered with exception 11 (gateway target failed to respond). Empty: every
	// unit id shares one bank.
	Units []uint8
	// Size is the number of addresses in each table; default DefaultSize.
	Size int
	// MaxClients bounds concurrent connections; default 64.
	MaxClients uint
	// IdleTimeout closes a connection that sends nothing for this long; default 2m.
	IdleTimeout time.Duration
	// OnRequest, when set, is called with every request as it arrives (before any
	// fault applies). It must be quick and safe for concurrent use.
	OnRequest func(unit uint8, function byte, addr, quantity uint16)
	// Logger receives the server library's log lines; default: discarded.
	Logger *log.Logger
}

// Server is a simulated device. It is safe for concurrent use.
type Server struct {
	opts  Options
	banks map[uint8]*bank
	all   *bank // when Options.Units is empty

	mu      sync.Mutex
	srv     *mb.ModbusServer
	addr    string
	stop    chan struct{} // closed by Stop: wakes handlers that wait
	changed chan struct{} // closed and replaced when a fault setting changes

	requests atomic.Uint64
	byFunc   [256]atomic.Uint64
	delay    atomic.Int64  // nanoseconds added to every answer
	busyNext atomic.Int64  // answer this many requests busy
	busyPPM  atomic.Uint32 // and this share of the others, in parts per million
	silent   atomic.Bool   // answer nothing
}

// bank is one unit's four tables.
type bank struct {
	mu       sync.Mutex
	coils    []bool
	discrete []bool
	input    []uint16
	holding  []uint16
	refused  map[string]bool // "holding:12": addresses answered with exception 2
}

func newBank(size int) *bank {
	return &bank{
		coils: make([]bool, size), discrete: make([]bool, size),
		input: make([]uint16, size), holding: make([]uint16, size),
		refused: map[string]bool{},
	}
}

// New returns a server; Start listens.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Size == 0 {
		opts.Size = DefaultSize
	}
	if opts.Size < 1 || opts.Size > MaxSize {
		return nil, fmt.Errorf("sim: size %d is not 1 to %d", opts.Size, MaxSize)
	}
	if opts.MaxClients == 0 {
		opts.MaxClients = 64
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = log.New(io.Discard, "", 0)
	}
	s := &Server{opts: opts, banks: map[uint8]*bank{}, changed: make(chan struct{})}
	if len(opts.Units) == 0 {
		s.all = newBank(opts.Size)
	}
	for _, u := range opts.Units {
		s.banks[u] = newBank(opts.Size)
	}
	return s, nil
}

// Start listens and serves. After Stop it may start again, on the same address:
// that is how a test restarts a device.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("sim: already started")
	}
	var err error
	for range 5 {
		addr := s.addr
		if addr == "" {
			if addr, err = pickAddr(s.opts.Addr); err != nil {
				return err
			}
		}
		var srv *mb.ModbusServer
		srv, err = mb.NewServer(&mb.ServerConfiguration{
			URL:        "tcp://" + addr,
			Timeout:    s.opts.IdleTimeout,
			MaxClients: s.opts.MaxClients,
			Logger:     s.opts.Logger,
		}, s)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		if err = srv.Start(); err == nil {
			s.srv, s.addr, s.stop = srv, addr, make(chan struct{})
			return nil
		}
		if s.addr != "" {
			break // a fixed address: trying again will not help
		}
	}
	return fmt.Errorf("sim: listening: %w", err)
}

// pickAddr resolves port 0 to a port that is free now.
func pickAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("sim: address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("sim: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Addr is the address the server listens on (once started).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and every connection, and wakes the handlers that wait
// (slow or silent answers), which then answer nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	close(s.stop)
	_ = s.srv.Stop()
	s.srv = nil
}

// Requests is how many requests arrived, of every function.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// RequestsOf is how many requests of one function code arrived.
func (s *Server) RequestsOf(function byte) uint64 { return s.byFunc[function].Load() }

// SetDelay makes every answer wait d (a slow device).
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)); s.wake() }

// SetBusy answers the next n requests with exception 6 (server busy).
func (s *Server) SetBusy(n int) { s.busyNext.Store(int64(n)) }

// SetBusyRatio answers this share (0 to 1) of requests with exception 6.
func (s *Server) SetBusyRatio(r float64) {
	s.busyPPM.Store(uint32(math.Round(math.Max(0, math.Min(1, r)) * 1e6)))
}

// SetSilent makes the device read requests and answer none (until set false).
func (s *Server) SetSilent(on bool) { s.silent.Store(on); s.wake() }

func (s *Server) wake() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Refuse makes the device answer "illegal data address" to any read or write that
// covers the address.
func (s *Server) Refuse(unit uint8, table string, addr int) error {
	b, err := s.bankOf(unit)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refused[table+":"+strconv.Itoa(addr)] = true
	return nil
}

func (s *Server) bankOf(unit uint8) (*bank, error) {
	if s.all != nil {
		return s.all, nil
	}
	if b, ok := s.banks[unit]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("sim: unit %d is not served", unit)
}

// errNoAnswer is what a silent handler returns once woken by Stop: the server
// library answers it with an exception, on a connection that is closed by then.
var errNoAnswer = errors.New("sim: no answer")

// before applies the faults to a request; an error is the answer.
func (s *Server) before(unit uint8, fc byte, addr, qty uint16) error {
	s.requests.Add(1)
	s.byFunc[fc].Add(1)
	if f := s.opts.OnRequest; f != nil {
		f(unit, fc, addr, qty)
	}
	for {
		s.mu.Lock()
		stop, changed := s.stop, s.changed
		s.mu.Unlock()
		if s.silent.Load() {
			select {
			case <-stop:
				return errNoAnswer
			case <-changed:
				continue
			}
		}
		if d := time.Duration(s.delay.Load()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return errNoAnswer
			}
		}
		break
	}
	if n := s.busyNext.Load(); n > 0 && s.busyNext.CompareAndSwap(n, n-1) {
		return mb.ErrServerDeviceBusy
	}
	if ppm := s.busyPPM.Load(); ppm > 0 && rand.Uint32N(1e6) < ppm {
		return mb.ErrServerDeviceBusy
	}
	if s.all == nil {
		if _, ok := s.banks[unit]; !ok {
			return mb.ErrGWTargetFailedToRespond
		}
	}
	return nil
}

// HandleCoils implements mb.RequestHandler.
func (s *Server) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	fc := byte(0x01)
	if req.IsWrite {
		fc = 0x0F
		if req.Quantity == 1 && len(req.Args) == 1 {
			fc = 0x05 // the library gives both write functions to this handler
		}
	}
	if err := s.before(req.UnitId, fc, req.Addr, req.Quantity); err != nil {
		return nil, err
	}
	b, _ := s.bankOf(req.UnitId)
	return b.bits(&b.coils, Coil, req.Addr, req.Quantity, req.IsWrite, req.Args)
}

// HandleDiscreteInputs implements mb.RequestHandler.
func (s *Server) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	if err := s.before(req.UnitId, 0x02, req.Addr, req.Quantity); err != nil {
		return nil, err
	}
	b, _ := s.bankOf(req.UnitId)
	return b.bits(&b.discrete, DiscreteInput, req.Addr, req.Quantity, false, nil)
}

// HandleHoldingRegisters implements mb.RequestHandler.
func (s *Server) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	fc := byte(0x03)
	if req.IsWrite {
		fc = 0x10
		if req.Quantity == 1 {
			fc = 0x06
		}
	}
	if err := s.before(req.UnitId, fc, req.Addr, req.Quantity); err != nil {
		return nil, err
	}
	b, _ := s.bankOf(req.UnitId)
	return b.words(&b.holding, Holding, req.Addr, req.Quantity, req.IsWrite, req.Args)
}

// HandleInputRegisters implements mb.RequestHandler.
func (s *Server) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	if err := s.before(req.UnitId, 0x04, req.Addr, req.Quantity); err != nil {
		return nil, err
	}
	b, _ := s.bankOf(req.UnitId)
	return b.words(&b.input, Input, req.Addr, req.Quantity, false, nil)
}

func (b *bank) check(table string, size int, addr, qty uint16) error {
	if int(addr)+int(qty) > size {
		return mb.ErrIllegalDataAddress
	}
	if len(b.refused) > 0 {
		for a := int(addr); a < int(addr)+int(qty); a++ {
			if b.refused[table+":"+strconv.Itoa(a)] {
				return mb.ErrIllegalDataAddress
			}
		}
	}
	return nil
}

func (b *bank) bits(t *[]bool, table string, addr, qty uint16, write bool, args []bool) ([]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(table, len(*t), addr, qty); err != nil {
		return nil, err
	}
	if write {
		copy((*t)[addr:], args)
		return nil, nil
	}
	return append([]bool(nil), (*t)[addr:int(addr)+int(qty)]...), nil
}

func (b *bank) words(t *[]uint16, table string, addr, qty uint16, write bool, args []uint16) ([]uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(table, len(*t), addr, qty); err != nil {
		return nil, err
	}
	if write {
		copy((*t)[addr:], args)
		return nil, nil
	}
	return append([]uint16(nil), (*t)[addr:int(addr)+int(qty)]...), nil
}

// Point is a value in the register map: where it is and how it is encoded, as in the
// gateway's point config.
type Point struct {
	Register  string `yaml:"register"`
	Address   int    `yaml:"address"`
	Type      string `yaml:"type"`       // default bool for coils and discrete inputs, uint16 for registers
	ByteOrder string `yaml:"byte_order"` // default ABCD
	Length    int    `yaml:"length"`     // registers of a string
}

func (p Point) codec() (modbus.Type, modbus.ByteOrder, int, error) {
	typ := p.Type
	if typ == "" {
		typ = "uint16"
		if p.Register == Coil || p.Register == DiscreteInput {
			typ = "bool"
		}
	}
	t, err := modbus.ParseType(typ)
	if err != nil {
		return 0, 0, 0, err
	}
	o, err := modbus.ParseByteOrder(p.ByteOrder)
	if err != nil {
		return 0, 0, 0, err
	}
	n := t.Registers()
	if t == modbus.TypeString {
		n = p.Length
		if n < 1 {
			return 0, 0, 0, errors.New("a string needs its length in registers")
		}
	}
	switch p.Register {
	case Coil, DiscreteInput:
		if t != modbus.TypeBool {
			return 0, 0, 0, fmt.Errorf("a %s holds a bool, not %s", p.Register, t)
		}
	case Input, Holding:
	default:
		return 0, 0, 0, fmt.Errorf("register %q is not coil, discrete_input, input or holding", p.Register)
	}
	return t, o, n, nil
}

// Set stores v at p in unit's bank, encoded as the gateway would read it.
func (s *Server) Set(unit uint8, p Point, v bridge.Value) error {
	b, err := s.bankOf(unit)
	if err != nil {
		return err
	}
	t, o, n, err := p.codec()
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch p.Register {
	case Coil, DiscreteInput:
		on, ok := v.AsBool()
		if !ok {
			return fmt.Errorf("sim: %s %d: %s is not a bool", p.Register, p.Address, v.Kind())
		}
		t := b.coils
		if p.Register == DiscreteInput {
			t = b.discrete
		}
		if p.Address < 0 || p.Address >= len(t) {
			return fmt.Errorf("sim: %s %d is beyond the table", p.Register, p.Address)
		}
		t[p.Address] = on
		return nil
	}
	raw, err := modbus.Encode(t, o, v, n)
	if err != nil {
		return err
	}
	tab := b.holding
	if p.Register == Input {
		tab = b.input
	}
	if p.Address < 0 || p.Address+n > len(tab) {
		return fmt.Errorf("sim: %s %d+%d is beyond the table", p.Register, p.Address, n)
	}
	for i := range n {
		tab[p.Address+i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
	}
	return nil
}

// Get reads the value at p from unit's bank.
func (s *Server) Get(unit uint8, p Point) (bridge.Value, error) {
	b, err := s.bankOf(unit)
	if err != nil {
		return bridge.Value{}, err
	}
	t, o, n, err := p.codec()
	if err != nil {
		return bridge.Value{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch p.Register {
	case Coil, DiscreteInput:
		t := b.coils
		if p.Register == DiscreteInput {
			t = b.discrete
		}
		if p.Address < 0 || p.Address >= len(t) {
			return bridge.Value{}, fmt.Errorf("sim: %s %d is beyond the table", p.Register, p.Address)
		}
		return bridge.Bool(t[p.Address]), nil
	}
	tab := b.holding
	if p.Register == Input {
		tab = b.input
	}
	if p.Address < 0 || p.Address+n > len(tab) {
		return bridge.Value{}, fmt.Errorf("sim: %s %d+%d is beyond the table", p.Register, p.Address, n)
	}
	raw := make([]byte, 2*n)
	for i := range n {
		r := tab[p.Address+i]
		raw[2*i], raw[2*i+1] = byte(r>>8), byte(r)
	}
	return modbus.Decode(t, o, raw)
}
