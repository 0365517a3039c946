package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/fulldisk"
)

// faultyFile fails writes (after writing half, as a full disk does) or fsyncs
// while its fault is set.
type faultyFile struct {
	*os.File
	fault *atomic.Int32
}

const (
	faultNone = iota
	faultWrite
	faultSync
	faultCreate
)

func (f faultyFile) WriteAt(b []byte, off int64) (int, error) {
	if f.fault.Load() == faultWrite {
		n, _ := f.File.WriteAt(b[:len(b)/2], off)
		return n, syscall.ENOSPC
	}
	return f.File.WriteAt(b, off)
}

func (f faultyFile) Sync() error {
	if f.fault.Load() == faultSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

// countingHandler counts log records at Info and above by message.
type countingHandler struct {
	mu *sync.Mutex
	n  map[string]int
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Message]++
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func (h countingHandler) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.n)
}

func faultyOptions(fault *atomic.Int32) Options {
	return Options{Sync: SyncBatch, SegmentBytes: 4096, openFile: func(path string, flag int) (segmentFile, error) {
		if fault.Load() == faultCreate && flag&os.O_CREATE != 0 {
			return nil, syscall.ENOSPC
		}
		f, err := os.OpenFile(path, flag, 0o640)
		if err != nil {
			return nil, err
		}
		return faultyFile{f, fault}, nil
	}}
}

// appendWait appends from..from+n-1 in one batch and waits for the last.
func appendWait(j *Journal, from, n uint64) error {
	var batch []*bridge.Message
	for s := from; s < from+n; s++ {
		batch = append(batch, msg(s))
	}
	if err := j.Append(batch); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return j.WaitDurable(ctx, from+n-1)
}

func isUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, bridge.ErrUnavailable) {
		t.Fatalf("%s: %v, want an error wrapping ErrUnavailable", what, err)
	}
}

// fates asks Check about every sequence in from..to: which are durable. None may
// still be pending.
func fates(t *testing.T, j *Journal, from, to uint64) map[uint64]bool {
	t.Helper()
	durable := map[uint64]bool{}
	for s := from; s <= to; s++ {
		ok, err := j.Check(s)
		switch {
		case ok:
			durable[s] = true
		case err != nil:
			isUnavailable(t, fmt.Sprintf("Check(%d)", s), err)
		default:
			t.Fatalf("Check(%d): neither durable nor lost", s)
		}
	}
	return durable
}

// A write or fsync that fails makes the journal unavailable: the waiters of what
// was not durable are told so, appends fail at once, the file is cut back; once
// writes succeed again appends are accepted without reopening, every durable
// message is read back (across the gap the lost ones leave) and no lost one is.
func TestFailedWriteMakesTheJournalUnavailableUntilItRecovers(t *testing.T) {
	for _, kind := range []int32{faultWrite, faultSync, faultCreate} {
		t.Run(fmt.Sprint([]string{"", "write", "fsync", "create"}[kind]), func(t *testing.T) {
			var fault atomic.Int32
			dir := t.TempDir()
			logs := countingHandler{&sync.Mutex{}, map[string]int{}}
			opts := faultyOptions(&fault)
			opts.Logger = slog.New(logs)
			j := open(t, dir, opts)
			defer j.Close()
			appendN(t, j, 1, 60) // about 3.5 KiB: the next batch starts a new segment

			fault.Store(kind)
			moved := j.Moved()
			isUnavailable(t, "waiting for 61..160", appendWait(j, 61, 100))
			<-moved // closed by the failure
			isUnavailable(t, "Err", j.Err())
			for range 10 {
				isUnavailable(t, "append while unavailable", j.Append([]*bridge.Message{msg(161)}))
			}
			if st := j.Stats(); !st.Unavailable || st.WriteErrors == 0 {
				t.Fatalf("stats while unavailable: %+v", st)
			}
			if kind == faultWrite {
				// The partial write is cut off the file (just after the waiters are told).
				eventually(t, "the cut-back", func() bool {
					j.mu.Lock()
					defer j.mu.Unlock()
					for _, s := range j.segs {
						if fi, err := os.Stat(s.path); err == nil && fi.Size() != s.size {
							return false
						}
					}
					return true
				})
			}
			durable := fates(t, j, 1, 160)
			for s := uint64(1); s <= 60; s++ {
				if !durable[s] {
					t.Fatalf("acknowledged %d lost", s)
				}
			}

			fault.Store(faultNone)
			eventually(t, "recovery", func() bool { return j.Err() == nil })
			if err := appendWait(j, 200, 50); err != nil {
				t.Fatalf("append after recovery: %v", err)
			}
			// Durable has moved past the lost ones: they are still lost.
			again := fates(t, j, 1, 160)
			if fmt.Sprint(again) != fmt.Sprint(durable) {
				t.Fatalf("fates changed after recovery")
			}
			check := func(j *Journal) {
				t.Helper()
				var want []uint64
				for s := uint64(1); s <= 249; s++ {
					if durable[s] || s >= 200 {
						want = append(want, s)
					}
				}
				got := readAll(t, j, 1)
				var seqs []uint64
				for _, m := range got {
					seqs = append(seqs, m.Sequence)
				}
				if fmt.Sprint(seqs) != fmt.Sprint(want) {
					t.Fatalf("read %v,\nwant %v", seqs, want)
				}
			}
			check(j)
			if st := j.Stats(); st.Unavailable {
				t.Fatalf("still unavailable: %+v", st)
			}
			// One line when it failed and one when it recovered, not one a message.
			if n := logs.counts(); len(n) != 2 || n[logUnavailable] != 1 || n[logRecovered] != 1 {
				t.Fatalf("log lines: %v", n)
			}
			j.Close()
			j = open(t, dir, Options{})
			defer j.Close()
			check(j)
			if st := j.Stats(); st.CorruptRecords != 0 {
				t.Fatalf("the cut-back left corrupt records: %+v", st)
			}
		})
	}
}

