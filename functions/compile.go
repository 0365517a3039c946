package functions

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/edgegate/edgegate/bridge"
	"github.com/tetratelabs/wazero"
)

type kind int

const (
	kindDerive kind = iota
	kindFilter
	kindAggregate
	kindWASM
)

// function is one compiled function and, once a pipeline installs it, its state:
// the open windows of an aggregate, the instances of a module.
type function struct {
	cfg   Config
	key   string // equal keys: the same function, whose state a Swap keeps
	kind  kind
	match *bridge.Matcher
	prog  *program    // derive, filter
	agg   aggFn       // aggregate
	win   *windows    // aggregate; set when installed
	wasm  *wasmModule // wasm
	pool  *pool       // wasm; set when installed
	m     *fnMetrics  // set when installed
}

// Set is a compiled list of functions, ready for a Pipeline. A Set is given to one
// Pipeline (New or Swap), which owns it from then on.
type Set struct {
	fns []*function
}

// CompileOptions tune Compile; the zero value is what the gateway uses.
type CompileOptions struct {
	// Cache keeps compiled WebAssembly across compilations (wazero's in-memory or
	// directory cache). Nil: each Compile compiles its modules anew.
	Cache wazero.CompilationCache
}

// Compile validates function configs, compiles and type-checks their CEL and
// compiles their WebAssembly modules. It returns every problem, each naming the
// function and key (and the expression, for CEL).
func Compile(cfgs []Config, opts CompileOptions) (*Set, []error) {
	var errs []error
	if len(cfgs) > maxFunctions {
		return nil, []error{fmt.Errorf("%d functions: the limit is %d", len(cfgs), maxFunctions)}
	}
	s := &Set{}
	names := map[string]int{}
	for i := range cfgs {
		c := cfgs[i] // a copy: defaults are not written back into the caller's
		if c.WASM != nil {
			w := *c.WASM
			c.WASM = &w
		}
		c.setDefaults()
		where := fmt.Sprintf("functions[%d]", i)
		if c.Name != "" {
			where = fmt.Sprintf("function %q", c.Name)
			if j, dup := names[c.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: name also used by functions[%d]", where, j))
				continue
			}
			names[c.Name] = i
		}
		if e := c.validate(where); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		f, err := compileFunction(&c)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		s.fns = append(s.fns, f)
	}
	// Modules last: compiling one takes a while. They are compiled even when
	// another function failed, so that `edgegate check` reports every problem.
	for _, f := range s.fns {
		if f.kind != kindWASM {
			continue
		}
		mod, err := compileWASM(context.Background(), f.cfg.WASM, opts.Cache)
		if err != nil {
			errs = append(errs, fmt.Errorf("function %q: wasm: %w", f.cfg.Name, err))
			continue
		}
		f.wasm = mod
		f.key += hex.EncodeToString(mod.sum[:])
	}
	if len(errs) > 0 {
		s.Close()
		return nil, errs
	}
	return s, nil
}

func compileFunction(c *Config) (*function, error) {
	key, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	f := &function{cfg: *c, key: string(key)}
	f.match, err = bridge.Filter{Devices: c.Match.Devices, Points: c.Match.Points, Labels: c.Match.Labels}.Compile()
	if err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	switch {
	case c.Derive != nil:
		f.kind = kindDerive
		if f.prog, err = compileCEL(c.Derive.CEL, wantScalar, c.CostLimit); err != nil {
			return nil, fmt.Errorf("derive: cel %q: %w", c.Derive.CEL, err)
		}
	case c.Filter != nil:
		f.kind = kindFilter
		if f.prog, err = compileCEL(c.Filter.CEL, wantBool, c.CostLimit); err != nil {
			return nil, fmt.Errorf("filter: cel %q: %w", c.Filter.CEL, err)
		}
	case c.Aggregate != nil:
		f.kind = kindAggregate
		f.agg, _ = parseAggFn(c.Aggregate.Fn)
	case c.WASM != nil:
		f.kind = kindWASM
	}
	return f, nil
}

// Len is the number of functions.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.fns)
}

// Names lists the functions in order.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.fns))
	for i, f := range s.fns {
		out[i] = f.cfg.Name
	}
	return out
}

// Close releases what the set's functions hold (compiled modules, instances). A
// Set given to a Pipeline is closed by the Pipeline.
func (s *Set) Close() {
	if s == nil {
		return
	}
	for _, f := range s.fns {
		f.close()
	}
}

func (f *function) close() {
	if f.pool != nil {
		f.pool.close()
	}
	if f.wasm != nil {
		f.wasm.close()
	}
}
