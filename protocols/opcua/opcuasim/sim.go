// Package opcuasim is an OPC UA server for tests, demos and benchmarks: gopcua's
// server package (secure channels, sessions, every security policy, reads and
// writes) with a namespace of simulated variables that change on a timer,
// writable ones, and switches that break it the ways real servers break: Restart
// (the process goes away and comes back on the same port), DropConnections (the
// network cuts every TCP connection; sessions survive), DropSubscriptions (the
// server forgets every subscription) and Remove (a node disappears).
//
// Its own Subscription and MonitoredItem services replace gopcua's (see engine.go
// for why). Clients reach gopcua through a small TCP relay of the simulator's, so
// that Stop can cut their connections (gopcua's Server.Close closes its listener
// but not the connections already accepted), and so that secure policies work: the
// relay decrypts a client's first OpenSecureChannel request, which gopcua v0.8.0's
// server cannot (see openOPN).
//
// It does not validate client certificates or user names: every client is let in.
// ClientCertificates lists the certificates clients opened secure channels with.
package opcuasim

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"

	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

// Var is one simulated variable, node id ns=1;s=<Name>.
type Var struct {
	Name string
	// Value is the initial value; its Go type gives the OPC UA type (bool, int8 to
	// uint64, float32, float64, string, []byte, time.Time).
	Value    any
	Writable bool
	// Change gives the next value on every tick; nil keeps the value.
	Change func(prev any, tick uint64) any
}

// Security is one endpoint's policy and mode, as gopcua names them ("None",
// "Basic256Sha256", ...; ua.MessageSecurityModeNone, ...).
type Security struct {
	Policy string
	Mode   ua.MessageSecurityMode
}

// Options configure a Server. The zero value serves None on a free loopback port.
type Options struct {
	// Address is host:port for clients; port 0 picks a free one (kept across
	// restarts). Default 127.0.0.1:0.
	Address string
	// Security lists the endpoints; default None/None only.
	Security []Security
	// CertDER and Key are the server's certificate; generated when nil.
	CertDER []byte
	Key     *rsa.PrivateKey
	// Interval is how often changing variables change; default 100ms.
	Interval time.Duration
	// MaxMonitoredItemsPerCall is advertised (OperationLimits) and enforced when
	// above 0.
	MaxMonitoredItemsPerCall uint32
	Vars                     []Var
	// Logger gets gopcua's server log; nil discards it.
	Logger *slog.Logger
}

