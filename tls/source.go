package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/tls/tlsbase"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterval is how often a Source's files are checked for changes: well
// within the 10 seconds the gateway promises, and a few stat calls per file set.
const DefaultInterval = 5 * time.Second

// Source is one `tls:` block's material, read from its files and read again when
// they change: the certificate and key, and the CA bundle (client_ca_file on a
// server side, ca_file on a client side).
//
// A change is seen by stat: each file's resolved path (through every symlink),
// device, inode, size and modification time. That notices a file rewritten in
// place, a file renamed over another, and a Kubernetes Secret volume, where the
// kubelet writes a new timestamped directory and swaps the ..data symlink to it
// (cert-manager renews this way). Files are checked every interval by the Store's
// Run, and also by the first handshake after an interval has passed, so that a
// Source without a running Store rotates too.
//
// When a changed file does not load (half written, a key that does not match the
// certificate, not PEM), the error is logged and counted, and the last good
// material stays in use, as grpc-go's pemfile provider does. The same bad files
// are not reported again until they change.
//
// Connections take the material current at their handshake: new connections get
// the new certificate, open ones keep theirs.
type Source struct {
	files    Files
	label    string // for logs and metrics: the cert_file, or the CA file of a client without one
	log      *slog.Logger
	interval time.Duration
	metrics  *sourceMetrics // nil: none

	insecureOnce sync.Once // the insecure_skip_verify warning, once per Source

	mu   sync.Mutex  // one check at a time
	seen []FileStamp // the files as they were at the last load attempt
	cur  atomic.Pointer[material]
	due  atomic.Int64 // UnixNano after which a handshake checks the files
}

// material is one loaded set of files.
type material struct {
	cert  *tls.Certificate // nil on a client side without a certificate
	cas   *x509.CertPool   // client_ca_file (server) or ca_file (client); nil: none or system roots
	since time.Time
}

// FileStamp is what stat says of one file: its path as given, the path every
// symlink resolves to, its device, inode, size and modification time (or the
// error). Two stamps of the same file differ when it was rewritten in place,
// renamed over, or reached through a swapped symlink (a Kubernetes Secret volume).
// Comparable: compare slices with slices.Equal.
type FileStamp struct {
	path     string
	resolved string
	dev, ino uint64
	size     int64
	mtime    int64
	err      string
}

// StatFiles stamps each file, for a caller that keeps its own material read from
// files (the OPC UA adapter's client certificates) and wants to see a change as a
// Source does.
func StatFiles(paths ...string) []FileStamp {
	out := make([]FileStamp, len(paths))
	for i, p := range paths {
		st := FileStamp{path: p}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			st.resolved = r
		}
		fi, err := os.Stat(p)
		if err != nil {
			st.err = err.Error()
		} else {
			st.size, st.mtime = fi.Size(), fi.ModTime().UnixNano()
			st.dev, st.ino = fileID(fi)
		}
		out[i] = st
	}
	return out
}

// Files.Source is a Source outside any Store: no metrics, the default logger, the
// default interval, and checks only at handshakes.
func (f *Files) Source(server bool) (*Source, error) {
	return (*Store)(nil).source(f, server)
}

// newSource loads the files once; an error then is the caller's start-up error.
func newSource(f *Files, server bool, log *slog.Logger, interval time.Duration, m *sourceMetrics) (*Source, error) {
	if server {
		if err := f.Validate(); err != nil {
			return nil, err
		}
	} else if err := f.ValidateClient(); err != nil {
		return nil, err
	}
	s := &Source{files: *f, log: log, interval: interval, metrics: m}
	if !server {
		// A client side's CA file is read as a bundle of roots; the server-side
		// key stays empty so that load knows which role it serves.
		s.files.CAFile, s.files.ClientCAFile = f.rootsFile(), ""
	}
	s.label = s.files.CertFile
	if s.label == "" {
		s.label = "ca:" + s.files.CAFile
	}
	s.seen = s.stat()
	mat, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(mat)
	s.due.Store(time.Now().Add(interval).UnixNano())
	s.metrics.loaded(s.label, mat)
	return s, nil
}

