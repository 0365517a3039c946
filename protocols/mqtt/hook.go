package mqtt

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
)

// hook is how the adapter sits inside mochi: authentication, access lists, device
// presence and, above all, OnPublish, which hands readings to the bridge.
//
// Ordering, verified in mochi v2.7.9's server.go (processPublish): the ACL check runs
// first, then OnPublish, and only after OnPublish returns does mochi write the PUBACK
// (QoS 1) or PUBREC (QoS 2), retain the message and deliver it to subscribers. So a
// client's acknowledgement means the bridge has accepted the reading. A QoS 2
// retransmission whose PUBREC is already in flight is answered by mochi before
// OnPublish, so it is not ingested twice.
//
// What OnPublish may return, in mochi's terms:
//   - nil: normal processing (ack, retain, deliver);
//   - packets.CodeSuccessIgnore: acknowledged normally but neither retained nor
//     delivered;
//   - packets.ErrRejectPacket: nothing more at all, not even an ack; we use it after
//     writing our own negative ack or closing the connection;
//   - any other packets.Code: mochi writes a PUBACK with that code for v5 QoS>0, but
//     a PUBACK even for QoS 2 (which expects PUBREC), logs each one at error level,
//     and for 3.1.1 processes the message as if nothing were wrong. So we do not use
//     it; we write the negative PUBACK or PUBREC ourselves.
type hook struct {
	mochi.HookBase
	a    *Adapter
	srv  *mochi.Server
	ctx  context.Context // Run's: cancelled at shutdown
	sink protocols.Sink
	// sysRetained is how many $SYS topics mochi retains itself, measured once Serve
	// has published them.
	sysRetained atomic.Int64
	// sessions binds client ids to the identities that hold their sessions
	// (session.go).
	sessions sessions
}

var provided = []byte{
	mochi.OnConnect,
	mochi.OnConnectAuthenticate,
	mochi.OnACLCheck,
	mochi.OnSessionEstablish,
	mochi.OnSessionEstablished,
	mochi.OnDisconnect,
	mochi.OnPublish,
	mochi.OnWill,
	mochi.OnWillSent,
}

func (h *hook) ID() string { return "edgegate" }

func (h *hook) Provides(b byte) bool { return bytes.IndexByte(provided, b) >= 0 }

// v3 has no code for "bad user name or password" among mochi's v3 constants.
var err3BadUsernameOrPassword = packets.Code{Code: 0x04, Reason: "bad user name or password"}

// refusal is why a CONNECT is refused: its CONNACK code for v5 and for 3.1.1, and the
// reason label of connections_refused_total.
type refusal struct {
	v5, v3 packets.Code
	reason string
}

var (
	refuseBadCredentials  = refusal{packets.ErrBadUsernameOrPassword, err3BadUsernameOrPassword, refusedBadCredentials}
	refuseNotAuthorized   = refusal{packets.ErrNotAuthorized, packets.Err3NotAuthorized, refusedNotAuthorized}
	refuseShuttingDown    = refusal{packets.ErrServerUnavailable, packets.Err3ServerUnavailable, refusedShuttingDown}
	refuseWillTopic       = refusal{packets.ErrNotAuthorized, packets.Err3NotAuthorized, refusedWillTopic}
	refuseNoDevice        = refusal{packets.ErrNotAuthorized, packets.Err3NotAuthorized, refusedNoDevice}
	refuseInlineClientID  = refusal{packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, refusedClientID}
	refuseClientIDTaken   = refusal{packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, refusedClientIDTaken}
	refuseClientIDPattern = refusal{packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, refusedClientIDPattern}
	refuseThrottled       = refusal{packets.ErrConnectionRateExceeded, packets.Err3ServerUnavailable, refusedThrottled}
	refuseBusy            = refusal{packets.ErrServerBusy, packets.Err3ServerUnavailable, refusedBusy}
)

// refuseConnect counts, logs and answers a refused CONNECT; its result is what
// OnConnect returns. args add to the log line.
func (h *hook) refuseConnect(cl *mochi.Client, pk packets.Packet, r refusal, args ...any) error {
	code := r.v5
	if cl.Properties.ProtocolVersion != 5 {
		code = r.v3
	}
	h.a.metrics.refused.WithLabelValues(r.reason).Inc()
	args = append([]any{"reason", r.reason, "client", cl.ID, "username", string(pk.Connect.Username),
		"remote", cl.Net.Remote}, args...)
	limitedLog(h.a.log, h.a.lim, slog.LevelInfo, "mqtt: connection refused", args...)
	if r == refuseBusy {
		// The wait for a password check ran into the connect deadline, which is
		// the connection's too: give the answer a moment of its own.
		_ = cl.Net.Conn.SetWriteDeadline(time.Now().Add(busyAnswerGrace))
	}
	_ = h.srv.SendConnack(cl, code, false, nil)
	return code
}

