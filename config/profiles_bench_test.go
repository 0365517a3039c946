package config

import (
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// BenchmarkExpandProfiles is the profiles' own share of loading 10,000 devices
// from 50 profiles of 10 points (cmd/edgebench's profiles section measures the
// whole load): go test -run XXX -bench ExpandProfiles ./config/
func BenchmarkExpandProfiles(b *testing.B) {
	var s strings.Builder
	s.WriteString("profiles:\n")
	for p := 0; p < 50; p++ {
		fmt.Fprintf(&s, "  - {name: p%d, protocol: modbus, unit_id: 1, labels: {model: m%d}, points: [", p, p)
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&s, "{name: v%d, register: holding, address: %d, type: float32}, ", i, 2*i)
		}
		s.WriteString("]}\n")
	}
	s.WriteString("devices:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&s, "  - {id: d%d, profile: p%d, address: \"tcp://127.1.%d.%d:1\", labels: {shop: s%d}, points: [{name: v1, unit: C}]}\n", i, i%50, i/250, i%250+1, i)
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(s.String()), &root); err != nil {
		b.Fatal(err)
	}
	_, profiles := lookup(root.Content[0], "profiles")
	_, devices := lookup(root.Content[0], "devices")
	b.ResetTimer()
	for b.Loop() {
		if x := expandProfiles(profiles, devices); len(x.probs) > 0 || len(x.devices.Content) != 10000 {
			b.Fatal(x.probs)
		}
	}
}
