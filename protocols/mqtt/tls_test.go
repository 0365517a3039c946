package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	egtls "github.com/edgegate/edgegate/tls"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their paths
// and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgegate test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := testConfig()
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Type: "tls", Address: "127.0.0.1:0",
		TLS: &egtls.Files{CertFile: certFile, KeyFile: keyFile}})
	e := start(t, cfg)
	addrs := e.a.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs: %v", addrs)
	}
	opts := paho3.NewClientOptions().AddBroker("tls://" + addrs[1].String()).SetClientID("tls-client").
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false).SetConnectTimeout(waitTimeout)
	c := paho3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("TLS connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	publish3(t, c, "devices/secure/temp", 1, "1.5")
	if m := e.next(1)[0]; m.Device != "secure" {
		t.Errorf("got %s", m.Device)
	}

	// Plaintext on the TLS port gets nowhere, and the port still serves TLS after.
	conn, r := rawConn(t, addrs[1].String())
	if _, err := conn.Write(rawConnect311); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, r, "plaintext on the TLS port")
	publish3(t, c, "devices/secure/temp", 1, "2.5")
	e.next(1)
}
