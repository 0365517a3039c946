// Package journal is the gateway's durable log: every accepted message is appended
// to a segment file before its device is acknowledged, and read back for replay,
// resume and slow subscribers. It is a plain segment log (docs/durability.md):
// one writer, group commit with fsync, checksummed records, retention by
// age and by bytes, and recovery that truncates to the last good record.
//
// It knows nothing of subscribers or protocols: the hub decides what to read.
package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// SyncMode says when appended records reach the disk.
type SyncMode int

const (
	// SyncBatch (the default) writes and fsyncs what was appended every Interval:
	// group commit. A device is acknowledged after the fsync of its batch.
	SyncBatch SyncMode = iota
	// SyncAlways fsyncs as soon as the previous fsync ends: the smallest window,
	// still batched under load.
	SyncAlways
	// SyncNone writes without fsync: a process crash loses nothing the kernel has,
	// a power cut may lose the last seconds.
	SyncNone
)

// ParseSyncMode reads the config names "batch", "always" and "none".
func ParseSyncMode(s string) (SyncMode, bool) {
	switch s {
	case "", "batch":
		return SyncBatch, true
	case "always":
		return SyncAlways, true
	case "none":
		return SyncNone, true
	}
	return 0, false
}

// Options configure a journal. The zero value works.
type Options struct {
	Sync SyncMode
	// Interval is SyncBatch's commit interval; default 5ms.
	Interval time.Duration
	// SegmentBytes is the size at which a new segment file starts; default 64 MiB.
	SegmentBytes int64
	// MaxBytes bounds the journal on disk; the oldest segments go first. Default 1 GiB.
	MaxBytes int64
	// MaxAge drops segments whose newest message is older; 0 keeps them (up to MaxBytes).
	MaxAge time.Duration
	Logger *slog.Logger
	// Now is the clock for MaxAge; default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Millisecond
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("journal closed")
	// ErrTruncated says the requested sequence is older than what is retained.
	ErrTruncated = bridge.ErrTruncated
)

const (
	segMagic  = "EGJRNL1\n" // segment file header: format version 1
	recHeader = 8           // u32 body length, u32 CRC-32C of the body
	// maxRecord bounds one record, so that a corrupt length cannot make us
	// allocate gigabytes while recovering.
	maxRecord = 1 << 20
	// indexEvery is the sparse index's stride: a seek reads at most this many
	// records to reach any sequence.
	indexEvery = 128
	// reserveBlock is how many sequences one write of the reservation file covers.
	reserveBlock = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type indexEntry struct {
	seq uint64
	off int64
}

// segment is one file of records with consecutive, increasing sequences.
type segment struct {
	path  string
	first uint64
	// Guarded by Journal.mu:
	last    uint64
	size    int64 // logical: including records appended but not yet written
	newest  time.Time
	index   []indexEntry
	records int          // since the last index entry
	written atomic.Int64 // bytes in the file
	f       *os.File     // the writer's handle; the committer's only
	sealed  bool         // found at Open: read-only
}

type chunk struct {
	seg  *segment
	data []byte
	last uint64
}

// Journal is a durable, append-only log of messages.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	segs     []*segment // oldest first; the last is the active one
	pending  []chunk
	last     uint64 // last appended sequence
	reserved uint64 // sequences below this may have been handed out
	dropped  uint64 // messages removed by retention
	closed   bool

	written atomic.Uint64 // last sequence in a file (maybe not yet synced)
	durable atomic.Uint64 // last sequence synced (or written, for SyncNone)
	// moved is closed (and replaced) whenever durable moves, the journal fails or it
	// closes: waiters sleep on it without taking mu, so a commit that satisfies a
	// thousand waiters does not make them queue for a lock.
	moved atomic.Pointer[chan struct{}]

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	// failed is set when a write or fsync fails: nothing after it is acknowledged.
	failed atomic.Pointer[error]

	consumers *consumers
}

// Open opens or creates the journal in dir, checking every record and truncating
// the log to the last good one.
func Open(dir string, opts Options) (*Journal, error) {
	opts.setDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, opts: opts, log: opts.Logger, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	ch := make(chan struct{})
	j.moved.Store(&ch)
	if err := j.recover(); err != nil {
		j.closeFiles()
		return nil, err
	}
	r, err := readReserved(dir)
	if err != nil {
		j.closeFiles()
		return nil, err
	}
	j.reserved = max(r, j.last)
	if j.consumers, err = openConsumers(dir); err != nil {
		j.closeFiles()
		return nil, err
	}
	j.written.Store(j.last)
	j.durable.Store(j.last)
	go j.commitLoop()
	return j, nil
}