// AllSecurity is every policy edgegate supports, with both modes, and None.
var AllSecurity = []Security{
	{"None", ua.MessageSecurityModeNone},
	{"Basic256Sha256", ua.MessageSecurityModeSign},
	{"Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt},
	{"Aes128_Sha256_RsaOaep", ua.MessageSecurityModeSign},
	{"Aes128_Sha256_RsaOaep", ua.MessageSecurityModeSignAndEncrypt},
	{"Aes256_Sha256_RsaPss", ua.MessageSecurityModeSign},
	{"Aes256_Sha256_RsaPss", ua.MessageSecurityModeSignAndEncrypt},
}

// Server is a simulated OPC UA server.
type Server struct {
	opts Options
	ns   *namespace
	cert []byte
	key  *rsa.PrivateKey
	log  logger

	tickStop chan struct{}
	tickDone chan struct{}
	ticks    atomic.Uint64

	mu      sync.Mutex // guards the running instance
	addr    string     // the clients' host:port, fixed at the first Start
	run     *instance
	closed  bool
	started int // Starts so far

	clientMu    sync.Mutex
	clientCerts []string // thumbprints, in the order channels were opened
}

// instance is one run of the server, from Start to Stop.
type instance struct {
	srv    *server.Server
	eng    *engine
	cancel context.CancelFunc
	ln     net.Listener
	relay  sync.WaitGroup
	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	key    *rsa.PrivateKey
	log    logger
	opened func(clientCert []byte) // a secure channel was opened with this certificate
}

// New builds a server; Start serves it.
func New(o Options) (*Server, error) {
	if o.Address == "" {
		o.Address = "127.0.0.1:0"
	}
	if len(o.Security) == 0 {
		o.Security = []Security{{"None", ua.MessageSecurityModeNone}}
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
	s := &Server{opts: o, ns: newNamespace(), cert: o.CertDER, key: o.Key}
	if o.Logger != nil {
		s.log = slogger{o.Logger}
	}
	if s.cert == nil || s.key == nil {
		host, _, _ := net.SplitHostPort(o.Address)
		der, key, err := uacert.Generate("edgesim OPC UA server", "urn:edgegate:edgesim:server", []string{host, "localhost"}, 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		s.cert, s.key = der, key
	}
	for _, v := range o.Vars {
		if err := s.Add(v); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// TypeOf is the OPC UA type a Go value is served as.
func TypeOf(v any) (ua.TypeID, error) {
	vr, err := ua.NewVariant(v)
	if err != nil {
		return 0, err
	}
	if vr.ArrayLength() > 0 || vr.Type() == ua.TypeIDNull {
		return 0, fmt.Errorf("opcuasim: %T is not a scalar of a built-in type", v)
	}
	return vr.Type(), nil
}

// Add adds a variable (or replaces one of the same name).
func (s *Server) Add(v Var) error {
	t, err := TypeOf(v.Value)
	if err != nil {
		return fmt.Errorf("opcuasim: variable %q: %w", v.Name, err)
	}
	s.ns.mu.Lock()
	s.ns.vars[v.Name] = &variable{
		name: v.Name, nodeID: ua.NewStringNodeID(s.ns.id, v.Name), typ: t, value: v.Value,
		writable: v.Writable, change: v.Change, source: time.Now(),
	}
	s.ns.mu.Unlock()
	return nil
}

// Remove deletes a variable: monitored items on it keep their last value, and new
// ones fail with BadNodeIdUnknown.
func (s *Server) Remove(name string) {
	s.ns.mu.Lock()
	delete(s.ns.vars, name)
	s.ns.mu.Unlock()
}

// Set gives a variable a new value now, with the given status (ua.StatusOK for a
// good value), and notifies its monitored items.
func (s *Server) Set(name string, v any, status ua.StatusCode) error {
	s.ns.mu.Lock()
	vr := s.ns.vars[name]
	if vr == nil {
		s.ns.mu.Unlock()
		return fmt.Errorf("opcuasim: no variable %q", name)
	}
	if v != nil {
		t, err := TypeOf(v)
		if err != nil || t != vr.typ {
			s.ns.mu.Unlock()
			return fmt.Errorf("opcuasim: variable %q is %v, not %T", name, vr.typ, v)
		}
		vr.value = v
	}
	vr.status = status
	vr.source = time.Now()
	dv := vr.dataValue()
	s.ns.mu.Unlock()
	s.ns.notify(name, dv)
	return nil
}

// Value returns a variable's value and how many writes it took.
func (s *Server) Value(name string) (v any, writes uint64, ok bool) {
	s.ns.mu.RLock()
	defer s.ns.mu.RUnlock()
	vr := s.ns.vars[name]
	if vr == nil {
		return nil, 0, false
	}
	return vr.value, vr.writes, true
}

// NodeID is a variable's node id as text, e.g. "ns=1;s=Line1.Temperature".
func NodeID(name string) string { return "ns=1;s=" + name }

// CertDER is the server's certificate.
func (s *Server) CertDER() []byte { return s.cert }

// Endpoint is the URL clients connect to, once started.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "opc.tcp://" + s.addr
}

// Addr is the clients' host:port, once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Starts counts the Starts so far (a restart is one more).
func (s *Server) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Stats reports the current run's subscriptions and monitored items, and the
// notifications it has sent.
func (s *Server) Stats() (subscriptions, items int, sent uint64) {
	s.mu.Lock()
	r := s.run
	s.mu.Unlock()
	if r == nil {
		return 0, 0, 0
	}
	return r.eng.stats()
}

// ClientCertificates are the SHA-1 thumbprints (uacert.Thumbprint) of the client
// certificates of every secure channel opened so far, restarts included, in the
// order they were opened: one per channel, renewals not counted.
func (s *Server) ClientCertificates() []string {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	return slices.Clone(s.clientCerts)
}

func (s *Server) opened(der []byte) {
	tp := uacert.Thumbprint(der)
	s.clientMu.Lock()
	s.clientCerts = append(s.clientCerts, tp)
	s.clientMu.Unlock()
}

// Start serves until Stop. The first Start fixes the address; later ones reuse it.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("opcuasim: closed")
	}
	if s.run != nil {
		return errors.New("opcuasim: already started")
	}
	addr := s.addr
	if addr == "" {
		addr = s.opts.Address
	}
	// The clients' listener first: it fixes the port.
	ln, err := listenRetry(addr)
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(s.addr)
	pub, _ := strconv.Atoi(port)

	// gopcua listens on a port of its own behind the relay; it cannot listen on a
	// port 0 and say which it got, so a free one is picked and tried.
	var (
		srv *server.Server
		eng *engine
		ctx context.Context
		cfn context.CancelFunc
		in  string
	)
	for try := 0; ; try++ {
		in, err = freePort(host)
		if err == nil {
			_, ip, _ := net.SplitHostPort(in)
			inPort, _ := strconv.Atoi(ip)
			srv, eng = s.build(host, inPort, pub)
			ctx, cfn = context.WithCancel(context.Background())
			if err = srv.Start(ctx); err == nil {
				break
			}
			cfn()
		}
		if try == 5 {
			ln.Close()
			return fmt.Errorf("opcuasim: starting gopcua's server: %w", err)
		}
	}
	r := &instance{srv: srv, eng: eng, cancel: cfn, ln: ln, conns: make(map[net.Conn]struct{}), key: s.key, log: s.log, opened: s.opened}
	f := eng.changed
	s.ns.changed.Store(&f)
	s.run = r
	s.started++
	r.relay.Add(1)
	go r.accept(in)
	if s.tickStop == nil {
		s.tickStop, s.tickDone = make(chan struct{}), make(chan struct{})
		go s.tick(s.tickStop, s.tickDone)
	}
	return nil
}

func (s *Server) build(host string, inPort, pubPort int) (*server.Server, *engine) {
	opts := []server.Option{
		// gopcua listens on the first endpoint; the second is the one clients use.
		server.EndPoint(host, inPort),
		server.EndPoint(host, pubPort),
		server.Certificate(s.cert),
		server.PrivateKey(s.key),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EnableAuthMode(ua.UserTokenTypeUserName),
		server.ServerName("edgesim"),
		server.ProductName("edgegate OPC UA simulator"),
	}
	for _, sec := range s.opts.Security {
		opts = append(opts, server.EnableSecurity(sec.Policy, sec.Mode))
	}
	if s.log != nil {
		opts = append(opts, server.SetLogger(s.log))
	}
	srv := server.New(opts...)
	srv.AddNamespace(s.ns)
	if s.opts.MaxMonitoredItemsPerCall > 0 {
		limit := s.opts.MaxMonitoredItemsPerCall
		ns0, _ := srv.Namespace(0)
		ns0.AddNode(server.NewNode(
			ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall),
			map[ua.AttributeID]*ua.DataValue{
				ua.AttributeIDNodeClass: server.DataValueFromValue(uint32(ua.NodeClassVariable)),
				ua.AttributeIDDataType:  server.DataValueFromValue(ua.NewNumericExpandedNodeID(0, id.UInt32)),
			},
			nil,
			func() *ua.DataValue { return server.DataValueFromValue(limit) },
		))
	}
	eng := newEngine(srv, s.ns, s.log, s.opts.MaxMonitoredItemsPerCall)
	eng.register()
	return srv, eng
}

// Stop stops serving: clients' connections are cut, sessions and subscriptions
// are gone. Variables keep their values.
func (s *Server) Stop() {
	s.mu.Lock()
	r := s.run
	s.run = nil
	s.mu.Unlock()
	if r == nil {
		return
	}
	s.ns.changed.Store(nil)
	r.ln.Close()
	r.cutAll()
	r.relay.Wait()
	r.eng.close()
	_ = r.srv.Close()
	r.cancel()
}

// Restart stops and starts again on the same address.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// DropConnections cuts every client's TCP connection without stopping the server.
func (s *Server) DropConnections() {
	s.mu.Lock()
	r := s.run
	s.mu.Unlock()
	if r != nil {
		r.cutAll()
	}
}

// DropSubscriptions makes the server forget every subscription.
func (s *Server) DropSubscriptions() {
	s.mu.Lock()
	r := s.run
	s.mu.Unlock()
	if r != nil {
		r.eng.dropAll()
	}
}

// Close stops the server for good, with its timer.
func (s *Server) Close() {
	s.Stop()
	s.mu.Lock()
	s.closed = true
	stop, done := s.tickStop, s.tickDone
	s.tickStop = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// tick changes the variables that change, from the first Start to Close.
func (s *Server) tick(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.ns.tick(s.ticks.Add(1), now)
		}
	}
}

