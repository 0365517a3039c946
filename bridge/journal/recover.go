package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// recover reads every segment and checks every record's length, checksum and
// sequence order. A record that fails costs only itself: the scan resynchronises
// on the next record that checks out and readers skip the bad range (a hole),
// which is counted and logged. Only where nothing checks out up to the end of the
// newest segment, a torn write, is the file truncated. Segment files are never
// removed here.
func (j *Journal) recover() error {
	names, err := segmentFiles(j.dir)
	if err != nil {
		return err
	}
	var prev uint64
	for i, name := range names {
		path := filepath.Join(j.dir, name)
		seg, err := scanSegment(path, prev)
		if err != nil {
			return err
		}
		newest := i == len(names)-1
		for k, h := range seg.holes {
			if newest && k == len(seg.holes)-1 && h.end == seg.size {
				continue // the torn tail, below
			}
			j.corruptRecords++
			j.corruptBytes += uint64(h.end - h.off)
			j.log.Error("journal: corrupt records skipped", "segment", path, "offset", h.off, "bytes", h.end-h.off)
		}
		if n := len(seg.holes); newest && n > 0 && seg.holes[n-1].end == seg.size {
			if err := j.cutTornTail(seg); err != nil {
				return err
			}
			if seg.size == 0 {
				continue // the file had nothing worth keeping, and is gone
			}
		}
		if seg.last >= seg.first {
			prev = seg.last
		}
		j.segs = append(j.segs, seg)
	}
	j.last = prev
	return nil
}

// cutTornTail truncates the newest segment where its last good record ends: what
// follows is a write that a crash interrupted, never acknowledged. A file with no
// good header is removed.
func (j *Journal) cutTornTail(seg *segment) error {
	h := seg.holes[len(seg.holes)-1]
	seg.holes = seg.holes[:len(seg.holes)-1]
	j.log.Warn("journal: torn write at the end of the newest segment cut off", "segment", seg.path, "offset", h.off, "bytes", h.end-h.off)
	if h.off < int64(len(segMagic)) {
		if err := os.Remove(seg.path); err != nil {
			return err
		}
		seg.size = 0
	} else {
		if err := os.Truncate(seg.path, h.off); err != nil {
			return err
		}
		seg.size = h.off
	}
	seg.written.Store(seg.size)
	seg.synced = seg.size
	return syncDir(j.dir)
}

// scanWindow is how much of a segment the scan reads at a time: several records
// of the largest size, so that resynchronising over garbage, which checks a
// candidate record of up to maxRecord bytes at every offset that could start one,
// does not read the same bytes again for each candidate.
const scanWindow = 4 * maxRecord

// fileWindow reads a file through a window that follows the offsets asked for.
type fileWindow struct {
	f    *os.File
	size int64
	off  int64 // file offset of buf[0]
	buf  []byte
	mem  []byte
}

// at returns up to n bytes from off (fewer only at the end of the file).
func (w *fileWindow) at(off int64, n int) ([]byte, error) {
	if off >= w.off && off+int64(n) <= w.off+int64(len(w.buf)) {
		return w.buf[off-w.off : off-w.off+int64(n)], nil
	}
	want := max(n, scanWindow)
	if cap(w.mem) < want {
		w.mem = make([]byte, want)
	}
	k, err := w.f.ReadAt(w.mem[:want], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	w.off, w.buf = off, w.mem[:k]
	return w.buf[:min(n, k)], nil
}

// record checks the record at off: its sequence and length when it checks out
// (complete, with a sane length and a matching checksum, its sequence above prev).
func (w *fileWindow) record(off int64, prev uint64) (seq uint64, n int64, ok bool, err error) {
	hdr, err := w.at(off, recHeader+16)
	if err != nil || len(hdr) < recHeader+16 {
		return 0, 0, false, err
	}
	size := int64(binary.LittleEndian.Uint32(hdr))
	// Cheap checks before the checksum: when resynchronising, most offsets fail here.
	seq = binary.LittleEndian.Uint64(hdr[recHeader:])
	if size < 16 || size > maxRecord || off+recHeader+size > w.size || seq <= prev {
		return 0, 0, false, nil
	}
	rec, err := w.at(off, recHeader+int(size))
	if err != nil {
		return 0, 0, false, err
	}
	if crc32.Checksum(rec[recHeader:], castagnoli) != binary.LittleEndian.Uint32(rec[4:]) {
		return 0, 0, false, nil
	}
	return seq, recHeader + size, true, nil
}

// resync finds the next offset after bad where a record checks out, or the end of
// the file.
func (w *fileWindow) resync(bad int64, prev uint64) (int64, error) {
	for off := bad + 1; off+recHeader+16 <= w.size; off++ {
		if _, _, ok, err := w.record(off, prev); ok || err != nil {
			return off, err
		}
	}
	return w.size, nil
}

// scanSegment reads one segment, checking every record, and returns it with the
// ranges that did not check out as holes (a bad header makes one from offset 0).
func scanSegment(path string, prev uint64) (*segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	w := &fileWindow{f: f, size: fi.Size()}
	seg := &segment{path: path, sealed: true, first: prev + 1, last: prev, size: w.size}
	defer func() { seg.written.Store(seg.size); seg.synced = seg.size }()
	off := int64(len(segMagic))
	if magic, err := w.at(0, len(segMagic)); err != nil {
		return nil, fmt.Errorf("journal: reading %s: %w", path, err)
	} else if string(magic) != segMagic {
		if off, err = w.resync(0, prev); err != nil {
			return nil, fmt.Errorf("journal: reading %s: %w", path, err)
		}
		seg.holes = append(seg.holes, hole{0, off})
	}
	for off < w.size {
		seq, n, ok, err := w.record(off, prev)
		if err != nil {
			return nil, fmt.Errorf("journal: reading %s: %w", path, err)
		}
		if !ok {
			end, err := w.resync(off, prev)
			if err != nil {
				return nil, fmt.Errorf("journal: reading %s: %w", path, err)
			}
			seg.holes = append(seg.holes, hole{off, end})
			seg.records = indexEvery // the next good record gets an index entry: no seek lands in a hole
			off = end
			continue
		}
		body, err := w.at(off+recHeader, 16)
		if err != nil {
			return nil, fmt.Errorf("journal: reading %s: %w", path, err)
		}
		if seg.last < seg.first {
			seg.first = seq
		}
		if len(seg.index) == 0 || seg.records >= indexEvery {
			seg.index = append(seg.index, indexEntry{seq: seq, off: off})
			seg.records = 0
		}
		seg.records++
		seg.last, seg.syncedLast = seq, seq
		seg.newest = timeFromNanos(binary.LittleEndian.Uint64(body[8:]))
		prev = seq
		off += n
	}
	return seg, nil
}