// A real full disk: a 2 MiB tmpfs, filled. Needs the right to mount (root in CI).
func TestFullDiskMakesTheJournalUnavailableUntilSpaceIsFreed(t *testing.T) {
	dir := fulldisk.Mount(t, "2m")
	jdir := filepath.Join(dir, "journal")
	j := open(t, jdir, Options{Sync: SyncBatch})
	closed := false
	defer func() {
		if !closed {
			j.Close()
		}
	}()
	appendN(t, j, 1, 100)

	filler := fulldisk.Fill(t, dir)

	// The segment's last page may take a few records; then the disk refuses.
	next, acked := uint64(101), uint64(100)
	for ; ; next += 50 {
		err := appendWait(j, next, 50)
		if err != nil {
			isUnavailable(t, "append on a full disk", err)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%v does not say the disk is full", err)
			}
			break
		}
		acked = next + 49
		if next > 10_000 {
			t.Fatal("a full disk took 10,000 messages")
		}
	}
	// Cutting the failed write back may free a page, which a retry's probe can take:
	// the journal may come back and fail again while the disk stays full, but no
	// append is ever durable, and between retries appends fail at once.
	for probe := next + 50; ; probe++ {
		if probe > next+1000 {
			t.Fatal("appends never failed at once on a full disk")
		}
		err := j.Append([]*bridge.Message{msg(probe)})
		if err != nil {
			isUnavailable(t, "append while the disk is full", err)
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = j.WaitDurable(ctx, probe)
		cancel()
		isUnavailable(t, "waiting on a full disk", err)
	}
	isUnavailable(t, "Err", j.Err())

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery once space is free", func() bool { return j.Err() == nil })
	resumed := next + 2000
	if err := appendWait(j, resumed, 50); err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	got := readAll(t, j, 1)
	checkRun(t, got[:acked], 1, acked)
	if tail := got[len(got)-50:]; tail[0].Sequence != resumed {
		t.Fatalf("after recovery the log goes on at %d, want %d", tail[0].Sequence, resumed)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("close after recovery: %v", err)
	}
	closed = true
}

// Writers that each wait for their message, a reader following the tail, and a
// disk that fails and recovers three times: every message acknowledged is read
// back, by the follower and after a reopen, in order; none that was refused or
// lost is read after the reopen.
func TestNoAcknowledgedMessageLostAcrossFailures(t *testing.T) {
	var fault atomic.Int32
	dir := t.TempDir()
	opts := faultyOptions(&fault)
	opts.Logger = slog.New(countingHandler{&sync.Mutex{}, map[string]int{}})
	j := open(t, dir, opts)
	var (
		mu    sync.Mutex // the hub's lock
		next  = j.NextSequence()
		acked = map[uint64]bool{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				seq := next
				next++
				err := j.Append([]*bridge.Message{msg(seq)})
				mu.Unlock()
				if err != nil {
					if !errors.Is(err, ErrUnavailable) {
						t.Errorf("append %d: %v", seq, err)
						return
					}
					continue
				}
				if err := j.WaitDurable(context.Background(), seq); err != nil {
					if !errors.Is(err, ErrUnavailable) {
						t.Errorf("wait %d: %v", seq, err)
						return
					}
					continue
				}
				mu.Lock()
				acked[seq] = true
				mu.Unlock()
			}
		}()
	}
	seen := map[uint64]bool{}
	writersDone, readerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		r := j.NewReader()
		defer r.Close()
		buf := make([]*bridge.Message, 0, 64)
		from := uint64(1)
		for {
			got, err := r.Read(from, buf)
			if err != nil {
				t.Errorf("follower: %v", err)
				return
			}
			for _, m := range got {
				if m.Sequence < from {
					t.Errorf("follower: %d after %d", m.Sequence, from-1)
				}
				seen[m.Sequence] = true
				from = m.Sequence + 1
			}
			if len(got) == 0 {
				select {
				case <-writersDone:
					if from > j.Durable() {
						return
					}
				case <-j.Moved():
				}
			}
		}
	}()
	nacked := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for round := range 3 {
		n := nacked()
		eventually(t, "acknowledgements", func() bool { return nacked() > n+100 })
		fault.Store([]int32{faultWrite, faultSync, faultCreate}[round])
		eventually(t, "the failure", func() bool { return j.Err() != nil })
		fault.Store(faultNone)
		eventually(t, "the recovery", func() bool { return j.Err() == nil })
	}
	n := nacked()
	eventually(t, "acknowledgements after the last recovery", func() bool { return nacked() > n+100 })
	close(stop)
	wg.Wait()
	close(writersDone) // the follower reads on until it has everything durable
	<-readerDone
	for s := range acked {
		if !seen[s] {
			t.Fatalf("acknowledged %d not read by the follower", s)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, Options{})
	defer j.Close()
	got := readAll(t, j, 1)
	for i, m := range got {
		if !acked[m.Sequence] {
			t.Fatalf("read %d after the reopen, which was never acknowledged", m.Sequence)
		}
		if i > 0 && m.Sequence <= got[i-1].Sequence {
			t.Fatalf("%d after %d", m.Sequence, got[i-1].Sequence)
		}
	}
	if len(got) != len(acked) {
		t.Fatalf("read %d after the reopen, %d acknowledged", len(got), len(acked))
	}
}