// OnConnect authenticates. It runs before OnConnectAuthenticate, and unlike it can
// choose the CONNACK code: a wrong password and "anonymous not allowed" are
// different answers (v5 0x86 / 0x87, v3.1.1 4 / 5).
//
// It also checks the will topic against the user's publish list: mochi publishes a
// will without asking OnACLCheck (Server.sendLWT), so a user could otherwise publish
// anywhere by setting a will and hanging up. And it checks the client id: mochi's
// inline client's id, an id whose session belongs to another identity, or one that
// does not fit mqtt.client_id is refused (session.go).
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	if id := certIdentity(cl); id != "" && !pk.Connect.PasswordFlag {
		return h.certConnect(cl, pk, id) // certauth.go
	}
	lv := h.a.cur()
	var r *refusal
	switch h.a.logins.authenticate(h.ctx, lv, cl, pk) { // login.go
	case authOK:
		switch {
		case pk.Connect.WillFlag && !lv.auth.allowPublish(pk.Connect.Username, pk.Connect.WillTopic):
			r = &refuseWillTopic
		default:
			r = h.clientIDRefusal(cl, pk, userOwner(pk.Connect.Username), string(pk.Connect.Username))
		}
	case authBadCredentials:
		r = &refuseBadCredentials
	case authNotAuthorized:
		r = &refuseNotAuthorized
	case authThrottled:
		r = &refuseThrottled
	case authBusy:
		r = &refuseBusy
	default:
		r = &refuseShuttingDown
	}
	if r == nil {
		return nil
	}
	return h.refuseConnect(cl, pk, *r)
}

// OnConnectAuthenticate lets through what OnConnect accepted: mochi refuses every
// client unless some hook says yes here.
func (h *hook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// ACL actions, the values of the action label of acl_denied_total.
const (
	actionPublish = "publish"
	actionRead    = "read"
	actionQueued  = "queued" // a queued message dropped when its session changed hands (session.go)
)

// OnACLCheck applies the users' access lists. write is a publish; otherwise topic is
// a subscription filter or the topic of a message about to be delivered.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	ok := h.allowed(cl, topic, write)
	if !ok {
		action := actionPublish
		if !write {
			action = actionRead
		}
		h.a.metrics.aclDenied.WithLabelValues(action).Inc()
		limitedLog(h.a.log, h.a.lim, slog.LevelInfo, "mqtt: access denied", "action", action, "topic", topic,
			"client", cl.ID, "username", string(cl.Properties.Username))
	}
	return ok
}

// allowed is the access lists' answer, for a password or a certificate login.
func (h *hook) allowed(cl *mochi.Client, topic string, write bool) bool {
	lv := h.a.cur()
	if cert := loggedInByCert(cl); cert != nil { // certauth.go
		if write {
			return lv.auth.allowCertPublish(cert.identity, lv.topics, topic)
		}
		return lv.auth.allowCertRead(cert.identity, topic)
	}
	if write {
		return lv.auth.allowPublish(cl.Properties.Username, topic)
	}
	return lv.auth.allowRead(cl.Properties.Username, topic)
}

// OnSessionEstablished marks the client's connection for the panic recovery and, when
// the client id is a known device, that device connected. mochi has registered the
// client: its id's claim is settled (session.go).
func (h *hook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if c, ok := cl.Net.Conn.(*conn); ok {
		c.client.Store(cl)
		h.sessions.settled(c)
	}
	if h.a.knownDevice(cl.ID) {
		h.a.presence.seen(cl, cl.ID)
	}
}

// OnDisconnect: the devices that only this client spoke for are disconnected.
func (h *hook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.a.presence.gone(cl)
}

