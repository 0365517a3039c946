package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
)

// labelTopic is the protocol fact every MQTT message carries: the topic it came on.
const labelTopic = "topic"

// ingest decodes a publish on a device topic and hands its readings to the bridge as
// one batch, so that a device sees all of an object of points accepted or none. It
// returns the result class (resultAccepted, resultInvalid, resultRefused or
// resultUnavailable), the receipt that says when an accepted batch is on disk, and
// the cause of anything else. It never waits for the disk.
//
// cache, when not nil, is the publishing connection's: its messages on one topic
// share a labels map.
func (a *Adapter) ingest(ctx context.Context, sink protocols.Sink, m topicMatch, pk packets.Packet, cache *labelCache) (string, bridge.Receipt, error) {
	var none bridge.Receipt
	lv := a.cur()
	if err := payload.ValidName(m.device); err != nil {
		return resultInvalid, none, fmt.Errorf("%w: device name in the topic: %w", payload.ErrInvalidPayload, err)
	}
	var readings []payload.Reading
	switch m.kind {
	case topicPoint:
		if err := payload.ValidName(m.point); err != nil {
			return resultInvalid, none, fmt.Errorf("%w: point name in the topic: %w", payload.ErrInvalidPayload, err)
		}
		r, err := lv.decoder.Decode(pk.Payload)
		if err != nil {
			return resultInvalid, none, fmt.Errorf("point %q: %w", m.point, err)
		}
		r.Point = m.point
		readings = []payload.Reading{r}
	case topicObject:
		rs, err := lv.decoder.DecodeObject(pk.Payload)
		if err != nil {
			return resultInvalid, none, err
		}
		readings = rs
	}

	dev := lv.devices[m.device]
	labels := cache.get(lv, pk.TopicName)
	if labels == nil {
		labels = make(map[string]string, len(dev.labels)+1)
		for k, v := range dev.labels {
			labels[k] = v
		}
		labels[labelTopic] = pk.TopicName
		cache.put(lv, pk.TopicName, labels)
	}
	msgs := make([]*bridge.Message, len(readings))
	for i, r := range readings {
		pt := dev.points[r.Point]
		unit := r.Unit
		if unit == "" {
			unit = pt.unit
		}
		msgs[i] = &bridge.Message{
			Device:     m.device,
			Point:      r.Point,
			Value:      r.Value,
			Quality:    r.Quality,
			SourceTime: r.SourceTime,
			Unit:       unit,
			Labels:     labels, // shared: the messages are immutable once published
			Priority:   pt.priority,
		}
	}
	return submit(ctx, sink, msgs)
}

// submit hands a batch to the bridge and classifies the outcome as ingest does.
func submit(ctx context.Context, sink protocols.Sink, msgs []*bridge.Message) (string, bridge.Receipt, error) {
	var none bridge.Receipt
	r, err := sink.Submit(ctx, msgs...)
	switch {
	case err == nil:
		return resultAccepted, r, nil
	case errors.Is(err, bridge.ErrInvalidMessage):
		return resultInvalid, none, err
	case errors.Is(err, bridge.ErrClosed), errors.Is(err, bridge.ErrUnavailable), ctx.Err() != nil:
		return resultUnavailable, none, err
	default:
		// Registry limits, or a device id that another protocol owns: retrying the
		// same message will not help.
		return resultRefused, none, err
	}
}

// labelCache holds the labels of a connection's latest device topic. A message's
// labels are the device's configured ones plus its topic, the same for every message
// on that topic until a reload; and the messages are immutable once published, their
// labels map with them, so the messages of one topic can share one map rather than
// each building its own (a device publishes on the same topic again and again).
// Safe for concurrent use; the nil cache holds nothing.
type labelCache struct {
	last atomic.Pointer[labelEntry]
}

type labelEntry struct {
	lv     *live // the config the labels were made from
	topic  string
	labels map[string]string // read-only
}

// get returns the labels of a message on topic under lv, or nil if the cache does
// not hold them.
func (c *labelCache) get(lv *live, topic string) map[string]string {
	if c == nil {
		return nil
	}
	if e := c.last.Load(); e != nil && e.lv == lv && e.topic == topic {
		return e.labels
	}
	return nil
}

// put remembers the labels of a message on topic under lv.
func (c *labelCache) put(lv *live, topic string, labels map[string]string) {
	if c != nil {
		c.last.Store(&labelEntry{lv: lv, topic: topic, labels: labels})
	}
}

// refusalCode is the MQTT v5 reason code for a permanent refusal by the bridge.
func refusalCode(err error) packets.Code {
	if errors.Is(err, bridge.ErrTooManyDevices) || errors.Is(err, bridge.ErrTooManyPoints) {
		return packets.ErrQuotaExceeded
	}
	return packets.ErrImplementationSpecificError
}

// clip bounds a reason string; MQTT reason strings are for diagnostics only.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
