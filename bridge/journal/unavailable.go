package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A journal that cannot write (a full disk, an I/O error) is unavailable, not
// broken: the records of the failed commit are not durable and their waiters are
// told so, the files are cut back to what is, appends fail at once, and the
// committer retries with backoff until a write and its fsync succeed again.

const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// probeFile is written and fsynced to learn whether the disk takes writes again.
	probeFile = "write-probe"
	probeSize = 4096 // one page: a full file system refuses it
)

// The log lines of the two transitions; nothing is logged in between.
const (
	logUnavailable = "journal unavailable: a write failed; appends are refused until writes succeed again"
	logRecovered   = "journal writable again; appends are accepted"
)

// fail makes the journal unavailable after a failed write or fsync: what was not
// durable is dropped, in memory at once and on disk as far as the disk lets us.
func (j *Journal) fail(cause error) {
	err := fmt.Errorf("journal: %w: %w", ErrUnavailable, cause)
	j.writeErrors.Add(1)
	j.mu.Lock()
	durable := j.durable.Load()
	var lost lostRange
	if j.last > durable {
		lost = lostRange{durable + 1, j.last, err}
		j.addLost(lost)
		j.floor = max(j.floor, j.last) // handed out: never to be used again
	}
	j.pending = nil
	j.last = durable
	// Every segment with bytes or records past its durable end is cut back to it and
	// takes no more appends: after a failed fsync the kernel may have dropped the
	// dirty pages of that file, so nothing more is written through it. A segment
	// with nothing durable goes.
	for i := len(j.segs) - 1; i >= 0; i-- {
		s := j.segs[i]
		if s.f == nil && s.size == s.synced && s.written.Load() == s.synced {
			break // this one and every one before are durable and closed
		}
		j.repair = append(j.repair, s)
		if s.syncedLast < s.first || s.synced <= int64(len(segMagic)) {
			// Readers that have it see an empty segment and move on.
			s.size, s.last = 0, s.first-1
			s.written.Store(0)
			j.segs = append(j.segs[:i], j.segs[i+1:]...)
			continue
		}
		s.size, s.last, s.sealed = s.synced, s.syncedLast, true
		s.written.Store(s.synced)
		k := len(s.index)
		for k > 0 && s.index[k-1].off >= s.synced {
			k--
		}
		s.index = s.index[:k]
	}
	j.unavailable.Store(&err)
	j.mu.Unlock()
	for _, s := range j.repair {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
	j.downAt = time.Now()
	j.log.Error(logUnavailable, "err", cause, "durable", durable, "lost_first", lost.lo, "lost_last", lost.hi)
	j.wake()
	j.repairFiles() // now if it can; the retries otherwise
}

// addLost records sequences that were appended and will never be durable.
func (j *Journal) addLost(r lostRange) {
	var rs []lostRange
	if p := j.lost.Load(); p != nil {
		rs = *p
	}
	rs = append(rs[len(rs)-min(len(rs), maxLost-1):len(rs):len(rs)], r)
	j.lost.Store(&rs)
}

// repairFiles cuts the segments that fail rolled back to their durable length, or
// removes those with nothing durable.
func (j *Journal) repairFiles() error {
	for len(j.repair) > 0 {
		s := j.repair[0]
		if err := j.cutBack(s); err != nil {
			return err
		}
		j.repair = j.repair[1:]
	}
	return nil
}

func (j *Journal) cutBack(s *segment) error {
	if s.syncedLast < s.first || s.synced <= int64(len(segMagic)) {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	f, err := j.opts.openFile(s.path, os.O_RDWR)
	if errors.Is(err, os.ErrNotExist) {
		return nil // retention removed it meanwhile
	}
	if err != nil {
		return withPath("opening", s.path, err)
	}
	defer f.Close()
	if err := f.Truncate(s.synced); err != nil {
		return withPath("truncating", s.path, err)
	}
	if err := f.Sync(); err != nil {
		return withPath("fsync", s.path, err)
	}
	return nil
}

// tryRecover retries a write: the cut-backs fail left undone, a probe write with its
// fsync, and the sequence reservation. When all succeed, appends are accepted again.
func (j *Journal) tryRecover() {
	err := j.repairFiles()
	if err == nil {
		err = j.probe()
	}
	if err == nil {
		err = j.renewReservation()
	}
	if err != nil {
		j.writeErrors.Add(1)
		j.log.Debug("journal: still unavailable", "err", err)
		return
	}
	j.mu.Lock()
	j.unavailable.Store(nil)
	j.mu.Unlock()
	j.log.Info(logRecovered, "unavailable_for", time.Since(j.downAt).Round(time.Millisecond))
	j.wake()
}

// probe writes a page and fsyncs it: the least a commit needs of the disk.
func (j *Journal) probe() error {
	path := filepath.Join(j.dir, probeFile)
	f, err := j.opts.openFile(path, createFlags)
	if err != nil {
		return withPath("creating", path, err)
	}
	if _, err = f.WriteAt(make([]byte, probeSize), 0); err != nil {
		err = withPath("writing", path, err)
	} else if err = f.Sync(); err != nil {
		err = withPath("fsync", path, err)
	}
	f.Close()
	if rerr := os.Remove(path); err == nil && rerr != nil {
		err = rerr
	}
	return err
}

// renewReservation keeps the sequence reservation at least half a block ahead of
// what may be handed out, off the ingest path. A failure makes the journal
// unavailable: the reservation would soon run out under the appends.
func (j *Journal) renewReservation() error {
	err := j.writeReservation()
	if err != nil && j.Err() == nil {
		j.fail(err)
	}
	return err
}

func (j *Journal) writeReservation() error {
	j.mu.Lock()
	base := max(j.last, j.floor)
	j.mu.Unlock()
	ahead := func() bool { r := j.reserved.Load(); return r > base && r-base >= reserveBlock/2 }
	if ahead() {
		return nil
	}
	j.resMu.Lock()
	defer j.resMu.Unlock()
	if ahead() {
		return nil
	}
	if err := writeReserved(j.dir, base+reserveBlock); err != nil {
		return fmt.Errorf("reserving sequences: %w", err)
	}
	j.reserved.Store(base + reserveBlock)
	return nil
}
