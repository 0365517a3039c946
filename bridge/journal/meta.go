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

// ErrBadConsumer and ErrTooManyConsumers refuse a consumer name or a new consumer.
var (
	ErrBadConsumer      = errors.New("consumer names are 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	ErrTooManyConsumers = fmt.Errorf("too many durable consumers (limit %d)", MaxConsumers)
)

// consumers keeps each durable consumer's acknowledged sequence. Acks are saved at
// most every saveEvery and at close: a crash may forget the last moments of acks,
// which redelivers those messages (at least once), never skips one.
type consumers struct {
	path  string
	mu    sync.Mutex
	pos   map[string]uint64
	dirty bool
	stop  chan struct{}
	done  chan struct{}
}

const saveEvery = 100 * time.Millisecond

func openConsumers(dir string) (*consumers, error) {
	c := &consumers{path: filepath.Join(dir, consumersFile), pos: map[string]uint64{},
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

// Position returns a durable consumer's acknowledged sequence, and whether it exists.
func (j *Journal) Position(name string) (uint64, bool) {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.pos[name]
	return v, ok
}

// Ack records that a durable consumer has everything up to seq. Positions only
// move forward. A new name is created.
func (j *Journal) Ack(name string, seq uint64) error {
	if err := j.CheckConsumer(name); err != nil {
		return err
	}
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.pos[name]
	if !ok && len(c.pos) >= MaxConsumers {
		return ErrTooManyConsumers
	}
	if !ok || seq > old {
		c.pos[name] = seq
		c.dirty = true
	}
	return nil
}

// Consumers lists every durable consumer and its position.
func (j *Journal) Consumers() map[string]uint64 {
	c := j.consumers
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.pos))
	for k, v := range c.pos {
		out[k] = v
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
