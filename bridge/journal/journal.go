// Package journal is the gateway's durable log: every accepted message is appended
// to a segment file before its device is acknowledged, and read back for replay,
// resume and slow subscribers. It is a plain segment log (docs/durability.md): one
// writer, group commit with fsync, checksummed records, retention by age and by
// bytes, and recovery that keeps every record that checks out.
//
// It knows nothing of subscribers or protocols: the hub decides what to read.
package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
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
	// SyncBatch (the default) is group commit: an fsync starts as soon as there is
	// something to sync and the previous fsync has ended, and what is appended
	// meanwhile rides the next one. A device is acknowledged after the fsync of its
	// batch.
	SyncBatch SyncMode = iota
	// SyncAlways is the same as SyncBatch since commits stopped waiting for a tick;
	// the name stays for configs that use it.
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
	// Interval was SyncBatch's commit tick. It is accepted and unused: a commit starts
	// as soon as the previous one ends, so a record waits at most for the fsync in
	// progress and then its own, never for a tick.
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

	// openFile opens a file the committer writes (segments and the write probe)
	// with os.OpenFile's flags; tests replace it to inject write and fsync failures.
	openFile func(path string, flag int) (segmentFile, error)
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
	if o.openFile == nil {
		o.openFile = func(path string, flag int) (segmentFile, error) {
			return os.OpenFile(path, flag, 0o640)
		}
	}
}

const createFlags = os.O_RDWR | os.O_CREATE | os.O_TRUNC

// segmentFile is what the committer needs of a file it writes.
type segmentFile interface {
	WriteAt(b []byte, off int64) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("journal closed")
	// ErrTruncated says the requested sequence is older than what is retained.
	ErrTruncated = bridge.ErrTruncated
	// ErrUnavailable is wrapped by every error caused by a failed write or fsync:
	// the messages concerned are not on disk, and appends fail until a write
	// succeeds again, which the journal retries by itself.
	ErrUnavailable = bridge.ErrUnavailable
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
	// The committer renews it when less than half is left, so that Append does not
	// wait for the disk.
	reserveBlock = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type indexEntry struct {
	seq uint64
	off int64
}

// hole is a byte range of a segment that failed its checks at Open: readers jump
// over it.
type hole struct{ off, end int64 }

// segment is one file of records with increasing sequences.
type segment struct {
	path  string
	first uint64
	// Guarded by Journal.mu:
	last    uint64
	size    int64 // logical: including records appended but not yet written
	newest  time.Time
	index   []indexEntry
	records int    // since the last index entry
	holes   []hole // in file order; found at Open only
	sealed  bool   // takes no more appends: found at Open, or cut back after a failed write
	written atomic.Int64
	// The committer's only:
	f          segmentFile
	synced     int64  // bytes known to be on disk: where a failed write is cut back to
	syncedLast uint64 // the last sequence in them
}

type chunk struct {
	seg  *segment
	data []byte
	last uint64
}

// lostRange is the sequences from lo to hi, both included, lost to err.
type lostRange struct {
	lo, hi uint64
	err    error
}

// maxLost bounds the lost ranges remembered for Check: a waiter would have to sleep
// through that many failures and recoveries to be told a lost message is durable.
const maxLost = 1024

// Journal is a durable, append-only log of messages.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	segs    []*segment // oldest first; the last is the active one
	pending []chunk
	last    uint64 // last appended sequence
	floor   uint64 // sequences up to this may have been handed out before Open
	dropped uint64 // messages removed by retention

	// reserved: sequences below it may have been handed out. Written under resMu
	// (which is taken after mu, never before it), read anywhere.
	reserved atomic.Uint64
	resMu    sync.Mutex

	durable atomic.Uint64 // last sequence synced (or written, for SyncNone)
	closed  atomic.Bool
	// moved is closed (and replaced) whenever durable moves, the journal fails,
	// recovers or closes: waiters sleep on it without taking mu, so a commit that
	// satisfies a thousand waiters does not make them queue for a lock.
	moved atomic.Pointer[chan struct{}]
	// unavailable is set from a failed write until a write succeeds again; lost holds
	// the sequences that were appended but never written (copy on write).
	unavailable atomic.Pointer[error]
	lost        atomic.Pointer[[]lostRange]

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// The committer's only:
	repair  []*segment // cut back (or removed) in memory, the file not yet
	backoff time.Duration
	downAt  time.Time

	writeErrors    atomic.Uint64
	reserveWaits   atomic.Uint64
	syncs          atomic.Uint64 // fsyncs of segments: messages per sync is the group commit's batch
	corruptRecords uint64        // found at Open
	corruptBytes   uint64

	consumers *consumers
}

