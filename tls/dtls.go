package tls

import (
	"crypto/tls"
	"crypto/x509"

	piondtls "github.com/pion/dtls/v3"
)

// DTLSCertificateSuites are the certificate-based DTLS 1.2 suites worth offering:
// ECDHE with an AEAD cipher. CCM_8 comes first because RFC 7252 section 9.1.3.3
// makes it mandatory for CoAP; the rest are what other clients prefer.
var DTLSCertificateSuites = []piondtls.CipherSuiteID{
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	piondtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	piondtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	piondtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// DTLSServerOptions are the pion/dtls server options that make a DTLS listener
// present the Source's certificate as it is at each handshake and, with
// client_ca_file, require a client certificate that chains to the CA bundle as it
// is at each handshake: the DTLS counterpart of ServerConfig. pion's WithClientCAs
// takes a pool once, so the chain is checked in WithVerifyPeerCertificate instead.
//
// The caller adds its own (cipher suites, PSK, logger, MTU); with certificates
// only, add piondtls.WithCipherSuites(DTLSCertificateSuites...). The client's
// identity is Identity of the first of State.PeerCertificates, parsed.
func DTLSServerOptions(src *Source) []piondtls.ServerOption {
	opts := []piondtls.ServerOption{
		piondtls.WithGetCertificate(func(*piondtls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.GetCertificate(nil)
		}),
		// Requested, not required: constrained DTLS stacks (tinydtls) lack it.
		piondtls.WithExtendedMasterSecret(piondtls.RequestExtendedMasterSecret),
	}
	if src.RequiresClientCert() {
		opts = append(opts,
			piondtls.WithClientAuth(piondtls.RequireAnyClientCert),
			piondtls.WithVerifyPeerCertificate(src.VerifyClient))
	}
	return opts
}

// DTLSClientOptions are the pion/dtls client options that present the Source's
// certificate (if it has one) as it is at each handshake and check the server's
// certificate for serverName against the CA bundle as it is at each handshake:
// the DTLS counterpart of ClientConfig. pion's WithRootCAs takes a pool once, so
// its own check is replaced by VerifyServer (insecure_skip_verify: no check).
//
// The caller adds its own (cipher suites, logger); with certificates only, add
// piondtls.WithCipherSuites(DTLSCertificateSuites...).
func DTLSClientOptions(src *Source, serverName string) []piondtls.ClientOption {
	if src.files.InsecureSkipVerify {
		src.warnInsecure(serverName)
	}
	opts := []piondtls.ClientOption{
		piondtls.WithServerName(serverName),
		piondtls.WithInsecureSkipVerify(true),
		piondtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			return src.VerifyServer(raw, serverName)
		}),
		piondtls.WithExtendedMasterSecret(piondtls.RequestExtendedMasterSecret),
	}
	if src.files.CertFile != "" {
		opts = append(opts, piondtls.WithGetClientCertificate(func(*piondtls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.Certificate(), nil
		}))
	}
	return opts
}
