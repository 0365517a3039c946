package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 19.3: a durable consumer belongs to the identity that created it, an
// acknowledgement never creates one, and idle ones can be expired.
func TestConsumerOwners(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := j.AckConsumer("dash", "dash-id", 1, t0); !errors.Is(err, ErrNoConsumer) {
		t.Fatalf("Ack of an unknown consumer = %v, want ErrNoConsumer", err)
	}
	if len(j.ListConsumers()) != 0 {
		t.Fatalf("an Ack created %v", j.ListConsumers())
	}
	if pos, ok, err := j.OpenConsumer("dash", "dash-id", t0); err != nil || ok || pos != 0 {
		t.Fatalf("OpenConsumer(new) = %d, %v, %v", pos, ok, err)
	}
	if _, ok := j.Position("dash"); ok {
		t.Error("a consumer without an Ack has a position")
	}
	if _, ok := j.Consumers()["dash"]; ok {
		t.Error("a consumer without an Ack is listed with a position (a lag from zero)")
	}
	if pos, err := j.AckConsumer("dash", "dash-id", 8, t0); err != nil || pos != 8 {
		t.Fatalf("owner's Ack = %d, %v", pos, err)
	}
	if _, err := j.AckConsumer("dash", "fryer-id", 16, t0); !errors.Is(err, ErrNotOwner) {
		t.Errorf("another identity's Ack = %v, want ErrNotOwner", err)
	}
	if _, _, err := j.OpenConsumer("dash", "fryer-id", t0); !errors.Is(err, ErrNotOwner) {
		t.Errorf("another identity's subscribe = %v, want ErrNotOwner", err)
	}
	if err := j.RemoveConsumer("dash", "fryer-id"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("another identity's delete = %v, want ErrNotOwner", err)
	}
	// Without identities, everything works as before.
	if pos, err := j.AckConsumer("dash", "", 9, t0.Add(time.Hour)); err != nil || pos != 9 {
		t.Errorf("Ack without identities = %d, %v", pos, err)
	}
	// The uplink's path creates, owned by nobody.
	if err := j.Ack("uplink-acked", 3); err != nil {
		t.Fatal(err)
	}
	j.Close()

	j = open(t, dir, Options{})
	defer j.Close()
	got := j.ListConsumers()
	if len(got) != 2 || got[0].Name != "dash" || got[0].Owner != "dash-id" || got[0].Sequence != 9 || !got[0].Acked ||
		!got[0].LastUsed.Equal(t0.Add(time.Hour)) || got[1].Name != "uplink-acked" || got[1].Owner != "" {
		t.Fatalf("after reopening: %+v", got)
	}
	gone := j.ExpireConsumers(t0.Add(2*time.Hour), func(n string) bool { return strings.HasPrefix(n, "uplink") })
	if len(gone) != 1 || gone[0] != "dash" {
		t.Errorf("expired %v, want [dash]", gone)
	}
	if err := j.RemoveConsumer("dash", ""); !errors.Is(err, ErrNoConsumer) {
		t.Errorf("delete of an expired consumer = %v", err)
	}
}

// A consumers file from before owners (name: sequence) still opens: its
// consumers belong to nobody until an identity uses them, and their idle time
// starts at the reading.
func TestConsumersFileWithoutOwners(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	j.Close()
	if err := os.WriteFile(filepath.Join(dir, consumersFile), []byte(`{"dash":8,"billing":12}`), 0o640); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	j = open(t, dir, Options{})
	defer j.Close()
	if p, ok := j.Position("dash"); !ok || p != 8 {
		t.Fatalf("dash = %d, %v", p, ok)
	}
	for _, c := range j.ListConsumers() {
		if c.Owner != "" || c.LastUsed.Before(before) {
			t.Errorf("%+v", c)
		}
	}
	if _, err := j.AckConsumer("dash", "dash-id", 9, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AckConsumer("dash", "fryer-id", 10, time.Now()); !errors.Is(err, ErrNotOwner) {
		t.Errorf("after the first identity took it: %v", err)
	}
	if _, _, err := j.OpenConsumer("billing", "billing-id", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := j.ListConsumers(); got[0].Owner != "billing-id" || got[1].Owner != "dash-id" {
		t.Errorf("%+v", got)
	}
}

func TestConsumerBound(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	defer j.Close()
	now := time.Now()
	for i := range MaxConsumers {
		if _, _, err := j.OpenConsumer("c-"+strconv.Itoa(i), "", now); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := j.OpenConsumer("one-more", "", now); !errors.Is(err, ErrTooManyConsumers) {
		t.Errorf("past the bound: %v", err)
	}
	if gone := j.ExpireConsumers(now.Add(time.Second), nil); len(gone) != MaxConsumers {
		t.Errorf("expired %d", len(gone))
	}
	if _, _, err := j.OpenConsumer("one-more", "", now); err != nil {
		t.Errorf("after expiry: %v", err)
	}
}
