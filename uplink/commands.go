package uplink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Commands: the gateway pulls from its durable consumer on EDGEGATE_CMD, one
// small batch at a time, and handles each command to its end (result published,
// message acknowledged) before the next. A command runs at most once:
//
//  1. its id is looked up among those already started: if there, the stored
//     result is published again and the message acknowledged, and nothing runs;
//  2. an expired or malformed command is refused with a result;
//  3. otherwise the id is saved (fsync) as started, the write runs through the
//     hub, the result is saved (fsync), published, flushed, and then the message
//     is acknowledged.
//
// A crash between 3's first save and its result leaves a started id without a
// result: the redelivery answers it with UNKNOWN ("may or may not have been
// applied") rather than risk running it twice.

// fetchWait is how long one pull request waits for commands.
const fetchWait = 5 * time.Second

// fetchBatch is how many commands one pull asks for.
const fetchBatch = 8

// consumerMaxAckPending bounds the commands delivered and not yet acknowledged
// when the gateway creates its consumer: only these can be delivered again, so
// max_command_ids far above it loses no protection.
const consumerMaxAckPending = 32

// commands runs the command loop of one session until ctx ends. The hub lacking
// the stream or refusing the consumer is logged and tried again: data forwarding
// does not depend on it.
func (u *Uplink) commands(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, did *atomic.Bool) error {
	var cons jetstream.Consumer
	for attempt := 0; cons == nil; attempt++ {
		c, err := u.consumer(ctx, js)
		if err == nil {
			cons = c
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		d := Backoff(u.cfg.ReconnectMin, u.cfg.ReconnectMax, attempt)
		u.log.Warn("uplink: no command consumer; commands wait", "err", err, "retry_in", d.Round(time.Millisecond))
		u.setError(err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, fetchWait)
		batch, err := cons.Fetch(fetchBatch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetching commands: %w", err)
		}
		for m := range batch.Messages() {
			u.handle(ctx, nc, m)
			did.Store(true)
		}
		cancel()
		if err := batch.Error(); err != nil && ctx.Err() == nil &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("fetching commands: %w", err)
		}
	}
	return nil
}

// consumer finds the gateway's durable consumer, creating it when missing.
func (u *Uplink) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	name := ConsumerName(u.id)
	c, err := js.Consumer(ctx, CommandStream, name)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", name, CommandStream, err)
	}
	c, err = js.CreateConsumer(ctx, CommandStream, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "edgegate " + u.id + ": commands",
		FilterSubject: CommandSubject(u.id),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       u.cfg.CommandAckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: consumerMaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on stream %s: %w", name, CommandStream, err)
	}
	u.log.Info("uplink: created the command consumer", "stream", CommandStream, "consumer", name)
	return c, nil
}

