package opcua

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/opcua/opcuasim"
	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

// secretVolume lays files out as the kubelet does for a Secret volume: each version
// in a directory of its own (..2026_...), the ..data symlink to the current one,
// swapped atomically, and each file a symlink through ..data.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T) *secretVolume {
	return &secretVolume{t: t, dir: t.TempDir()}
}

func (v *secretVolume) path(name string) string { return filepath.Join(v.dir, name) }

// update writes a new version and swaps ..data to it.
func (v *secretVolume) update(files map[string][]byte) {
	v.t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_01_02_03_04_05.%09d", v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		v.t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), b, 0o600); err != nil {
			v.t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			v.t.Fatal(err)
		}
	}
}

type testCert struct {
	der      []byte
	key      *rsa.PrivateKey
	thumb    string
	notAfter time.Time
}

func newTestCert(t *testing.T, name string) testCert {
	t.Helper()
	der, key, err := uacert.Generate("edgegate test "+name, "urn:edgegate:test:"+name, []string{"localhost"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{der: der, key: key, thumb: uacert.Thumbprint(der), notAfter: c.NotAfter}
}

// pemFiles and derFiles are a Secret's tls.crt and tls.key: PEM (PKCS#1 key), or
// DER (PKCS#8 key).
func (c testCert) pemFiles() map[string][]byte {
	return map[string][]byte{"tls.crt": uacert.EncodeCert(c.der), "tls.key": uacert.EncodeKey(c.key)}
}

func (c testCert) derFiles(t *testing.T) map[string][]byte {
	t.Helper()
	k, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"tls.crt": c.der, "tls.key": k}
}

// logRecorder keeps every log record, with its attributes, and passes them on to
// the test's logger.
type logRecorder struct {
	mu    *sync.Mutex
	recs  *[]logRecord
	attrs []slog.Attr
	next  slog.Handler
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogRecorder(t *testing.T) *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), recs: new([]logRecord), next: testLogger(t).Handler()}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	lr := logRecord{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	for _, a := range r.attrs {
		lr.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	*r.recs = append(*r.recs, lr)
	r.mu.Unlock()
	if r.next.Enabled(ctx, rec.Level) {
		return r.next.Handle(ctx, rec)
	}
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(slices.Clip(r.attrs), as...)
	c.next = r.next.WithAttrs(as)
	return &c
}

func (r *logRecorder) WithGroup(name string) slog.Handler {
	c := *r
	c.next = r.next.WithGroup(name)
	return &c
}

// errorLogs are the records at error level.
func (r *logRecorder) errorLogs() []logRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRecord
	for _, lr := range *r.recs {
		if lr.level >= slog.LevelError {
			out = append(out, lr)
		}
	}
	return out
}

