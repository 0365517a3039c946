package functions

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
)

// CEL sees these variables. value is declared dyn in the contract; each expression
// is also compiled once per kind of value (double, int, uint, bool, string, bytes),
// so that the checker resolves overloads at load and an integer reading can be
// promoted to a double where the expression only makes sense for doubles
// (`value * 9.0 / 5.0 + 32.0` on a device that sends 180).
const (
	varValue  = "value"
	varDevice = "device"
	varPoint  = "point"
	varLabels = "labels"
	varMsg    = "msg"
)

// The sizes the load-time cost estimate assumes. Larger inputs are possible (a
// long string value, a message with many labels): the cost limit at evaluation
// catches what the estimate did not foresee.
const (
	estNameLen    = bridge.MaxNameLen // device, point and unit names
	estLabels     = 64                // labels per message
	estLabelLen   = 1024              // bytes per label key or value
	estValueBytes = 4096              // bytes of a string or bytes value
)

// valueTypes are the CEL types of each kind of bridge.Value, indexed by Kind.
var valueTypes = [...]*cel.Type{
	bridge.KindDouble: cel.DoubleType,
	bridge.KindInt:    cel.IntType,
	bridge.KindUint:   cel.UintType,
	bridge.KindBool:   cel.BoolType,
	bridge.KindString: cel.StringType,
	bridge.KindBytes:  cel.BytesType,
}

// celEnvs are the environments: [0] with value as dyn, [k] with value of kind k.
// Building one takes about a millisecond, so they are made once and shared (a
// cel.Env is safe for concurrent use).
var celEnvs = sync.OnceValues(func() ([len(valueTypes)]*cel.Env, error) {
	var envs [len(valueTypes)]*cel.Env
	for k := range envs {
		t := valueTypes[k]
		if t == nil {
			t = cel.DynType
		}
		env, err := cel.NewEnv(
			cel.Types(&pb.Message{}),
			cel.Variable(varValue, t),
			cel.Variable(varDevice, cel.StringType),
			cel.Variable(varPoint, cel.StringType),
			cel.Variable(varLabels, cel.MapType(cel.StringType, cel.StringType)),
			cel.Variable(varMsg, cel.ObjectType("edgegate.v1.Message")),
			ext.Strings(),
			ext.Math(),
		)
		if err != nil {
			return envs, err
		}
		envs[k] = env
	}
	return envs, nil
})

// want is what an expression must produce.
type want int

const (
	wantBool   want = iota // a filter
	wantScalar             // a derive: a number, bool, string or bytes
)

// program is one compiled expression.
type program struct {
	expr   string
	byKind [len(valueTypes)]cel.Program // nil where the expression does not check for that kind
	dyn    cel.Program                  // for kinds without a program of their own
	// promote: an int or uint value with no program of its kind runs the double
	// program, converted.
	promote bool
}

