package journal

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// recordOffsets lists where each record of a segment file starts.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(len(segMagic)); off < int64(len(b)); {
		offs = append(offs, off)
		off += recHeader + int64(binary.LittleEndian.Uint32(b[off:]))
	}
	return offs
}

func flipByte(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// checkExcept checks that got is first..last in order without the sequences in
// missing.
func checkExcept(t *testing.T, got []*bridge.Message, first, last uint64, missing ...uint64) {
	t.Helper()
	skip := map[uint64]bool{}
	for _, s := range missing {
		skip[s] = true
	}
	i := 0
	for s := first; s <= last; s++ {
		if skip[s] {
			continue
		}
		if i >= len(got) {
			t.Fatalf("read %d messages, ends before %d", len(got), s)
		}
		checkRun(t, got[i:i+1], s, s)
		i++
	}
	if i != len(got) {
		t.Fatalf("read %d messages, want %d", len(got), i)
	}
}

// segmentedJournal writes 1..600 over several 4 KiB segments and closes it.
func segmentedJournal(t *testing.T) (dir string, names []string) {
	t.Helper()
	dir = t.TempDir()
	j := open(t, dir, Options{Sync: SyncAlways, SegmentBytes: 4096})
	for b := uint64(0); b < 12; b++ {
		appendN(t, j, 1+b*50, 50)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ = segmentFiles(dir)
	if len(names) < 4 {
		t.Fatalf("%d segments, want at least 4", len(names))
	}
	return dir, names
}

// A flipped byte in a sealed segment, in a record's length, body or checksum,
// costs that record only: every other record is read, newer segments included,
// also by a resume that starts at the lost sequence, and the journal goes on.
func TestBadRecordInSealedSegmentCostsOnlyItself(t *testing.T) {
	for _, c := range []struct {
		name string
		at   int64 // within the record
		mask byte
	}{
		{"length low byte", 0, 0x10},
		{"length high byte", 3, 0x40},
		{"checksum", 5, 0x01},
		{"body sequence", recHeader + 2, 0x01},
		{"body value", recHeader + 30, 0x80},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, names := segmentedJournal(t)
			path := filepath.Join(dir, names[1]) // sealed: older than the newest
			offs := recordOffsets(t, path)
			victim := offs[len(offs)/2]
			j0 := open(t, dir, Options{})
			lost := j0.segs[1].first + uint64(len(offs)/2)
			j0.Close()
			flipByte(t, path, victim+c.at, c.mask)

			j := open(t, dir, Options{})
			defer j.Close()
			checkExcept(t, readAll(t, j, 1), 1, 600, lost)
			if got := readAll(t, j, lost); len(got) != int(600-lost) || got[0].Sequence != lost+1 {
				t.Fatalf("resume at the lost %d: %d messages from %d", lost, len(got), got[0].Sequence)
			}
			after, _ := segmentFiles(dir)
			if len(after) != len(names) {
				t.Fatalf("%d segments after reopening, want %d", len(after), len(names))
			}
			if st := j.Stats(); st.CorruptRecords != 1 || st.CorruptBytes == 0 || st.Last != 600 {
				t.Fatalf("stats = %+v, want one corrupt range", st)
			}
			next := j.NextSequence()
			appendN(t, j, next, 5)
			if got := readAll(t, j, 600); len(got) != 6 || got[1].Sequence != next {
				t.Fatalf("after appending at %d: %d messages from 600", next, len(got))
			}
		})
	}
}

// A segment whose header is garbage, older than the newest: its records are gone,
// the newer segments stay.
func TestGarbageSealedSegmentKeepsNewerOnes(t *testing.T) {
	dir, names := segmentedJournal(t)
	j := open(t, dir, Options{})
	s1 := j.segs[1]
	first, last := s1.first, s1.last
	j.Close()
	if err := os.WriteFile(filepath.Join(dir, names[1]), []byte("not a journal at all, not even close"), 0o640); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, Options{})
	defer j.Close()
	var missing []uint64
	for s := first; s <= last; s++ {
		missing = append(missing, s)
	}
	checkExcept(t, readAll(t, j, 1), 1, 600, missing...)
	checkExcept(t, readAll(t, j, first), last+1, 600)
}

// A flipped byte in the middle of the newest segment is not a torn write: the
// records after it stay.
func TestBadRecordInNewestSegmentIsSkipped(t *testing.T) {
	dir, names := segmentedJournal(t)
	path := filepath.Join(dir, names[len(names)-1])
	offs := recordOffsets(t, path)
	j := open(t, dir, Options{})
	seq := j.segs[len(j.segs)-1].first + 1
	j.Close()
	flipByte(t, path, offs[1]+recHeader+20, 0x04)
	j = open(t, dir, Options{})
	defer j.Close()
	checkExcept(t, readAll(t, j, 1), 1, 600, seq)
}

// A torn write at the end of the newest segment is cut off; the older segments
// are untouched.
func TestTornTailOfNewestSegmentWithOlderOnes(t *testing.T) {
	dir, names := segmentedJournal(t)
	path := filepath.Join(dir, names[len(names)-1])
	fi, _ := os.Stat(path)
	if err := os.Truncate(path, fi.Size()-5); err != nil {
		t.Fatal(err)
	}
	j := open(t, dir, Options{})
	defer j.Close()
	checkRun(t, readAll(t, j, 1), 1, 599)
	if fi2, _ := os.Stat(path); fi2.Size() >= fi.Size()-5 {
		t.Fatalf("torn tail not truncated: %d bytes", fi2.Size())
	}
	if st := j.Stats(); st.CorruptRecords != 0 {
		t.Fatalf("a torn tail counted as corrupt: %+v", st)
	}
}

// A record that goes bad while the journal runs is skipped by readers as one found
// at Open would be: the reader goes on with the next record that checks out.
func TestReaderSkipsARecordThatWentBadWhileRunning(t *testing.T) {
	for _, c := range []struct {
		name string
		at   int64
		mask byte
	}{
		{"length", 2, 0x08},
		{"checksum", 4, 0x01},
		{"body", recHeader + 25, 0x20},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, names := segmentedJournal(t)
			j := open(t, dir, Options{})
			defer j.Close()
			checkRun(t, readAll(t, j, 1), 1, 600)
			path := filepath.Join(dir, names[2])
			offs := recordOffsets(t, path)
			flipByte(t, path, offs[3]+c.at, c.mask)
			lost := j.segs[2].first + 3
			checkExcept(t, readAll(t, j, 1), 1, 600, lost)
			checkExcept(t, readAll(t, j, lost-1), lost-1, 600, lost)
		})
	}
}
