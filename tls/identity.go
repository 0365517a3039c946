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
