package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/protocols/payload"
	"github.com/edgegate/edgegate/protocols/sparkplug"
)

// isSparkplugTopic reports a topic in the Sparkplug B namespace.
func isSparkplugTopic(topic string) bool {
	return strings.HasPrefix(topic, sparkplug.Namespace+"/")
}

// sparkplugPublish is OnPublish for a topic in the Sparkplug B namespace, with
// mqtt.sparkplug enabled. Readings take the path of every other reading: Submit, then
// the acknowledgement once they are on disk (ack.go); a bad payload or a bound is
// refused as a bad JSON payload is (hook.refuse). A message that carries no reading
// (a command, a STATE, a DATA before its BIRTH) is brokered and acknowledged as usual.
func (h *hook) sparkplugPublish(cl *mochi.Client, st *ackState, pk packets.Packet) (packets.Packet, error) {
	passOn := func() (packets.Packet, error) {
		if pk.FixedHeader.Qos == 0 {
			return pk, nil
		}
		return h.deliverAndAck(cl, st, pk, h.sink.Barrier(), ackFor(pk))
	}
	t, err := sparkplug.ParseTopic(pk.TopicName)
	if errors.Is(err, sparkplug.ErrNotSparkplug) {
		return passOn() // spBv1.0/STATE/...: a host application's
	}
	var o spOutcome
	if err != nil {
		o.invalid = fmt.Errorf("%w: %w", sparkplug.ErrInvalidPayload, err)
	} else {
		o = h.a.sp.handle(h.a.cur(), t, pk.Payload, time.Now())
	}
	if o.rebirth != "" {
		h.requestRebirth(t, o.rebirth)
	}
	switch {
	case o.invalid != nil:
		h.sparkplugInvalid(cl, pk, o)
		return h.refuse(cl, st, pk, packets.ErrPayloadFormatInvalid, o.invalid)
	case o.refused != nil:
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: sparkplug message refused", "node", t.EdgeNode, "group", t.Group,
			"topic", pk.TopicName, "client", cl.ID, "error", o.refused)
		return h.refuse(cl, st, pk, packets.ErrQuotaExceeded, o.refused)
	case len(o.msgs) == 0:
		h.sparkplugStates(cl, o)
		return passOn()
	}
	res, receipt, err := submit(h.ctx, h.sink, o.msgs)
	h.a.metrics.publishes.WithLabelValues(res).Inc()
	switch res {
	case resultAccepted:
		h.sparkplugStates(cl, o)
		if pk.FixedHeader.Qos == 0 {
			return pk, nil
		}
		return h.deliverAndAck(cl, st, pk, receipt, ackFor(pk))
	case resultInvalid:
		o.invalid = err
		h.sparkplugInvalid(cl, pk, o)
		return h.refuse(cl, st, pk, packets.ErrPayloadFormatInvalid, err)
	case resultRefused:
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: publish refused by the bridge", "device", o.device,
			"topic", pk.TopicName, "client", cl.ID, "error", err)
		return h.refuse(cl, st, pk, refusalCode(err), err)
	default: // resultUnavailable
		if st != nil {
			h.acks.release(cl, st)
		}
		return h.unavailable(cl, pk, err)
	}
}

// sparkplugInvalid counts and logs a bad Sparkplug message.
func (h *hook) sparkplugInvalid(cl *mochi.Client, pk packets.Packet, o spOutcome) {
	h.a.metrics.badPayloads.Inc()
	h.a.sp.m.badPayloads.Inc()
	if o.device != "" && payload.ValidName(o.device) == nil {
		h.sink.Invalid(o.device, o.invalid)
	}
	limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: bad sparkplug payload", "device", o.device, "topic", pk.TopicName,
		"client", cl.ID, "error", o.invalid)
}