func (s *Source) paths() []string {
	var out []string
	for _, p := range []string{s.files.CertFile, s.files.KeyFile, s.files.ClientCAFile, s.files.CAFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (s *Source) stat() []FileStamp { return StatFiles(s.paths()...) }

// load reads every file; it changes nothing.
func (s *Source) load() (*material, error) {
	m := &material{since: time.Now()}
	if s.files.CertFile != "" {
		cert, err := loadPair(s.files.CertFile, s.files.KeyFile)
		if err != nil {
			return nil, err
		}
		m.cert = cert
	}
	var err error
	switch {
	case s.files.ClientCAFile != "":
		m.cas, err = tlsbase.LoadPool(s.files.ClientCAFile)
	case s.files.CAFile != "":
		m.cas, err = tlsbase.LoadPool(s.files.CAFile)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Check reads the files again if they changed since the last attempt, and reports
// whether new material is now in use. A load error is returned (and logged and
// counted) with the last good material kept.
func (s *Source) Check() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.due.Store(time.Now().Add(s.interval).UnixNano())
	st := s.stat()
	if slices.Equal(st, s.seen) {
		return false, nil
	}
	s.seen = st
	mat, err := s.load()
	if err != nil {
		s.metrics.reload(s.label, "error")
		s.log.Error("tls: changed certificate files do not load; keeping the last good ones",
			"cert_file", s.files.CertFile, "since", s.cur.Load().since, "err", err)
		return false, err
	}
	s.cur.Store(mat)
	s.metrics.reload(s.label, "ok")
	s.metrics.loaded(s.label, mat)
	attrs := []any{"cert_file", s.files.CertFile}
	if mat.cert != nil {
		attrs = append(attrs, "subject", Identity(mat.cert.Leaf), "serial", mat.cert.Leaf.SerialNumber.String(), "not_after", mat.cert.Leaf.NotAfter)
	}
	if ca := s.files.ClientCAFile + s.files.CAFile; ca != "" {
		attrs = append(attrs, "ca_file", ca)
	}
	s.log.Info("tls: certificate files reloaded; new connections use them", attrs...)
	return true, nil
}

// maybeCheck checks the files when an interval has passed since the last check;
// handshakes call it, so that only one of them pays for the stat calls.
func (s *Source) maybeCheck() {
	due := s.due.Load()
	now := time.Now().UnixNano()
	if now < due || !s.due.CompareAndSwap(due, now+int64(s.interval)) {
		return
	}
	_, _ = s.Check()
}

// Certificate is the current certificate (nil on a client side without one).
func (s *Source) Certificate() *tls.Certificate {
	s.maybeCheck()
	return s.cur.Load().cert
}

// CAs is the current CA bundle: client_ca_file on a server side, ca_file on a
// client side (nil: none, or the system's roots).
func (s *Source) CAs() *x509.CertPool {
	s.maybeCheck()
	return s.cur.Load().cas
}

// RequiresClientCert reports whether the server side has a client_ca_file.
func (s *Source) RequiresClientCert() bool { return s.files.ClientCAFile != "" }

// Label is the cert_file (or the CA file of a client side without a certificate).
func (s *Source) Label() string { return s.label }

// GetCertificate is for tls.Config.GetCertificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.Certificate(); c != nil {
		return c, nil
	}
	return nil, errors.New("tls: no certificate configured")
}

// ErrClientCertificate wraps every refusal of a client certificate by VerifyClient.
var ErrClientCertificate = errors.New("client certificate refused")

// VerifyClient checks a client's certificate chain (leaf first, as on the wire)
// against the current client_ca_file, for a client-authentication use, now. It
// suits tls.Config.VerifyPeerCertificate and pion/dtls's WithVerifyPeerCertificate.
func (s *Source) VerifyClient(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrClientCertificate, err)
		}
		certs[i] = c
	}
	_, err := s.verifyClientChain(certs)
	return err
}

func (s *Source) verifyClientChain(certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: none presented", ErrClientCertificate)
	}
	pool := s.CAs()
	if pool == nil {
		return nil, fmt.Errorf("%w: no client_ca_file configured", ErrClientCertificate)
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrClientCertificate, Identity(certs[0]), err)
	}
	return chains, nil
}

