package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/internal/backoff"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Header keys of the Subscribe stream (grpcapi.HeaderFirstSequence and
// grpcapi.HeaderSkipped; repeated here so that a workload does not link the server).
const (
	headerFirstSequence = "edgegate-first-sequence"
	headerSkipped       = "edgegate-skipped"
)

// Filter selects messages. Every part that is set must match; an empty part
// matches everything. Device and point patterns are globs (`*`, `?`, `[...]`).
type Filter struct {
	Devices   []string
	Points    []string
	Protocols []Protocol
	Labels    map[string]string
}

// SubscribeOption says where a subscription starts and how it is consumed.
type SubscribeOption func(*subOptions)

type subOptions struct {
	earliest bool
	after    uint64
	hasAfter bool
	consumer string
	budget   *pb.Budget
	shed     pb.ShedPolicy
}

// FromEarliest starts with every message the gateway still retains, then live.
func FromEarliest() SubscribeOption { return func(o *subOptions) { o.earliest = true } }

// After starts with the first retained message after seq (a position the caller
// kept), then live.
func After(seq uint64) SubscribeOption {
	return func(o *subOptions) { o.after, o.hasAfter = seq, true }
}

// Consumer makes the subscription a durable consumer: the gateway keeps its
// position, moved by Ack, across disconnects and gateway restarts, and a consumer
// that has a position continues after it whatever the start options say. A new
// consumer starts where they say. Needs the gateway's durable log.
func Consumer(name string) SubscribeOption { return func(o *subOptions) { o.consumer = name } }

// WithBudget asks the gateway to pace the stream at most at these rates (zero: the
// gateway's cap). Over budget, LOW and NORMAL messages are shed unless Hold or
// Latest is set; HIGH and CRITICAL ones wait for the budget, never shed.
func WithBudget(messagesPerSecond, bytesPerSecond float64) SubscribeOption {
	return func(o *subOptions) {
		o.budget = &pb.Budget{MessagesPerSecond: messagesPerSecond, BytesPerSecond: bytesPerSecond}
	}
}

// Hold makes every message wait for the budget instead of shedding LOW and NORMAL
// ones: nothing is lost, the stream falls behind. Hold and Latest exclude each
// other: the last one given counts.
func Hold() SubscribeOption { return func(o *subOptions) { o.shed = pb.ShedPolicy_SHED_POLICY_HOLD } }

// Latest keeps, over budget, the latest value of each LOW or NORMAL point instead
// of shedding it (SHED_POLICY_LATEST): a newer value of the point replaces it, and
// it is sent when the budget allows, so every point's last value arrives, late.
// Such a value keeps its sequence and so may arrive after messages with larger
// ones: with Latest, Recv returns each point's values in order, not the stream's.
// After a reconnect the stream resumes after the largest sequence delivered: a
// value the old stream still held back is not sent, the point's next one is.
func Latest() SubscribeOption {
	return func(o *subOptions) { o.shed = pb.ShedPolicy_SHED_POLICY_LATEST }
}

// Subscription delivers the messages that match its filter, each once and in
// sequence order (with Latest, in order per point), across lost connections and
// gateway restarts: after a failure it
// reconnects with backoff and resumes after the last sequence it delivered, and
// drops any message it already delivered. What it cannot repair is a gap the
// gateway no longer retains, which Stats counts as Skipped.
//
// Recv belongs to one goroutine; Close and Stats may be called from any.
type Subscription struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	req    *pb.SubscribeRequest // the first request; later ones resume
	opts   subOptions

	stream    grpc.ServerStreamingClient[pb.Message]
	streamEnd context.CancelFunc
	// last is the largest sequence delivered; resumeAfter is where to resume when
	// nothing was delivered yet but a stream had started (its first sequence - 1).
	last, resumeAfter uint64
	// seen is what a Latest stream treats as delivered already: last when the
	// stream opened. Within one stream, a smaller sequence than last is a value
	// the gateway held back, not a repeat.
	seen       uint64
	delivered  bool
	positioned bool
	pace       *backoff.Backoff // the reconnects in a row without a message in between
	err        error

	// acked is the highest sequence the caller acknowledged through Ack: a gateway
	// killed before it saved that position is told again on reconnect.
	acked atomic.Uint64

	reconnects atomic.Uint64
	duplicates atomic.Uint64
	skipped    atomic.Uint64
	received   atomic.Uint64
}

