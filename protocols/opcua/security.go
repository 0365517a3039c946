package opcua

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

// ErrUntrusted is wrapped by the refusal of a server certificate that is not in the
// device's trusted_dir.
var ErrUntrusted = errors.New("server certificate not trusted")

// Bounds of the trust list: it is read at every connection attempt.
const (
	maxTrustedFiles = 1000
	maxCertFileSize = 1 << 20
)

// identity is the certificate and key the gateway shows OPC UA servers.
type identity struct {
	der      []byte
	key      *rsa.PrivateKey
	uri      string // application URI, from the certificate
	subject  string
	notAfter time.Time
	since    time.Time // when it was read or made
}

// newIdentity describes a certificate and its key.
func newIdentity(der []byte, key *rsa.PrivateKey) (*identity, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	id := &identity{der: der, key: key, subject: c.Subject.String(), notAfter: c.NotAfter, since: time.Now()}
	if len(c.URIs) > 0 {
		id.uri = c.URIs[0].String()
	}
	return id, nil
}

// pkiDir is where the adapter keeps its certificates under the data dir.
func pkiDir(dataDir string) string { return filepath.Join(dataDir, "opcua", "pki") }

// loadOrCreateIdentity reads the gateway's client certificate from the data dir,
// or makes one there. Without a data dir it is made in memory: a new certificate
// at every start, which servers that check client certificates will have to trust
// again each time (give cert_file and key_file, or a data_dir, to keep one).
func loadOrCreateIdentity(dataDir, gatewayID string) (*identity, error) {
	uri := "urn:edgegate:" + gatewayID + ":opcua-client"
	if dataDir == "" {
		der, key, err := uacert.Generate("edgegate "+gatewayID, uri, []string{"localhost"}, 10*365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		return newIdentity(der, key)
	}
	dir := filepath.Join(pkiDir(dataDir), "own")
	certFile, keyFile := filepath.Join(dir, "cert.der"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certFile); err == nil {
		return loadIdentity(certFile, keyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opcua: client certificate: %w", err)
	}
	der, key, err := uacert.Generate("edgegate "+gatewayID, uri, []string{"localhost"}, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	// The key first: a certificate without its key would be loaded next time.
	if err := os.WriteFile(keyFile, uacert.EncodeKey(key), 0o600); err != nil {
		return nil, fmt.Errorf("opcua: client key: %w", err)
	}
	if err := os.WriteFile(certFile, der, 0o644); err != nil {
		return nil, fmt.Errorf("opcua: client certificate: %w", err)
	}
	return newIdentity(der, key)
}

// loadIdentity reads a certificate and its key, each in PEM or DER (uacert.Load).
func loadIdentity(certFile, keyFile string) (*identity, error) {
	der, key, err := uacert.Load(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("opcua: %w", err)
	}
	return newIdentity(der, key)
}

// trust decides on a server certificate: trusted when the very certificate, or a CA
// certificate that signed it, is in trustedDir. An untrusted one is saved in
// rejectedDir and the error says which file to copy where.
func trust(serverDER []byte, trustedDir, rejectedDir, device string, now time.Time) error {
	cert, err := x509.ParseCertificate(serverDER)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return fmt.Errorf("server certificate is not valid now (valid %s to %s)", cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	trusted, err := readTrusted(trustedDir)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, t := range trusted {
		if bytes.Equal(t.Raw, serverDER) {
			return nil
		}
		if t.IsCA {
			pool.AddCert(t)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		return nil
	}
	saved := filepath.Join(rejectedDir, fileSafe(device)+"-"+uacert.Thumbprint(serverDER)+".der")
	if err := os.MkdirAll(rejectedDir, 0o700); err != nil {
		return fmt.Errorf("%w (thumbprint %s); saving it to %s failed: %v", ErrUntrusted, uacert.Thumbprint(serverDER), rejectedDir, err)
	}
	if err := os.WriteFile(saved, serverDER, 0o644); err != nil {
		return fmt.Errorf("%w (thumbprint %s); saving it failed: %v", ErrUntrusted, uacert.Thumbprint(serverDER), err)
	}
	return fmt.Errorf("%w: copy %s into %s", ErrUntrusted, saved, trustedDir)
}

// readTrusted reads every certificate file (.der .cer .crt .pem) of dir.
func readTrusted(dir string) ([]*x509.Certificate, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trusted_dir: %w", err)
	}
	var out []*x509.Certificate
	for _, e := range ents {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".der" && ext != ".cer" && ext != ".crt" && ext != ".pem") {
			continue
		}
		if len(out) == maxTrustedFiles {
			return out, fmt.Errorf("trusted_dir: more than %d certificates in %s", maxTrustedFiles, dir)
		}
		p := filepath.Join(dir, e.Name())
		if fi, err := e.Info(); err != nil || fi.Size() > maxCertFileSize {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if _, c, err := uacert.ParseCert(b); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// fileSafe keeps letters, digits, '-', '_' and '.'.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