// handle takes one command to its end.
func (u *Uplink) handle(ctx context.Context, nc *nats.Conn, msg jetstream.Msg) {
	cmd, derr := u.codec.decodeCommand(msg.Data(), msg.Headers().Get(HeaderExpires))
	id := commandID(cmd, msg)
	rec, seen := u.exec.get(id)
	if seen && cmd != nil && rec.Device == "" {
		rec.Device, rec.Point, rec.RequestID = cmd.req.GetDevice(), cmd.req.GetPoint(), cmd.req.GetRequestId()
	}
	outcome := "repeated"
	switch {
	case seen && !rec.Done:
		rec.Done, rec.Code, rec.At = true, int32(codes.Unknown), u.now()
		rec.Error = "the gateway stopped while this command ran: it was not run again, and may or may not have been applied"
		outcome = "interrupted"
		if err := u.exec.record(rec); err != nil {
			u.log.Error("uplink: saving a command result", "id", id, "err", err)
			return
		}
	case seen:
	default:
		rec = cmdRecord{ID: id, At: u.now()}
		if cmd != nil {
			rec.Device, rec.Point, rec.RequestID = cmd.req.GetDevice(), cmd.req.GetPoint(), cmd.req.GetRequestId()
		}
		switch {
		case derr != nil:
			rec.Code, rec.Error, outcome = int32(codes.InvalidArgument), derr.Error(), "refused"
		case !cmd.expires.IsZero() && !u.now().Before(cmd.expires):
			rec.Code, outcome = int32(codes.DeadlineExceeded), "refused"
			rec.Error = fmt.Sprintf("%v at %s: not executed", errExpired, cmd.expires.Format(time.RFC3339Nano))
		default:
			// Saved before it runs: a crash from here on never runs it again.
			if err := u.exec.record(rec); err != nil {
				u.log.Error("uplink: saving a command id; not running it", "id", id, "err", err)
				msg.NakWithDelay(u.cfg.ReconnectMax)
				return
			}
			// The write finishes even when the gateway is stopping, within its timeout.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.cfg.CommandTimeout)
			err := u.writer.Write(wctx, cmd.req.GetDevice(), cmd.req.GetPoint(), cmd.value)
			cancel()
			rec.Code, rec.Error, outcome = resultCode(err), "", "executed"
			if err != nil {
				rec.Error, outcome = err.Error(), "failed"
				u.log.Info("uplink: command failed", "id", id, "device", rec.Device, "point", rec.Point, "err", err)
			}
		}
		rec.Done = true
		if err := u.exec.record(rec); err != nil {
			u.log.Error("uplink: saving a command result", "id", id, "err", err)
		}
	}
	u.m.commands.WithLabelValues(outcome).Inc()
	if err := u.publishResult(ctx, nc, rec); err != nil {
		// Not acknowledged: the hub delivers it again, and the stored result is
		// published then.
		u.log.Warn("uplink: publishing a command result", "id", id, "err", err)
		return
	}
	var err error
	if derr != nil && !seen {
		err = msg.Term()
	} else {
		err = msg.Ack()
	}
	if err != nil {
		u.log.Warn("uplink: acknowledging a command", "id", id, "err", err)
	}
}

// commandID is what identifies a command across deliveries: its request_id,
// else its Nats-Msg-Id, else its place in the stream (sequence and time, so that
// a stream created again does not collide with the old one).
func commandID(cmd *command, msg jetstream.Msg) string {
	if cmd != nil && cmd.req.GetRequestId() != "" {
		return "req:" + cmd.req.GetRequestId()
	}
	if id := msg.Headers().Get(HeaderMsgID); id != "" && len(id) <= maxIDLen {
		return "msg:" + id
	}
	if meta, err := msg.Metadata(); err == nil {
		return "seq:" + strconv.FormatUint(meta.Sequence.Stream, 10) + "@" + strconv.FormatInt(meta.Timestamp.UnixNano(), 10)
	}
	return "reply:" + msg.Reply()
}

// publishResult publishes a command's WriteResponse and waits until the hub has it.
func (u *Uplink) publishResult(ctx context.Context, nc *nats.Conn, rec cmdRecord) error {
	resp := &pb.WriteResponse{Device: rec.Device, Point: rec.Point, RequestId: rec.RequestID, Code: rec.Code, Error: rec.Error}
	if resp.RequestId == "" {
		resp.RequestId = rec.ID
	}
	data, err := u.codec.marshal(resp)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: ResultSubject(u.id), Data: data,
		Header: nats.Header{HeaderMsgID: []string{u.id + ":result:" + rec.ID}}}
	if err := nc.PublishMsg(m); err != nil {
		return err
	}
	d := u.cfg.AckTimeout
	if ctx.Err() != nil {
		d = min(d, time.Second) // stopping: the gateway's shutdown_timeout is running
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	return nc.FlushWithContext(fctx)
}

// resultCode is the gRPC code of a write's error, as the Write RPC reports it.
func resultCode(err error) int32 {
	if err == nil {
		return int32(codes.OK)
	}
	if s, ok := status.FromError(err); ok {
		return int32(s.Code())
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return int32(codes.DeadlineExceeded)
	case errors.Is(err, context.Canceled):
		return int32(codes.Canceled)
	case errors.Is(err, bridge.ErrUnknownDevice), errors.Is(err, bridge.ErrUnknownPoint):
		return int32(codes.NotFound)
	case errors.Is(err, bridge.ErrNoWriter):
		return int32(codes.FailedPrecondition)
	case errors.Is(err, bridge.ErrInvalidMessage):
		return int32(codes.InvalidArgument)
	}
	return int32(codes.Unavailable)
}
