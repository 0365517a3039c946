package config

import (
	"fmt"
	"path"
)

// AuthzRule is one `grpc: authz:` entry: what the clients whose certificate
// identity matches Identity (exact, or a glob) may do. Subscribe lists the device
// globs they may Subscribe to, Read and see in ListDevices; Write the device globs
// they may Write. With an authz list, an identity no rule names may do nothing.
type AuthzRule struct {
	Identity  string   `yaml:"identity"`
	Subscribe []string `yaml:"subscribe"`
	Write     []string `yaml:"write"`
}

// validateTLS checks the grpc authz list and the tunnels.
func (c *Config) validateTLS() Problems {
	var probs Problems
	add := func(format string, a ...any) { probs = append(probs, fmt.Errorf(format, a...)) }
	if len(c.GRPC.Authz) > 0 && !c.GRPC.TLS.HasClientCA() {
		add("grpc: authz: needs client certificates to know who is asking: set grpc.tls.client_ca_file")
	}
	ids := map[string]bool{}
	for i, r := range c.GRPC.Authz {
		where := fmt.Sprintf("grpc: authz[%d]", i)
		if r.Identity != "" {
			where = fmt.Sprintf("grpc: authz: identity %q", r.Identity)
		}
		if r.Identity == "" {
			add("%s: identity: required (a SPIFFE ID, DNS name or common name, or a glob of them)", where)
		} else if _, err := path.Match(r.Identity, ""); err != nil {
			add("%s: identity: bad glob: %v", where, err)
		}
		if ids[r.Identity] {
			add("%s: identity: listed twice; give it one entry", where)
		}
		ids[r.Identity] = true
		if len(r.Subscribe) == 0 && len(r.Write) == 0 {
			add("%s: grants nothing: give subscribe or write device globs", where)
		}
		for key, list := range map[string][]string{"subscribe": r.Subscribe, "write": r.Write} {
			for j, p := range list {
				if _, err := path.Match(p, ""); err != nil || p == "" {
					add("%s: %s[%d]: %q is not a device name or glob", where, key, j, p)
				}
			}
		}
	}
	names := map[string]int{}
	listens := map[string]int{}
	for i, t := range c.Tunnels {
		where := fmt.Sprintf("tunnels[%d]", i)
		if t.Name != "" {
			where = fmt.Sprintf("tunnel %q", t.Name)
		}
		for _, err := range t.Validate() {
			add("%s: %v", where, err)
		}
		if j, dup := names[t.Name]; dup && t.Name != "" {
			add("%s: name: also used by tunnels[%d]", where, j)
		}
		names[t.Name] = i
		if j, dup := listens[t.Listen]; dup && t.Listen != "" {
			add("%s: listen: %s is also tunnels[%d]'s", where, t.Listen, j)
		}
		listens[t.Listen] = i
	}
	return probs
}
