package functions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// batchBuffers recycles the buffers batches are encoded in.
var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBuffer: larger buffers are left to the garbage collector.
const maxPooledBuffer = 1 << 20

// runWASM hands the batch's matching messages to the module, each to the
// instance of its device's shard, max_batch at a time, and applies each output:
// drops, added messages (after the batch), writes. A chunk that fails leaves its
// messages unchanged.
func (p *Pipeline) runWASM(ctx context.Context, f *function, s *sink, batch []*bridge.Message) []*bridge.Message {
	shards := len(f.pool.shards)
	// idx[shard] lists the positions in batch of the shard's matching messages.
	var idx [][]int
	n := 0
	for i, m := range batch {
		if !f.match.Match(m) {
			continue
		}
		if idx == nil {
			idx = make([][]int, shards)
		}
		sh := f.pool.shard(m.Device)
		idx[sh] = append(idx[sh], i)
		n++
	}
	if n == 0 {
		return batch
	}
	start := time.Now()
	defer f.m.since(start)
	f.m.evaluations.Add(float64(n))
	var dropped map[int]bool
	var added []*bridge.Message
	chunk := make([]*bridge.Message, 0, min(n, f.cfg.WASM.MaxBatch))
	for sh, positions := range idx {
		for lo := 0; lo < len(positions); lo += f.cfg.WASM.MaxBatch {
			part := positions[lo:min(lo+f.cfg.WASM.MaxBatch, len(positions))]
			chunk = chunk[:0]
			for _, i := range part {
				chunk = append(chunk, batch[i])
			}
			out, reason, err := p.callWASM(ctx, f, sh, chunk)
			if err != nil {
				p.fail(f, chunk[0], len(chunk), reason, err)
				continue
			}
			for _, d := range out.drop {
				if dropped == nil {
					dropped = map[int]bool{}
				}
				if i := part[d]; !dropped[i] {
					dropped[i] = true
					f.m.drops.Inc()
				}
			}
			for _, m := range out.messages {
				m.Protocol = s.protocol
				if m.Labels == nil {
					m.Labels = make(map[string]string, 1)
				}
				m.Labels[labelDerivedFrom] = f.cfg.Name
				added = append(added, m)
				f.m.emits.Inc()
			}
			for _, w := range out.writes {
				p.queueWrite(f, w)
			}
		}
	}
	if dropped == nil && added == nil {
		return batch
	}
	res := make([]*bridge.Message, 0, len(batch)-len(dropped)+len(added))
	for i, m := range batch {
		if !dropped[i] {
			res = append(res, m)
		}
	}
	return append(res, added...)
}

// callWASM runs one chunk through an instance under the function's deadline, and
// checks the output against the chunk. On failure it says why, as a failure
// reason; an instance that failed is closed, and its slot instantiated afresh for
// the next chunk.
func (p *Pipeline) callWASM(ctx context.Context, f *function, shard int, chunk []*bridge.Message) (*output, string, error) {
	bp := batchBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledBuffer {
			batchBuffers.Put(bp)
		}
	}()
	in := encodeBatch((*bp)[:0], chunk)
	*bp = in
	cctx, cancel := context.WithTimeout(ctx, f.cfg.WASM.Timeout)
	defer cancel()
	inst, err := f.pool.get(shard, cctx, ctx)
	if err != nil {
		if errors.Is(err, errPoolClosed) || ctx.Err() != nil {
			return nil, reasonClosed, err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, reasonTimeout, fmt.Errorf("the instance was busy for the whole timeout (%v): %w", f.cfg.WASM.Timeout, err)
		}
		return nil, reasonError, err
	}
	raw, err := inst.call(cctx, in)
	if err != nil {
		f.pool.put(shard, inst, false)
		switch {
		case ctx.Err() != nil:
			return nil, reasonClosed, err
		case cctx.Err() != nil:
			return nil, reasonTimeout, fmt.Errorf("stopped at its deadline (%v): %w", f.cfg.WASM.Timeout, err)
		}
		return nil, reasonError, err
	}
	// Decoded before the instance is lent again: raw is a view of its memory.
	out, err := decodeOutput(raw)
	f.pool.put(shard, inst, true)
	if err != nil {
		return nil, reasonResult, err
	}
	if out.err != "" {
		return nil, reasonError, fmt.Errorf("the module reported: %s", out.err)
	}
	if err := checkWASMOutput(f, chunk, out); err != nil {
		return nil, reasonResult, err
	}
	return out, "", nil
}

// checkWASMOutput checks an output against its chunk: drops in range, added messages
// only for the chunk's devices (a function derives; it does not speak for other
// devices, which may belong to another protocol), writes only when allowed.
func checkWASMOutput(f *function, chunk []*bridge.Message, out *output) error {
	for _, d := range out.drop {
		if int(d) >= len(chunk) {
			return fmt.Errorf("%w: drop: index %d is out of range (batch of %d)", errOutput, d, len(chunk))
		}
	}
	if len(out.messages) > 0 {
		devices := make(map[string]bool, 4)
		for _, m := range chunk {
			devices[m.Device] = true
		}
		for i, m := range out.messages {
			if !devices[m.Device] {
				return fmt.Errorf("%w: messages[%d]: device %q is not in the batch", errOutput, i, m.Device)
			}
		}
	}
	if len(out.writes) > 0 && !f.cfg.WASM.AllowWrites {
		f.m.writeDropped.Add(float64(len(out.writes)))
		return fmt.Errorf("%w: %d writes, but allow_writes is false", errOutput, len(out.writes))
	}
	return nil
}
