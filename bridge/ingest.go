package bridge

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalidMessage is wrapped by every refusal of a malformed message.
var ErrInvalidMessage = errors.New("invalid message")

// Ingest is how one adapter hands messages to the hub: it stamps the adapter's
// protocol, checks each message, keeps the device registry and counts.
type Ingest struct {
	hub      *Hub
	protocol Protocol
}

// Ingest returns the entry point for one protocol's adapter.
func (h *Hub) Ingest(p Protocol) *Ingest { return &Ingest{hub: h, protocol: p} }

// Protocol is the protocol this Ingest stamps.
func (in *Ingest) Protocol() Protocol { return in.protocol }

// Publish accepts messages in order, as one batch with consecutive sequences. It
// refuses the whole batch when any message is invalid or would overflow the
// registry, so that a device sees all of a multi-point payload or none of it.
// When Publish returns nil the messages are ordered and visible to subscribers, and
// with a journal, on disk: only then may the adapter acknowledge them to the device.
//
// The reporting rules (SetReporting) apply first: a message they suppress is
// accepted and counted but not published, and one that sampling holds is published
// when its interval ends (RunReporting), unless a newer value of its point replaces
// it first. Those are acknowledged at once: nothing of theirs is on disk yet.
func (in *Ingest) Publish(ctx context.Context, msgs ...*Message) error {
	r, err := in.Submit(ctx, msgs...)
	if err != nil {
		return err
	}
	// The caller acknowledges the device when we return: only once it is on disk.
	return r.Wait(ctx)
}

// accept validates, registers and publishes a batch (through the reporting stage).
// It returns the batch's last sequence and how many of its messages were published
// now.
func (in *Ingest) accept(ctx context.Context, msgs []*Message) (uint64, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	now := in.hub.cfg.Now()
	for _, m := range msgs {
		m.Protocol = in.protocol
		m.Labels = mergeLabels(in.hub.cfg.Labels, m.Labels)
		if err := validate(m); err != nil {
			in.hub.metrics.rejected.WithLabelValues(in.protocol.String(), "invalid").Inc()
			return 0, 0, err
		}
	}
	// The registry takes the batch whole or not at all. It is not undone when the
	// hub refuses the batch below, which happens only once the hub is closed or the
	// durable log is unavailable.
	devs, err := in.hub.reg.observe(msgs, now)
	if err != nil {
		reason := "limit"
		if !errors.Is(err, ErrTooManyDevices) && !errors.Is(err, ErrTooManyPoints) {
			reason = "conflict"
		}
		in.hub.metrics.rejected.WithLabelValues(in.protocol.String(), reason).Inc()
		return 0, 0, err
	}
	for i, m := range msgs {
		m.dev = devs[i]
	}
	last, n, err := in.hub.rep.publish(in.hub, msgs, now)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			in.hub.metrics.rejected.WithLabelValues(in.protocol.String(), "unavailable").Inc()
		}
		return 0, 0, err
	}
	for _, d := range devs {
		d.in.Inc()
	}
	return last, n, nil
}

// State records a device's connection state, and the error that caused it if any.
func (in *Ingest) State(device string, s DeviceState, cause error) {
	_ = in.hub.reg.setState(device, in.protocol, s, cause, in.hub.cfg.Now())
}

// Latest returns the newest message of one of this protocol's points from the
// hub's last-value cache, so that an adapter can answer a device's read (CoAP GET)
// without a cache of its own.
func (in *Ingest) Latest(device, point string) (*Message, bool) {
	m, ok := in.hub.Latest(device, point)
	if !ok || m.Protocol != in.protocol {
		return nil, false
	}
	return m, true
}

// Declare registers a configured device and its points before any reading arrives.
func (in *Ingest) Declare(device string, points ...string) error {
	return in.hub.reg.addPoints(device, in.protocol, points, in.hub.cfg.Now())
}

// Invalid counts a payload from a device that did not decode.
func (in *Ingest) Invalid(device string, cause error) {
	in.hub.reg.invalid(device, in.protocol, cause, in.hub.cfg.Now())
}

// MaxNameLen bounds device and point names, which often come from the network.
const MaxNameLen = 256

func validate(m *Message) error {
	switch {
	case m.Device == "":
		return fmt.Errorf("%w: empty device", ErrInvalidMessage)
	case m.Point == "":
		return fmt.Errorf("%w: device %q: empty point", ErrInvalidMessage, m.Device)
	case len(m.Device) > MaxNameLen || len(m.Point) > MaxNameLen:
		return fmt.Errorf("%w: device or point name longer than %d bytes", ErrInvalidMessage, MaxNameLen)
	case !utf8.ValidString(m.Device) || !utf8.ValidString(m.Point):
		return fmt.Errorf("%w: device or point name is not UTF-8", ErrInvalidMessage)
	case !utf8.ValidString(m.Unit):
		// Like a string value below: the wire would refuse it later, per subscriber.
		return fmt.Errorf("%w: device %q point %q: unit is not UTF-8", ErrInvalidMessage, m.Device, m.Point)
	case m.Value.IsZero():
		return fmt.Errorf("%w: device %q point %q: no value", ErrInvalidMessage, m.Device, m.Point)
	}
	if s, ok := m.Value.AsString(); ok && !utf8.ValidString(s) {
		// protobuf strings must be UTF-8; the wire would refuse it later, per subscriber.
		return fmt.Errorf("%w: device %q point %q: string value is not UTF-8", ErrInvalidMessage, m.Device, m.Point)
	}
	for k, v := range m.Labels {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: device %q point %q: label is not UTF-8", ErrInvalidMessage, m.Device, m.Point)
		}
	}
	return nil
}

// mergeLabels adds the static labels to a message's own. Without labels of its own
// the message shares the static map, which nobody modifies.
func mergeLabels(static, own map[string]string) map[string]string {
	switch {
	case len(static) == 0:
		return own
	case len(own) == 0:
		return static
	}
	out := make(map[string]string, len(static)+len(own))
	for k, v := range static {
		out[k] = v
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}