// Open opens or creates the journal in dir, checking every record: a torn write at
// the end of the newest segment is cut off, a bad record anywhere else is skipped.
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
	// The committer renews the reservation from here as soon as it starts; a disk
	// that cannot take it makes the journal unavailable, not Open fail.
	j.floor = max(r, j.last)
	j.reserved.Store(j.floor)
	if j.consumers, err = openConsumers(dir); err != nil {
		j.closeFiles()
		return nil, err
	}
	j.durable.Store(j.last)
	go j.commitLoop()
	return j, nil
}

// NextSequence is the first sequence the hub may assign: above everything this
// journal ever handed out, so that a crash never causes a sequence to be reused.
func (j *Journal) NextSequence() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return max(j.floor, j.last) + 1
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
		if s.last >= s.first {
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
	// Unavailable is set while writes fail (see Err).
	Unavailable bool
	// WriteErrors counts failed writes and fsyncs (of segments, the reservation
	// and the probes that retry them) since Open.
	WriteErrors uint64
	// CorruptRecords counts the bad ranges skipped at Open (each one record or more),
	// CorruptBytes their bytes.
	CorruptRecords uint64
	CorruptBytes   uint64
	// ReserveWaits counts appends that had to wait for the sequence reservation to
	// reach the disk because the committer had not renewed it in time.
	ReserveWaits uint64
	// Syncs counts the fsyncs of segment files since Open: messages made durable
	// per sync is how many each group commit carried.
	Syncs uint64
}

func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := Stats{Segments: len(j.segs), First: j.firstLocked(), Last: j.last, Dropped: j.dropped, Durable: j.durable.Load(),
		Unavailable: j.unavailable.Load() != nil, WriteErrors: j.writeErrors.Load(),
		CorruptRecords: j.corruptRecords, CorruptBytes: j.corruptBytes, ReserveWaits: j.reserveWaits.Load(), Syncs: j.syncs.Load()}
	for _, s := range j.segs {
		st.Bytes += s.size
	}
	if len(j.segs) > 0 {
		st.Oldest = j.segs[0].newest
	}
	return st
}

// Err is nil while the journal can write, and an error wrapping ErrUnavailable
// from a failed write until a write succeeds again (readiness reports it).
func (j *Journal) Err() error {
	if p := j.unavailable.Load(); p != nil {
		return *p
	}
	return nil
}

// Durable is the last sequence on disk. A sequence at or below it that was lost to
// a failed write is still lost: Check tells them apart.
func (j *Journal) Durable() uint64 { return j.durable.Load() }

// Moved is closed when Durable moves, or the journal fails, recovers or closes.
// Take the channel before calling Check, so that a change after the check closes
// the channel one waits on.
func (j *Journal) Moved() <-chan struct{} { return *j.moved.Load() }

// Check says what became of an appended sequence without waiting: durable (true,
// nil), not yet known (false, nil), or never to be durable (false, an error wrapping
// ErrUnavailable or ErrClosed).
func (j *Journal) Check(seq uint64) (bool, error) {
	// The order of the looks matters. The failure and the committer's end are
	// looked at first, so that a commit that made seq durable before them is seen
	// below; durable before the lost ranges, since a range is recorded before
	// durable can move past it.
	failed := j.Err()
	stopped := false
	select {
	case <-j.done:
		stopped = true // Close's last commit is done: nothing more becomes durable
	default:
	}
	d := j.durable.Load()
	if err := j.lostTo(seq); err != nil {
		return false, fmt.Errorf("message %d was not written: %w", seq, err)
	}
	switch {
	case d >= seq:
		return true, nil
	case failed != nil:
		return false, failed
	case stopped:
		return false, ErrClosed
	}
	return false, nil
}

// lostTo is the error that lost seq, or nil.
func (j *Journal) lostTo(seq uint64) error {
	p := j.lost.Load()
	if p == nil {
		return nil
	}
	rs := *p
	if seq > rs[len(rs)-1].hi || seq < rs[0].lo {
		return nil
	}
	if i := sort.Search(len(rs), func(i int) bool { return rs[i].hi >= seq }); i < len(rs) && rs[i].lo <= seq {
		return rs[i].err
	}
	return nil
}