// Stats counts what a Subscription did.
type Stats struct {
	Received   uint64 // messages delivered to the caller
	Reconnects uint64 // streams reopened after a failure
	Duplicates uint64 // messages dropped because they had been delivered already
	Skipped    uint64 // messages the gateway no longer retained when a stream (re)started
}

// Subscribe returns a subscription to the messages that match f. It does not wait
// for the gateway: the first Recv opens the stream. The subscription ends when ctx
// ends or Close is called.
func (c *Client) Subscribe(ctx context.Context, f Filter, opts ...SubscribeOption) (*Subscription, error) {
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.earliest && o.hasAfter {
		return nil, errors.New("subscribe: FromEarliest and After exclude each other")
	}
	req := &pb.SubscribeRequest{
		Devices: f.Devices, Points: f.Points, Protocols: f.Protocols, Labels: f.Labels,
		Consumer: o.consumer, Budget: o.budget, Shed: o.shed,
	}
	switch {
	case o.earliest:
		req.Start = &pb.SubscribeRequest_FromEarliest{FromEarliest: true}
	case o.hasAfter:
		req.Start = &pb.SubscribeRequest_AfterSequence{AfterSequence: o.after}
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Subscription{c: c, ctx: ctx, cancel: cancel, req: req, opts: o, pace: backoff.New(c.backoff.policy())}, nil
}

// Close ends the subscription; a Recv blocked in another goroutine returns.
func (s *Subscription) Close() { s.cancel() }

// Stats returns the subscription's counters.
func (s *Subscription) Stats() Stats {
	return Stats{
		Received: s.received.Load(), Reconnects: s.reconnects.Load(),
		Duplicates: s.duplicates.Load(), Skipped: s.skipped.Load(),
	}
}

// Last is the largest sequence delivered (0 before any): the last message's,
// except that with Latest a held-back value may come after a larger one.
func (s *Subscription) Last() uint64 { return s.last }

// Ack acknowledges, for a durable consumer, every message up to and including seq.
func (s *Subscription) Ack(ctx context.Context, seq uint64) error {
	if s.opts.consumer == "" {
		return errors.New("ack: the subscription has no consumer name")
	}
	for {
		old := s.acked.Load()
		if seq <= old || s.acked.CompareAndSwap(old, seq) {
			break
		}
	}
	_, err := s.c.Ack(ctx, s.opts.consumer, seq)
	return err
}

// Recv returns the next message. It blocks across reconnects; it returns an error
// only when the subscription is over: its context ended or Close was called (the
// context's error), the gateway refused the request for good (an invalid filter, a
// consumer without a durable log...), or Backoff.MaxAttempts reconnects in a row
// failed.
func (s *Subscription) Recv() (*Message, error) {
	for {
		if s.err != nil {
			return nil, s.err
		}
		if s.stream == nil {
			if err := s.open(); err != nil {
				if !s.retry(err) {
					return nil, s.err
				}
				continue
			}
		}
		pm, err := s.stream.Recv()
		if err != nil {
			s.closeStream()
			if !s.retry(err) {
				return nil, s.err
			}
			continue
		}
		s.pace.Reset()
		seen := s.last
		if s.opts.shed == pb.ShedPolicy_SHED_POLICY_LATEST {
			seen = s.seen
		}
		if s.delivered && pm.GetSequence() <= seen {
			s.duplicates.Add(1)
			continue
		}
		s.last, s.delivered = max(s.last, pm.GetSequence()), true
		s.received.Add(1)
		return MessageOf(pm), nil
	}
}

// All iterates over the messages until the subscription ends; the final error, if
// the end was not the caller's (Close or its context), is yielded with a nil
// message.
func (s *Subscription) All() iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		for {
			m, err := s.Recv()
			if err != nil {
				if s.ctx.Err() == nil {
					yield(nil, err)
				}
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// open starts a stream that continues where the last one ended.
func (s *Subscription) open() error {
	req := s.req
	if s.delivered || s.positioned {
		// Resume: the gateway sends every retained message after the position.
		// A durable consumer with a saved position starts after that instead,
		// which is never later than what was delivered; the duplicates in between
		// are dropped in Recv.
		after := s.resumeAfter
		if s.delivered {
			after = s.last
		}
		r := proto.Clone(req).(*pb.SubscribeRequest)
		r.Start = &pb.SubscribeRequest_AfterSequence{AfterSequence: after}
		req = r
	}
	ctx, cancel := context.WithCancel(s.ctx)
	// WaitForReady: while the gateway restarts, wait for the connection instead of
	// failing at once; the context bounds the wait.
	stream, err := s.c.api.Subscribe(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		return err
	}
	md, err := stream.Header()
	if err != nil {
		cancel()
		return err
	}
	if md == nil {
		// No header: the stream ended before it began; its status says why.
		_, err := stream.Recv()
		cancel()
		if err == nil {
			err = status.Error(codes.Internal, "a message before the stream's header")
		}
		return err
	}
	if v := md.Get(headerSkipped); len(v) > 0 {
		if n, perr := strconv.ParseUint(v[0], 10, 64); perr == nil {
			s.skipped.Add(n)
		}
	}
	var first uint64
	if v := md.Get(headerFirstSequence); len(v) > 0 {
		first, _ = strconv.ParseUint(v[0], 10, 64)
	}
	if first > 0 && !s.delivered && !s.positioned {
		// A live stream that has delivered nothing yet still has a position: a
		// reconnect must not skip what was published while it was away.
		s.resumeAfter, s.positioned = first-1, true
	}
	if acked := s.acked.Load(); s.opts.consumer != "" && first > 0 && first-1 < acked {
		// The gateway saves positions now and then: one that was killed may have
		// lost the latest acknowledgements. Say them again (best effort: a failure
		// costs only redeliveries, which Recv drops).
		actx, acancel := context.WithTimeout(s.ctx, 5*time.Second)
		s.c.Ack(actx, s.opts.consumer, acked)
		acancel()
	}
	s.stream, s.streamEnd, s.seen = stream, cancel, s.last
	return nil
}

func (s *Subscription) closeStream() {
	if s.streamEnd != nil {
		s.streamEnd()
	}
	s.stream, s.streamEnd = nil, nil
}

// retry decides after a failure: it waits the backoff and reports true, or sets
// s.err and reports false.
func (s *Subscription) retry(err error) bool {
	if s.ctx.Err() != nil {
		s.err = s.ctx.Err()
		return false
	}
	if !retryable(err) {
		s.err = fmt.Errorf("subscribe: %w", err)
		return false
	}
	if n := s.c.backoff.MaxAttempts; n > 0 && s.pace.Failures() >= n {
		s.err = fmt.Errorf("subscribe: %d reconnects failed, the last: %w", n, err)
		return false
	}
	s.reconnects.Add(1)
	if err := s.pace.Wait(s.ctx); err != nil {
		s.err = err
		return false
	}
	return true
}

// policy is b as an internal/backoff policy. That package draws each wait below
// its bound, so ±Jitter around a wait d is a bound of d·(1+Jitter) of which the
// fraction 2·Jitter/(1+Jitter) is drawn: from d·(1−Jitter) to d·(1+Jitter).
func (b Backoff) policy() backoff.Policy {
	return backoff.Policy{
		Min:    time.Duration(float64(b.Min) * (1 + b.Jitter)),
		Max:    time.Duration(float64(b.Max) * (1 + b.Jitter)),
		Factor: b.Factor,
		Jitter: 2 * b.Jitter / (1 + b.Jitter),
	}
}

// retryable says whether a stream's end is worth a reconnect: the gateway went
// away or shed the subscriber, as opposed to refusing the request itself.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, // the gateway stopped, restarts, or cannot be reached
		codes.ResourceExhausted, // too slow, or too many subscribers for now
		codes.Aborted,
		codes.Internal, // a transport broken mid-stream
		codes.Unknown,
		codes.Canceled,         // by the server or the transport, not by us (checked first)
		codes.DeadlineExceeded: // a deadline of the server's
		return true
	}
	return false
}
