package journal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

func timeFromNanos(n uint64) time.Time { return time.Unix(0, int64(n)) }

const reservedFile = "reserved"

// readReserved returns the sequence reservation: every sequence below it may have
// been handed out before a crash. A missing file is zero; a corrupt one is an error
// (guessing low could reuse sequences).
func readReserved(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, reservedFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, fmt.Errorf("journal: %s is corrupt; remove it only if no consumer relies on sequences not being reused", filepath.Join(dir, reservedFile))
	}
	return binary.LittleEndian.Uint64(b), nil
}

func writeReserved(dir string, v uint64) error {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:], v)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	return writeFileAtomic(filepath.Join(dir, reservedFile), b[:])
}

// writeFileAtomic replaces a file so that a crash leaves the old or the new
// contents, never a mix.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

const consumersFile = "consumers.json"

// MaxConsumers bounds the durable consumers one journal keeps.
const MaxConsumers = 1024

var consumerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Refusals of a consumer name, a new consumer, or a use of one.
var (
	ErrBadConsumer      = errors.New("consumer names are 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	ErrTooManyConsumers = fmt.Errorf("too many durable consumers (limit %d)", MaxConsumers)
	// ErrNoConsumer: an acknowledgement or a deletion of a consumer that does
	// not exist (acknowledgements from clients never create one).
	ErrNoConsumer = errors.New("no such durable consumer")
	// ErrNotOwner: the consumer belongs to another identity.
	ErrNotOwner = errors.New("the durable consumer belongs to another identity")
)

// consumer is one durable consumer's state, as saved.
type consumer struct {
	// Seq is the acknowledged sequence, when Acked.
	Seq   uint64 `json:"seq"`
	Acked bool   `json:"acked"`
	// Owner is the identity that created it ("": nobody, see OpenConsumer).
	Owner string `json:"owner,omitempty"`
	// Used is the last subscribe or acknowledgement with it.
	Used time.Time `json:"used"`
}

// UnmarshalJSON also reads the format before owners, a bare acknowledged
// sequence: such a consumer belongs to nobody, and its idle time starts when the
// file is read (the caller sets Used).
func (c *consumer) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		c.Acked = true
		return json.Unmarshal(b, &c.Seq)
	}
	type plain consumer // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// ConsumerInfo describes a durable consumer.
type ConsumerInfo struct {
	Name string
	// Sequence is the acknowledged position, when Acked.
	Sequence uint64
	Acked    bool
	// Owner is the identity it belongs to; "" for nobody.
	Owner    string
	LastUsed time.Time
}

// consumers keeps each durable consumer's acknowledged sequence, owner and last
// use. Acks are saved at most every saveEvery and at close: a crash may forget
// the last moments of acks, which redelivers those messages (at least once),
// never skips one.
type consumers struct {
	path  string
	mu    sync.Mutex
	pos   map[string]*consumer
	dirty bool
	stop  chan struct{}
	done  chan struct{}
}

const saveEvery = 100 * time.Millisecond

func openConsumers(dir string) (*consumers, error) {
	c := &consumers{path: filepath.Join(dir, consumersFile), pos: map[string]*consumer{},
		stop: make(chan struct{}), done: make(chan struct{})}
	b, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &c.pos); err != nil {
			return nil, fmt.Errorf("journal: %s: %w", c.path, err)
		}
		now := time.Now()
		for name, st := range c.pos {
			if st == nil {
				return nil, fmt.Errorf("journal: %s: consumer %q: null", c.path, name)
			}
			if st.Used.IsZero() {
				st.Used = now
			}
		}
	}
	go c.saveLoop()
	return c, nil
}
func (c *consumers) saveLoop() {
	defer close(c.done)
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.save()
		case <-c.stop:
			c.save()
			return
		}
	}
}

func (c *consumers) save() error {
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(c.pos)
	c.dirty = false
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return writeFileAtomic(c.path, b)
}

func (c *consumers) close() error {
	close(c.stop)
	<-c.done
	return c.save()
}

// CheckConsumer says whether name may be a durable consumer's.
func (j *Journal) CheckConsumer(name string) error {
	if !consumerName.MatchString(name) {
		return ErrBadConsumer
	}
	return nil
}

// Position returns a durable consumer's acknowledged sequence, and whether it
// has one (it exists and was acknowledged).
func (j *Journal) Position(name string) (uint64, bool) {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.pos[name]
	if !ok || !st.Acked {
		return 0, false
	}
	return st.Seq, true
}

// Ack records that a durable consumer has everything up to seq. Positions only
// move forward. A new name is created, owned by nobody: this is the gateway's own
// path (the uplink); clients go through AckConsumer.
func (j *Journal) Ack(name string, seq uint64) error {
	if err := j.CheckConsumer(name); err != nil {
		return err
	}
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _, err := c.getOrCreate(name, "")
	if err != nil {
		return err
	}
	c.advance(st, seq, j.opts.Now())
	return nil
}