// Append adds messages, whose sequences must be larger than every earlier one. It
// only buffers: WaitDurable says when they are on disk. It is cheap enough to call
// under the hub's lock, which is what keeps the journal in sequence order; it
// fails at once, with an error wrapping ErrUnavailable, while the journal cannot
// write.
func (j *Journal) Append(msgs []*bridge.Message) error {
	if err := j.Err(); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed.Load() {
		return ErrClosed
	}
	// Again under mu: a failed commit rolls back under mu, and what is appended
	// after it must not be taken for part of the log.
	if err := j.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	// Checked for the whole batch first, so that a refused batch leaves nothing behind.
	prev := j.last
	for _, m := range msgs {
		if m.Sequence <= prev {
			return fmt.Errorf("journal: sequence %d after %d", m.Sequence, prev)
		}
		prev = m.Sequence
	}
	if prev >= j.reserved.Load() {
		if err := j.reserveNow(prev); err != nil {
			return err
		}
	}
	for _, m := range msgs {
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
	j.kickCommitter()
	return nil
}

// reserveNow persists a reservation covering seq before it is handed out. The
// committer renews the reservation long before it runs out, so this wait for the
// disk under the hub's lock only happens when it could not (it is counted).
func (j *Journal) reserveNow(seq uint64) error {
	j.resMu.Lock()
	defer j.resMu.Unlock()
	if seq < j.reserved.Load() {
		return nil // the committer got there first
	}
	j.reserveWaits.Add(1)
	next := seq + reserveBlock
	if err := writeReserved(j.dir, next); err != nil {
		j.writeErrors.Add(1)
		j.kickCommitter() // its renewal fails too and makes the journal unavailable
		return fmt.Errorf("%w: reserving sequences: %w", ErrUnavailable, err)
	}
	j.reserved.Store(next)
	return nil
}

func (j *Journal) kickCommitter() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// activeLocked is the segment appends go to. Sealed segments (found at Open, or cut
// back after a failed write) are never appended to: the next append starts a new one.
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
// mode promises, or ctx ends, or it never will be (an error wrapping
// ErrUnavailable or ErrClosed).
func (j *Journal) WaitDurable(ctx context.Context, seq uint64) error {
	for {
		// Take the channel before looking: a commit after the look closes it.
		ch := j.Moved()
		if done, err := j.Check(seq); done || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wake tells every waiter that something moved.
func (j *Journal) wake() {
	next := make(chan struct{})
	close(*j.moved.Swap(&next))
}

// commitLoop is the one writer: it moves appended records to their files and
// fsyncs them, each commit starting as soon as the previous one ended, and while
// the journal is unavailable it retries with backoff.
func (j *Journal) commitLoop() {
	defer close(j.done)
	// Age retention must also happen when nothing is appended.
	retainTick := time.NewTicker(retainEvery)
	defer retainTick.Stop()
	var retry <-chan time.Time
	j.renewReservation()
	for {
		if retry == nil && j.Err() != nil {
			retry = time.After(j.nextBackoff())
		}
		select {
		case <-j.kick:
			j.commit()
		case <-retry:
			retry = nil
			j.tryRecover()
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

// commit writes and syncs what is pending. A failure makes the journal unavailable.
func (j *Journal) commit() {
	if j.Err() != nil {
		return
	}
	j.mu.Lock()
	work := j.pending
	j.pending = nil
	j.mu.Unlock()
	if len(work) > 0 {
		if err := j.writeAll(work); err != nil {
			j.fail(err)
			return
		}
		j.backoff = 0 // a commit that succeeded ends a run of failures
		j.wake()
		j.retain()
	}
	j.renewReservation()
}

// writeAll writes the chunks in order, fsyncing each segment once it has all its
// chunks, and moves durable along.
func (j *Journal) writeAll(work []chunk) error {
	for i, c := range work {
		if err := j.writeChunk(c); err != nil {
			return err
		}
		if i+1 < len(work) && work[i+1].seg == c.seg {
			continue
		}
		// A segment that is done gets its fsync before the next one is used.
		s := c.seg
		if j.opts.Sync != SyncNone {
			if err := s.f.Sync(); err != nil {
				return withPath("fsync", s.path, err)
			}
			j.syncs.Add(1)
		}
		s.synced, s.syncedLast = s.written.Load(), c.last
		j.durable.Store(c.last)
	}
	return nil
}

func (j *Journal) writeChunk(c chunk) error {
	s := c.seg
	if s.f == nil {
		f, err := j.opts.openFile(s.path, createFlags)
		if err != nil {
			return withPath("creating", s.path, err)
		}
		s.f = f
		if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
			return withPath("writing", s.path, err)
		}
		s.written.Store(int64(len(segMagic)))
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
	if err != nil {
		return withPath("writing", s.path, err)
	}
	return nil
}

// withPath names the file in err unless it does already.
func withPath(op, path string, err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
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
			s.f = nil
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
	if j.closed.Load() {
		j.mu.Unlock()
		return nil
	}
	j.closed.Store(true)
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	j.wake()
	err := j.consumers.close()
	j.closeFiles()
	if uerr := j.Err(); uerr != nil {
		return uerr
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
	if err := d.Sync(); err != nil {
		return withPath("fsync", dir, err)
	}
	return nil
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