// secureConfig is testConfig with Basic256Sha256 SignAndEncrypt, the simulator's
// certificate trusted and the client certificate from vol's tls.crt and tls.key.
func secureConfig(t *testing.T, s *opcuasim.Server, vol *secretVolume) *Config {
	t.Helper()
	trusted := t.TempDir()
	if err := os.WriteFile(filepath.Join(trusted, "sim.der"), s.CertDER(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s.Endpoint())
	cfg.Devices[0].Security = SecurityConfig{
		Policy: "Basic256Sha256", Mode: "SignAndEncrypt", TrustedDir: trusted,
		CertFile: vol.path("tls.crt"), KeyFile: vol.path("tls.key"),
	}
	return cfg
}

// channels is the simulator's list of client certificate thumbprints, with A and
// B named.
func channels(s *opcuasim.Server, names map[string]string) []string {
	out := s.ClientCertificates()
	for i, tp := range out {
		if n, ok := names[tp]; ok {
			out[i] = n
		}
	}
	return out
}

// reconnect cuts the session's connection and waits for the next secure channel:
// the next session attempt, which read the certificate files first.
func reconnect(t *testing.T, s *opcuasim.Server) string {
	t.Helper()
	n := len(s.ClientCertificates())
	s.DropConnections()
	var tps []string
	waitFor(t, "a new secure channel", func() bool {
		tps = s.ClientCertificates()
		return len(tps) > n
	})
	return tps[len(tps)-1]
}

// TestClientCertRotation: a device's client certificate in a Kubernetes Secret
// volume is read again when the ..data symlink swaps, and the next session uses
// it; a version that does not load is reported once and the last good
// certificate stays in use.
func TestClientCertRotation(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{Security: opcuasim.AllSecurity})
	a, b := newTestCert(t, "a"), newTestCert(t, "b")
	names := map[string]string{a.thumb: "A", b.thumb: "B"}
	vol := newSecretVolume(t)
	vol.update(a.pemFiles())
	rec := newLogRecorder(t)
	e := start(t, secureConfig(t, s, vol), protocols.Env{Logger: slog.New(rec)})
	e.until("a value over SignAndEncrypt", isPoint("temperature", bridge.QualityGood))
	if got := channels(s, names); len(got) == 0 || got[len(got)-1] != "A" {
		t.Fatalf("the server saw client certificates %v, want A", got)
	}
	m := e.a.metrics
	if got := gaugeValue(t, m.certExpiry.WithLabelValues("line-1")); got != float64(a.notAfter.Unix()) {
		t.Errorf("expiry gauge %v, want A's %v", got, a.notAfter.Unix())
	}

	// A new version with a certificate that is not one: the session goes on with
	// A, and so does the next one.
	vol.update(map[string][]byte{"tls.crt": []byte("garbage\n"), "tls.key": uacert.EncodeKey(a.key)})
	if got := reconnect(t, s); names[got] != "A" {
		t.Fatalf("after a bad new file the server saw %s, want A (%s)", got, a.thumb)
	}
	errs := rec.errorLogs()
	if len(errs) != 1 {
		t.Fatalf("%d errors logged for one bad change: %+v", len(errs), errs)
	}
	if lr := errs[0]; lr.attrs["cert_file"] != vol.path("tls.crt") || lr.attrs["key_file"] != vol.path("tls.key") ||
		lr.attrs["device"] != "line-1" || lr.attrs["err"] == "" {
		t.Errorf("error record %+v", lr)
	}
	if got := counterValue(t, m.certReloads.WithLabelValues("line-1", "error")); got != 1 {
		t.Errorf("error reloads %v, want 1", got)
	}
	// The same bad files are not reported again.
	if got := reconnect(t, s); names[got] != "A" {
		t.Fatalf("the server saw %s, want A", got)
	}
	if n := len(rec.errorLogs()); n != 1 {
		t.Errorf("the same bad files were reported %d times", n)
	}
	if got := counterValue(t, m.certReloads.WithLabelValues("line-1", "error")); got != 1 {
		t.Errorf("error reloads %v, want 1", got)
	}

	// Certificate B, in DER with a PKCS#8 key: the next session uses it.
	vol.update(b.derFiles(t))
	if got := reconnect(t, s); names[got] != "B" {
		t.Fatalf("after the swap the server saw %s, want B (%s); all: %v", got, b.thumb, channels(s, names))
	}
	back := time.Now()
	e.until("values with certificate B", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(back)
	})
	if got := counterValue(t, m.certReloads.WithLabelValues("line-1", "ok")); got != 1 {
		t.Errorf("ok reloads %v, want 1", got)
	}
	if got := gaugeValue(t, m.certExpiry.WithLabelValues("line-1")); got != float64(b.notAfter.Unix()) {
		t.Errorf("expiry gauge %v, want B's %v", got, b.notAfter.Unix())
	}
	if n := len(rec.errorLogs()); n != 1 {
		t.Errorf("%d errors logged, want the one of the bad version", n)
	}
}

