package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/modbus"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

// Bounds of the modbus subcommand's flags.
const (
	maxModbusDevices = 10000
	maxModbusPoints  = 65536
)

func init() {
	register(command{
		name: "modbus",
		summary: `  edgesim modbus [flags]    Modbus TCP devices: a register map from flags or a file,
                            values that move, and slow, busy or silent answers
`,
		run: modbusMain,
	})
}

// pointList collects repeated --point flags.
type pointList []string

func (p *pointList) String() string     { return strings.Join(*p, " ") }
func (p *pointList) Set(s string) error { *p = append(*p, s); return nil }

// modbusOptions are the modbus subcommand's flags.
type modbusOptions struct {
	listen   string
	devices  int
	units    string
	points   pointList
	mapFile  string
	fill     int
	move     time.Duration
	slow     time.Duration
	busy     float64
	silent   bool
	size     int
	duration time.Duration
	seed     uint64

	motions []sim.Motion // from points, the map and fill; set by validate
	unitIDs []uint8
}

func (o *modbusOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", "127.0.0.1:5020", "address of the first device; the others take the following ports (port 0: each a free port)")
	fs.IntVar(&o.devices, "devices", 1, fmt.Sprintf("simulated devices, each a Modbus TCP server of its own (1 to %d)", maxModbusDevices))
	fs.StringVar(&o.units, "units", "", "unit ids served, comma-separated, each with its own registers; others are answered with exception 11 (default: every unit id, one register map)")
	fs.Var(&o.points, "point", "a value: TABLE:ADDRESS[:TYPE[:BYTE_ORDER[:LENGTH]]]=VALUE[/MOTION], e.g. holding:0:float32=21.5/walk, coil:3=true/toggle, input:10:string::8=pump-7; repeatable. MOTION is walk, count, toggle, sine or hold (default)")
	fs.StringVar(&o.mapFile, "map", "", "a YAML register map: points: [{register, address, type, byte_order, length, value, move, amplitude, period}]")
	fs.IntVar(&o.fill, "fill", 0, "also N holding registers from address 0, uint16 counters that move (for load)")
	fs.DurationVar(&o.move, "move", time.Second, "how often moving values change")
	fs.DurationVar(&o.slow, "slow", 0, "answer every request after this long")
	fs.Float64Var(&o.busy, "busy", 0, "answer this share of requests (0 to 1) with exception 6, server busy")
	fs.BoolVar(&o.silent, "silent", false, "read requests and answer none")
	fs.IntVar(&o.size, "size", sim.DefaultSize, fmt.Sprintf("addresses in each table (1 to %d); beyond them a request is answered with exception 2, illegal address", sim.MaxSize))
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until SIGINT or SIGTERM)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed of the moving values (0: from the clock)")
}

// mapFile is the --map file's form.
type mapFile struct {
	Points []mapPoint `yaml:"points"`
}

type mapPoint struct {
	Register  string        `yaml:"register"`
	Address   int           `yaml:"address"`
	Type      string        `yaml:"type"`
	ByteOrder string        `yaml:"byte_order"`
	Length    int           `yaml:"length"`
	Value     string        `yaml:"value"`
	Move      string        `yaml:"move"`
	Amplitude float64       `yaml:"amplitude"`
	Period    time.Duration `yaml:"period"`
}

