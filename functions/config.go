package functions

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
	"gopkg.in/yaml.v3"
)

// Config is one entry of the `functions:` list. Exactly one of Derive, Filter,
// Aggregate and WASM is set.
type Config struct {
	// Name identifies the function in errors, metrics, logs and the derived_from
	// label. Required and unique.
	Name  string `yaml:"name"`
	Match Match  `yaml:"match"`
	// CostLimit bounds one CEL evaluation (cel-go's cost units: about one per
	// operation, more for string and list work); 0 means DefaultCostLimit. An
	// expression whose estimated worst case is above it is refused at load.
	CostLimit uint64 `yaml:"cost_limit"`

	Derive    *Derive    `yaml:"derive"`
	Filter    *Filter    `yaml:"filter"`
	Aggregate *Aggregate `yaml:"aggregate"`
	WASM      *WASM      `yaml:"wasm"`
}

// Match selects the messages a function sees: every part that is set must match;
// an empty part matches everything. Patterns are globs as in Subscribe (path.Match).
type Match struct {
	Devices []string          `yaml:"devices"`
	Points  []string          `yaml:"points"`
	Labels  map[string]string `yaml:"labels"`
}

// Derive adds a message for Point, to the same device, with the value of CEL.
type Derive struct {
	Point string `yaml:"point"`
	CEL   string `yaml:"cel"`
	// Unit of the derived message; empty: none (a derived value rarely keeps the
	// source's unit: °C becomes °F).
	Unit string `yaml:"unit"`
}

// Filter drops a message for which CEL is false.
type Filter struct {
	CEL string `yaml:"cel"`
}

// Aggregate emits one message per device and tumbling window to Point.
type Aggregate struct {
	Window time.Duration `yaml:"window"`
	// Fn is avg, min, max, sum, count or last.
	Fn    string `yaml:"fn"`
	Point string `yaml:"point"`
	// Unit of the emitted message; empty: that of the window's last message
	// (none for count).
	Unit string `yaml:"unit"`
}

// WASM runs a WebAssembly module on batches of messages (docs/functions.md has
// the ABI).
type WASM struct {
	Module string `yaml:"module"`
	// Timeout bounds one batch; default 100ms.
	Timeout time.Duration `yaml:"timeout"`
	// MemoryLimit bounds the module's linear memory, per instance; default 16MiB.
	MemoryLimit Size `yaml:"memory_limit"`
	// AllowWrites lets the module's output carry writes to devices.
	AllowWrites bool `yaml:"allow_writes"`
	// Instances is how many instances of the module run, each on its share of the
	// devices (by a hash of the device id); default 1.
	Instances int `yaml:"instances"`
	// MaxBatch is the most messages handed over in one call; default 256.
	MaxBatch int `yaml:"max_batch"`
}

// Defaults and limits.
const (
	DefaultCostLimit     = 10_000
	MaxCostLimit         = 10_000_000
	DefaultWASMTimeout   = 100 * time.Millisecond
	DefaultWASMMemory    = 16 << 20
	DefaultWASMInstances = 1
	DefaultWASMMaxBatch  = 256
	MaxWASMModuleSize    = 64 << 20
	maxWASMMemory        = 4 << 30
	maxWASMInstances     = 64
	maxWASMMaxBatch      = 10_000
	maxWASMTimeout       = time.Minute
	minAggregateWindow   = 10 * time.Millisecond
	maxAggregateWindow   = 7 * 24 * time.Hour
	aggregateFns         = "avg, min, max, sum, count or last"
	maxFunctions         = 1024
	maxExpressionLength  = 16 << 10
	labelDerivedFrom     = "derived_from"
	wasmPageSize         = 65536
)

// LabelDerivedFrom is the label every message a function adds carries: the
// function's name.
const LabelDerivedFrom = labelDerivedFrom

