package uplink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// executed remembers the commands the gateway has started, and the result of each
// it finished, in a file under the data directory, so that a command delivered
// again (after a crash, a lost acknowledgement or a hub-side retry with the same
// id) is never run twice. It holds at most max ids: the oldest are forgotten
// first. The hub's consumer bounds how many commands can be awaiting an
// acknowledgement, and only those can be delivered again, so a bound far above
// that loses nothing.
//
// The file is JSON lines, appended and fsynced once before a command runs and
// once after; a torn last line from a crash is ignored. It is rewritten whole
// when it holds twice as many lines as ids.
type executed struct {
	path string
	max  int

	mu    sync.Mutex
	f     *os.File
	recs  map[string]*cmdRecord
	order []string // ids, oldest first; may hold ids already evicted
	head  int      // order[head:] is live
	lines int      // lines in the file
}

// cmdRecord is one line of the file: a command started, or finished with a result.
type cmdRecord struct {
	ID        string    `json:"id"`
	Done      bool      `json:"done,omitempty"`
	Code      int32     `json:"code,omitempty"`
	Error     string    `json:"error,omitempty"`
	Device    string    `json:"device,omitempty"`
	Point     string    `json:"point,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	At        time.Time `json:"at"`
}

// maxRecordLine bounds one line of the file (ids and errors are bounded too).
const maxRecordLine = 16 << 10

const executedFile = "commands.jsonl"

// openExecuted reads (or creates) the file in dir.
func openExecuted(dir string, max int) (*executed, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	e := &executed{path: filepath.Join(dir, executedFile), max: max, recs: map[string]*cmdRecord{}}
	f, err := os.OpenFile(e.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	recs, lines, good, err := parseExecuted(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", e.path, err)
	}
	for _, r := range recs {
		e.put(r)
	}
	e.lines = lines
	// Drop a torn last line so that the next append starts on a line of its own.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	e.f = f
	return e, nil
}

// parseExecuted reads the records of a file, in order. A line that is not a
// record is skipped (and kept: it is not ours to judge); a last line without its
// newline, torn by a crash, is left out of good, the length to keep.
func parseExecuted(r io.Reader) (recs []*cmdRecord, lines int, good int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	oversized := false
	for {
		line, rerr := br.ReadSlice('\n')
		off += int64(len(line))
		switch {
		case errors.Is(rerr, bufio.ErrBufferFull):
			oversized = true // skip to the end of this line
			continue
		case rerr != nil && !errors.Is(rerr, io.EOF):
			return nil, 0, 0, rerr
		case len(line) == 0 || line[len(line)-1] != '\n':
			return recs, lines, good, nil // EOF, maybe after a torn line
		}
		lines++
		good = off
		var rec cmdRecord
		if !oversized && json.Unmarshal(bytes.TrimSpace(line), &rec) == nil && rec.ID != "" {
			recs = append(recs, &rec)
		}
		oversized = false
	}
}

// put records r in memory, evicting the oldest ids beyond max.
func (e *executed) put(r *cmdRecord) {
	if _, ok := e.recs[r.ID]; !ok {
		e.order = append(e.order, r.ID)
	}
	e.recs[r.ID] = r
	for len(e.recs) > e.max {
		id := e.order[e.head]
		e.order[e.head] = ""
		e.head++
		delete(e.recs, id)
	}
	if e.head > len(e.order)/2 && e.head > 1024 {
		e.order = append([]string(nil), e.order[e.head:]...)
		e.head = 0
	}
}

// get returns what is known of a command id.
func (e *executed) get(id string) (cmdRecord, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.recs[id]
	if !ok {
		return cmdRecord{}, false
	}
	return *r, true
}

// record appends r to the file, fsyncs it, and keeps it in memory.
func (e *executed) record(r cmdRecord) error {
	b, err := json.Marshal(&r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if len(b) > maxRecordLine {
		return fmt.Errorf("command record of %d bytes is over the %d limit", len(b), maxRecordLine)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return errors.New("command log closed")
	}
	if _, err := e.f.Write(b); err != nil {
		return err
	}
	if err := e.f.Sync(); err != nil {
		return err
	}
	e.lines++
	e.put(&r)
	if e.lines > 2*e.max {
		return e.compactLocked()
	}
	return nil
}

// compactLocked rewrites the file with the live records only.
func (e *executed) compactLocked() error {
	var buf bytes.Buffer
	n := 0
	for _, id := range e.order[e.head:] {
		r, ok := e.recs[id]
		if !ok {
			continue
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
		n++
	}
	tmp := e.path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o640); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := os.Rename(tmp, e.path); err != nil {
		f.Close()
		return err
	}
	if d, err := os.Open(filepath.Dir(e.path)); err == nil {
		d.Sync()
		d.Close()
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return err
	}
	e.f.Close()
	e.f = f
	e.lines = n
	return nil
}

// size is how many ids are remembered.
func (e *executed) size() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.recs)
}

func (e *executed) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := e.f.Close()
	e.f = nil
	return err
}
