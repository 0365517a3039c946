package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// The durable log section measures the storage engine the gateway uses (its own
// segment log, bridge/journal) against go.etcd.io/bbolt, a well-kept embedded
// B+tree store, doing the same work: 256-byte messages appended by concurrent
// writers that each wait for their fsync (as a QoS 1 device waits for its ack),
// then a sequential replay, then a restart with many messages retained. The
// figures decided the engine; `make bench` keeps them honest.

// journalWriters is how many messages wait for their fsync at once: 100 devices with
// about 10 QoS 1 messages in flight each.
const journalWriters = 1024

// benchMessage is a reading whose journal record is 256 bytes.
func benchMessage(seq uint64) *bridge.Message {
	return &bridge.Message{
		Sequence: seq, Device: "fryer-0042", Point: "oil_temp", Protocol: bridge.ProtocolMQTT,
		Value: bridge.String(strings.Repeat("x", 170)), Quality: bridge.QualityGood,
		Priority: bridge.PriorityNormal, GatewayTime: time.Now(), Unit: "°C",
		Labels: map[string]string{"site": "0042"},
	}
}

// store is what both candidates do.
type store interface {
	// appendWait appends the message with the next sequence and waits until it is
	// on disk.
	appendWait(ctx context.Context, next *atomic.Uint64) error
	replay(from uint64, each func(*bridge.Message)) error
	close() error
}

type journalStore struct {
	j  *journal.Journal
	mu sync.Mutex // the hub's lock: Append is called under it
}

func (s *journalStore) appendWait(ctx context.Context, next *atomic.Uint64) error {
	m := benchMessage(0)
	s.mu.Lock()
	m.Sequence = next.Add(1) // as the hub does: sequence order is append order
	err := s.j.Append([]*bridge.Message{m})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.j.WaitDurable(ctx, m.Sequence)
}

func (s *journalStore) replay(from uint64, each func(*bridge.Message)) error {
	r := s.j.NewReader()
	defer r.Close()
	buf := make([]*bridge.Message, 0, 512)
	for {
		got, err := r.Read(from, buf)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return nil
		}
		for _, m := range got {
			each(m)
		}
		from = got[len(got)-1].Sequence + 1
	}
}

func (s *journalStore) close() error { return s.j.Close() }

var boltBucket = []byte("messages")

type boltStore struct{ db *bolt.DB }

func openBolt(path string) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	// Group commit, as the journal does: concurrent writers share one fsync.
	db.MaxBatchDelay = 5 * time.Millisecond
	db.MaxBatchSize = 4096
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &boltStore{db: db}, nil
}

func (s *boltStore) appendWait(_ context.Context, next *atomic.Uint64) error {
	m := benchMessage(next.Add(1))
	v, err := proto.Marshal(pbconv.ToProto(m))
	if err != nil {
		return err
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], m.Sequence)
	return s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put(k[:], v) })
}

func (s *boltStore) replay(from uint64, each func(*bridge.Message)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(boltBucket).Cursor()
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], from)
		for key, val := c.Seek(k[:]); key != nil; key, val = c.Next() {
			pm := new(pb.Message)
			if err := proto.Unmarshal(val, pm); err != nil {
				return err
			}
			each(&bridge.Message{Sequence: binary.BigEndian.Uint64(key), Device: pm.GetDevice(), Point: pm.GetPoint()})
		}
		return nil
	})
}

func (s *boltStore) close() error { return s.db.Close() }

// appendRate runs journalWriters writers for d and returns messages per second.
func appendRate(ctx context.Context, s store, d time.Duration, next *atomic.Uint64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, journalWriters)
	start := time.Now()
	for range journalWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := s.appendWait(context.Background(), next); err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// fill appends n messages quickly (many writers) for the replay and restart tests.
func fill(ctx context.Context, s store, n uint64, next *atomic.Uint64) error {
	var wg sync.WaitGroup
	errs := make(chan error, journalWriters)
	per := n / journalWriters
	for range journalWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if err := s.appendWait(ctx, next); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (e *env) journalSection(ctx context.Context) {
	retained := uint64(1_000_000)
	if e.quick {
		retained = 20_000
	}
	type result struct{ appends, replay, restart float64 }
	measure := func(name string, open func(dir string) (store, error)) (result, error) {
		var r result
		dir := filepath.Join(e.tmp, "journal-"+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return r, err
		}
		defer os.RemoveAll(dir)
		s, err := open(dir)
		if err != nil {
			return r, err
		}
		var next atomic.Uint64
		if r.appends, err = appendRate(ctx, s, e.duration, &next); err != nil {
			s.close()
			return r, fmt.Errorf("appends: %w", err)
		}
		if have := next.Load(); have < retained {
			if err := fill(ctx, s, retained-have, &next); err != nil {
				s.close()
				return r, fmt.Errorf("filling: %w", err)
			}
		}
		if err := s.close(); err != nil {
			return r, err
		}
		start := time.Now()
		if s, err = open(dir); err != nil {
			return r, fmt.Errorf("reopening: %w", err)
		}
		r.restart = time.Since(start).Seconds()
		defer s.close()
		count := 0
		start = time.Now()
		if err := s.replay(1, func(*bridge.Message) { count++ }); err != nil {
			return r, fmt.Errorf("replay: %w", err)
		}
		r.replay = float64(count) / time.Since(start).Seconds()
		e.logf("durable log %s: %d messages on disk, %d replayed", name, next.Load(), count)
		return r, nil
	}
	jr, err := measure("journal", func(dir string) (store, error) {
		j, err := journal.Open(dir, journal.Options{Sync: journal.SyncBatch, MaxBytes: 8 << 30})
		if err != nil {
			return nil, err
		}
		return &journalStore{j: j}, nil
	})
	if err != nil {
		e.fail("durable log (journal)", err)
		return
	}
	br, err := measure("bbolt", func(dir string) (store, error) { return openBolt(filepath.Join(dir, "bolt.db")) })
	if err != nil {
		e.fail("durable log (bbolt)", err)
	}
	peer := "bbolt " + boltVersion
	e.rows = append(e.rows,
		rateRow(fmt.Sprintf("durable log appends/s, 256 B, %d writers waiting for fsync", journalWriters), jr.appends, br.appends, peer),
		rateRow(fmt.Sprintf("durable log replay msg/s (%s messages)", fmtCount(float64(retained))), jr.replay, br.replay, peer),
		row{name: fmt.Sprintf("restart with %s retained (open + check)", fmtCount(float64(retained))),
			eg: fmtSeconds(jr.restart), peer: fmtSeconds(br.restart), peerName: peer, ratio: ratioOf(jr.restart, br.restart)},
	)
}

const boltVersion = "v1.5.0"

func rateRow(name string, eg, peer float64, peerName string) row {
	r := row{name: name, eg: fmtCount(eg), peerName: peerName}
	if peer > 0 {
		r.peer = fmtCount(peer)
		r.ratio = ratioOf(eg, peer)
	}
	return r
}

func fmtSeconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

// ratioOf is a/b for the table, or empty when there is no b.
func ratioOf(a, b float64) string {
	if b == 0 {
		return ""
	}
	return fmtRatio(a / b)
}
