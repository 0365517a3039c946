package config

import (
	"fmt"
	"math"
	"path"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// ReportRule is one entry of the `reporting:` list (docs/reporting.md): how the
// points it matches are reported. The first rule that matches a message decides;
// a message no rule matches is published as it comes.
type ReportRule struct {
	// Devices and Points are glob patterns (`*`, `?`, `[a-z]`; `*` does not match
	// `/`); absent matches all.
	Devices string `yaml:"devices"`
	Points  string `yaml:"points"`
	// Protocol restricts the rule to mqtt, coap, opcua or modbus; absent: all.
	Protocol string `yaml:"protocol"`
	// Deadband: a number that moved less than this from the point's last published
	// value is not published. DeadbandPercent is the same as a percentage of that
	// value; with both, a change must reach both. Without either, only an exact
	// repeat is not published.
	Deadband        float64 `yaml:"deadband"`
	DeadbandPercent float64 `yaml:"deadband_percent"`
	// SampleInterval publishes a point at most once an interval: the newest value
	// is published when the interval ends.
	SampleInterval time.Duration `yaml:"sample_interval"`
	// Heartbeat lets an unchanged value through once this long has passed since
	// the point was last published.
	Heartbeat time.Duration `yaml:"heartbeat"`
}

// MaxSampleInterval bounds sample_interval: a value held longer is news no more.
const MaxSampleInterval = 24 * time.Hour

func (c *Config) validateReporting() Problems {
	var probs Problems
	if len(c.Reporting) > bridge.MaxReportRules {
		probs = append(probs, fmt.Errorf("reporting: %d rules, more than the limit of %d", len(c.Reporting), bridge.MaxReportRules))
	}
	for i, r := range c.Reporting {
		add := func(key, format string, args ...any) {
			probs = append(probs, fmt.Errorf("reporting[%d]: %s: %s", i, key, fmt.Sprintf(format, args...)))
		}
		for _, g := range []struct{ key, pattern string }{{"devices", r.Devices}, {"points", r.Points}} {
			if _, err := path.Match(g.pattern, ""); err != nil {
				add(g.key, "bad pattern %q: %v", g.pattern, err)
			}
		}
		if r.Protocol != "" {
			if _, ok := bridge.ParseProtocol(r.Protocol); !ok {
				add("protocol", "unknown protocol %q (known: mqtt, coap, opcua, modbus)", r.Protocol)
			}
		}
		for _, b := range []struct {
			key string
			v   float64
		}{{"deadband", r.Deadband}, {"deadband_percent", r.DeadbandPercent}} {
			if b.v < 0 || math.IsNaN(b.v) || math.IsInf(b.v, 0) {
				add(b.key, "must be a number, 0 or more, got %v", b.v)
			}
		}
		for _, d := range []struct {
			key string
			v   time.Duration
		}{{"sample_interval", r.SampleInterval}, {"heartbeat", r.Heartbeat}} {
			switch {
			case d.v < 0:
				add(d.key, "must not be negative, got %s", d.v)
			case d.v > 0 && d.v < bridge.MinSampleInterval:
				add(d.key, "%s is less than %s", d.v, bridge.MinSampleInterval)
			}
		}
		if r.SampleInterval > MaxSampleInterval {
			add("sample_interval", "%s is more than %s", r.SampleInterval, MaxSampleInterval)
		}
		if r.Heartbeat > 0 && r.Heartbeat < r.SampleInterval {
			add("heartbeat", "%s is shorter than sample_interval (%s)", r.Heartbeat, r.SampleInterval)
		}
	}
	return probs
}

// ReportRules are the `reporting:` rules for the hub (bridge.Hub.SetReporting).
func (c *Config) ReportRules() []bridge.ReportRule {
	if len(c.Reporting) == 0 {
		return nil
	}
	out := make([]bridge.ReportRule, len(c.Reporting))
	for i, r := range c.Reporting {
		p, _ := bridge.ParseProtocol(r.Protocol) // "": unspecified, all
		out[i] = bridge.ReportRule{
			Devices:        r.Devices,
			Points:         r.Points,
			Protocol:       p,
			Deadband:       bridge.Deadband{Absolute: r.Deadband, Percent: r.DeadbandPercent},
			SampleInterval: r.SampleInterval,
			Heartbeat:      r.Heartbeat,
		}
	}
	return out
}
