package config

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ProtocolSource is a protocol's section and devices in a canonical form: two
// configs that give a protocol the same source give it the same config. Comments,
// quoting and layout do not count; tags (1 against "1") and values do.
func (c *Config) ProtocolSource(name string) string {
	if b := c.source[name]; b != nil {
		return b.String()
	}
	return ""
}

// addSource appends n to its protocol's source. It walks the node instead of
// re-encoding it as YAML (a third of a large config's load time) and appends to a
// builder (appending to a string copied it whole for each device: quadratic).
func (c *Config) addSource(name string, n *yaml.Node) {
	b := c.source[name]
	if b == nil {
		b = &strings.Builder{}
		c.source[name] = b
	}
	writeCanonical(b, n)
	b.WriteString(";\n")
}

// writeCanonical writes a node tree unambiguously: every value is length-prefixed.
// An alias is written as its name, not expanded (as yaml.Marshal does), so that a
// YAML bomb costs no more here than its text; the anchor it names is in the tree
// (DecodeStrict refuses an alias whose anchor is elsewhere).
func writeCanonical(b *strings.Builder, n *yaml.Node) {
	if n == nil {
		b.WriteString("~")
		return
	}
	b.WriteString(strconv.Itoa(int(n.Kind)))
	writeString(b, n.Tag)
	writeString(b, n.Anchor)
	switch n.Kind {
	case yaml.ScalarNode, yaml.AliasNode:
		writeString(b, n.Value)
		return
	}
	b.WriteString(strconv.Itoa(len(n.Content)))
	b.WriteByte('[')
	for _, ch := range n.Content {
		writeCanonical(b, ch)
	}
	b.WriteByte(']')
}

func writeString(b *strings.Builder, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}
