package functions

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

func TestDerive(t *testing.T) {
	e := newEnv(t, compile(t, `
- name: fryer-fahrenheit
  match: {devices: ["fryer-*"], points: [oil_temp]}
  derive: {point: oil_temp_f, cel: "value * 9.0 / 5.0 + 32.0", unit: "°F"}
`))
	src := reading("fryer-1", "oil_temp", bridge.Double(180))
	src.Unit, src.Priority, src.Quality = "°C", bridge.PriorityCritical, bridge.QualityUncertain
	src.SourceTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e.publish(src, reading("fryer-1", "level", bridge.Double(3)), reading("mixer-1", "oil_temp", bridge.Double(20)))

	got := e.published()
	if len(got) != 4 {
		t.Fatalf("published %s; want 4 messages", describe(got))
	}
	orig, d := got[0], got[1]
	if orig != src || got[2].Point != "level" || got[3].Device != "mixer-1" {
		t.Fatalf("order: %s; want the source, its derived message, then the rest", describe(got))
	}
	if d.Device != "fryer-1" || d.Point != "oil_temp_f" || !d.Value.Equal(bridge.Double(356)) {
		t.Errorf("derived %s/%s=%#v; want fryer-1/oil_temp_f=double(356)", d.Device, d.Point, d.Value)
	}
	if d.Sequence != orig.Sequence+1 {
		t.Errorf("derived sequence %d; want its own, after the source's %d", d.Sequence, orig.Sequence)
	}
	if d.Labels[LabelDerivedFrom] != "fryer-fahrenheit" || d.Labels["line"] != "a" {
		t.Errorf("derived labels %v; want the source's and derived_from", d.Labels)
	}
	if _, ok := orig.Labels[LabelDerivedFrom]; ok {
		t.Errorf("the source's labels were changed: %v", orig.Labels)
	}
	if d.Unit != "°F" || d.Priority != bridge.PriorityCritical || d.Quality != bridge.QualityUncertain ||
		!d.SourceTime.Equal(src.SourceTime) || d.Protocol != bridge.ProtocolMQTT {
		t.Errorf("derived unit %q priority %v quality %v source time %v protocol %v; want the config's unit and the source's rest",
			d.Unit, d.Priority, d.Quality, d.SourceTime, d.Protocol)
	}
	if v := e.metric("emits", "fryer-fahrenheit"); v != 1 {
		t.Errorf("emits %v; want 1", v)
	}
	if v := e.metric("evaluations", "fryer-fahrenheit"); v != 1 {
		t.Errorf("evaluations %v; want 1 (only the matching message)", v)
	}
}

// TestDeriveKinds: an expression runs on each kind of value it type-checks for;
// an integer reading is promoted to a double where only a double makes sense.
func TestDeriveKinds(t *testing.T) {
	for _, c := range []struct {
		cel  string
		in   bridge.Value
		want bridge.Value // zero: no derived message, a failure
	}{
		{"value * 9.0 / 5.0 + 32.0", bridge.Int(100), bridge.Double(212)},
		{"value * 9.0 / 5.0 + 32.0", bridge.Uint(100), bridge.Double(212)},
		{"value * 9.0 / 5.0 + 32.0", bridge.String("hot"), bridge.Value{}},
		{"value * 2", bridge.Int(21), bridge.Int(42)},
		{"value * 2u", bridge.Uint(21), bridge.Uint(42)},
		{`value + "!"`, bridge.String("hot"), bridge.String("hot!")},
		{"!value", bridge.Bool(true), bridge.Bool(false)},
		{"size(value)", bridge.Bytes([]byte{1, 2, 3}), bridge.Int(3)},
		{`device + "/" + point + "/" + labels["line"]`, bridge.Double(1), bridge.String("fryer-1/oil_temp/a")},
		{"msg.unit", bridge.Double(1), bridge.String("°C")},
		{"math.round(value * 10.0) / 10.0", bridge.Double(1.26), bridge.Double(1.3)},
		{"int(value) / 0", bridge.Int(1), bridge.Value{}},
		{"value > 100.0", bridge.Int(180), bridge.Bool(true)},
	} {
		t.Run(c.cel+"/"+c.in.GoString(), func(t *testing.T) {
			e := newEnv(t, compile(t, fmt.Sprintf(`[{name: d, derive: {point: out, cel: %q}}]`, c.cel)))
			m := reading("fryer-1", "oil_temp", c.in)
			m.Unit = "°C"
			e.publish(m)
			got := e.published()
			if c.want.IsZero() {
				if len(got) != 1 || e.metric("dead_letters", "d") != 1 {
					t.Fatalf("published %s, dead letters %v; want the source alone and one dead letter", describe(got), e.metric("dead_letters", "d"))
				}
				return
			}
			if len(got) != 2 || !got[1].Value.Equal(c.want) {
				t.Fatalf("published %s; want a derived %#v", describe(got), c.want)
			}
		})
	}
}

