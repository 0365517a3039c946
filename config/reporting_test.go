package config_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
)

func TestReporting(t *testing.T) {
	c, err := config.Parse([]byte(`
reporting:
  - {devices: "fryer-*", points: oil_temp, deadband: 0.5, sample_interval: 5s, heartbeat: 1m}
  - {protocol: modbus, deadband_percent: 2}
  - {points: "vibration_*", sample_interval: 250ms}
  - {}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []bridge.ReportRule{
		{Devices: "fryer-*", Points: "oil_temp", Deadband: bridge.Deadband{Absolute: 0.5}, SampleInterval: 5 * time.Second, Heartbeat: time.Minute},
		{Protocol: bridge.ProtocolModbus, Deadband: bridge.Deadband{Percent: 2}},
		{Points: "vibration_*", SampleInterval: 250 * time.Millisecond},
		{},
	}
	if got := c.ReportRules(); !reflect.DeepEqual(got, want) {
		t.Errorf("ReportRules() =\n%+v\nwant\n%+v", got, want)
	}
	// The rules the config accepts, the hub accepts.
	h := bridge.NewHub(bridge.HubConfig{}, nil)
	defer h.Close()
	if err := h.SetReporting(c.ReportRules()); err != nil {
		t.Errorf("SetReporting: %v", err)
	}

	none, err := config.Parse([]byte("gateway: {id: a}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := none.ReportRules(); r != nil {
		t.Errorf("without a reporting section: %+v", r)
	}
}

// Each case lists substrings that must each appear in the problems.
func TestReportingProblems(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"not a list", "reporting: {deadband: 1}\n", []string{"reporting: line 1"}},
		{"unknown key", "reporting: [{device: a}]\n", []string{"reporting: line 1", "device"}},
		{"a list of globs", "reporting: [{devices: [a, b]}]\n", []string{"reporting: line 1"}},
		{"bad devices glob", `reporting: [{devices: "fryer-["}]` + "\n", []string{`reporting[0]: devices: bad pattern "fryer-["`}},
		{"bad points glob", `reporting: [{}, {points: "\\"}]` + "\n", []string{`reporting[1]: points: bad pattern`}},
		{"unknown protocol", "reporting: [{protocol: zigbee}]\n", []string{`reporting[0]: protocol: unknown protocol "zigbee"`}},
		{"negative deadband", "reporting: [{deadband: -0.5}]\n", []string{"reporting[0]: deadband: must be a number, 0 or more, got -0.5"}},
		{"NaN deadband", "reporting: [{deadband: .nan}]\n", []string{"reporting[0]: deadband: must be a number"}},
		{"infinite percent", "reporting: [{deadband_percent: .inf}]\n", []string{"reporting[0]: deadband_percent: must be a number"}},
		{"negative percent", "reporting: [{deadband_percent: -1}]\n", []string{"reporting[0]: deadband_percent:"}},
		{"negative interval", "reporting: [{sample_interval: -1s}]\n", []string{"reporting[0]: sample_interval: must not be negative"}},
		{"interval too short", "reporting: [{sample_interval: 5ms}]\n", []string{"reporting[0]: sample_interval: 5ms is less than 10ms"}},
		{"a bare number", "reporting: [{sample_interval: 5}]\n", []string{"reporting: line 1", "time.Duration"}},
		{"interval too long", "reporting: [{sample_interval: 48h}]\n", []string{"reporting[0]: sample_interval: 48h0m0s is more than 24h0m0s"}},
		{"heartbeat too short", "reporting: [{heartbeat: 1ms}]\n", []string{"reporting[0]: heartbeat: 1ms is less than 10ms"}},
		{"negative heartbeat", "reporting: [{heartbeat: -1m}]\n", []string{"reporting[0]: heartbeat: must not be negative"}},
		{"heartbeat under the interval", "reporting: [{sample_interval: 10s, heartbeat: 5s}]\n", []string{"reporting[0]: heartbeat: 5s is shorter than sample_interval (10s)"}},
		{"too many rules", "reporting: [" + strings.Repeat("{},", bridge.MaxReportRules) + "{}]\n", []string{"reporting: 1025 rules, more than the limit of 1024"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			var probs config.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error %T is not Problems: %v", err, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems %q do not mention %q", err, w)
				}
			}
		})
	}
}

// TestReportingEveryProblemAtOnce: one rule's problems are all reported, each
// naming the rule and the key.
func TestReportingEveryProblemAtOnce(t *testing.T) {
	_, err := config.Parse([]byte(`
reporting:
  - {devices: "[", protocol: bacnet, deadband: -1, sample_interval: 1ms}
`))
	var probs config.Problems
	if !errors.As(err, &probs) || len(probs) != 4 {
		t.Fatalf("want 4 problems, got %v", err)
	}
	for _, p := range probs {
		if !strings.HasPrefix(p.Error(), "reporting[0]: ") {
			t.Errorf("problem %q does not name its rule", p)
		}
	}
}