// ServerConfig is a server configuration that takes its certificate, and checks
// client certificates against the CA bundle, as they are at each handshake. With
// client_ca_file a client must present a certificate that chains to it; set
// ClientAuth to tls.RequestClientCert on the result to make it optional (one given
// is still checked), and see who a client is with PeerIdentity.
//
// Client certificates are verified in VerifyConnection rather than through
// ClientCAs, because ClientCAs cannot change after the configuration is in use;
// VerifyConnection also runs on resumed sessions. VerifiedChains is therefore
// empty; PeerCertificates are verified.
func (s *Source) ServerConfig() *tls.Config {
	cfg := baseConfig(s.files.MinVersion)
	cfg.GetCertificate = s.GetCertificate
	if s.files.ClientCAFile != "" {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil // the ClientAuth in force allowed none
			}
			_, err := s.verifyClientChain(cs.PeerCertificates)
			return err
		}
	}
	return cfg
}

// ServerConfigVerifyLater is ServerConfig for a server that checks client
// certificates itself, after the handshake, to answer in its own protocol: gRPC's
// interceptors answer UNAUTHENTICATED with the reason, where a refusal inside the
// TLS 1.3 handshake reaches the client only as a broken connection. With
// client_ca_file a certificate is requested but neither required nor verified at
// the handshake: PeerCertificates are NOT to be trusted before VerifyPeer.
func (s *Source) ServerConfigVerifyLater() *tls.Config {
	cfg := baseConfig(s.files.MinVersion)
	cfg.GetCertificate = s.GetCertificate
	if s.files.ClientCAFile != "" {
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg
}

// ErrNoClientCertificate is VerifyPeer's error for a connection without one.
var ErrNoClientCertificate = errors.New("no client certificate")

// VerifyPeer checks a connection's client certificate against the current
// client_ca_file, and returns its identity. A connection without one gets
// ErrNoClientCertificate; a refused one, an error wrapping ErrClientCertificate
// that says why.
func (s *Source) VerifyPeer(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoClientCertificate
	}
	if _, err := s.verifyClientChain(cs.PeerCertificates); err != nil {
		return "", err
	}
	return Identity(cs.PeerCertificates[0]), nil
}

// ClientConfig is a client configuration that presents the current certificate
// (if any) and checks the server's against the CA bundle as it is at each
// handshake (ca_file; the system's roots without one). The server's name is
// server_name, or the host dialled (crypto/tls fills it in).
func (s *Source) ClientConfig() *tls.Config {
	cfg := baseConfig(s.files.MinVersion)
	cfg.ServerName = s.files.ServerName
	if s.files.CertFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.Certificate(), nil
		}
	}
	switch {
	case s.files.InsecureSkipVerify:
		s.warnInsecure(s.files.ServerName)
		cfg.InsecureSkipVerify = true
	case s.files.CAFile != "":
		// The CA bundle may change, and RootCAs cannot once the configuration is
		// in use: crypto/tls's own check is replaced by the same check against
		// the bundle of the moment.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return s.verifyServerChain(cs.PeerCertificates, cs.ServerName)
		}
	}
	return cfg
}

// warnInsecure logs, once per Source however many connections it makes, that
// insecure_skip_verify is set.
func (s *Source) warnInsecure(serverName string) {
	s.insecureOnce.Do(func() {
		s.log.Warn("tls: insecure_skip_verify is set: the server's certificate is not checked", "cert_file", s.files.CertFile, "server_name", serverName)
	})
}

// VerifyServer checks a server's certificate chain (leaf first, as on the wire)
// for serverName against the current ca_file, or the system's roots without one:
// the check ClientConfig makes, for clients that are not crypto/tls (pion/dtls's
// WithVerifyPeerCertificate). With insecure_skip_verify it accepts anything.
func (s *Source) VerifyServer(rawCerts [][]byte, serverName string) error {
	if s.files.InsecureSkipVerify {
		return nil
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("tls: server certificate: %w", err)
		}
		certs[i] = c
	}
	return s.verifyServerChain(certs, serverName)
}

