package bridge

import "context"

// Receipt says when a batch that Submit accepted is durable. The zero Receipt is
// durable at once (no journal, or nothing of the batch to write).
//
// Receipts of one caller become durable in the order it submitted them: the journal
// writes in sequence order, and a batch that the reporting stage held or suppressed
// waits for everything submitted before it. So an adapter that acknowledges in the
// order receipts become ready acknowledges in the order the device sent.
type Receipt struct {
	seq uint64
	j   Journal
}

// Sequence is the sequence the receipt waits for (0 for the zero Receipt).
func (r Receipt) Sequence() uint64 { return r.seq }

// Wait returns once the batch is durable, or with the error that says it never will
// be (wrapping ErrUnavailable or ErrClosed), or ctx's error.
func (r Receipt) Wait(ctx context.Context) error {
	for {
		ready, moved, err := r.Ready()
		if ready {
			return err
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready says without waiting whether the batch is durable (true, nil) or never will
// be (true, the error). When it is not ready yet, moved is closed once that may
// have changed: one goroutine can wait for many receipts on it.
func (r Receipt) Ready() (ready bool, moved <-chan struct{}, err error) {
	if r.j == nil || r.seq == 0 {
		return true, nil, nil
	}
	moved = r.j.Moved() // before looking: a commit after the look closes it
	if done, err := r.j.Check(r.seq); done || err != nil {
		return true, nil, err
	}
	return false, moved, nil
}

// Submit accepts messages like Publish but returns as soon as they are ordered and
// visible to subscribers, without waiting for the durable log: the Receipt says
// when they are on disk. An adapter acknowledges the device once the receipt is
// ready (Wait, or Ready for many at once), and may meanwhile read the device's next
// message: that is what lets one connection pipeline.
func (in *Ingest) Submit(ctx context.Context, msgs ...*Message) (Receipt, error) {
	last, n, err := in.accept(ctx, msgs)
	if err != nil {
		return Receipt{}, err
	}
	j := in.hub.cfg.Journal
	if j == nil {
		return Receipt{}, nil
	}
	if n == 0 {
		// Nothing of this batch goes to disk now (the reporting stage suppressed or
		// held it), but it may be acknowledged only after what its device sent
		// before: wait for everything published so far.
		return in.hub.Barrier(), nil
	}
	return Receipt{seq: last, j: j}, nil
}

// Barrier is the hub's Barrier, for adapters (protocols.Sink).
func (in *Ingest) Barrier() Receipt { return in.hub.Barrier() }

// Barrier returns a receipt that is ready once everything published so far is
// durable. An adapter that must acknowledge something the hub never saw (a message
// on a topic that is not a device's, a refusal) after what came before it on the
// same connection waits for it.
func (h *Hub) Barrier() Receipt {
	j := h.cfg.Journal
	if j == nil {
		return Receipt{}
	}
	return Receipt{seq: h.head.Load(), j: j}
}