// accept relays each client connection to gopcua's listener.
func (r *instance) accept(inner string) {
	defer r.relay.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		d, err := net.DialTimeout("tcp", inner, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c, d) {
			return
		}
		r.relay.Add(2)
		go r.upstream(d, c)
		go r.pipe(c, d)
	}
}

func (r *instance) track(cs ...net.Conn) bool {
	r.connMu.Lock()
	defer r.connMu.Unlock()
	if r.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *instance) pipe(dst, src net.Conn) {
	defer r.relay.Done()
	_, _ = io.Copy(dst, src)
	r.closePair(dst, src)
}

// upstream relays a client's bytes to gopcua, opening the first OpenSecureChannel
// request of a secure policy on the way (see openOPN).
func (r *instance) upstream(dst, src net.Conn) {
	defer r.relay.Done()
	defer r.closePair(dst, src)
	for {
		chunk, err := readChunk(src)
		if err != nil {
			return
		}
		if string(chunk[:3]) == "OPN" {
			var cert []byte
			if chunk, cert, err = openOPN(chunk, r.key); err != nil {
				if r.log != nil {
					r.log.Warn("opcuasim: an OpenSecureChannel request: %v", err)
				}
				return
			}
			if cert != nil {
				r.opened(cert)
			}
		}
		if _, err := dst.Write(chunk); err != nil {
			return
		}
		if string(chunk[:3]) == "OPN" {
			// The channel is open: gopcua handles everything after, renewals
			// included, with the secure channel's own keys.
			_, _ = io.Copy(dst, src)
			return
		}
	}
}