func (s *Source) verifyServerChain(certs []*x509.Certificate, serverName string) error {
	if len(certs) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	opts := x509.VerifyOptions{Roots: s.CAs(), DNSName: serverName, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(opts)
	return err
}

// PeerIdentity is the identity of a connection's verified client certificate.
func PeerIdentity(cs tls.ConnectionState) (string, bool) {
	if len(cs.PeerCertificates) == 0 {
		return "", false
	}
	return Identity(cs.PeerCertificates[0]), true
}

// Store is the gateway's set of Sources: one per distinct set of files, however
// many listeners share them, checked together every interval while Run runs, with
// their metrics. A nil *Store works: its Sources stand alone (no metrics, checks
// at handshakes only).
type Store struct {
	log      *slog.Logger
	interval time.Duration
	metrics  *sourceMetrics

	mu      sync.Mutex
	sources map[string]*Source // by role and files
}

// StoreOptions configure a Store; the zero value works.
type StoreOptions struct {
	Logger *slog.Logger
	// Metrics registers the TLS metrics when not nil.
	Metrics prometheus.Registerer
	// Interval between checks of the files; default DefaultInterval.
	Interval time.Duration
}

// NewStore returns an empty Store.
func NewStore(o StoreOptions) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	s := &Store{log: o.Logger, interval: o.Interval, metrics: newSourceMetrics(), sources: map[string]*Source{}}
	if o.Metrics != nil {
		if err := s.metrics.register(o.Metrics); err != nil {
			return nil, fmt.Errorf("tls: registering metrics: %w", err)
		}
	}
	return s, nil
}

// Source returns the server-side Source of a `tls:` block, loading it the first
// time; the error names the file that did not load.
func (s *Store) Source(f *Files) (*Source, error) { return s.source(f, true) }

// ClientSource returns the client-side Source of a `tls:` block.
func (s *Store) ClientSource(f *Files) (*Source, error) { return s.source(f, false) }

// ServerConfig is Source(f).ServerConfig().
func (s *Store) ServerConfig(f *Files) (*tls.Config, error) {
	src, err := s.Source(f)
	if err != nil {
		return nil, err
	}
	return src.ServerConfig(), nil
}

func (s *Store) source(f *Files, server bool) (*Source, error) {
	if f == nil {
		return nil, errors.New("tls: no tls block")
	}
	if s == nil {
		return newSource(f, server, slog.Default(), DefaultInterval, nil)
	}
	key := fmt.Sprintf("%v\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%v", server, f.CertFile, f.KeyFile, f.ClientCAFile, f.CAFile, f.MinVersion, f.ServerName, f.InsecureSkipVerify)
	s.mu.Lock()
	defer s.mu.Unlock()
	if src, ok := s.sources[key]; ok {
		return src, nil
	}
	src, err := newSource(f, server, s.log, s.interval, s.metrics)
	if err != nil {
		return nil, err
	}
	s.sources[key] = src
	return src, nil
}

// Run checks every Source's files each interval until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		list := make([]*Source, 0, len(s.sources))
		for _, src := range s.sources {
			list = append(list, src)
		}
		s.mu.Unlock()
		for _, src := range list {
			_, _ = src.Check()
		}
	}
}

// sourceMetrics are the Store's. Methods do nothing on a nil receiver.
type sourceMetrics struct {
	reloads  *prometheus.CounterVec
	notAfter *prometheus.GaugeVec
	loadedAt *prometheus.GaugeVec
}

func newSourceMetrics() *sourceMetrics {
	return &sourceMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_tls_reloads_total",
			Help: "Certificate files read again after a change, by cert_file and result (ok, or error: the last good files stay in use).",
		}, []string{"cert_file", "result"}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate in use expires (Unix time), by cert_file: alert well before it.",
		}, []string{"cert_file"}),
		loadedAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_tls_loaded_timestamp_seconds",
			Help: "When the certificate files in use were read (Unix time), by cert_file.",
		}, []string{"cert_file"}),
	}
}

func (m *sourceMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.reloads, m.notAfter, m.loadedAt} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *sourceMetrics) reload(label, result string) {
	if m != nil {
		m.reloads.WithLabelValues(label, result).Inc()
	}
}

func (m *sourceMetrics) loaded(label string, mat *material) {
	if m == nil {
		return
	}
	m.loadedAt.WithLabelValues(label).Set(float64(mat.since.Unix()))
	if mat.cert != nil {
		m.notAfter.WithLabelValues(label).Set(float64(mat.cert.Leaf.NotAfter.Unix()))
	}
}
