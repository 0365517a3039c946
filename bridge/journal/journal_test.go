package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func msg(seq uint64) *bridge.Message {
	return &bridge.Message{
		Sequence: seq, Device: "dev-1", Point: fmt.Sprintf("p%d", seq%7), Protocol: bridge.ProtocolMQTT,
		Value: bridge.Double(float64(seq) / 2), Quality: bridge.QualityGood, Priority: bridge.PriorityNormal,
		GatewayTime: time.Unix(1_800_000_000, int64(seq)), Labels: map[string]string{"site": "0042"},
	}
}

func open(t *testing.T, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func appendN(t *testing.T, j *Journal, from, n uint64) {
	t.Helper()
	var batch []*bridge.Message
	for s := from; s < from+n; s++ {
		batch = append(batch, msg(s))
	}
	if err := j.Append(batch); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.WaitDurable(ctx, from+n-1); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, j *Journal, from uint64) []*bridge.Message {
	t.Helper()
	r := j.NewReader()
	defer r.Close()
	var all []*bridge.Message
	buf := make([]*bridge.Message, 0, 100)
	for {
		got, err := r.Read(from, buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return all
		}
		all = append(all, got...)
		from = got[len(got)-1].Sequence + 1
	}
}

func checkRun(t *testing.T, got []*bridge.Message, first, last uint64) {
	t.Helper()
	if uint64(len(got)) != last-first+1 {
		t.Fatalf("read %d messages, want %d (%d..%d)", len(got), last-first+1, first, last)
	}
	for i, m := range got {
		want := msg(first + uint64(i))
		if m.Sequence != want.Sequence || m.Point != want.Point || !m.Value.Equal(want.Value) ||
			!m.GatewayTime.Equal(want.GatewayTime) || m.Labels["site"] != "0042" {
			t.Fatalf("message %d = %+v, want %+v", i, m, want)
		}
	}
}

func TestAppendReadAcrossSegmentsAndReopen(t *testing.T) {
	for _, mode := range []SyncMode{SyncBatch, SyncAlways, SyncNone} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, dir, Options{Sync: mode, SegmentBytes: 4096})
			for b := uint64(0); b < 20; b++ {
				appendN(t, j, 1+b*50, 50)
			}
			if st := j.Stats(); st.Segments < 5 || st.First != 1 || st.Last != 1000 {
				t.Fatalf("stats = %+v", st)
			}
			checkRun(t, readAll(t, j, 1), 1, 1000)
			checkRun(t, readAll(t, j, 777), 777, 1000)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = open(t, dir, Options{Sync: mode, SegmentBytes: 4096})
			defer j.Close()
			checkRun(t, readAll(t, j, 1), 1, 1000)
			next := j.NextSequence()
			if next <= 1000 {
				t.Fatalf("NextSequence = %d after 1000", next)
			}
			appendN(t, j, next, 10)
			got := readAll(t, j, 990)
			if len(got) != 21 || got[10].Sequence != 1000 || got[11].Sequence != next {
				t.Fatalf("across the restart: %d messages, %v then %v", len(got), got[10].Sequence, got[11].Sequence)
			}
		})
	}
}

func TestReaderFollowsTheTail(t *testing.T) {
	j := open(t, t.TempDir(), Options{Sync: SyncAlways})
	defer j.Close()
	r := j.NewReader()
	defer r.Close()
	buf := make([]*bridge.Message, 0, 10)
	next := uint64(1)
	for round := uint64(0); round < 30; round++ {
		appendN(t, j, 1+round*3, 3)
		got, err := r.Read(next, buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].Sequence != next {
			t.Fatalf("round %d: %d messages from %d", round, len(got), next)
		}
		next += 3
	}
}

