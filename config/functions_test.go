package config_test

import (
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
)

func TestFunctionsSection(t *testing.T) {
	c, err := config.Parse([]byte(`
functions:
  - name: fryer-fahrenheit
    match: {devices: ["fryer-*"], points: ["oil_temp"]}
    derive: {point: oil_temp_f, cel: "value * 9.0 / 5.0 + 32.0"}
  - name: drop-noise
    match: {points: ["vibration"]}
    filter: {cel: "value > 0.5"}
  - name: fryer-average
    match: {points: ["oil_temp"]}
    aggregate: {window: 60s, fn: avg, point: oil_temp_avg}
`))
	if err != nil {
		t.Fatal(err)
	}
	defer c.FunctionSet.Close()
	if got := strings.Join(c.FunctionSet.Names(), ","); got != "fryer-fahrenheit,drop-noise,fryer-average" {
		t.Errorf("compiled %s", got)
	}
	if len(c.Functions) != 3 || c.Functions[2].Aggregate.Window.Seconds() != 60 {
		t.Errorf("functions %+v", c.Functions)
	}
}

// Every problem of the section is reported, each naming the function and key (and
// the expression), next to the problems of other sections.
func TestFunctionsProblems(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"type error", `functions: [{name: f, filter: {cel: "value * 2"}}]`,
			[]string{`functions: function "f": filter: cel "value * 2": is a int, not a bool`}},
		{"unknown key", `functions: [{name: f, filter: {cel: "true", cell: x}}]`, []string{"functions: line 1", "cell"}},
		{"missing module", `functions: [{name: w, wasm: {module: /nonexistent.wasm}}]`,
			[]string{`functions: function "w": wasm: open /nonexistent.wasm`}},
		{"with others", "gateway: {log_level: loud}\nfunctions: [{name: f, derive: {point: x, cel: \"nope\"}}]\n",
			[]string{"gateway: log_level", `functions: function "f": derive: cel "nope": `, "undeclared reference to 'nope'"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.yaml))
			if err == nil {
				t.Fatal("parsed")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems:\n%v\nwant one with %q", err, w)
				}
			}
		})
	}
}