// getOrCreate returns a consumer, made for owner when new (and whether it was).
func (c *consumers) getOrCreate(name, owner string) (*consumer, bool, error) {
	if st, ok := c.pos[name]; ok {
		return st, false, nil
	}
	if len(c.pos) >= MaxConsumers {
		return nil, false, ErrTooManyConsumers
	}
	st := &consumer{Owner: owner}
	c.pos[name] = st
	c.dirty = true
	return st, true, nil
}

// advance moves a consumer forward to seq (never back) and marks it used.
func (c *consumers) advance(st *consumer, seq uint64, now time.Time) {
	if !st.Acked || seq > st.Seq {
		st.Seq, st.Acked = seq, true
	}
	st.Used = now
	c.dirty = true
}

// use checks that owner may use st, and takes it for owner when it belongs to
// nobody. owner "" (no identities) may use every consumer. A consumer without an
// owner under identities was made before consumers had owners (or without
// grpc.authz): the first identity that uses it takes it, as a client that
// reconnects after the upgrade would.
func (c *consumers) use(st *consumer, owner string) error {
	switch {
	case owner == "" || st.Owner == owner:
	case st.Owner == "":
		st.Owner = owner
		c.dirty = true
	default:
		return ErrNotOwner
	}
	return nil
}

// OpenConsumer is a subscribe by owner ("": no identities) with a durable
// consumer, at now: it creates the consumer when new (ErrTooManyConsumers at the
// bound), refuses another owner's (ErrNotOwner), and marks it used. It returns
// the acknowledged position, and whether there is one.
func (j *Journal) OpenConsumer(name, owner string, now time.Time) (uint64, bool, error) {
	if err := j.CheckConsumer(name); err != nil {
		return 0, false, err
	}
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	st, created, err := c.getOrCreate(name, owner)
	if err != nil {
		return 0, false, err
	}
	if !created {
		if err := c.use(st, owner); err != nil {
			return 0, false, err
		}
	}
	st.Used = now
	c.dirty = true
	return st.Seq, st.Acked, nil
}

// AckConsumer is an acknowledgement by owner ("": no identities): as Ack, but
// the consumer must exist (ErrNoConsumer) and may be owner's (ErrNotOwner). It
// returns the position after the call.
func (j *Journal) AckConsumer(name, owner string, seq uint64, now time.Time) (uint64, error) {
	if err := j.CheckConsumer(name); err != nil {
		return 0, err
	}
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.pos[name]
	if !ok {
		return 0, ErrNoConsumer
	}
	if err := c.use(st, owner); err != nil {
		return 0, err
	}
	c.advance(st, seq, now)
	return st.Seq, nil
}

// RemoveConsumer deletes a consumer if owner ("": no identities) may use it.
func (j *Journal) RemoveConsumer(name, owner string) error {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.pos[name]
	if !ok {
		return ErrNoConsumer
	}
	if owner != "" && st.Owner != "" && st.Owner != owner {
		return ErrNotOwner
	}
	delete(c.pos, name)
	c.dirty = true
	return nil
}

// ListConsumers describes every durable consumer, sorted by name.
func (j *Journal) ListConsumers() []ConsumerInfo {
	c := j.consumers
	c.mu.Lock()
	out := make([]ConsumerInfo, 0, len(c.pos))
	for name, st := range c.pos {
		out = append(out, ConsumerInfo{Name: name, Sequence: st.Seq, Acked: st.Acked, Owner: st.Owner, LastUsed: st.Used})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b ConsumerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ExpireConsumers forgets the consumers last used before cutoff, except those
// keep spares (the gateway's own), and returns their names.
func (j *Journal) ExpireConsumers(cutoff time.Time, keep func(name string) bool) []string {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []string
	for name, st := range c.pos {
		if st.Used.Before(cutoff) && (keep == nil || !keep(name)) {
			delete(c.pos, name)
			gone = append(gone, name)
		}
	}
	if gone != nil {
		c.dirty = true
	}
	return gone
}

// Consumers lists the position of every durable consumer that has one: one
// created by a Subscribe has none before its first acknowledgement, and a lag
// counted from zero would be meaningless.
func (j *Journal) Consumers() map[string]uint64 {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.pos))
	for k, st := range c.pos {
		if st.Acked {
			out[k] = st.Seq
		}
	}
	return out
}

// DeleteConsumer forgets a durable consumer.
func (j *Journal) DeleteConsumer(name string) {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pos[name]; ok {
		delete(c.pos, name)
		c.dirty = true
	}
}