func TestRetentionByBytesAndAge(t *testing.T) {
	var offset atomic.Int64 // the clock moves an hour at the end
	clock := func() time.Time { return time.Unix(1_800_000_000, 0).Add(time.Duration(offset.Load())) }
	j := open(t, t.TempDir(), Options{Sync: SyncAlways, SegmentBytes: 2048, MaxBytes: 8192, Now: clock})
	defer j.Close()
	for b := uint64(0); b < 40; b++ {
		appendN(t, j, 1+b*20, 20)
	}
	eventually(t, "bytes retention", func() bool { st := j.Stats(); return st.Bytes <= 8192+2048 && st.Dropped > 0 })
	st := j.Stats()
	if st.First == 1 {
		t.Fatalf("bytes retention: %+v", st)
	}
	r := j.NewReader()
	defer r.Close()
	if _, err := r.Read(1, make([]*bridge.Message, 0, 1)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("read before the first retained: %v, want ErrTruncated", err)
	}
	checkRun(t, readAll(t, j, st.First), st.First, 800)

	// Every message is from 1_800_000_000 s; an hour later with MaxAge 1m only
	// the active segment is left.
	j2 := open(t, t.TempDir(), Options{Sync: SyncAlways, SegmentBytes: 2048, MaxAge: time.Minute, Now: clock})
	defer j2.Close()
	for b := uint64(0); b < 10; b++ {
		appendN(t, j2, 1+b*20, 20)
	}
	offset.Store(int64(time.Hour))
	appendN(t, j2, 201, 20)
	// Retention runs after the commit that made the batch durable.
	eventually(t, "age retention", func() bool { st := j2.Stats(); return st.Segments == 1 && st.Dropped > 0 })
}

func corruptTest(t *testing.T, damage func(path string, size int64)) (kept uint64) {
	t.Helper()
	dir := t.TempDir()
	j := open(t, dir, Options{Sync: SyncAlways, SegmentBytes: 1 << 20})
	appendN(t, j, 1, 200)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := segmentFiles(dir)
	path := filepath.Join(dir, names[0])
	fi, _ := os.Stat(path)
	damage(path, fi.Size())
	j = open(t, dir, Options{Sync: SyncAlways})
	defer j.Close()
	got := readAll(t, j, 1)
	if len(got) > 0 {
		checkRun(t, got, 1, got[len(got)-1].Sequence)
	}
	// The journal goes on after the cut.
	next := j.NextSequence()
	appendN(t, j, next, 5)
	if all := readAll(t, j, j.First()); all[len(all)-1].Sequence != next+4 {
		t.Fatalf("append after recovery: last = %d", all[len(all)-1].Sequence)
	}
	return uint64(len(got))
}

func TestTornTailIsTruncated(t *testing.T) {
	kept := corruptTest(t, func(path string, size int64) {
		if err := os.Truncate(path, size-7); err != nil {
			t.Fatal(err)
		}
	})
	if kept != 199 {
		t.Fatalf("kept %d, want the 199 whole records", kept)
	}
}

// A newest segment with nothing that checks out is a torn first write: it goes.
func TestGarbageHeaderRemovesSegment(t *testing.T) {
	kept := corruptTest(t, func(path string, size int64) {
		os.WriteFile(path, []byte("not a journal at all"), 0o640)
	})
	if kept != 0 {
		t.Fatalf("kept %d", kept)
	}
}

func TestSequencesNeverReusedAfterACrash(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{Sync: SyncAlways})
	appendN(t, j, 1, 10)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash after sequences 11..20 were handed out but before they were written:
	// the reservation still covers them.
	j = open(t, dir, Options{})
	defer j.Close()
	if next := j.NextSequence(); next <= 20 {
		t.Fatalf("NextSequence = %d", next)
	}
	if err := j.Append([]*bridge.Message{msg(5)}); err == nil {
		t.Fatal("an old sequence was accepted")
	}
}

func TestConsumers(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.Ack("billing", 10); err != nil {
		t.Fatal(err)
	}
	j.Ack("billing", 5) // never backwards
	if err := j.Ack("bad name!", 1); !errors.Is(err, ErrBadConsumer) {
		t.Fatalf("bad name: %v", err)
	}
	j.Close()
	j = open(t, dir, Options{})
	defer j.Close()
	if p, ok := j.Position("billing"); !ok || p != 10 {
		t.Fatalf("position = %d, %v", p, ok)
	}
	j.DeleteConsumer("billing")
	if _, ok := j.Position("billing"); ok {
		t.Fatal("deleted consumer still there")
	}
}

