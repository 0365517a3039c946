package mqtt

import (
	"context"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/protocols/ratelog"
)

// limiter is the shared token bucket for log lines (protocols/ratelog): a device
// cannot flood the log.
type limiter = ratelog.Limiter

func newLimiter(perSecond float64, burst int, dropped prometheus.Counter) *limiter {
	return ratelog.New(perSecond, burst, dropped)
}

// limitedLog logs through the adapter's limiter.
func limitedLog(log *slog.Logger, lim *limiter, level slog.Level, msg string, args ...any) {
	lim.Log(log, level, msg, args...)
}

// redactPackets wraps the handler of mochi's logger so that no secret reaches the log.
// mochi v2.7.9 logs whole packets as attributes: at WARN "error processing packet"
// with any packet a client sent out of turn (a second CONNECT: its username and
// password, base64 in JSON, a byte list in text), at DEBUG the publishes it failed to
// write or that a hook rejected (their payloads: a write to a device may carry an
// unlock code), and at ERROR a will it could not process. Each such value becomes a
// summary of the fields that say what happened (type, ids, topic, sizes), and any
// other byte slice its length. Our own lines never log a password, a payload or
// authentication data in the first place.
func redactPackets(h slog.Handler) slog.Handler { return redactor{h} }

type redactor struct{ slog.Handler }

func (r redactor) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.Handler.Handle(ctx, out)
}

func (r redactor) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a)
	}
	return redactor{r.Handler.WithAttrs(out)}
}

func (r redactor) WithGroup(name string) slog.Handler { return redactor{r.Handler.WithGroup(name)} }

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, g := range group {
			out[i] = redactAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
	switch x := v.Any().(type) {
	case packets.Packet:
		return slog.Attr{Key: a.Key, Value: packetSummary(&x)}
	case *packets.Packet:
		if x != nil {
			return slog.Attr{Key: a.Key, Value: packetSummary(x)}
		}
	case mochi.Will:
		return slog.Attr{Key: a.Key, Value: willSummary(&x)}
	case *mochi.Will:
		if x != nil {
			return slog.Attr{Key: a.Key, Value: willSummary(x)}
		}
	case []byte:
		return slog.Int(a.Key+"_bytes", len(x))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// packetSummary is what the log may say about a packet: never its password,
// authentication data, payload, will payload or user properties.
func packetSummary(pk *packets.Packet) slog.Value {
	attrs := []slog.Attr{
		slog.String("type", packets.PacketNames[pk.FixedHeader.Type]),
		slog.Int("protocol_version", int(pk.ProtocolVersion)),
	}
	if pk.PacketID != 0 {
		attrs = append(attrs, slog.Int("packet_id", int(pk.PacketID)))
	}
	switch pk.FixedHeader.Type {
	case packets.Connect:
		attrs = append(attrs, slog.String("client_id", pk.Connect.ClientIdentifier),
			slog.Bool("password", pk.Connect.PasswordFlag), slog.Bool("will", pk.Connect.WillFlag))
	case packets.Publish:
		attrs = append(attrs, slog.String("topic", pk.TopicName), slog.Int("qos", int(pk.FixedHeader.Qos)),
			slog.Bool("retain", pk.FixedHeader.Retain), slog.Int("payload_bytes", len(pk.Payload)))
	case packets.Subscribe, packets.Unsubscribe:
		attrs = append(attrs, slog.Int("filters", len(pk.Filters)))
	}
	if pk.ReasonCode != 0 {
		attrs = append(attrs, slog.Int("reason_code", int(pk.ReasonCode)))
	}
	return slog.GroupValue(attrs...)
}

func willSummary(w *mochi.Will) slog.Value {
	return slog.GroupValue(slog.String("topic", w.TopicName), slog.Int("qos", int(w.Qos)),
		slog.Bool("retain", w.Retain), slog.Int("payload_bytes", len(w.Payload)))
}