// compileCEL compiles and checks an expression for every kind of value and
// estimates its worst-case cost. An error says what is wrong with the expression;
// the caller adds which function and key.
func compileCEL(expr string, w want, limit uint64) (*program, error) {
	if len(expr) > maxExpressionLength {
		return nil, fmt.Errorf("longer than %d bytes", maxExpressionLength)
	}
	envs, err := celEnvs()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	p := &program{expr: expr}
	// The dyn form first: it reports syntax errors, unknown names and a result of
	// the wrong type the way users expect to read them.
	ast, iss := envs[0].Compile(expr)
	if iss.Err() != nil {
		return nil, errors.New(oneLine(iss.Err().Error()))
	}
	if err := checkOutput(ast.OutputType(), w); err != nil {
		return nil, err
	}
	if p.dyn, err = buildProgram(envs[0], ast, limit); err != nil {
		return nil, err
	}
	var why []string
	for k := range valueTypes {
		if valueTypes[k] == nil {
			continue
		}
		ast, iss := envs[k].Compile(expr)
		if iss.Err() != nil {
			why = append(why, fmt.Sprintf("for a %s value: %s", bridge.Kind(k), oneLine(iss.Err().Error())))
			continue
		}
		if err := checkOutput(ast.OutputType(), w); err != nil {
			why = append(why, fmt.Sprintf("for a %s value: %v", bridge.Kind(k), err))
			continue
		}
		prg, err := buildProgram(envs[k], ast, limit)
		if err != nil {
			return nil, err
		}
		p.byKind[k] = prg
	}
	p.promote = p.byKind[bridge.KindDouble] != nil
	n := 0
	for _, prg := range p.byKind {
		if prg != nil {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("does not type-check for any kind of value: %s", strings.Join(why, "; "))
	}
	return p, nil
}

func checkOutput(t *cel.Type, w want) error {
	switch w {
	case wantBool:
		if t.IsExactType(cel.BoolType) || t.IsExactType(cel.DynType) {
			return nil
		}
		return fmt.Errorf("is a %s, not a bool", t)
	default:
		for _, ok := range []*cel.Type{cel.DoubleType, cel.IntType, cel.UintType, cel.BoolType, cel.StringType, cel.BytesType, cel.DynType} {
			if t.IsExactType(ok) {
				return nil
			}
		}
		return fmt.Errorf("is a %s, not a number, bool, string or bytes", t)
	}
}

// buildProgram estimates the checked expression's cost, refuses it when the worst
// case is over the limit, and plans it with the limit enforced at evaluation.
func buildProgram(env *cel.Env, ast *cel.Ast, limit uint64) (cel.Program, error) {
	est, err := env.EstimateCost(ast, estimator{})
	if err != nil {
		return nil, fmt.Errorf("estimating its cost: %w", err)
	}
	if est.Max > limit {
		return nil, fmt.Errorf("estimated cost %s is over the cost_limit of %d (names of up to %d bytes, %d labels of up to %d bytes, values of up to %d bytes assumed)",
			fmtCost(est.Max), limit, estNameLen, estLabels, estLabelLen, estValueBytes)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(limit))
	if err != nil {
		return nil, err
	}
	return prg, nil
}

func fmtCost(c uint64) string {
	if c == ^uint64(0) {
		return "unbounded"
	}
	return fmt.Sprint(c)
}

// estimator gives the cost estimate the size of every input that has one.
type estimator struct{}

func (estimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil
	}
	size := func(max uint64) *cost.SizeEstimate { return &cost.SizeEstimate{Min: 0, Max: max} }
	switch path[0] {
	case varValue:
		if len(path) == 1 {
			return size(estValueBytes)
		}
	case varDevice, varPoint:
		return size(estNameLen)
	case varLabels:
		if len(path) == 1 {
			return size(estLabels)
		}
		return size(estLabelLen)
	case varMsg:
		if len(path) < 2 {
			return nil
		}
		switch path[1] {
		case "device", "point", "unit":
			return size(estNameLen)
		case "labels":
			if len(path) == 2 {
				return size(estLabels)
			}
			return size(estLabelLen)
		case "value":
			return size(estValueBytes)
		}
	}
	return nil
}

func (estimator) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

func oneLine(s string) string {
	s = strings.TrimPrefix(s, "ERROR: <input>:")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// eval runs the expression for one message.
func (p *program) eval(m *bridge.Message) (ref.Val, error) {
	k := m.Value.Kind()
	v := m.Value
	var prg cel.Program
	if int(k) < len(p.byKind) {
		prg = p.byKind[k]
	}
	if prg == nil && p.promote && (k == bridge.KindInt || k == bridge.KindUint) {
		f, _ := v.Float()
		v, prg = bridge.Double(f), p.byKind[bridge.KindDouble]
	}
	if prg == nil {
		prg = p.dyn
	}
	act := &activation{m: m, value: toCEL(v)}
	out, _, err := prg.Eval(act)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func toCEL(v bridge.Value) ref.Val {
	switch v.Kind() {
	case bridge.KindDouble:
		f, _ := v.AsDouble()
		return types.Double(f)
	case bridge.KindInt:
		i, _ := v.AsInt()
		return types.Int(i)
	case bridge.KindUint:
		u, _ := v.AsUint()
		return types.Uint(u)
	case bridge.KindBool:
		b, _ := v.AsBool()
		return types.Bool(b)
	case bridge.KindString:
		s, _ := v.AsString()
		return types.String(s)
	case bridge.KindBytes:
		b, _ := v.AsBytes()
		return types.Bytes(b)
	}
	return types.NullValue
}

// fromCEL converts a derive's result to a value.
func fromCEL(v ref.Val) (bridge.Value, error) {
	switch x := v.(type) {
	case types.Double:
		return bridge.Double(float64(x)), nil
	case types.Int:
		return bridge.Int(int64(x)), nil
	case types.Uint:
		return bridge.Uint(uint64(x)), nil
	case types.Bool:
		return bridge.Bool(bool(x)), nil
	case types.String:
		return bridge.String(string(x)), nil
	case types.Bytes:
		return bridge.Bytes([]byte(x)), nil
	}
	return bridge.Value{}, fmt.Errorf("produced a %s, not a number, bool, string or bytes", v.Type().TypeName())
}

// activation resolves the variables for one message; msg is converted only when
// the expression reads it.
type activation struct {
	m     *bridge.Message
	value ref.Val
	msg   *pb.Message
}

var emptyLabels = map[string]string{}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varValue:
		return a.value, true
	case varDevice:
		return types.String(a.m.Device), true
	case varPoint:
		return types.String(a.m.Point), true
	case varLabels:
		if a.m.Labels == nil {
			return emptyLabels, true
		}
		return a.m.Labels, true
	case varMsg:
		if a.msg == nil {
			a.msg = pbconv.ToProto(a.m)
		}
		return a.msg, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
