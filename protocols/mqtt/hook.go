package mqtt

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/bridge"
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
	// acks acknowledges QoS 1 and 2 publishes once they are on disk (ack.go); relay
	// delivers them to MQTT subscribers meanwhile.
	acks  *acker
	relay *mochi.Client
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

// OnPublish hands a reading to the bridge; see the type's comment for what each
// return value makes mochi do, and ack.go for when a QoS 1 or 2 publish is
// acknowledged: once what it carries is on disk, in the order the connection sent
// it, while mochi reads the connection's next packet.
//
// So every QoS 1 or 2 publish, reading or not, is acknowledged here rather than by
// mochi: an ack that mochi wrote at once could overtake the acks still waiting for
// the disk. Such a publish is delivered to MQTT subscribers (and retained) through
// the relay, an inline client, and OnPublish returns ErrRejectPacket so that mochi
// does nothing more with it. QoS 0 is mochi's as before and never waits for a disk.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // our own writes, and the relay's deliveries
	}
	if pk.FixedHeader.Retain && len(pk.Payload) > 0 {
		h.limitRetained(&pk)
	}
	qos := pk.FixedHeader.Qos
	var st *ackState
	if qos > 0 {
		var err error
		if st, err = h.acks.reserve(h.ctx, cl); err != nil {
			return h.unavailable(cl, pk, err)
		}
	}
	if h.a.sp != nil && isSparkplugTopic(pk.TopicName) && !(pk.FixedHeader.Retain && len(pk.Payload) == 0) {
		return h.sparkplugPublish(cl, st, pk) // sparkplug_hook.go
	}
	m := h.a.cur().topics.match(pk.TopicName)
	if m.kind == topicNone || m.kind == topicWrite || (pk.FixedHeader.Retain && len(pk.Payload) == 0) {
		// Not a reading (clearing a retained message is not one either).
		if qos == 0 {
			return pk, nil
		}
		return h.deliverAndAck(cl, st, pk, h.sink.Barrier(), ackFor(pk))
	}
	var cache *labelCache
	if c, ok := cl.Net.Conn.(*conn); ok {
		cache = &c.labels
	}
	res, receipt, err := h.a.ingest(h.ctx, h.sink, m, pk, cache)
	h.a.metrics.publishes.WithLabelValues(res).Inc()
	switch res {
	case resultAccepted:
		h.a.presence.seen(cl, m.device)
		if qos == 0 {
			return pk, nil
		}
		return h.deliverAndAck(cl, st, pk, receipt, ackFor(pk))
	case resultInvalid:
		h.a.metrics.badPayloads.Inc()
		if payload.ValidName(m.device) == nil {
			// A name that is not one stays out of the device registry.
			h.sink.Invalid(m.device, err)
		}
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: bad payload", "device", m.device, "topic", pk.TopicName,
			"client", cl.ID, "error", err)
		return h.refuse(cl, st, pk, packets.ErrPayloadFormatInvalid, err)
	case resultRefused:
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: publish refused by the bridge", "device", m.device,
			"topic", pk.TopicName, "client", cl.ID, "error", err)
		return h.refuse(cl, st, pk, refusalCode(err), err)
	default: // resultUnavailable
		if st != nil {
			h.acks.release(cl, st)
		}
		return h.unavailable(cl, pk, err)
	}
}

// unavailable answers a publish the bridge could not take now: the durable log
// cannot write (a full disk), or the gateway is shutting down. No ack: the
// connection is closed so that the client sends it again, to us once we can take
// it, or to whoever is next. v5 clients are told why: 0x97 (quota exceeded) for the
// disk, 0x8B (server shutting down) otherwise; both are retried.
func (h *hook) unavailable(cl *mochi.Client, pk packets.Packet, cause error) (packets.Packet, error) {
	if cl.Properties.ProtocolVersion == 5 {
		code := packets.ErrServerShuttingDown
		if errors.Is(cause, bridge.ErrUnavailable) {
			code = packets.ErrQuotaExceeded
		}
		_ = h.srv.DisconnectClient(cl, code)
	}
	if errors.Is(cause, bridge.ErrUnavailable) {
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: publish not acknowledged: the durable log cannot write; closing the connection so that the client sends it again",
			"topic", pk.TopicName, "client", cl.ID, "error", cause)
	}
	cl.Stop(cause)
	return pk, packets.ErrRejectPacket
}

// deliverAndAck delivers a QoS 1 or 2 publish to MQTT subscribers now, and queues
// its acknowledgement until r is ready.
func (h *hook) deliverAndAck(cl *mochi.Client, st *ackState, pk packets.Packet, r bridge.Receipt, ack packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 2 {
		expectRelease(h.srv, cl, ack)
	}
	// The relay is an inline client: mochi skips the ACL (checked already) and the
	// inflight bookkeeping (ours), retains, and delivers at the publish's QoS. The
	// topic alias was resolved into TopicName already.
	out := pk.Copy(true) // with its packet id: mochi refuses a QoS 1 or 2 publish without one
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	if err := h.srv.InjectPacket(h.relay, out); err != nil {
		limitedLog(h.a.log, h.a.lim, slog.LevelWarn, "mqtt: delivering to subscribers failed", "topic", pk.TopicName, "client", cl.ID, "error", err)
	}
	h.acks.add(cl, st, r, ack)
	return pk, packets.ErrRejectPacket
}

// refuse answers a publish the bridge will never accept. MQTT v5 QoS 1 and 2 get a
// negative PUBACK or PUBREC with the code, which ends the flow: the client does not
// send it again. MQTT 3.1.1 has no negative ack, and closing the connection would make
// the client send the same payload again forever and block what follows it; so the
// message is acknowledged and dropped (not delivered to subscribers, not retained), and
// the refusal is visible in the metrics and the log (and for a bad payload in the
// device's last_error). QoS 0 is dropped. Either ack waits for what the connection
// sent before it.
func (h *hook) refuse(cl *mochi.Client, st *ackState, pk packets.Packet, code packets.Code, cause error) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 {
		return pk, packets.CodeSuccessIgnore
	}
	ack := ackFor(pk)
	if cl.Properties.ProtocolVersion == 5 {
		ack.ReasonCode = code.Code
		ack.Properties = packets.Properties{ReasonString: clip(code.Reason+": "+cause.Error(), 128)}
		if max := cl.Properties.Props.MaximumPacketSize; max > 0 && max < 256 {
			ack.Properties = packets.Properties{} // may not fit: bare
		}
	} else if pk.FixedHeader.Qos == 2 {
		// Acknowledged and dropped: its PUBREL must find it.
		expectRelease(h.srv, cl, ack)
	}
	h.acks.add(cl, st, h.sink.Barrier(), ack)
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
	if h.a.sp != nil && isSparkplugTopic(pk.TopicName) {
		h.sparkplugWill(cl, pk) // an NDEATH, usually: sparkplug_hook.go
		return
	}
	m := h.a.cur().topics.match(pk.TopicName)
	if (m.kind != topicPoint && m.kind != topicObject) || len(pk.Payload) == 0 {
		return
	}
	res, _, err := h.a.ingest(h.ctx, h.sink, m, pk, nil)
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
