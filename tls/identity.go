package tls

import (
	"crypto/x509"
	"strings"
)

// Identity is who a certificate says its holder is: its first SPIFFE URI SAN
// (spiffe://trust-domain/path), else its first DNS SAN, else its subject's common
// name. This is what authorization sees: the gRPC authz list, MQTT certificate
// logins, tunnels' allow-lists.
func Identity(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return u.String()
		}
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}

// DeviceName is the device an identity is named like, which it may write unless
// configuration says otherwise: the last path segment of a SPIFFE ID
// (spiffe://site/devices/fryer-1 is fryer-1), else the identity itself. MQTT
// certificate logins and CoAP listeners use it alike.
func DeviceName(identity string) string {
	if len(identity) >= len("spiffe://") && strings.EqualFold(identity[:len("spiffe://")], "spiffe://") {
		return identity[strings.LastIndexByte(identity, '/')+1:]
	}
	return identity
}
