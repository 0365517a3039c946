// Package uacert makes and reads the RSA certificates OPC UA applications identify
// themselves with: self-signed, with the application URI in the subject alternative
// names, as OPC UA Part 6 §6.2.2 asks. The adapter uses it for its client
// certificate and the simulator for its server certificate. It does not validate
// anyone's certificate: trust is the adapter's business.
package uacert

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"
)

// Bits is the RSA key size: 2048 is what Basic256Sha256 and the Aes policies allow
// at the low end and keeps key generation under a second.
const Bits = 2048

// Generate makes a self-signed certificate and key for an OPC UA application. hosts
// become DNS names or IP addresses; appURI is required.
func Generate(commonName, appURI string, hosts []string, validFor time.Duration) (certDER []byte, key *rsa.PrivateKey, err error) {
	u, err := url.Parse(appURI)
	if err != nil || appURI == "" {
		return nil, nil, fmt.Errorf("uacert: application URI %q: %v", appURI, err)
	}
	key, err = rsa.GenerateKey(rand.Reader, Bits)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"edgegate"}},
		NotBefore:    now.Add(-time.Hour), // tolerate a little clock skew
		NotAfter:     now.Add(validFor),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// EncodeCert and EncodeKey give PEM.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func EncodeKey(key *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// ParseCert reads a certificate in PEM or DER, returning its DER bytes.
func ParseCert(b []byte) ([]byte, *x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("PEM block %q is not a CERTIFICATE", blk.Type)
		}
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, nil, err
	}
	return b, c, nil
}

// ParseKey reads an RSA private key in PEM (PKCS#1 or PKCS#8) or DER.
func ParseKey(b []byte) (*rsa.PrivateKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	if k, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return nil, errors.New("not an RSA private key in PEM or DER (PKCS#1 or PKCS#8)")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %T; OPC UA needs RSA", k)
	}
	return rk, nil
}

// Load reads a certificate and key file pair.
func Load(certFile, keyFile string) ([]byte, *rsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	der, cert, err := ParseCert(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := ParseKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not hold the key of %s", keyFile, certFile)
	}
	return der, key, nil
}

// Thumbprint is the certificate's SHA-1 thumbprint in hex, as OPC UA names
// certificates (Part 6 §6.1.3).
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return hex.EncodeToString(sum[:])
}
