// Package tls builds the gateway's TLS configurations from certificate files and
// enforces the rule that nothing leaves the machine in plaintext unless the config
// says so. It does not import any protocol package.
package tls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Files names a certificate, its key, and optionally the CA that client
// certificates must chain to (which turns on mutual TLS).
type Files struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Validate says which file key is missing.
func (f *Files) Validate() error {
	switch {
	case f.CertFile == "":
		return errors.New("tls: cert_file is required")
	case f.KeyFile == "":
		return errors.New("tls: key_file is required")
	}
	return nil
}

// ServerConfig loads the files into a server configuration with TLS 1.2 or newer.
func (f *Files) ServerConfig() (*tls.Config, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading %s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.ClientCAFile != "" {
		pool, err := LoadPool(f.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
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

// ErrPlaintext is wrapped by CheckListener's refusal.
var ErrPlaintext = errors.New("plaintext listener on a non-loopback address")

// CheckListener refuses a listener without TLS on an address other machines can
// reach, unless insecure is set. A Unix socket ("unix://...") is local.
func CheckListener(address string, hasTLS, insecure bool) error {
	if hasTLS || insecure || IsLocal(address) {
		return nil
	}
	return fmt.Errorf("%w: %s; configure tls, listen on 127.0.0.1, or set insecure: true", ErrPlaintext, address)
}

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