func TestWaitDurableHonoursContext(t *testing.T) {
	j := open(t, t.TempDir(), Options{Sync: SyncBatch, Interval: time.Hour})
	defer j.Close()
	if err := j.Append([]*bridge.Message{msg(1)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.WaitDurable(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitDurable = %v", err)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range []*bridge.Message{
		msg(1),
		{Sequence: 2, Device: "d", Point: "p", Value: bridge.Bytes([]byte{0, 255}), SourceTime: time.Unix(5, 6), Unit: "°C", Priority: bridge.PriorityCritical, Quality: bridge.QualityBad, Protocol: bridge.ProtocolModbus, GatewayTime: time.Unix(7, 8)},
		{Sequence: 3, Device: "d", Point: "p", Value: bridge.String("héllo"), GatewayTime: time.Unix(0, 1)},
		{Sequence: 4, Device: "d", Point: "p", Value: bridge.Bool(true), GatewayTime: time.Unix(0, 1)},
		{Sequence: 5, Device: "d", Point: "p", Value: bridge.Int(-9), GatewayTime: time.Unix(0, 1)},
		{Sequence: 6, Device: "d", Point: "p", Value: bridge.Uint(1 << 63), GatewayTime: time.Unix(0, 1)},
	} {
		back, err := decodeBody(appendBody(nil, m))
		if err != nil {
			t.Fatal(err)
		}
		if back.Sequence != m.Sequence || back.Device != m.Device || !back.Value.Equal(m.Value) || back.Unit != m.Unit ||
			!back.SourceTime.Equal(m.SourceTime) || !back.GatewayTime.Equal(m.GatewayTime) || back.Priority != m.Priority ||
			back.Quality != m.Quality || back.Protocol != m.Protocol || len(back.Labels) != len(m.Labels) {
			t.Errorf("round trip %+v -> %+v", m, back)
		}
	}
}

func FuzzDecodeBody(f *testing.F) {
	f.Add(appendBody(nil, msg(1)))
	f.Add(appendBody(nil, &bridge.Message{Sequence: 2, Device: "d", Point: "p", Value: bridge.Bytes([]byte("x")), GatewayTime: time.Unix(0, 1)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBody(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes encodes back to a body that decodes to the same.
		again, err := decodeBody(appendBody(nil, m))
		if err != nil || again.Sequence != m.Sequence || !again.Value.Equal(m.Value) || again.Device != m.Device {
			t.Fatalf("re-encoding changed %+v into %+v (%v)", m, again, err)
		}
	})
}

// eventually waits for cond, which background work makes true, up to a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, cond)
}

// The committer renews the sequence reservation before it runs out, so that Append
// does not wait for the disk; only a jump past the reservation makes it wait, and
// that is counted. Either way a sequence is never reused after a restart.
func TestReservationIsRenewedOffTheIngestPath(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{Sync: SyncAlways})
	next := j.NextSequence()
	ahead := func(seq uint64) func() bool {
		return func() bool { return j.reserved.Load() >= seq+reserveBlock/2 }
	}
	eventually(t, "the reservation at start", ahead(next))
	// Leave less than half a block: the committer renews after the commit.
	seq := j.reserved.Load() - reserveBlock/2 + 1
	appendN(t, j, seq, 1)
	eventually(t, "the renewal", ahead(seq))
	if st := j.Stats(); st.ReserveWaits != 0 {
		t.Fatalf("an append waited for the reservation: %+v", st)
	}
	far := j.reserved.Load() + 10
	appendN(t, j, far, 1)
	if st := j.Stats(); st.ReserveWaits != 1 {
		t.Fatalf("a jump past the reservation: %d waits, want 1", st.ReserveWaits)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, Options{})
	defer j.Close()
	if n := j.NextSequence(); n <= far {
		t.Fatalf("NextSequence = %d after %d", n, far)
	}
}
