package opcua

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/protocols/opcua/uacert"
	egtls "github.com/edgegate/edgegate/tls"
)

// certCheckInterval is how often a running adapter checks the cert_file and
// key_file of its devices for changes, besides the check before every session
// attempt: well within the 10 seconds the gateway promises.
const certCheckInterval = 5 * time.Second

// clientCert is a device's client certificate: a fixed one (generated for the
// gateway), or cert_file and key_file, read again when they change.
//
// A change is seen by stat, as tls.Source sees one: each file's resolved path
// (through every symlink), device, inode, size and modification time. That
// notices a file rewritten in place, a file renamed over another, and a Kubernetes
// Secret volume, where the kubelet writes a new timestamped directory and swaps
// the ..data symlink to it (cert-manager renews this way). The files are checked
// before every session attempt and every certCheckInterval while the adapter runs.
//
// Changed files that do not load (half written, a key that does not match the
// certificate, neither PEM nor DER) are logged at error level once and counted,
// and the last good certificate stays in use; the next change is tried again.
//
// A session takes the certificate current when it is made: the secure channel is
// opened with it, and it stays in use for that session's life (its channel
// renewals included). A new certificate is used from the next session attempt:
// after a reconnect, never by dropping a session that works.
type clientCert struct {
	certFile, keyFile string // empty for a fixed certificate
	device            string
	log               *slog.Logger
	m                 *metrics

	mu   sync.Mutex        // one check at a time
	seen []egtls.FileStamp // the files as they were at the last load attempt
	cur  atomic.Pointer[identity]
}

// fixedCert is a certificate that does not change (generated, or the data dir's).
func fixedCert(id *identity, device string, m *metrics) *clientCert {
	c := &clientCert{device: device, m: m}
	c.cur.Store(id)
	m.certExpiry.WithLabelValues(device).Set(float64(id.notAfter.Unix()))
	return c
}

// fileCert reads cert_file and key_file; an error is the device's start-up error.
func fileCert(certFile, keyFile, device string, log *slog.Logger, m *metrics) (*clientCert, error) {
	c := &clientCert{certFile: certFile, keyFile: keyFile, device: device, log: log, m: m}
	c.seen = c.stat()
	id, err := loadIdentity(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.cur.Store(id)
	m.certReloads.WithLabelValues(device, "ok")
	m.certReloads.WithLabelValues(device, "error")
	m.certExpiry.WithLabelValues(device).Set(float64(id.notAfter.Unix()))
	return c, nil
}

// rotates reports whether the certificate comes from files that may change.
func (c *clientCert) rotates() bool { return c.certFile != "" }

// identity checks the files and returns the certificate to make a session with.
func (c *clientCert) identity() *identity {
	if c.rotates() {
		c.check()
	}
	return c.cur.Load()
}

func (c *clientCert) stat() []egtls.FileStamp { return egtls.StatFiles(c.certFile, c.keyFile) }

// check reads the files again if they changed since the last attempt, and
// reports whether a new certificate is now in use.
func (c *clientCert) check() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stat()
	if slices.Equal(st, c.seen) {
		return false
	}
	var (
		id  *identity
		err error
	)
	// Files that change while they are read (the certificate read from the old
	// ..data directory, the key from the new one) are read again: a reload caught
	// in the middle of a swap is not an error to report.
	for range 3 {
		c.seen = st
		if id, err = loadIdentity(c.certFile, c.keyFile); err == nil {
			break
		}
		if st = c.stat(); slices.Equal(st, c.seen) {
			break
		}
	}
	if err != nil {
		c.m.certReloads.WithLabelValues(c.device, "error").Inc()
		c.log.Error("opcua: changed client certificate files do not load; keeping the last good ones",
			"cert_file", c.certFile, "key_file", c.keyFile, "since", c.cur.Load().since, "err", err)
		return false
	}
	c.cur.Store(id)
	c.m.certReloads.WithLabelValues(c.device, "ok").Inc()
	c.m.certExpiry.WithLabelValues(c.device).Set(float64(id.notAfter.Unix()))
	c.log.Info("opcua: client certificate files reloaded; the next session uses them (an open session keeps its certificate until it reconnects)",
		"cert_file", c.certFile, "key_file", c.keyFile, "subject", id.subject, "thumbprint", uacert.Thumbprint(id.der),
		"not_after", id.notAfter)
	return true
}

// watchCerts checks the devices' certificate files every interval until ctx ends.
func (a *Adapter) watchCerts(ctx context.Context, interval time.Duration) {
	var certs []*clientCert
	for _, d := range a.order {
		if d.cert != nil && d.cert.rotates() {
			certs = append(certs, d.cert)
		}
	}
	if len(certs) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range certs {
			c.check()
		}
	}
}