func (c *Config) setDefaults() {
	if c.CostLimit == 0 {
		c.CostLimit = DefaultCostLimit
	}
	if w := c.WASM; w != nil {
		if w.Timeout == 0 {
			w.Timeout = DefaultWASMTimeout
		}
		if w.MemoryLimit == 0 {
			w.MemoryLimit = DefaultWASMMemory
		}
		if w.Instances == 0 {
			w.Instances = DefaultWASMInstances
		}
		if w.MaxBatch == 0 {
			w.MaxBatch = DefaultWASMMaxBatch
		}
	}
}

// validate checks what needs no compiling. where names the function.
func (c *Config) validate(where string) []error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{where}, a...)...))
	}
	switch {
	case c.Name == "":
		add("name is required")
	case len(c.Name) > bridge.MaxNameLen || !utf8.ValidString(c.Name):
		add("name: must be UTF-8 of at most %d bytes", bridge.MaxNameLen)
	}
	kinds := 0
	for _, set := range []bool{c.Derive != nil, c.Filter != nil, c.Aggregate != nil, c.WASM != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		add("exactly one of derive, filter, aggregate and wasm must be set (found %d)", kinds)
	}
	if c.CostLimit > MaxCostLimit {
		add("cost_limit: %d is more than %d", c.CostLimit, MaxCostLimit)
	}
	if d := c.Derive; d != nil {
		if err := checkPoint(d.Point); err != nil {
			add("derive: point: %v", err)
		}
		if d.CEL == "" {
			add("derive: cel is required")
		}
		if !utf8.ValidString(d.Unit) {
			add("derive: unit: not UTF-8")
		}
	}
	if f := c.Filter; f != nil && f.CEL == "" {
		add("filter: cel is required")
	}
	if a := c.Aggregate; a != nil {
		if err := checkPoint(a.Point); err != nil {
			add("aggregate: point: %v", err)
		}
		if a.Window < minAggregateWindow || a.Window > maxAggregateWindow {
			add("aggregate: window: %v is not between %v and %v", a.Window, minAggregateWindow, maxAggregateWindow)
		}
		if _, ok := parseAggFn(a.Fn); !ok {
			add("aggregate: fn: %q is not %s", a.Fn, aggregateFns)
		}
		if !utf8.ValidString(a.Unit) {
			add("aggregate: unit: not UTF-8")
		}
	}
	if w := c.WASM; w != nil {
		if w.Module == "" {
			add("wasm: module is required")
		}
		if w.Timeout < 0 || w.Timeout > maxWASMTimeout {
			add("wasm: timeout: %v is not between 0 and %v", w.Timeout, maxWASMTimeout)
		}
		if w.MemoryLimit < wasmPageSize || w.MemoryLimit > maxWASMMemory {
			add("wasm: memory_limit: %d is not between 64KiB and 4GiB", w.MemoryLimit)
		}
		if w.Instances < 0 || w.Instances > maxWASMInstances {
			add("wasm: instances: %d is not between 1 and %d", w.Instances, maxWASMInstances)
		}
		if w.MaxBatch < 0 || w.MaxBatch > maxWASMMaxBatch {
			add("wasm: max_batch: %d is not between 1 and %d", w.MaxBatch, maxWASMMaxBatch)
		}
	}
	return errs
}

func checkPoint(p string) error {
	switch {
	case p == "":
		return errors.New("required")
	case len(p) > bridge.MaxNameLen || !utf8.ValidString(p):
		return fmt.Errorf("must be UTF-8 of at most %d bytes", bridge.MaxNameLen)
	}
	return nil
}

// Size is a size in bytes, written as a number or with a unit: 512KiB, 16MiB, 1GiB
// (also KB, MB, GB as powers of 1000).
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// UnmarshalYAML reads a Size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

func parseSize(in string) (Size, error) {
	s := strings.TrimSpace(in)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (like 16MiB or 1048576)", in)
	}
	return Size(v * mult), nil
}
