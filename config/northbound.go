package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/edgegate/edgegate/northbound"
	"gopkg.in/yaml.v3"
)

// Northbound is one `northbound:` entry: a stream to an external MQTT broker.
// Its keys and defaults are the northbound package's (docs/northbound.md).
type Northbound = northbound.Config

// validateNorthbound fills in the entries' defaults and checks them, each
// problem naming its entry, line and key.
func (c *Config) validateNorthbound() Problems {
	if len(c.Northbound) == 0 {
		return nil
	}
	for i := range c.Northbound {
		c.Northbound[i].SetDefaults()
	}
	var probs Problems
	for _, p := range northbound.ValidateList(c.Northbound, c.Gateway.ID) {
		// p.Key is "[i].key.key".
		idx, path, _ := strings.Cut(strings.TrimPrefix(p.Key, "["), "].")
		i, _ := strconv.Atoi(idx)
		where := fmt.Sprintf("northbound[%d]", i)
		if name := c.Northbound[i].Name; name != "" {
			where = fmt.Sprintf("northbound %q", name)
		}
		probs = append(probs, fmt.Errorf("%s: line %d: %s: %w", where, c.northboundLine(i, path), path, p.Err))
	}
	return probs
}

// northboundLine is the line of a dotted key path in entry i: of the deepest
// key the file has.
func (c *Config) northboundLine(i int, path string) int {
	n := c.northboundNode
	if n == nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
		return 0
	}
	n = n.Content[i]
	line := n.Line
	for key := range strings.SplitSeq(path, ".") {
		v := mappingValue(n, key)
		if v == nil {
			break
		}
		line, n = keyLineOf(n, key), v
	}
	return line
}

// keyLineOf is the line of key itself in a mapping node.
func keyLineOf(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}
