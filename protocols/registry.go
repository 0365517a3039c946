package protocols

import (
	"fmt"
	"sort"
	"sync"
)

var (
	regMu    sync.RWMutex
	registry = map[string]func() Config{}
)

// Register makes a protocol known under its config name. newConfig returns a config
// with its defaults set. A duplicate name is a programming error and panics at
// start-up.
func Register(newConfig func() Config) {
	name := newConfig().Name()
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("protocols: %q registered twice", name))
	}
	registry[name] = newConfig
}

// Lookup returns the constructor of a protocol's config.
func Lookup(name string) (func() Config, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	f, ok := registry[name]
	return f, ok
}

// Names lists the registered protocols, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
