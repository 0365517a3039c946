package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"

	"github.com/edgegate/edgegate/bridge"
)

// Reader reads the journal in sequence order. It keeps its place, so that reading
// on from where the last Read ended costs no seek. One goroutine only.
type Reader struct {
	j    *Journal
	seg  *segment
	f    *os.File
	off  int64  // file offset of the next record
	next uint64 // its sequence, or 0 when unknown
	buf  []byte
}

// NewReader returns a reader; Close it when done.
func (j *Journal) NewReader() bridge.JournalReader { return &Reader{j: j} }

var _ bridge.Journal = (*Journal)(nil)

// Close releases the reader's file.
func (r *Reader) Close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.seg = nil
}

// Read appends to out[:0] up to cap(out) messages with a sequence of at least from,
// in order, from what has been written to the files. Sequences need not be
// consecutive: it reads on across gaps (sequences never written, records skipped as
// corrupt at Open, records lost to a failed write). It returns an error wrapping
// ErrTruncated when from is older than everything retained (First says where the
// journal now begins). A record that fails its checks while the journal runs is
// skipped like one found at Open (and logged): it never returns a message it
// cannot vouch for.
func (r *Reader) Read(from uint64, out []*bridge.Message) ([]*bridge.Message, error) {
	out = out[:0]
	if cap(out) == 0 {
		return out, nil
	}
	for len(out) < cap(out) {
		seg, start, limit, final, err := r.locate(from)
		if err != nil || seg == nil {
			return out, err
		}
		n := len(out)
		if out, err = r.readSegment(seg, start, limit, final, from, out); err != nil {
			return out, err
		}
		if len(out) > n {
			from = out[len(out)-1].Sequence + 1
		}
		if len(out) == cap(out) {
			return out, nil
		}
		last, done := r.finished(seg)
		if !done {
			return out, nil // caught up with what is written
		}
		from = max(from, last+1)
	}
	return out, nil
}

// finished reports whether the reader has read all of a segment that will get no
// more records, and the segment's last sequence.
func (r *Reader) finished(seg *segment) (uint64, bool) {
	r.j.mu.Lock()
	defer r.j.mu.Unlock()
	active := len(r.j.segs) > 0 && r.j.segs[len(r.j.segs)-1] == seg && !seg.sealed
	return seg.last, !active && r.off >= seg.size
}

// locate finds the segment holding from (or the first after it with records), the
// offset to start at, how far the file is written, and whether that is final (no
// more bytes will come: a record cut short is corrupt, not on its way).
func (r *Reader) locate(from uint64) (seg *segment, start, limit int64, final bool, err error) {
	j := r.j
	j.mu.Lock()
	defer j.mu.Unlock()
	if first := j.firstLocked(); from < first && first <= j.last {
		return nil, 0, 0, false, fmt.Errorf("%w: %d is older than the oldest retained, %d", ErrTruncated, from, first)
	}
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].last >= from })
	for i < len(j.segs) && j.segs[i].last < j.segs[i].first {
		i++ // a segment without records: nothing to find there
	}
	if i == len(j.segs) {
		return nil, 0, 0, false, nil // nothing at or after from yet
	}
	seg = j.segs[i]
	limit = seg.written.Load()
	if limit <= int64(len(segMagic)) {
		return nil, 0, 0, false, nil // the committer has not written its first record yet
	}
	final = limit >= seg.size && (i < len(j.segs)-1 || seg.sealed)
	if r.seg == seg && r.next != 0 && r.next <= from && r.off <= limit {
		return seg, r.off, limit, final, nil
	}
	k := sort.Search(len(seg.index), func(k int) bool { return seg.index[k].seq > from }) - 1
	start = int64(len(segMagic))
	if k >= 0 {
		start = seg.index[k].off
	}
	r.next = 0
	return seg, start, limit, final, nil
}

// skipCorrupt finds where reading goes on after a record at off that does not check
// out although it did at Open (or was written since): the next record that does,
// as at Open. The range is logged; it is not counted, since every reader passing
// it would count it again.
func (r *Reader) skipCorrupt(seg *segment, off, end int64, why string) (int64, error) {
	var prev uint64
	if r.next > 0 {
		prev = r.next - 1
	}
	w := &fileWindow{f: r.f, size: end}
	next, err := w.resync(off, prev)
	if err != nil {
		return 0, fmt.Errorf("journal: reading %s: %w", seg.path, err)
	}
	r.j.log.Warn("journal: corrupt record skipped while reading", "segment", seg.path, "offset", off, "bytes", next-off, "why", why)
	return next, nil
}

// skipHoles moves off past a hole it is in, and says where the next hole starts
// (or limit). Holes are found at Open and never change.
func skipHoles(seg *segment, off, limit int64) (int64, int64) {
	for _, h := range seg.holes {
		if off < h.off {
			return off, min(limit, h.off)
		}
		off = max(off, h.end)
	}
	return off, limit
}

func (r *Reader) readSegment(seg *segment, start, limit int64, final bool, from uint64, out []*bridge.Message) ([]*bridge.Message, error) {
	if r.seg != seg {
		r.Close()
		f, err := os.Open(seg.path)
		if err != nil {
			return out, fmt.Errorf("journal: %w", err)
		}
		r.f, r.seg = f, seg
	}
	r.off = start
	if r.buf == nil {
		r.buf = make([]byte, 256<<10)
	}
	for len(out) < cap(out) {
		var end int64
		if r.off, end = skipHoles(seg, r.off, limit); r.off >= end {
			break
		}
		b := r.buf[:min(int64(len(r.buf)), end-r.off)]
		k, err := r.f.ReadAt(b, r.off)
		if err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("journal: reading %s: %w", seg.path, err)
		}
		short := k < len(b) // only when a failed write was cut back meanwhile
		b = b[:k]
		consumed, grew := 0, false
		bad := "" // why the record at r.off+consumed does not check out
		for len(out) < cap(out) {
			rest := b[consumed:]
			if len(rest) < recHeader {
				break
			}
			size := int(binary.LittleEndian.Uint32(rest))
			if size == 0 || size > maxRecord {
				bad = fmt.Sprintf("record length %d", size)
				break
			}
			if len(rest) < recHeader+size {
				if final && !short && r.off+int64(consumed+recHeader+size) > end {
					bad = fmt.Sprintf("record length %d past the end", size)
				} else if consumed == 0 && len(r.buf) < recHeader+size {
					r.buf = make([]byte, recHeader+size) // one large record
					grew = true
				}
				break
			}
			body := rest[recHeader : recHeader+size]
			if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
				bad = "checksum mismatch"
				break
			}
			m, err := decodeBody(body)
			if err != nil {
				bad = err.Error()
				break
			}
			consumed += recHeader + size
			r.next = m.Sequence + 1
			if m.Sequence >= from {
				out = append(out, m)
			}
		}
		if bad != "" {
			next, err := r.skipCorrupt(seg, r.off+int64(consumed), end, bad)
			if err != nil {
				return out, err
			}
			r.off = next
			continue
		}
		if consumed == 0 && len(out) < cap(out) {
			if !grew || short {
				break // a record not yet fully written
			}
			continue // the buffer grew for a large record
		}
		r.off += int64(consumed)
	}
	return out, nil
}
