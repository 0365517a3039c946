package mqtt

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A session belongs to the identity that created it (issue 19.2). mochi hands a
// client id's session, connected or kept for a disconnected client, to whoever
// connects next with that id: it disconnects the holder, and with clean session off
// the newcomer inherits its subscriptions and the messages queued for it, which mochi
// then sends without asking OnACLCheck (Server.inheritClientSession and
// Client.ResendInflightMessages in v2.7.9). So a user allowed only devices/pos-1/#
// who connected as client id pos-2 received pos-2's unlock code. Here a CONNECT whose
// client id is held by another identity is refused (v5 CONNACK 0x85, 3.1.1 0x02), an
// optional pattern (mqtt.client_id) binds ids to identities outright, and the queued
// messages a session hands over are checked against the access list of the client
// that receives them.

// Owners: "user:" and the username, "cert:" and the certificate identity, or
// anonymous. A certificate login may carry its identity as username, so the kinds
// are kept apart.
const ownerAnonymous = "anonymous"

func userOwner(username []byte) string {
	if len(username) == 0 {
		return ownerAnonymous
	}
	return "user:" + string(username)
}

func certOwner(identity string) string { return "cert:" + identity }

// sessions serializes the claims on client ids. A claim is checked against the
// client mochi holds for the id (connected, or a disconnected session it keeps until
// session_expiry) and against the claims accepted but not yet registered by mochi,
// so that two identities racing for a new id cannot both win. The zero value is
// ready.
type sessions struct {
	mu sync.Mutex
	// pending are the connections whose CONNECT claimed an id and whose client mochi
	// has not registered yet (between OnConnect and OnSessionEstablished). An entry
	// ends with the connection at the latest (listener.serveConn), so there are never
	// more than max_connections.
	pending map[string]*conn
}

// claim binds cl's client id to owner, or reports false when another identity holds
// it. mochi's clients are reached through our listener, so each has a *conn; one that
// has not (none in practice) cannot be told apart and is refused.
func (s *sessions) claim(srv *mochi.Server, cl *mochi.Client, owner string) bool {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pending[cl.ID]; p != nil && p != c && p.owner != owner {
		return false
	}
	if existing, ok := srv.Clients.Get(cl.ID); ok {
		if ec, ok := existing.Net.Conn.(*conn); !ok || ec.owner != owner {
			return false
		}
	}
	if s.pending == nil {
		s.pending = make(map[string]*conn)
	}
	c.owner, c.claimed, c.sessions = owner, cl.ID, s
	s.pending[cl.ID] = c
	return true
}

// settled ends c's pending claim: mochi has registered its client (whose conn says
// who owns it from now on), or the connection ended before that.
func (s *sessions) settled(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[c.claimed] == c {
		delete(s.pending, c.claimed)
	}
}

// clientIDPattern is mqtt.client_id with name put in for {username}, as a path.Match
// pattern: name is literal even when it holds glob characters.
func clientIDPattern(pattern, name string) string {
	return strings.ReplaceAll(pattern, "{username}", escapeGlob(name))
}

// validateClientIDPattern checks mqtt.client_id.
func validateClientIDPattern(pattern string) error {
	if pattern == "" {
		return nil
	}
	if _, err := path.Match(clientIDPattern(pattern, "x"), ""); err != nil {
		return fmt.Errorf("client_id: %q is not a glob: %w", pattern, err)
	}
	return nil
}

// clientIDAllowed reports whether the id fits mqtt.client_id for the login named
// name (a username, a certificate identity, or "" for anonymous). An id the broker
// assigned (the CONNECT had none) always fits: the client did not choose it.
func clientIDAllowed(pattern, name string, cl *mochi.Client, pk packets.Packet) bool {
	if pattern == "" || pk.Connect.ClientIdentifier == "" {
		return true
	}
	ok, _ := path.Match(clientIDPattern(pattern, name), cl.ID)
	return ok
}

// clientIDRefusal checks a CONNECT's client id for the login owner (named name for
// the pattern), and claims it: nil, or why it is refused.
func (h *hook) clientIDRefusal(cl *mochi.Client, pk packets.Packet, owner, name string) *refusal {
	if cl.ID == mochi.InlineClientId {
		return &refuseInlineClientID
	}
	if !clientIDAllowed(h.a.cur().cfg.ClientID, name, cl, pk) {
		return &refuseClientIDPattern
	}
	if !h.sessions.claim(h.srv, cl, owner) {
		return &refuseClientIDTaken
	}
	return nil
}

// OnSessionEstablish runs after the CONNECT was accepted and before mochi hands the
// id's previous session to the new client and resends its queued messages: those the
// new client may not read are dropped. With ownership the previous session is the
// same identity's, but its messages were queued under the access list of their time,
// and a reload may since have narrowed it.
func (h *hook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return // mochi discards the previous session
	}
	prev, ok := h.srv.Clients.Get(cl.ID)
	if !ok {
		return
	}
	for _, m := range prev.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type != packets.Publish {
			continue // a PUBREC or PUBREL of a flow under way: no content
		}
		// A queued message sent with a topic alias has no topic name: mochi would
		// resend it with an alias the new connection never set up, so it is
		// unreadable anyway, and only a client that may read everything keeps it.
		if h.allowed(cl, m.TopicName, false) {
			continue
		}
		if prev.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
			h.a.metrics.aclDenied.WithLabelValues(actionQueued).Inc()
			limitedLog(h.a.log, h.a.lim, slog.LevelInfo, "mqtt: queued message dropped: the client may not read its topic",
				"topic", m.TopicName, "client", cl.ID, "username", string(cl.Properties.Username))
		}
	}
}