// sparkplugStates records births (connected, spoken for by cl) and deaths.
func (h *hook) sparkplugStates(cl *mochi.Client, o spOutcome) {
	for _, id := range o.dead {
		h.a.presence.dead(id)
	}
	if cl == nil {
		return
	}
	for _, id := range o.born {
		h.a.presence.seen(cl, id)
	}
	if len(o.born) == 0 && len(o.dead) == 0 && len(o.msgs) > 0 {
		// A DATA: its device speaks through cl (a takeover by another connection).
		h.a.presence.seen(cl, o.msgs[0].Device)
	}
}

// sparkplugWill takes a will on a Sparkplug topic: an edge node's NDEATH, which the
// broker publishes for it when its connection ends without a DISCONNECT. Nobody is
// left to acknowledge, so a refusal is only counted and logged.
func (h *hook) sparkplugWill(cl *mochi.Client, pk packets.Packet) {
	t, err := sparkplug.ParseTopic(pk.TopicName)
	if errors.Is(err, sparkplug.ErrNotSparkplug) || len(pk.Payload) == 0 {
		return
	}
	var o spOutcome
	if err != nil {
		o.invalid = fmt.Errorf("%w: %w", sparkplug.ErrInvalidPayload, err)
	} else {
		o = h.a.sp.handle(h.a.cur(), t, pk.Payload, time.Now())
	}
	if o.rebirth != "" {
		h.requestRebirth(t, o.rebirth)
	}
	switch {
	case o.invalid != nil:
		h.sparkplugInvalid(cl, pk, o)
		return
	case o.refused != nil:
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: sparkplug will refused", "node", t.EdgeNode, "topic", pk.TopicName,
			"client", cl.ID, "error", o.refused)
		return
	}
	if len(o.msgs) > 0 {
		res, _, err := submit(h.ctx, h.sink, o.msgs)
		h.a.metrics.publishes.WithLabelValues(res).Inc()
		if res != resultAccepted && h.ctx.Err() == nil {
			limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: sparkplug will not taken by the bridge", "device", o.device,
				"topic", pk.TopicName, "client", cl.ID, "error", err)
		}
	}
	h.sparkplugStates(nil, o)
}

// requestRebirth publishes an NCMD Node Control/Rebirth to an edge node (QoS 0, as
// Sparkplug commands are).
func (h *hook) requestRebirth(t sparkplug.Topic, reason string) {
	topic := sparkplug.Topic{Group: t.Group, Type: sparkplug.NCMD, EdgeNode: t.EdgeNode}.String()
	limitedLog(h.a.log, h.a.lim, slog.LevelInfo, "mqtt: sparkplug rebirth requested", "node", t.EdgeNode, "group", t.Group,
		"reason", reason)
	if err := h.srv.Publish(topic, sparkplug.RebirthRequest(time.Now()), false, 0); err != nil {
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: sparkplug rebirth request not published", "topic", topic, "error", err)
	}
}

// publishState publishes the host application's retained STATE (Sparkplug 3.0):
// online at start, offline at stop. The broker runs in the gateway's process, so a
// will would never be sent before the broker itself is gone; the offline STATE is
// published on shutdown instead (docs/sparkplug.md).
//
// Offline, it waits a moment (at most stateFlushWait) for the broker's writers to
// send it to the subscribers before the broker closes their connections: mochi
// queues a delivery, and closing a connection drops what is queued.
func (a *Adapter) publishState(srv *mochi.Server, online bool) {
	topic := sparkplug.StateTopic(a.cfg.Sparkplug.HostID)
	subs := srv.Topics.Subscribers(topic)
	want := atomic.LoadInt64(&srv.Info.MessagesSent) + int64(len(subs.Subscriptions)+len(subs.Shared))
	if err := srv.Publish(topic, stateMessage(online, time.Now()), true, 1); err != nil {
		a.log.Warn("mqtt: sparkplug STATE not published", "topic", topic, "online", online, "error", err)
		return
	}
	if online {
		return
	}
	for deadline := time.Now().Add(stateFlushWait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if atomic.LoadInt64(&srv.Info.MessagesSent) >= want {
			return
		}
	}
}

// stateFlushWait bounds the wait for the offline STATE to reach the subscribers.
const stateFlushWait = 500 * time.Millisecond