// NextSequence is the first sequence the hub may assign: above everything this
// journal ever handed out, so that a crash never causes a sequence to be reused.
func (j *Journal) NextSequence() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.reserved + 1
}

// First and Last are the oldest and newest retained sequences; First > Last when
// the journal is empty.
func (j *Journal) First() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.firstLocked()
}

func (j *Journal) firstLocked() uint64 {
	for _, s := range j.segs {
		if s.size > int64(len(segMagic)) {
			return s.first
		}
	}
	return j.last + 1
}

func (j *Journal) Last() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

// Stats is what the metrics report.
type Stats struct {
	Bytes    int64
	Segments int
	First    uint64
	Last     uint64
	Oldest   time.Time // gateway time of the oldest retained segment's newest message
	Dropped  uint64    // messages removed by retention since Open
	Durable  uint64
}

func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := Stats{Segments: len(j.segs), First: j.firstLocked(), Last: j.last, Dropped: j.dropped, Durable: j.durable.Load()}
	for _, s := range j.segs {
		st.Bytes += s.size
	}
	if len(j.segs) > 0 {
		st.Oldest = j.segs[0].newest
	}
	return st
}

// Append adds messages, whose sequences must be larger than every earlier one. It
// only buffers: WaitDurable says when they are on disk. It is cheap enough to call
// under the hub's lock, which is what keeps the journal in sequence order.
func (j *Journal) Append(msgs []*bridge.Message) error {
	if p := j.failed.Load(); p != nil {
		return *p
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	for _, m := range msgs {
		if m.Sequence <= j.last {
			return fmt.Errorf("journal: sequence %d after %d", m.Sequence, j.last)
		}
		if m.Sequence >= j.reserved {
			// Rare (once a million sequences): persist a new reservation before
			// handing any of it out.
			next := m.Sequence + reserveBlock
			if err := writeReserved(j.dir, next); err != nil {
				return fmt.Errorf("journal: reserving sequences: %w", err)
			}
			j.reserved = next
		}
		seg := j.activeLocked(m.Sequence)
		if seg.size >= j.opts.SegmentBytes && seg.last >= seg.first {
			seg = j.newSegmentLocked(m.Sequence)
		}
		var c *chunk
		if n := len(j.pending); n > 0 && j.pending[n-1].seg == seg {
			c = &j.pending[n-1]
		} else {
			j.pending = append(j.pending, chunk{seg: seg})
			c = &j.pending[len(j.pending)-1]
		}
		start := len(c.data)
		c.data = append(c.data, 0, 0, 0, 0, 0, 0, 0, 0)
		c.data = appendBody(c.data, m)
		body := c.data[start+recHeader:]
		if len(body) > maxRecord {
			c.data = c.data[:start]
			return fmt.Errorf("journal: message of device %q point %q encodes to %d bytes, over the %d limit", m.Device, m.Point, len(body), maxRecord)
		}
		binary.LittleEndian.PutUint32(c.data[start:], uint32(len(body)))
		binary.LittleEndian.PutUint32(c.data[start+4:], crc32.Checksum(body, castagnoli))
		if len(seg.index) == 0 || seg.records >= indexEvery {
			seg.index = append(seg.index, indexEntry{seq: m.Sequence, off: seg.size})
			seg.records = 0
		}
		seg.records++
		seg.size += int64(len(c.data) - start)
		seg.last = m.Sequence
		seg.newest = m.GatewayTime
		c.last = m.Sequence
		j.last = m.Sequence
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return nil
}

// activeLocked is the segment appends go to. Segments found at Open are never
// appended to: the first append after Open starts a new one.
func (j *Journal) activeLocked(next uint64) *segment {
	if n := len(j.segs); n > 0 && !j.segs[n-1].sealed {
		return j.segs[n-1]
	}
	return j.newSegmentLocked(next)
}

// newSegmentLocked adds a segment that the committer creates on its first write.
func (j *Journal) newSegmentLocked(first uint64) *segment {
	s := &segment{path: filepath.Join(j.dir, segName(first)), first: first, last: first - 1, size: int64(len(segMagic))}
	j.segs = append(j.segs, s)
	return s
}

func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

// WaitDurable returns when the message with sequence seq is on disk as the sync
// mode promises, or ctx ends, or the journal failed.
func (j *Journal) WaitDurable(ctx context.Context, seq uint64) error {
	for {
		// Take the channel before looking: a commit after the look closes it.
		ch := *j.moved.Load()
		if j.durable.Load() >= seq {
			return nil
		}
		if p := j.failed.Load(); p != nil {
			return *p
		}
		if j.isClosed() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (j *Journal) isClosed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.closed
}

// wake tells every waiter that something moved.
func (j *Journal) wake() {
	next := make(chan struct{})
	close(*j.moved.Swap(&next))
}

// commitLoop is the one writer: it moves appended records to their files and
// fsyncs them, in batches.
func (j *Journal) commitLoop() {
	defer close(j.done)
	var tick <-chan time.Time
	if j.opts.Sync == SyncBatch {
		t := time.NewTicker(j.opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	// Age retention must also happen when nothing is appended.
	retainTick := time.NewTicker(retainEvery)
	defer retainTick.Stop()
	for {
		select {
		case <-tick:
			j.commit()
		case <-j.kick:
			if j.opts.Sync != SyncBatch {
				j.commit()
			}
		case <-retainTick.C:
			j.retain()
		case <-j.stop:
			j.commit()
			return
		}
	}
}

// retainEvery is how often retention is checked when nothing is committed.
const retainEvery = time.Second

// commit writes and syncs what is pending. After a failure nothing more is written:
// a gap in the file would be worse than a stop, and the gateway reports it.
func (j *Journal) commit() {
	if j.failed.Load() != nil {
		return
	}
	j.mu.Lock()
	work := j.pending
	j.pending = nil
	j.mu.Unlock()
	if len(work) == 0 {
		return
	}
	var last uint64
	var err error
	for i, c := range work {
		if err = j.writeChunk(c); err != nil {
			break
		}
		last = c.last
		// A segment that is done gets its fsync before the next one is used.
		if i+1 < len(work) && work[i+1].seg != c.seg && j.opts.Sync != SyncNone {
			if err = c.seg.f.Sync(); err != nil {
				break
			}
		}
		j.written.Store(last)
	}
	if err == nil && j.opts.Sync != SyncNone {
		err = work[len(work)-1].seg.f.Sync()
	}
	j.mu.Lock()
	if err != nil {
		err = fmt.Errorf("journal: %w", err)
		j.failed.Store(&err)
		j.log.Error("journal write failed; no more messages are accepted", "err", err)
	} else {
		j.durable.Store(last)
	}
	j.mu.Unlock()
	j.wake()
	if err == nil {
		j.retain()
	}
}

func (j *Journal) writeChunk(c chunk) error {
	s := c.seg
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return err
		}
		if _, err := f.Write([]byte(segMagic)); err != nil {
			f.Close()
			return err
		}
		s.written.Store(int64(len(segMagic)))
		s.f = f
		if err := syncDir(j.dir); err != nil {
			return err
		}
		// The previous segment will not be written again.
		j.mu.Lock()
		for _, o := range j.segs {
			if o != s && o.f != nil {
				o.f.Close()
				o.f = nil
			}
		}
		j.mu.Unlock()
	}
	n, err := s.f.WriteAt(c.data, s.written.Load())
	s.written.Add(int64(n))
	return err
}

// retain drops the oldest segments beyond MaxBytes or MaxAge. The active segment
// always stays.
func (j *Journal) retain() {
	j.mu.Lock()
	var total int64
	for _, s := range j.segs {
		total += s.size
	}
	now := j.opts.Now()
	var drop []*segment
	for len(j.segs) > 1 {
		s := j.segs[0]
		if s.written.Load() < s.size {
			break // records still on their way to this file: the next commit's
		}
		tooBig := total > j.opts.MaxBytes
		tooOld := j.opts.MaxAge > 0 && !s.newest.IsZero() && now.Sub(s.newest) > j.opts.MaxAge
		if !tooBig && !tooOld {
			break
		}
		total -= s.size
		if s.last >= s.first {
			j.dropped += s.last - s.first + 1
		}
		drop = append(drop, s)
		j.segs = j.segs[1:]
	}
	j.mu.Unlock()
	for _, s := range drop {
		if s.f != nil {
			s.f.Close()
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Warn("journal: removing an old segment", "path", s.path, "err", err)
		}
		j.log.Debug("journal: segment dropped by retention", "first", s.first, "last", s.last)
	}
}

// Close writes and syncs what is pending, saves consumer positions and closes the
// files. Appends after Close fail.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	j.wake()
	err := j.consumers.close()
	j.closeFiles()
	if p := j.failed.Load(); p != nil {
		return *p
	}
	return err
}

func (j *Journal) closeFiles() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.segs {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// segmentFiles lists the segment files in dir, oldest first.
func segmentFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".seg") {
			if _, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64); err == nil {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out) // zero-padded: lexical order is numeric order
	return out, nil
}
