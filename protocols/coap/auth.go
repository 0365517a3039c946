package coap

import (
	"path"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	egtls "github.com/edgegate/edgegate/tls"
)

// listenerAuth says which devices the peers of one listener may write and observe.
//
// On a listener that authenticates its peers (dtls with pre-shared keys, dtls or tls
// with client_ca_file), every request needs an identity: the PSK identity, or the
// client certificate's identity (tls.Identity: its SPIFFE URI SAN, else its first
// DNS SAN, else its common name, as for gRPC and MQTT). An identity may write the
// device named like it (tls.DeviceName: a SPIFFE ID's last segment), unless its
// `devices:` list (glob patterns) says which devices it may write instead
// (docs/coap.md). A request without an identity there is 4.01 Unauthorized, one for
// another device 4.03 Forbidden.
//
// A listener that does not authenticate (udp and tcp, which are loopback-only unless
// insecure: true, and dtls or tls with only a server certificate) lets every peer
// write every device, as MQTT's allow_anonymous does.
type listenerAuth struct {
	required bool
	// devices maps an identity to its glob patterns; an identity without an entry
	// (or with an empty list) may write the device of its own name only.
	devices map[string][]string
}

func newListenerAuth(l ListenerConfig) listenerAuth {
	a := listenerAuth{
		required: len(l.PSK) > 0 || (l.TLS != nil && l.TLS.ClientCAFile != ""),
		devices:  map[string][]string{},
	}
	for _, p := range l.PSK {
		if len(p.Devices) > 0 {
			a.devices[p.Identity] = p.Devices
		}
	}
	for _, c := range l.Clients {
		if len(c.Devices) > 0 {
			a.devices[c.Identity] = c.Devices
		}
	}
	return a
}

// check returns 0 when the identity may write and observe device, else the response
// code that refuses it.
func (a *listenerAuth) check(identity string, device string) codes.Code {
	if !a.required {
		return 0
	}
	if identity == "" {
		return codes.Unauthorized
	}
	globs, ok := a.devices[identity]
	if !ok {
		if device == egtls.DeviceName(identity) {
			return 0
		}
		return codes.Forbidden
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, device); ok {
			return 0
		}
	}
	return codes.Forbidden
}
