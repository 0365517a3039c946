package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity of what NewCA and Issue make when not told otherwise. A development CA
// is not meant to last; production certificates come from cert-manager or the
// site's own CA.
const (
	DevCAValidity   = 5 * 365 * 24 * time.Hour
	DevLeafValidity = 365 * 24 * time.Hour
)

// CA is a certificate authority held in memory: a development CA for `edgegate
// certs init`, and the tests' CAs.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// KeyPair is an issued certificate and its key, parsed and as PEM.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// TLS returns the pair for a tls.Config.
func (k *KeyPair) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{k.Cert.Raw}, PrivateKey: k.Key, Leaf: k.Cert}
}

// NewCA makes a self-signed ECDSA P-256 CA valid for validity (DevCAValidity when
// zero).
func NewCA(name string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		validity = DevCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"edgegate development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM is the CA's certificate as PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM is the CA's key as PEM (PKCS #8).
func (ca *CA) KeyPEM() ([]byte, error) { return keyPEM(ca.Key) }

// Pool is a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Leaf says what Issue puts in a certificate.
type Leaf struct {
	// CommonName is the subject's CN.
	CommonName string
	// Hosts are DNS names and IP addresses (SANs).
	Hosts []string
	// URIs are URI SANs, such as a SPIFFE ID.
	URIs []string
	// Server and Client are the extended key usages.
	Server, Client bool
	// NotBefore and NotAfter default to an hour ago and DevLeafValidity from now.
	NotBefore, NotAfter time.Time
}

// Issue makes an ECDSA P-256 key and a certificate for it signed by the CA.
func (ca *CA) Issue(l Leaf) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: l.CommonName},
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(DevLeafValidity)
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range l.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	for _, s := range l.URIs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("uri %q: %w", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: kp}, nil
}

// Write writes the pair as certFile and keyFile, the key with mode 0600.
func (k *KeyPair) Write(certFile, keyFile string) error {
	if err := os.WriteFile(certFile, k.CertPEM, 0o644); err != nil {
		return err
	}
	return writeKey(keyFile, k.KeyPEM)
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeKey creates a key file with mode 0600 from the start (never readable by
// others, not even for a moment), and sets it on a file that existed too.
func writeKey(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// DevFiles are the names WriteDevSet writes in its directory.
var DevFiles = []string{"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"}

// ErrExists is returned by WriteDevSet when a file it would write exists.
var ErrExists = errors.New("exists")

// WriteDevSet writes a development CA, a server certificate for hosts and a
// client certificate for clientName into dir: ca.crt ca.key server.crt server.key
// client.crt client.key, keys with mode 0600. A clientName that is a spiffe:// URI
// goes into a URI SAN (and the CN, when it fits); any other into the CN. It
// refuses to overwrite an existing file.
func WriteDevSet(dir string, hosts []string, clientName string) error {
	if len(hosts) == 0 {
		return errors.New("at least one host is required")
	}
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, " ,/") {
			return fmt.Errorf("host %q is not a DNS name or IP address", h)
		}
	}
	if clientName == "" {
		return errors.New("the client name is empty")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range DevFiles {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return fmt.Errorf("%s: %w; choose another --dir or remove it", filepath.Join(dir, n), ErrExists)
		}
	}
	ca, err := NewCA("edgegate development CA", 0)
	if err != nil {
		return err
	}
	srv, err := ca.Issue(Leaf{CommonName: hosts[0], Hosts: hosts, Server: true})
	if err != nil {
		return err
	}
	cl := Leaf{CommonName: clientName, Client: true}
	if strings.HasPrefix(clientName, "spiffe://") {
		u, err := url.Parse(clientName)
		if err != nil || u.Host == "" {
			return fmt.Errorf("client name %q is not a SPIFFE ID (spiffe://trust-domain/path)", clientName)
		}
		cl.URIs = []string{clientName}
		if len(clientName) > 64 { // the CN's upper bound (RFC 5280)
			cl.CommonName = ""
		}
	} else if len(clientName) > 64 {
		return fmt.Errorf("client name %q: a common name has at most 64 characters", clientName)
	}
	client, err := ca.Issue(cl)
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, "ca.key"), caKey); err != nil {
		return err
	}
	if err := srv.Write(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		return err
	}
	return client.Write(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
}
