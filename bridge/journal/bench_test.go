package journal

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// BenchmarkJournalAppendWait measures what a device waiting for its
// acknowledgement sees: each writer appends one message (under a lock, as the
// hub does) and waits until it is durable. One writer is the latency of one
// commit; a hundred share commits.
//
//	go test -run x -bench JournalAppendWait -benchtime 3s ./bridge/journal/
func BenchmarkJournalAppendWait(b *testing.B) {
	for _, writers := range []int{1, 100} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			j, err := Open(b.TempDir(), Options{Sync: SyncBatch})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			var (
				mu   sync.Mutex // the hub's lock: sequences in order
				next = j.NextSequence()
				ops  atomic.Int64
				wg   sync.WaitGroup
			)
			b.ResetTimer()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ops.Add(1) <= int64(b.N) {
						mu.Lock()
						seq := next
						next++
						err := j.Append([]*bridge.Message{msg(seq)})
						mu.Unlock()
						if err == nil {
							err = j.WaitDurable(context.Background(), seq)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// BenchmarkFsync is what one fsync of a small append costs on the disk under
// TMPDIR: the floor of a commit.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(b.TempDir() + "/f")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 128)
	for b.Loop() {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestart opens a journal of 1,000,000 messages (64 MiB segments),
// checking every record: the goal is under 2 s.
//
//	go test -run x -bench Restart -benchtime 3x ./bridge/journal/
func BenchmarkRestart(b *testing.B) {
	dir := b.TempDir()
	j, err := Open(dir, Options{Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	const total, batch = 1_000_000, 1000
	buf := make([]*bridge.Message, 0, batch)
	for s := uint64(1); s <= total; s++ {
		buf = append(buf, msg(s))
		if len(buf) == batch {
			if err := j.Append(buf); err != nil {
				b.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		j, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if last := j.Last(); last != total {
			b.Fatalf("last = %d after reopening", last)
		}
		j.Close()
	}
}