// OnPublish hands a reading to the bridge before mochi acknowledges it; see the type's
// comment for what each return value makes mochi do.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own writes
	}
	if pk.FixedHeader.Retain && len(pk.Payload) > 0 {
		h.limitRetained(&pk)
	}
	m := h.a.cur().topics.match(pk.TopicName)
	if m.kind == topicNone || m.kind == topicWrite {
		return pk, nil
	}
	if pk.FixedHeader.Retain && len(pk.Payload) == 0 {
		return pk, nil // clears a retained message; not a reading
	}
	var cache *labelCache
	if c, ok := cl.Net.Conn.(*conn); ok {
		cache = &c.labels
	}
	res, err := h.a.ingest(h.ctx, h.sink, m, pk, cache)
	h.a.metrics.publishes.WithLabelValues(res).Inc()
	switch res {
	case resultAccepted:
		h.a.presence.seen(cl, m.device)
		return pk, nil
	case resultInvalid:
		h.a.metrics.badPayloads.Inc()
		if payload.ValidName(m.device) == nil {
			// A name that is not one stays out of the device registry.
			h.sink.Invalid(m.device, err)
		}
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: bad payload", "device", m.device, "topic", pk.TopicName,
			"client", cl.ID, "error", err)
		return h.refuse(cl, pk, packets.ErrPayloadFormatInvalid, err)
	case resultRefused:
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: publish refused by the bridge", "device", m.device,
			"topic", pk.TopicName, "client", cl.ID, "error", err)
		return h.refuse(cl, pk, refusalCode(err), err)
	default: // resultUnavailable
		// The bridge could not take it now (shutting down). No ack: close the
		// connection so that the client sends it again, to us or whoever is next.
		if cl.Properties.ProtocolVersion == 5 {
			_ = h.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
		cl.Stop(err)
		return pk, packets.ErrRejectPacket
	}
}

// refuse answers a publish the bridge will never accept. MQTT v5 QoS 1 and 2 get a
// negative PUBACK or PUBREC with the code, which ends the flow: the client does not
// send it again. MQTT 3.1.1 has no negative ack, and closing the connection would make
// the client send the same payload again forever and block what follows it; so the
// message is acknowledged and dropped (not delivered to subscribers, not retained), and
// the refusal is visible in the metrics and the log (and for a bad payload in the
// device's last_error). QoS 0 is dropped.
func (h *hook) refuse(cl *mochi.Client, pk packets.Packet, code packets.Code, cause error) (packets.Packet, error) {
	if cl.Properties.ProtocolVersion != 5 || pk.FixedHeader.Qos == 0 {
		return pk, packets.CodeSuccessIgnore
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: clip(code.Reason+": "+cause.Error(), 128)},
	}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if err := cl.WritePacket(ack); err != nil {
		// Too large for the client's maximum packet size, most likely: try bare.
		ack.Properties = packets.Properties{}
		_ = cl.WritePacket(ack)
	}
	return pk, packets.ErrRejectPacket
}

// OnWill applies max_retained to a will about to be published: mochi publishes wills
// without OnPublish.
func (h *hook) OnWill(_ *mochi.Client, will mochi.Will) (mochi.Will, error) {
	if will.Retain && len(will.Payload) > 0 {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Retain: true}, TopicName: will.TopicName}
		h.limitRetained(&pk)
		will.Retain = pk.FixedHeader.Retain
	}
	return will, nil
}

// OnWillSent ingests a will published on a device topic, such as
// devices/pos-1/online = false: it is the device's last reading. There is nobody to
// acknowledge (the client is gone), so a refusal is only counted and logged. The
// will topic was checked against the user's publish list at CONNECT.
func (h *hook) OnWillSent(cl *mochi.Client, pk packets.Packet) {
	m := h.a.cur().topics.match(pk.TopicName)
	if (m.kind != topicPoint && m.kind != topicObject) || len(pk.Payload) == 0 {
		return
	}
	res, err := h.a.ingest(h.ctx, h.sink, m, pk, nil)
	h.a.metrics.publishes.WithLabelValues(res).Inc()
	switch res {
	case resultAccepted:
	case resultInvalid:
		h.a.metrics.badPayloads.Inc()
		if payload.ValidName(m.device) == nil {
			h.sink.Invalid(m.device, err)
		}
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: bad payload in a will", "device", m.device, "topic", pk.TopicName,
			"client", cl.ID, "error", err)
	case resultUnavailable:
		if h.ctx.Err() != nil {
			return // our own shutdown: closing the connections publishes their wills
		}
		fallthrough
	default:
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: will not taken by the bridge", "device", m.device,
			"topic", pk.TopicName, "client", cl.ID, "error", err)
	}
}

// limitRetained keeps the clients' retained messages within max_retained: a new
// retained topic beyond it is delivered but not retained. Replacing an existing one
// is always allowed. The broker's own $SYS topics, retained at start, do not count.
func (h *hook) limitRetained(pk *packets.Packet) {
	if int64(h.srv.Topics.Retained.Len()) < int64(h.a.cur().cfg.MaxRetained)+h.sysRetained.Load() {
		return
	}
	if _, ok := h.srv.Topics.Retained.Get(pk.TopicName); ok {
		return
	}
	pk.FixedHeader.Retain = false
	limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: max_retained reached; message delivered but not retained", "topic", pk.TopicName)
}
