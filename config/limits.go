package config

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/edgegate/edgegate/protocols/payload"
	"gopkg.in/yaml.v3"
)

// Defaults of the registry's bounds (gateway.max_devices, max_points_per_device).
// Set here rather than left to the bridge's own defaults so that Parse checks the
// configured devices against the very numbers the running hub will refuse them at.
const (
	DefaultMaxDevices         = 10000
	DefaultMaxPointsPerDevice = 4096
)

// Device is a `devices:` entry as the gateway's device registry sees it: its id,
// protocol and the names of the points it declares at start.
type Device struct {
	ID       string
	Protocol string
	Points   []string
	Line     int
}

// Devices returns every configured device, in file order.
func (c *Config) Devices() []Device { return c.devices }

// declare records a `devices:` entry and checks its point names, which every
// protocol also checks with payload.ValidName; here only what ValidName lets
// through (leading and trailing space) and the bound on points.
func (c *Config) declare(where string, n *yaml.Node, id, protocol string) Problems {
	var probs Problems
	d := Device{ID: id, Protocol: protocol, Line: n.Line}
	if pts := mappingValue(n, "points"); pts != nil && pts.Kind == yaml.SequenceNode {
		seen := make(map[string]bool, len(pts.Content))
		for i, p := range pts.Content {
			name := mappingValue(p, "name")
			if name == nil || name.Kind != yaml.ScalarNode || seen[name.Value] {
				continue // the protocol says what is wrong with it
			}
			seen[name.Value] = true
			d.Points = append(d.Points, name.Value)
			if err := edgeSpace(name.Value); err != nil {
				probs = append(probs, fmt.Errorf("%s: points[%d]: line %d: name: %w", where, i, name.Line, err))
			}
		}
	}
	if max := c.Gateway.MaxPointsPerDevice; len(d.Points) > max {
		probs = append(probs, fmt.Errorf("%s: line %d: points: %d is more than gateway.max_points_per_device (%d)", where, n.Line, len(d.Points), max))
	}
	c.devices = append(c.devices, d)
	return probs
}

// validateLimits checks what the device registry would refuse at start-up: a
// `serve` that passed `check` must not stop on it.
func (c *Config) validateLimits() Problems {
	if max := c.Gateway.MaxDevices; len(c.devices) > max {
		return Problems{fmt.Errorf("gateway: max_devices: the config declares %d devices, more than the limit of %d", len(c.devices), max)}
	}
	return nil
}

// validName is the rule for a configured device id: payload.ValidName, which
// names from the network also pass, and no space at either end, which would make
// "boiler-1 " a second device that looks like the first.
func validName(s string) error {
	if err := payload.ValidName(s); err != nil {
		return err
	}
	return edgeSpace(s)
}

var errEdgeSpace = errors.New("leading or trailing white space")

func edgeSpace(s string) error {
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if s != "" && (unicode.IsSpace(first) || unicode.IsSpace(last)) {
		return fmt.Errorf("%q: %w", s, errEdgeSpace)
	}
	return nil
}

// keyLine is the line of key's value in a mapping, or the mapping's own line when
// the key is not written there (a merge key gave it).
func keyLine(n *yaml.Node, key string) int {
	if v := mappingValue(n, key); v != nil {
		return v.Line
	}
	return n.Line
}

// mappingValue returns the value of key in a mapping node, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