func TestFilterDrops(t *testing.T) {
	e := newEnv(t, compile(t, `
- name: drop-noise
  match: {points: [vibration]}
  filter: {cel: "value > 0.5"}
`))
	e.publish(reading("m-1", "vibration", bridge.Double(0.2)), reading("m-1", "vibration", bridge.Double(0.9)),
		reading("m-1", "temp", bridge.Double(0.1)), reading("m-1", "vibration", bridge.Int(3)))
	// A batch whose every message is dropped publishes nothing, and succeeds.
	e.publish(reading("m-1", "vibration", bridge.Double(0.1)))
	got := e.published()
	if d := describe(got); d != "m-1/vibration=double(0.9) m-1/temp=double(0.1) m-1/vibration=int(3) " {
		t.Fatalf("published %s", d)
	}
	if v := e.metric("drops", "drop-noise"); v != 2 {
		t.Errorf("drops %v; want 2", v)
	}
	if v := e.metric("evaluations", "drop-noise"); v != 4 {
		t.Errorf("evaluations %v; want 4", v)
	}
}

// TestFilterFailurePasses: a filter that fails lets the message through (a broken
// filter must not lose data), counts a dead letter, and logs.
func TestFilterFailurePasses(t *testing.T) {
	e := newEnv(t, compile(t, `[{name: f, filter: {cel: "value > 0.5"}}]`))
	e.publish(reading("m-1", "state", bridge.String("running")))
	if got := e.published(); len(got) != 1 {
		t.Fatalf("published %s; want the message", describe(got))
	}
	if v := e.metric("failures", "f", reasonError); v != 1 {
		t.Errorf("failures %v; want 1", v)
	}
	if v := e.metric("dead_letters", "f"); v != 1 {
		t.Errorf("dead letters %v; want 1", v)
	}
	if log := e.log.String(); !strings.Contains(log, "function=f") || !strings.Contains(log, "device=m-1") {
		t.Errorf("log %q; want the function and the device", log)
	}
}

// TestCostLimitAtEvaluation: an input larger than the estimate assumed (many
// labels) runs over the cost limit: a dead letter, not a stalled pipeline.
func TestCostLimitAtEvaluation(t *testing.T) {
	e := newEnv(t, compile(t, `
- name: f
  cost_limit: 2000
  filter: {cel: 'labels.exists(k, k == "zz")'}
`))
	m := reading("m-1", "p", bridge.Double(1))
	for i := range 2000 {
		m.Labels[fmt.Sprint("k", i)] = "v"
	}
	e.publish(m, reading("m-1", "p", bridge.Double(2)))
	if got := e.published(); len(got) != 1 {
		t.Fatalf("published %s; want the over-budget message only (the small one is false)", describe(got))
	}
	if v := e.metric("failures", "f", reasonBudget); v != 1 {
		t.Errorf("budget failures %v; want 1", v)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []struct {
		src  string
		want []string // each must appear in one error
	}{
		{`[{name: f, filter: {cel: "value * 2"}}]`, []string{`function "f": filter: cel "value * 2": is a int, not a bool`}},
		{`[{name: f, filter: {cel: "value +"}}]`, []string{`function "f": filter: cel "value +": `, "Syntax error"}},
		{`[{name: f, filter: {cel: "temperature > 3.0"}}]`, []string{`cel "temperature > 3.0"`, "undeclared reference to 'temperature'"}},
		{`[{name: f, derive: {point: x, cel: "[value]"}}]`, []string{`function "f": derive: cel "[value]": is a list(dyn), not a number, bool, string or bytes`}},
		{`[{name: f, filter: {cel: "value.contains('x') && value > 1.0"}}]`, []string{`cel "value.contains('x') && value > 1.0": does not type-check for any kind of value: for a double value: `}},
		{`[{name: f, filter: {cel: "labels.all(k, labels.all(j, labels.all(i, k + j + i != '')))"}}]`,
			[]string{`function "f": filter: cel "labels.all(`, "is over the cost_limit of 10000"}},
		{`[{name: f, cost_limit: 5, filter: {cel: "labels.exists(k, k == 'x')"}}]`, []string{"over the cost_limit of 5"}},
		{`[{name: f, derive: {point: x, cel: "1"}, filter: {cel: "true"}}]`, []string{"exactly one of derive, filter, aggregate and wasm"}},
		{`[{name: f}]`, []string{"exactly one of"}},
		{`[{filter: {cel: "true"}}]`, []string{"functions[0]: name is required"}},
		{`[{name: f, filter: {cel: "true"}}, {name: f, filter: {cel: "true"}}]`, []string{`function "f": name also used by functions[0]`}},
		{`[{name: f, derive: {cel: "1"}}]`, []string{`function "f": derive: point: required`}},
		{`[{name: f, match: {devices: ["[x"]}, filter: {cel: "true"}}]`, []string{`function "f": match: devices: bad pattern "[x"`}},
		{`[{name: f, aggregate: {window: 0s, fn: median, point: x}}]`, []string{
			`function "f": aggregate: window: 0s is not between`, `function "f": aggregate: fn: "median" is not avg, min, max, sum, count or last`}},
		{`[{name: f, wasm: {module: /nonexistent/x.wasm}}]`, []string{`function "f": wasm: open /nonexistent/x.wasm`}},
		{`[{name: f, wasm: {module: x.wasm, memory_limit: 1KiB, timeout: 2h}}]`, []string{"memory_limit: 1024 is not between", "timeout: 2h0m0s is not between"}},
	} {
		t.Run(c.src, func(t *testing.T) {
			_, errs := Compile(parseConfigs(t, c.src), CompileOptions{})
			if len(errs) == 0 {
				t.Fatal("compiled")
			}
			all := fmt.Sprint(errs)
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("errors %q; want one with %q", all, w)
				}
			}
		})
	}
}

