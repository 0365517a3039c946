// Package tlsbase is the part of edgegate's TLS rules that a client of the gateway
// needs too, on the standard library alone: whether an address is local (the
// plaintext rule: nothing leaves the machine in plaintext unless told so) and
// loading a CA bundle. The gateway's package tls builds on it; the Go client
// (client/) uses it without pulling in the gateway's certificate sources, DTLS or
// metrics.
package tlsbase

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
)

// IsLocal reports whether address is a Unix socket or a loopback host:port.
// An empty host (":1883") listens on every interface and is not local.
func IsLocal(address string) bool {
	if strings.HasPrefix(address, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoadPool reads a PEM bundle of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", file)
	}
	return pool, nil
}
