package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// recover reads every segment, checks every record's checksum, length and sequence
// order, and cuts the log at the first bad record: that segment is truncated there
// and every later segment removed. What was cut is logged with its extent; nothing
// after a bad record is ever served, because its order can no longer be trusted.
func (j *Journal) recover() error {
	names, err := segmentFiles(j.dir)
	if err != nil {
		return err
	}
	var prev uint64
	for i, name := range names {
		path := filepath.Join(j.dir, name)
		seg, good, err := scanSegment(path, prev)
		if err == nil {
			if seg.last >= seg.first {
				prev = seg.last
			}
			j.segs = append(j.segs, seg)
			continue
		}
		// Cut here.
		j.log.Error("journal: corrupt record; truncating the log to the last good record",
			"segment", path, "offset", good, "err", err, "later_segments_removed", len(names)-i-1)
		if good <= int64(len(segMagic)) {
			if rerr := os.Remove(path); rerr != nil {
				return rerr
			}
		} else {
			if terr := os.Truncate(path, good); terr != nil {
				return terr
			}
			if seg.last >= seg.first {
				prev = seg.last
			}
			j.segs = append(j.segs, seg)
		}
		for _, later := range names[i+1:] {
			if rerr := os.Remove(filepath.Join(j.dir, later)); rerr != nil {
				return rerr
			}
		}
		if err := syncDir(j.dir); err != nil {
			return err
		}
		break
	}
	j.last = prev
	return nil
}

// scanSegment reads one segment. It returns the segment as far as it is good, the
// offset where the good part ends, and the error that stopped it (nil at a clean end).
func scanSegment(path string, prev uint64) (*segment, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	seg := &segment{path: path, sealed: true}
	r := bufio.NewReaderSize(f, 256<<10)
	magic := make([]byte, len(segMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != segMagic {
		seg.first, seg.last = prev+1, prev
		return seg, 0, fmt.Errorf("%w: bad segment header", ErrCorrupt)
	}
	off := int64(len(segMagic))
	seg.size = off
	seg.first, seg.last = prev+1, prev
	var hdr [recHeader]byte
	var body []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return seg, off, nil
			}
			return seg, off, fmt.Errorf("%w: torn record header", ErrCorrupt)
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if n == 0 || n > maxRecord {
			return seg, off, fmt.Errorf("%w: record length %d", ErrCorrupt, n)
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return seg, off, fmt.Errorf("%w: torn record body", ErrCorrupt)
		}
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			return seg, off, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
		}
		// Only the fixed head is needed to recover: the sequence and the time.
		if len(body) < 16 {
			return seg, off, fmt.Errorf("%w: record too short", ErrCorrupt)
		}
		seq := binary.LittleEndian.Uint64(body)
		if seq <= prev {
			return seg, off, fmt.Errorf("%w: sequence %d after %d", ErrCorrupt, seq, prev)
		}
		if seg.last < seg.first {
			seg.first = seq
		}
		if len(seg.index) == 0 || seg.records >= indexEvery {
			seg.index = append(seg.index, indexEntry{seq: seq, off: off})
			seg.records = 0
		}
		seg.records++
		seg.last = seq
		seg.newest = timeFromNanos(binary.LittleEndian.Uint64(body[8:]))
		prev = seq
		off += recHeader + int64(n)
		seg.size = off
		seg.written.Store(off)
	}
}