// TestCompileKeepsConfig: Compile does not write defaults into the caller's list.
func TestCompileKeepsConfig(t *testing.T) {
	cfgs := parseConfigs(t, `[{name: f, filter: {cel: "true"}}]`)
	s, errs := Compile(cfgs, CompileOptions{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	defer s.Close()
	if cfgs[0].CostLimit != 0 {
		t.Errorf("cost_limit %d written back", cfgs[0].CostLimit)
	}
	if got := s.Names(); len(got) != 1 || got[0] != "f" {
		t.Errorf("names %v", got)
	}
}

// TestChaining: a message a function adds goes through the functions after it, not
// those before it.
func TestChaining(t *testing.T) {
	e := newEnv(t, compile(t, `
- name: keep-hot
  match: {points: [temp_f]}
  filter: {cel: "value > 100.0"}
- name: to-f
  match: {points: [temp]}
  derive: {point: temp_f, cel: "value * 9.0 / 5.0 + 32.0"}
- name: only-hot
  match: {points: [temp_f]}
  filter: {cel: "value > 100.0"}
- name: label
  match: {points: [temp_f]}
  derive: {point: temp_f_label, cel: "value > 200.0 ? 'very hot' : 'hot'"}
`))
	e.publish(reading("o-1", "temp", bridge.Int(100)), reading("o-1", "temp", bridge.Int(20)))
	got := describe(e.published())
	want := `o-1/temp=int(100) o-1/temp_f=double(212) o-1/temp_f_label=string(very hot) o-1/temp=int(20) `
	if got != want {
		t.Fatalf("published %s; want %s", got, want)
	}
	if v := e.metric("evaluations", "keep-hot"); v != 0 {
		t.Errorf("the filter before the derive saw %v messages", v)
	}
}

// TestRefusedAdditionsKeepTheData: when the hub refuses what functions added (a
// device over its points limit), the device's own messages are still published.
func TestRefusedAdditionsKeepTheData(t *testing.T) {
	s := compile(t, `[{name: d, derive: {point: extra, cel: "value"}}]`)
	hub := bridge.NewHub(bridge.HubConfig{MaxPointsPerDevice: 1}, nil)
	defer hub.Close()
	p := New(s, Options{Logger: discardLog()})
	sink := p.Sink(hub.Ingest(bridge.ProtocolMQTT))
	if err := sink.Publish(t.Context(), reading("m-1", "p", bridge.Double(1))); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got := hubMessages(t, hub); len(got) != 1 || got[0].Point != "p" {
		t.Fatalf("published %s; want the source", describe(got))
	}
	if v := testutilFailures(p, "d", reasonRefused); v != 1 {
		t.Errorf("refused failures %v; want 1", v)
	}
}
