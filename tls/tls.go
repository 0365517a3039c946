// Package tls is every certificate the gateway uses and every TLS decision it
// makes: the one `tls:` block that each listener and client side of the config
// shares (Files), certificate sources that re-read their files when they change
// and keep the last good material when a new file is bad (Source, Store), the
// identity a client certificate carries (Identity), TLS and DTLS configurations
// with TLS 1.2 at least and only AEAD suites, TLS tunnels in front of plain TCP
// device ports (Tunnel), a development CA (NewCA), and the rule that nothing leaves
// the machine in plaintext unless the config says so (CheckListener). Whether an
// address is local and loading a CA bundle are in tls/tlsbase, which the Go client
// imports without this package's dependencies (pion/dtls, Prometheus).
//
// It imports no protocol package and decides no authorization beyond the
// tunnels' allow-lists: callers take the identity and apply their own rules.
//
// Import it as etls next to crypto/tls.
package tls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/edgegate/edgegate/tls/tlsbase"
)

// Files is the `tls:` block, the same shape everywhere: gRPC, HTTP, MQTT and CoAP
// listeners, tunnels, and client sides (the uplink, devices the gateway dials).
type Files struct {
	// CertFile and KeyFile are the PEM certificate (with its chain) and key this
	// side presents. Required on a server side; optional on a client side.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, on a server side, is the PEM bundle client certificates must
	// chain to: setting it turns on mutual TLS. On a client side it is read as
	// CAFile when CAFile is empty (docs/uplink.md's example writes it so).
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is "1.2" (the default) or "1.3". TLS 1.3 is preferred whenever
	// both sides have it, whatever the minimum.
	MinVersion string `yaml:"min_version"`

	// Client sides only.

	// CAFile is the PEM bundle the server's certificate must chain to; empty: the
	// system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the server's certificate must carry (and the SNI sent);
	// empty: the host being dialled.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests against a
	// device with a certificate nobody can check; logged as a warning.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate checks a server side's block and says which key is wrong.
func (f *Files) Validate() error {
	switch {
	case f.CertFile == "":
		return errors.New("tls: cert_file is required")
	case f.KeyFile == "":
		return errors.New("tls: key_file is required")
	case f.CAFile != "":
		return errors.New("tls: ca_file is for client sides; a listener checks clients against client_ca_file")
	case f.ServerName != "":
		return errors.New("tls: server_name is for client sides")
	case f.InsecureSkipVerify:
		return errors.New("tls: insecure_skip_verify is for client sides")
	}
	if _, err := ParseMinVersion(f.MinVersion); err != nil {
		return err
	}
	return nil
}

// ValidateClient checks a client side's block.
func (f *Files) ValidateClient() error {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	if f.CAFile != "" && f.ClientCAFile != "" && f.CAFile != f.ClientCAFile {
		return errors.New("tls: ca_file and client_ca_file both set; a client side needs one CA bundle (ca_file)")
	}
	if _, err := ParseMinVersion(f.MinVersion); err != nil {
		return err
	}
	return nil
}

// HasClientCA reports whether a server side requires client certificates.
func (f *Files) HasClientCA() bool { return f != nil && f.ClientCAFile != "" }

// rootsFile is the CA bundle a client side verifies servers against.
func (f *Files) rootsFile() string {
	if f.CAFile != "" {
		return f.CAFile
	}
	return f.ClientCAFile
}

// ParseMinVersion reads min_version: "" or "1.2" is TLS 1.2, "1.3" is TLS 1.3.
func ParseMinVersion(s string) (uint16, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "tls") {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls: min_version: %q is not 1.2 or 1.3 (older versions are not offered)", s)
}

// CipherSuites are the TLS 1.2 suites offered: ECDHE key exchange (forward
// secrecy) with an AEAD cipher only; no CBC, no RSA key exchange, no 3DES or RC4.
// TLS 1.3's suites are all of that kind and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// baseConfig is what every configuration starts from. CurvePreferences is left to
// Go, which offers the post-quantum hybrid X25519MLKEM768 first.
func baseConfig(minVersion string) *tls.Config {
	v, err := ParseMinVersion(minVersion)
	if err != nil {
		v = tls.VersionTLS13 // Validate refused it; never fall below 1.2
	}
	return &tls.Config{MinVersion: v, CipherSuites: CipherSuites}
}

// ServerConfig loads the files once into a server configuration: a snapshot that
// does not follow later changes of the files. Use a Source (Store.Source, or
// Files.Source) for a configuration that rotates. With client_ca_file, clients
// must present a certificate that chains to it.
func (f *Files) ServerConfig() (*tls.Config, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	cert, err := loadPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := baseConfig(f.MinVersion)
	cfg.Certificates = []tls.Certificate{*cert}
	if f.ClientCAFile != "" {
		pool, err := tlsbase.LoadPool(f.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// loadPair reads a certificate and its key, and parses the leaf.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading cert_file %s and key_file %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: cert_file %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// ErrPlaintext is wrapped by CheckListener's refusal.
var ErrPlaintext = errors.New("plaintext listener on a non-loopback address")

// CheckListener refuses a listener without TLS on an address other machines can
// reach, unless insecure is set. A Unix socket ("unix://...") is local.
func CheckListener(address string, hasTLS, insecure bool) error {
	if hasTLS || insecure || tlsbase.IsLocal(address) {
		return nil
	}
	return fmt.Errorf("%w: %s; configure tls, listen on 127.0.0.1, or set insecure: true", ErrPlaintext, address)
}

// ErrPlaintextPeer is wrapped by CheckPeer's refusal.
var ErrPlaintextPeer = errors.New("plaintext to a non-loopback address")

// CheckPeer is CheckListener's rule for the client side: the gateway does not
// dial a peer that is not on loopback (a broker, a hub) in plaintext unless
// insecure is set. address is host:port.
func CheckPeer(address string, hasTLS, insecure bool) error {
	if hasTLS || insecure || tlsbase.IsLocal(address) {
		return nil
	}
	return fmt.Errorf("%w: %s; use TLS (a tls:// url or a tls section), a loopback address, or set insecure: true", ErrPlaintextPeer, address)
}

// WarnInsecure logs, once per call, a listener that CheckListener let through only
// because its config says insecure: true. Call it once per listener at start.
func WarnInsecure(log *slog.Logger, key, address string, hasTLS bool) {
	if hasTLS || tlsbase.IsLocal(address) {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("plaintext listener on a non-loopback address, allowed by insecure: true; anyone on the network can read and inject its traffic",
		"key", key, "address", address)
}
