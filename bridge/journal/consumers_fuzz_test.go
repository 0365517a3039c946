package journal

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConsumersFile: consumers.json is read at every start, in the format with
// owners and in the older bare-sequence one. Whatever the file holds, opening it
// either fails with an error naming the file or yields consumers that are all
// usable (none nil, each with a last use, so that expiry can be computed), and
// what is saved reads back the same.
func FuzzConsumersFile(f *testing.F) {
	f.Add([]byte(`{"dash":{"seq":42,"acked":true,"owner":"spiffe://x/y","used":"2026-12-05T10:00:00Z"}}`))
	f.Add([]byte(`{"old":17}`))
	f.Add([]byte(`{"a":null}`))
	f.Add([]byte(`{"a":-1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, consumersFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := openConsumers(dir)
		if err != nil {
			return
		}
		for name, st := range c.pos {
			if st == nil || st.Used.IsZero() {
				t.Fatalf("consumer %q loaded unusable: %+v", name, st)
			}
		}
		before := len(c.pos)
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		if err := c.close(); err != nil {
			t.Fatalf("saving what was read: %v", err)
		}
		again, err := openConsumers(dir)
		if err != nil {
			t.Fatalf("reading back what was saved: %v", err)
		}
		defer again.close()
		if len(again.pos) != before {
			t.Fatalf("%d consumers read back, %d saved", len(again.pos), before)
		}
	})
}