// TestClientCertCheckedWhileConnected: the periodic check reads a new certificate
// while a session is open; the session is not dropped and keeps its certificate,
// and the next one uses the new certificate.
func TestClientCertCheckedWhileConnected(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{Security: opcuasim.AllSecurity})
	a, b := newTestCert(t, "a"), newTestCert(t, "b")
	names := map[string]string{a.thumb: "A", b.thumb: "B"}
	vol := newSecretVolume(t)
	vol.update(a.derFiles(t))
	e := startWith(t, secureConfig(t, s, vol), protocols.Env{}, func(a *Adapter) {
		a.certInterval = 10 * time.Millisecond
	})
	e.until("a value over SignAndEncrypt", isPoint("temperature", bridge.QualityGood))
	before := channels(s, names)
	if len(before) == 0 || before[len(before)-1] != "A" {
		t.Fatalf("the server saw client certificates %v, want A", before)
	}
	m := e.a.metrics
	lost := counterValue(t, m.sessionsLost.WithLabelValues("line-1"))

	vol.update(b.pemFiles())
	waitFor(t, "certificate B read by the periodic check", func() bool {
		return counterValue(t, m.certReloads.WithLabelValues("line-1", "ok")) == 1
	})
	if got := gaugeValue(t, m.certExpiry.WithLabelValues("line-1")); got != float64(b.notAfter.Unix()) {
		t.Errorf("expiry gauge %v, want B's %v", got, b.notAfter.Unix())
	}
	back := time.Now()
	e.until("values on the open session", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(back)
	})
	if got := counterValue(t, m.sessionsLost.WithLabelValues("line-1")); got != lost {
		t.Errorf("sessions lost went from %v to %v: the reload dropped the session", lost, got)
	}
	if got := channels(s, names); !slices.Equal(got, before) {
		t.Errorf("the reload opened channels: %v, was %v", got, before)
	}

	if got := reconnect(t, s); names[got] != "B" {
		t.Fatalf("the next session showed %s, want B (%s)", got, b.thumb)
	}
	e.until("values with certificate B", isPoint("temperature", bridge.QualityGood))
}

// TestClientCertFiles: plain files replaced by rename, a certificate written
// before its key (an error, once), then the key (picked up).
func TestClientCertFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	replace := func(path string, b []byte) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	a, b := newTestCert(t, "a"), newTestCert(t, "b")
	replace(certFile, uacert.EncodeCert(a.der))
	replace(keyFile, uacert.EncodeKey(a.key))
	m := newMetrics()
	rec := newLogRecorder(t)
	c, err := fileCert(certFile, keyFile, "dev", slog.New(rec), m)
	if err != nil {
		t.Fatal(err)
	}
	thumb := func() string { return uacert.Thumbprint(c.identity().der) }
	if got := thumb(); got != a.thumb {
		t.Fatalf("identity %s, want A", got)
	}
	if c.check() {
		t.Error("unchanged files reloaded")
	}
	if id := c.identity(); id.uri != "urn:edgegate:test:a" {
		t.Errorf("application URI %q", id.uri)
	}

	replace(certFile, b.der) // B's certificate (DER) with A's key
	if got := thumb(); got != a.thumb {
		t.Errorf("a certificate without its key was used: %s", got)
	}
	if got := thumb(); got != a.thumb {
		t.Errorf("identity %s, want A", got)
	}
	if n := len(rec.errorLogs()); n != 1 {
		t.Errorf("%d errors for one bad change", n)
	}
	if got := counterValue(t, m.certReloads.WithLabelValues("dev", "error")); got != 1 {
		t.Errorf("error reloads %v", got)
	}

	replace(keyFile, uacert.EncodeKey(b.key))
	if got := thumb(); got != b.thumb {
		t.Errorf("identity %s, want B", got)
	}
	if id := c.identity(); id.uri != "urn:edgegate:test:b" {
		t.Errorf("application URI %q", id.uri)
	}
	if got := counterValue(t, m.certReloads.WithLabelValues("dev", "ok")); got != 1 {
		t.Errorf("ok reloads %v", got)
	}
	if got := gaugeValue(t, m.certExpiry.WithLabelValues("dev")); got != float64(b.notAfter.Unix()) {
		t.Errorf("expiry gauge %v, want B's %v", got, b.notAfter.Unix())
	}

	// A file gone for a moment: reported once, the last good one kept.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if got := thumb(); got != b.thumb {
		t.Errorf("identity %s, want B", got)
	}
	_ = thumb()
	if n := len(rec.errorLogs()); n != 2 {
		t.Errorf("%d errors, want 2", n)
	}
}