// validate checks every flag and reports every problem at once.
func (o *modbusOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.devices < 1 || o.devices > maxModbusDevices {
		bad("--devices: %d is not between 1 and %d", o.devices, maxModbusDevices)
	}
	if _, port, err := net.SplitHostPort(o.listen); err != nil {
		bad("--listen: %q is not host:port", o.listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n+o.devices-1 > 65535 {
		bad("--listen: port %q does not leave room for %d devices", port, o.devices)
	}
	if o.units != "" {
		for _, f := range strings.Split(o.units, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 || n > 255 {
				bad("--units: %q is not a unit id (0 to 255)", f)
				continue
			}
			o.unitIDs = append(o.unitIDs, uint8(n))
		}
	}
	if o.size < 1 || o.size > sim.MaxSize {
		bad("--size: %d is not between 1 and %d", o.size, sim.MaxSize)
	}
	if o.fill < 0 || o.fill > o.size {
		bad("--fill: %d is not between 0 and --size (%d)", o.fill, o.size)
	}
	if o.move <= 0 {
		bad("--move: %v is not positive", o.move)
	}
	if o.slow < 0 {
		bad("--slow: %v is negative", o.slow)
	}
	if !(o.busy >= 0 && o.busy <= 1) {
		bad("--busy: %v is not between 0 and 1", o.busy)
	}
	if o.duration < 0 {
		bad("--duration: %v is negative", o.duration)
	}
	var specs []mapPoint
	for _, s := range o.points {
		p, err := parsePointFlag(s)
		if err != nil {
			bad("--point %q: %v", s, err)
			continue
		}
		specs = append(specs, p)
	}
	if o.mapFile != "" {
		b, err := os.ReadFile(o.mapFile)
		if err != nil {
			bad("--map: %v", err)
		} else {
			var m mapFile
			dec := yaml.NewDecoder(strings.NewReader(string(b)))
			dec.KnownFields(true)
			if err := dec.Decode(&m); err != nil && !errors.Is(err, io.EOF) {
				bad("--map %s: %v", o.mapFile, err)
			}
			specs = append(specs, m.Points...)
		}
	}
	for i := range o.fill {
		specs = append(specs, mapPoint{Register: sim.Holding, Address: i, Type: "uint16", Value: strconv.Itoa(i * 100), Move: sim.MoveCount})
	}
	if len(specs) > maxModbusPoints {
		bad("%d points: at most %d", len(specs), maxModbusPoints)
	}
	units := o.unitIDs
	if len(units) == 0 {
		units = []uint8{1} // one bank serves every unit id
	}
	for i, p := range specs {
		m, err := p.motion()
		if err != nil {
			bad("point %d (%s %d): %v", i+1, p.Register, p.Address, err)
			continue
		}
		for _, u := range units {
			m.Unit = u
			o.motions = append(o.motions, m)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return nil
}

// parsePointFlag reads TABLE:ADDRESS[:TYPE[:BYTE_ORDER[:LENGTH]]]=VALUE[/MOTION].
func parsePointFlag(s string) (mapPoint, error) {
	where, value, ok := strings.Cut(s, "=")
	if !ok {
		return mapPoint{}, errors.New("no =VALUE")
	}
	var p mapPoint
	p.Value, p.Move, _ = strings.Cut(value, "/")
	f := strings.Split(where, ":")
	if len(f) < 2 || len(f) > 5 {
		return mapPoint{}, errors.New("want TABLE:ADDRESS[:TYPE[:BYTE_ORDER[:LENGTH]]]")
	}
	p.Register = f[0]
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return mapPoint{}, fmt.Errorf("address %q is not a number", f[1])
	}
	p.Address = n
	if len(f) > 2 {
		p.Type = f[2]
	}
	if len(f) > 3 {
		p.ByteOrder = f[3]
	}
	if len(f) > 4 {
		if p.Length, err = strconv.Atoi(f[4]); err != nil {
			return mapPoint{}, fmt.Errorf("length %q is not a number", f[4])
		}
	}
	return p, nil
}

// motion checks a map point and turns it into the simulator's form.
func (p mapPoint) motion() (sim.Motion, error) {
	sp := sim.Point{Register: p.Register, Address: p.Address, Type: p.Type, ByteOrder: p.ByteOrder, Length: p.Length}
	switch p.Register {
	case sim.Coil, sim.DiscreteInput, sim.Input, sim.Holding:
	default:
		return sim.Motion{}, fmt.Errorf("register %q is not coil, discrete_input, input or holding", p.Register)
	}
	typ := p.Type
	if typ == "" {
		typ = "uint16"
		if p.Register == sim.Coil || p.Register == sim.DiscreteInput {
			typ = "bool"
		}
	}
	t, err := modbus.ParseType(typ)
	if err != nil {
		return sim.Motion{}, err
	}
	v, err := parseValue(t, p.Value)
	if err != nil {
		return sim.Motion{}, err
	}
	switch p.Move {
	case "", sim.MoveHold, sim.MoveWalk, sim.MoveCount, sim.MoveToggle, sim.MoveSine:
	default:
		return sim.Motion{}, fmt.Errorf("motion %q is not walk, count, toggle, sine or hold", p.Move)
	}
	if (p.Move == sim.MoveToggle) != (t == modbus.TypeBool) && p.Move != "" && p.Move != sim.MoveHold {
		return sim.Motion{}, fmt.Errorf("motion %s does not suit a %s", p.Move, t)
	}
	if t == modbus.TypeString && p.Move != "" && p.Move != sim.MoveHold {
		return sim.Motion{}, errors.New("a string does not move")
	}
	// Encode once now, so that a value that does not fit is refused at start-up.
	if _, err := modbus.Encode(t, mustOrder(p.ByteOrder), v, max(p.Length, 1)); err != nil {
		return sim.Motion{}, err
	}
	return sim.Motion{Point: sp, Kind: p.Move, Start: v, Amplitude: p.Amplitude, Period: p.Period}, nil
}

func mustOrder(s string) modbus.ByteOrder {
	o, _ := modbus.ParseByteOrder(s)
	return o
}

// parseValue reads a start value for a type.
func parseValue(t modbus.Type, s string) (bridge.Value, error) {
	switch t {
	case modbus.TypeBool:
		b, err := strconv.ParseBool(s)
		return bridge.Bool(b), err
	case modbus.TypeInt16, modbus.TypeInt32, modbus.TypeInt64:
		i, err := strconv.ParseInt(s, 10, 64)
		return bridge.Int(i), err
	case modbus.TypeUint16, modbus.TypeUint32, modbus.TypeUint64:
		u, err := strconv.ParseUint(s, 10, 64)
		return bridge.Uint(u), err
	case modbus.TypeFloat32, modbus.TypeFloat64:
		f, err := strconv.ParseFloat(s, 64)
		return bridge.Double(f), err
	}
	return bridge.String(s), nil
}

func modbusMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o modbusOptions
	if err := parseOptions("modbus", &o, args, stderr); err != nil {
		return err
	}
	return runModbus(ctx, &o, slog.New(slog.NewTextHandler(stderr, nil)), stdout)
}

// runModbus starts the devices, prints one line per device with its address, moves
// their values until ctx ends or the duration passes, and stops them.
func runModbus(ctx context.Context, o *modbusOptions, log *slog.Logger, stdout io.Writer) error {
	raiseFileLimit(o.devices, log)
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	host, portText, _ := net.SplitHostPort(o.listen)
	port, _ := strconv.Atoi(portText)
	var servers []*sim.Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for i := range o.devices {
		addr := net.JoinHostPort(host, "0")
		if port != 0 {
			addr = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
		s, err := sim.New(sim.Options{Addr: addr, Units: o.unitIDs, Size: o.size})
		if err != nil {
			return err
		}
		for _, m := range o.motions {
			if err := s.Check(m); err != nil {
				return fmt.Errorf("%s %d: %w", m.Point.Register, m.Point.Address, err)
			}
		}
		s.SetDelay(o.slow)
		s.SetBusyRatio(o.busy)
		s.SetSilent(o.silent)
		if err := s.Start(); err != nil {
			return fmt.Errorf("device %d: %w", i+1, err)
		}
		servers = append(servers, s)
		fmt.Fprintf(stdout, "modbus device %d listening on %s\n", i+1, s.Addr())
	}
	log.Info("modbus devices serving", "devices", len(servers), "points", len(o.motions), "slow", o.slow, "busy", o.busy, "silent", o.silent)
	var wg sync.WaitGroup
	errs := make(chan error, len(servers))
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Animate(ctx, o.move, o.motions, o.seed+uint64(i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	log.Info("modbus devices stopped", "requests", totalRequests(servers))
	return nil
}

func totalRequests(servers []*sim.Server) uint64 {
	var n uint64
	for _, s := range servers {
		n += s.Requests()
	}
	return n
}