// maxChunk bounds a chunk read by the relay (gopcua's default message size).
const maxChunk = 2 << 20

// readChunk reads one UA TCP message: 8 bytes of type and size, then the rest.
func readChunk(c net.Conn) ([]byte, error) {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(hdr[4:])
	if size < 8 || size > maxChunk {
		return nil, fmt.Errorf("chunk of %d bytes", size)
	}
	b := make([]byte, size)
	copy(b, hdr)
	if _, err := io.ReadFull(c, b[8:]); err != nil {
		return nil, err
	}
	return b, nil
}

// openOPN decrypts a client's first OpenSecureChannel request of a secure policy
// and checks its signature, and returns it as plaintext with the same headers.
// gopcua v0.8.0's server reads that first request as if it were not encrypted (its
// channel starts with mode None: gopcua #815, fixed after v0.8.0); once it has read
// it, the channel has its mode and keys and is secure from the response on. A
// request of policy None is returned as it came. The client certificate of a
// secure policy's request is returned too (nil for None).
func openOPN(b []byte, serverKey *rsa.PrivateKey) (_ []byte, clientCert []byte, _ error) {
	m := new(uasc.MessageChunk)
	if _, err := m.Decode(b); err != nil {
		return nil, nil, err
	}
	h := m.AsymmetricSecurityHeader
	if h == nil {
		return nil, nil, errors.New("no asymmetric security header")
	}
	if h.SecurityPolicyURI == ua.SecurityPolicyURINone || h.SecurityPolicyURI == "" {
		return b, nil, nil
	}
	cert, err := x509.ParseCertificate(h.SenderCertificate)
	if err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, nil, errors.New("client certificate without an RSA key")
	}
	algo, err := uapolicy.Asymmetric(h.SecurityPolicyURI, serverKey, pub)
	if err != nil {
		return nil, nil, err
	}
	hl := 12 + h.Len()
	p, err := algo.Decrypt(b[hl:])
	if err != nil {
		return nil, nil, fmt.Errorf("decrypting: %w", err)
	}
	plain := append(append([]byte(nil), b[:hl]...), p...)
	sigLen := algo.RemoteSignatureLength()
	if len(plain) < hl+sigLen+1 {
		return nil, nil, errors.New("short request")
	}
	msg, sig := plain[:len(plain)-sigLen], plain[len(plain)-sigLen:]
	// The signature covers the header with the encrypted size.
	signed := append([]byte(nil), msg...)
	binary.LittleEndian.PutUint32(signed[4:], uint32(len(b)))
	if err := algo.VerifySignature(signed, sig); err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	pad := int(msg[len(msg)-1])
	if algo.SignatureLength() > 256 {
		pad = pad<<8 + int(msg[len(msg)-2]) + 1
	}
	pad++
	if len(msg)-pad < hl {
		return nil, nil, errors.New("bad padding")
	}
	out := msg[:len(msg)-pad]
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)))
	return out, h.SenderCertificate, nil
}

func (r *instance) closePair(dst, src net.Conn) {
	// Either side gone: both go, so that gopcua and the client see the cut.
	dst.Close()
	src.Close()
	r.connMu.Lock()
	if r.conns != nil {
		delete(r.conns, dst)
		delete(r.conns, src)
	}
	r.connMu.Unlock()
}

// cutAll closes every relayed connection.
func (r *instance) cutAll() {
	r.connMu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.connMu.Unlock()
}

// listenRetry binds addr; a port just freed by Stop may still be in use for a
// moment by the connections being torn down.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("opcuasim: listen on %s: %w", addr, err)
}

func freePort(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// logger is gopcua's server logging interface (printf-style messages).
type logger = server.Logger

type slogger struct{ l *slog.Logger }

func (s slogger) Debug(msg string, args ...any) { s.l.Debug(fmt.Sprintf(msg, args...)) }
func (s slogger) Info(msg string, args ...any)  { s.l.Debug(fmt.Sprintf(msg, args...)) }
func (s slogger) Warn(msg string, args ...any)  { s.l.Warn(fmt.Sprintf(msg, args...)) }
func (s slogger) Error(msg string, args ...any) { s.l.Warn(fmt.Sprintf(msg, args...)) }
