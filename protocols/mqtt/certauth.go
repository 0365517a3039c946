package mqtt

import (
	"crypto/tls"
	"errors"
	"fmt"
	"path"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/protocols/payload"
	etls "github.com/edgegate/edgegate/tls"
)

// Certificate login. On a tls listener with client_ca_file every client presents a
// certificate that the handshake verified. A CONNECT without a password is then a
// login by that certificate: the client is its identity (a SPIFFE URI SAN, else a
// DNS SAN, else the CN; see package tls), and it may publish readings only on the
// topics of its own devices, and subscribe only to their write topics
// (devices/{device}/{point}/set). A CONNECT with a password is an ordinary account
// login, as on any listener.
//
// Its own devices: those the `clients:` entries matching its identity list, or
// without one, the device named like the identity (a SPIFFE ID's last path
// segment: spiffe://site/fryer-1 is fryer-1).

// ClientConfig grants a certificate identity (exact, or a path.Match glob) the
// devices it publishes for (device globs), where that is not just the device named
// like it.
type ClientConfig struct {
	Identity string   `yaml:"identity"`
	Devices  []string `yaml:"devices"`
}

func (c ClientConfig) validate() []error {
	var errs []error
	if c.Identity == "" {
		errs = append(errs, errors.New("identity: required"))
	} else if _, err := path.Match(c.Identity, ""); err != nil {
		errs = append(errs, fmt.Errorf("identity: bad glob: %v", err))
	}
	if len(c.Devices) == 0 {
		errs = append(errs, errors.New("devices: at least one device (or glob) is required"))
	}
	for i, d := range c.Devices {
		if _, err := path.Match(d, ""); err != nil || d == "" || strings.ContainsAny(d, "/+#") {
			errs = append(errs, fmt.Errorf("devices[%d]: %q is not a device name or glob", i, d))
		}
	}
	return errs
}

// certIdentity is the identity of the certificate a client's connection verified,
// or "" when it has none (a plain listener, or one without client_ca_file).
func certIdentity(cl *mochi.Client) string {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return ""
	}
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return ""
	}
	id, _ := etls.PeerIdentity(tc.ConnectionState())
	return id
}

// certLogin is who a client is when it logs in by its certificate.
type certLogin struct {
	identity string
}

// loggedInByCert returns the client's certificate login, or nil when it logged in
// otherwise. OnConnect stores it on the connection.
func loggedInByCert(cl *mochi.Client) *certLogin {
	if c, ok := cl.Net.Conn.(*conn); ok {
		return c.cert.Load()
	}
	return nil
}

// certDevices are the device patterns an identity publishes for.
func (a *authorizer) certDevices(identity string) []string {
	var out []string
	for _, c := range a.clients {
		if etls.MatchIdentity([]string{c.Identity}, identity) {
			out = append(out, c.Devices...)
		}
	}
	if len(out) > 0 {
		return out
	}
	name := etls.DeviceName(identity)
	if payload.ValidName(name) != nil {
		return nil
	}
	// A literal, even when the name holds glob characters.
	return []string{escapeGlob(name)}
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func matchDevice(patterns []string, device string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, device); ok {
			return true
		}
	}
	return false
}

// allowCertPublish reports whether a certificate client may publish on topic: a
// reading of one of its devices.
func (a *authorizer) allowCertPublish(identity string, topics *topicMap, topic string) bool {
	m := topics.match(topic)
	if m.kind != topicPoint && m.kind != topicObject {
		return false
	}
	return matchDevice(a.certDevices(identity), m.device)
}

// allowCertRead reports whether a certificate client may subscribe to filter (or
// receive on a topic): only its devices' write topics, devices/{device}/{point}/set,
// with {point} a name or +.
func (a *authorizer) allowCertRead(identity, filter string) bool {
	levels := strings.Split(unshare(filter), "/")
	if len(levels) != 4 || levels[0] != "devices" || levels[3] != "set" {
		return false
	}
	device, point := levels[1], levels[2]
	if point == "#" || payload.ValidName(device) != nil || (point != "+" && payload.ValidName(point) != nil) {
		return false
	}
	return matchDevice(a.certDevices(identity), device)
}

// certConnect completes a CONNECT without a password over a verified client
// certificate: a certificate login, or a refusal with the CONNACK code that says
// why.
func (h *hook) certConnect(cl *mochi.Client, pk packets.Packet, identity string) error {
	lv := h.a.cur()
	var r *refusal
	switch {
	case len(pk.Connect.Username) > 0 && string(pk.Connect.Username) != identity:
		// A user name that is not the certificate's, without a password: not a
		// login we can check.
		r = &refuseBadCredentials
	case len(lv.auth.certDevices(identity)) == 0:
		r = &refuseNoDevice
	case pk.Connect.WillFlag && !lv.auth.allowCertPublish(identity, lv.topics, pk.Connect.WillTopic):
		r = &refuseWillTopic
	default:
		r = h.clientIDRefusal(cl, pk, certOwner(identity), identity) // session.go
	}
	if r != nil {
		return h.refuseConnect(cl, pk, *r, "identity", identity)
	}
	if c, ok := cl.Net.Conn.(*conn); ok {
		c.cert.Store(&certLogin{identity: identity})
	}
	return nil
}
