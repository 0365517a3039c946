package protocols

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes a YAML node into v, refusing unknown keys. yaml.v3's
// Node.Decode has no strict mode, so the node is encoded again and decoded by a
// Decoder that knows its fields.
func DecodeStrict(node *yaml.Node, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(node); err != nil {
		return fmt.Errorf("re-encoding: %w", err)
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	return nil
}
