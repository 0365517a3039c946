package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/dtls"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/tcp"
	tcpServer "github.com/plgd-dev/go-coap/v3/tcp/server"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/payload"
	"github.com/edgegate/edgegate/tls/tlsbase"
)

// The coap subcommand has two modes.
//
// Push (the default): --devices devices, each with its own CoAP session (its own UDP
// port, DTLS session or TCP connection), POST readings to /devices/{device}/{point}
// (or objects to /devices/{device}) at --rate or, with --load, as fast as their
// --inflight window allows; each, once its first reading is sent (the gateway
// observes only a device it knows), observes /devices/{device} for the gateway's
// writes, applies them and reports the new value at once. Its readings keep the
// session (and the observation) within the gateway's idle_timeout.
//
// Serve (--serve): one device that serves its points as resources, /points/{name},
// observable (every --rate a step of every point is notified, with a Max-Age of a
// few intervals) and writable by PUT, for the gateway's client side.

// Bounds of the coap subcommand's flags.
const (
	maxCoAPInflight = 64 // go-coap's requests in parallel on one session
	// coapTimeout bounds one request, retransmissions included.
	coapTimeout = 30 * time.Second
)

type coapOptions struct {
	server            string
	devices           int
	rate              float64
	points            int
	payload           string
	non               bool
	observe           bool
	pskIdentity       string
	pskKey            string
	cacert, cert, key string
	duration          time.Duration
	prefix            string
	load              bool
	inflight          int
	seed              uint64
	statsEvery        time.Duration

	serve     string // listen address of serve mode
	transport string // udp, tcp or dtls, in serve mode
	id        string // the served device's name, in serve mode

	form  payloadForm // from payload
	cbor  bool        // --payload cbor: readings as CBOR reading maps
	url   *url.URL    // from server
	proto string      // coap, coaps, coap+tcp, coaps+tcp
}

func (o *coapOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.server, "server", "coap://127.0.0.1:5683", "the gateway: coap://, coaps:// (DTLS), coap+tcp:// or coaps+tcp:// (TLS) host:port")
	fs.IntVar(&o.devices, "devices", 1, fmt.Sprintf("simulated devices, one CoAP session each (1 to %d)", maxDevices))
	fs.Float64Var(&o.rate, "rate", 1, "readings per second per device (fractions allowed); ignored with --load. With --serve: steps per second")
	fs.IntVar(&o.points, "points", 3, fmt.Sprintf("points per device (1 to %d): temperature, counter, alarm, humidity, pressure, ...", maxPoints))
	fs.StringVar(&o.payload, "payload", "json", `payload form: json ({"value": ..., "ts": ..., "unit": ...}), number (bare value, text/plain), cbor (a CBOR reading map), or object (every point at once, JSON, on /devices/{device})`)
	fs.BoolVar(&o.non, "non", false, "send readings non-confirmable (no acknowledgement; lost ones are not resent)")
	fs.BoolVar(&o.observe, "observe", true, "observe /devices/{device} for the gateway's writes")
	fs.StringVar(&o.pskIdentity, "psk-identity", "{device}", "DTLS pre-shared key identity ({device} is replaced by the device's id)")
	fs.StringVar(&o.pskKey, "psk-key", "", "DTLS pre-shared key (coaps:// without --cacert); with --serve --transport dtls, the key any identity must use")
	fs.StringVar(&o.cacert, "cacert", "", "CA certificate the gateway's certificate chains to (coaps:// with certificates, coaps+tcp://)")
	fs.StringVar(&o.cert, "cert", "", "client certificate (its common name is the identity)")
	fs.StringVar(&o.key, "key", "", "client key")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until SIGINT or SIGTERM)")
	fs.StringVar(&o.prefix, "prefix", "sim-", "device id prefix: devices are PREFIX1 to PREFIXN")
	fs.BoolVar(&o.load, "load", false, "load mode: send as fast as the in-flight window allows and print the achieved rate each second")
	fs.IntVar(&o.inflight, "inflight", 1, fmt.Sprintf("requests in flight per device (1 to %d; CoAP's NSTART is 1)", maxCoAPInflight))
	fs.Uint64Var(&o.seed, "seed", 0, "random seed of the readings (0: from the clock)")
	fs.DurationVar(&o.statsEvery, "stats", 10*time.Second, "log totals this often (load mode prints each second)")
	fs.StringVar(&o.serve, "serve", "", "serve mode: host:port to serve one device's observable resources on (port 0: a free one, printed)")
	fs.StringVar(&o.transport, "transport", "udp", "serve mode: udp, tcp or dtls (with --psk-key)")
	fs.StringVar(&o.id, "id", "coap-sim", "serve mode: the device's id, for the gateway config it prints")
}

func (o *coapOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.points < 1 || o.points > maxPoints {
		bad("--points: %d is not between 1 and %d", o.points, maxPoints)
	}
	if (!o.load || o.serve != "") && (!(o.rate > 0) || o.rate > maxRate || math.IsInf(o.rate, 0)) {
		bad("--rate: %v is not above 0 and at most %d per second", o.rate, maxRate)
	}
	if o.duration < 0 {
		bad("--duration: %v is negative", o.duration)
	}
	if o.statsEvery <= 0 {
		bad("--stats: %v is not positive", o.statsEvery)
	}
	if o.serve != "" {
		if _, port, err := net.SplitHostPort(o.serve); err != nil {
			bad("--serve: %q is not host:port", o.serve)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("--serve: bad port %q", port)
		}
		switch o.transport {
		case "udp", "tcp":
		case "dtls":
			if o.pskKey == "" {
				bad("--transport dtls needs --psk-key")
			}
		default:
			bad("--transport: %q is not udp, tcp or dtls", o.transport)
		}
		if err := validName(o.id); err != nil {
			bad("--id: %v", err)
		}
		return joinUsage(errs)
	}
	if o.devices < 1 || o.devices > maxDevices {
		bad("--devices: %d is not between 1 and %d", o.devices, maxDevices)
	}
	switch o.payload {
	case "cbor":
		o.form, o.cbor = formJSON, true
	default:
		if f, ok := parseForm(o.payload); ok {
			o.form = f
		} else {
			bad("--payload: %q is not json, number, cbor or object", o.payload)
		}
	}
	if o.inflight < 1 || o.inflight > maxCoAPInflight {
		bad("--inflight: %d is not between 1 and %d", o.inflight, maxCoAPInflight)
	}
	if err := validName(o.prefix + strconv.Itoa(o.devices)); err != nil {
		bad("--prefix: %q does not make a valid device id: %v", o.prefix, err)
	}
	if (o.cert == "") != (o.key == "") {
		bad("--cert and --key go together")
	}
	u, err := parseCoAPServer(o.server)
	if err != nil {
		bad("--server: %v", err)
	} else {
		o.url, o.proto = u, u.Scheme
		switch {
		case o.proto == "coaps" && o.pskKey == "" && o.cacert == "":
			bad("--server: coaps:// needs --psk-key or --cacert")
		case o.proto == "coaps+tcp" && o.cacert == "":
			bad("--server: coaps+tcp:// needs --cacert")
		case (o.proto == "coap" || o.proto == "coap+tcp") && (o.pskKey != "" || o.cacert != "" || o.cert != ""):
			bad("--server: %s:// is plaintext but DTLS or TLS flags are set", o.proto)
		}
	}
	return joinUsage(errs)
}

func joinUsage(errs []error) error {
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return nil
}

// parseCoAPServer reads coap://host:port (host:port alone is coap://).
func parseCoAPServer(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "coap://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "coap", "coaps", "coap+tcp", "coaps+tcp":
	default:
		return nil, fmt.Errorf("unknown scheme %q (want coap, coaps, coap+tcp or coaps+tcp)", u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%q is not scheme://host:port", s)
	}
	if _, err := strconv.ParseUint(u.Port(), 10, 16); err != nil {
		return nil, fmt.Errorf("bad port %q", u.Port())
	}
	return u, nil
}

func init() {
	register(command{
		name: "coap",
		summary: `  edgesim coap [flags]      CoAP devices: readings POSTed to /devices/{device}/{point},
                            writes taken by observing /devices/{device};
                            --serve: one device serving observable /points/{name}
`,
		run: coapMain,
	})
}

func coapMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o coapOptions
	if err := parseOptions("coap", &o, args, stderr); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.serve != "" {
		return serveCoAP(ctx, &o, log, stdout, nil)
	}
	return runCoAP(ctx, &o, log, stdout)
}

// ticker drives go-coap's periodic work (retransmissions, expiries) for every
// session of a run from one goroutine that the run owns; go-coap's default starts a
// goroutine per session that sleeps on after the session closed.
type ticker struct {
	mu    sync.Mutex
	funcs []func(time.Time) bool
}

func (t *ticker) add(f func(time.Time) bool) {
	t.mu.Lock()
	t.funcs = append(t.funcs, f)
	t.mu.Unlock()
}

func (t *ticker) run(ctx context.Context) {
	tk := time.NewTicker(200 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.mu.Lock()
			funcs := t.funcs
			t.mu.Unlock()
			var keep []func(time.Time) bool
			for _, f := range funcs {
				if f(now) {
					keep = append(keep, f)
				}
			}
			t.mu.Lock()
			t.funcs = append(keep, t.funcs[len(funcs):]...)
			t.mu.Unlock()
		}
	}
}

// coapConn is a go-coap client session of any transport.
type coapConn interface {
	mux.Conn
}

// dialCoAP opens one device's session.
func dialCoAP(o *coapOptions, id string, tk *ticker) (coapConn, error) {
	host := o.url.Host
	common := []any{options.WithErrors(func(error) {}), options.WithPeriodicRunner(tk.add),
		options.WithLimitClientParallelRequest(int64(o.inflight)), options.WithLimitClientEndpointParallelRequest(int64(o.inflight))}
	switch o.proto {
	case "coap":
		return udp.Dial(host, udpOpts(common)...)
	case "coap+tcp", "coaps+tcp":
		opts := tcpOpts(common)
		if o.proto == "coaps+tcp" {
			tc, err := o.tlsConfig()
			if err != nil {
				return nil, err
			}
			opts = append(opts, options.WithTLS(tc))
		}
		return tcp.Dial(host, opts...)
	}
	var dopts []piondtls.ClientOption
	if o.pskKey != "" {
		key := []byte(o.pskKey)
		dopts = append(dopts,
			piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			piondtls.WithPSKIdentityHint([]byte(strings.ReplaceAll(o.pskIdentity, "{device}", id))),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256))
	} else {
		tc, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		dopts = append(dopts, piondtls.WithRootCAs(tc.RootCAs), piondtls.WithServerName(o.url.Hostname()),
			piondtls.WithCertificates(tc.Certificates...))
	}
	// The handshake is done here, within a deadline: go-coap's dtls.Dial leaves it
	// to the first read, without one, so that a refused handshake hangs.
	nc, err := net.DialTimeout("udp", host, coapHandshakeTimeout)
	if err != nil {
		return nil, err
	}
	dc, err := piondtls.ClientWithOptions(dtlsnet.PacketConnFromConn(nc), nc.RemoteAddr(), dopts...)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), coapHandshakeTimeout)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()
		return nil, fmt.Errorf("DTLS handshake: %w", err)
	}
	return dtls.Client(dc, append(udpOpts(common), options.WithCloseSocket())...), nil
}

// coapHandshakeTimeout bounds a device's DTLS handshake.
const coapHandshakeTimeout = 10 * time.Second

func udpOpts(common []any) []udp.Option {
	var out []udp.Option
	for _, o := range common {
		out = append(out, o.(udp.Option))
	}
	return out
}

func tcpOpts(common []any) []tcp.Option {
	var out []tcp.Option
	for _, o := range common {
		out = append(out, o.(tcp.Option))
	}
	return out
}

func (o *coapOptions) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.url.Hostname()}
	if o.cacert != "" {
		pool, err := tlsbase.LoadPool(o.cacert)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// coapDevice is one simulated device pushing to the gateway.
type coapDevice struct {
	dev    *device
	o      *coapOptions
	c      *counters
	log    *slog.Logger
	conn   coapConn
	writes chan []byte // notifications of writes, from go-coap's goroutine
}

// runCoAP connects the devices, runs them until ctx ends, and closes them.
func runCoAP(ctx context.Context, o *coapOptions, log *slog.Logger, stdout io.Writer) error {
	raiseFileLimit(o.devices, log)
	tctx, stopTicker := context.WithCancel(context.Background())
	tk := &ticker{}
	var tickWG sync.WaitGroup
	tickWG.Add(1)
	go func() {
		defer tickWG.Done()
		tk.run(tctx)
	}()
	defer func() {
		stopTicker()
		tickWG.Wait()
	}()

	var c counters
	sims := make([]*coapDevice, o.devices)
	for i := range sims {
		id := o.prefix + strconv.Itoa(i+1)
		sims[i] = &coapDevice{dev: newDevice(id, o.points, o.seed, uint64(i)), o: o, c: &c,
			log: log.With("device", id), writes: make(chan []byte, writeQueue)}
	}
	start := time.Now()
	log.Info("connecting", "server", o.url.String(), "devices", o.devices)
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, connectConcurrency)
		connErr atomic.Uint64
	)
	for _, s := range sims {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := dialCoAP(o, s.dev.id, tk)
			if err != nil {
				if connErr.Add(1) <= 5 {
					s.log.Error("connect failed", "err", err)
				}
				return
			}
			s.conn = conn
			c.connected.Add(1)
		}()
	}
	wg.Wait()
	defer closeCoAPDevices(sims)
	if ctx.Err() != nil {
		return nil
	}
	up := int(c.connected.Load())
	if up == 0 {
		return fmt.Errorf("no device could connect to %s", o.url)
	}
	log.Info("connected", "devices", up, "failed", o.devices-up, "took", time.Since(start).Round(time.Millisecond))

	runCtx, stopRun := context.WithCancel(ctx)
	var runWG sync.WaitGroup
	for _, s := range sims {
		if s.conn == nil {
			continue
		}
		runWG.Add(1)
		go func() {
			defer runWG.Done()
			s.run(runCtx)
		}()
	}
	began := time.Now()
	mo := &mqttOptions{load: o.load, statsEvery: o.statsEvery}
	reportStats(ctx, mo, &c, began, log, stdout)
	stopRun()
	runWG.Wait()
	elapsed := time.Since(began)
	done := c.done.Load()
	log.Info("stopped", "sent", c.published.Load(), "acknowledged", done, "failed", c.failed.Load(),
		"writes", c.writes.Load(), "bad_writes", c.badWrites.Load(),
		"elapsed", elapsed.Round(time.Millisecond), "rate", fmt.Sprintf("%.0f/s", float64(done)/elapsed.Seconds()))
	return nil
}

func closeCoAPDevices(sims []*coapDevice) {
	for _, s := range sims {
		if s.conn != nil {
			_ = s.conn.Close()
		}
	}
	for _, s := range sims {
		if s.conn == nil {
			continue
		}
		select {
		case <-s.conn.Done():
		case <-time.After(disconnectQuiesce * time.Millisecond):
		}
	}
}

// run observes the device's writes and sends readings until ctx ends: at --rate, or
// with --load from --inflight senders as fast as the answers come.
func (s *coapDevice) run(ctx context.Context) {
	o := s.o
	// The device model is one goroutine's; senders get readings through a channel.
	readings := make(chan reading)
	var wg sync.WaitGroup
	senders := 1
	if o.load {
		senders = o.inflight
	}
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range readings {
				s.send(ctx, r)
			}
		}()
	}
	defer func() {
		close(readings)
		wg.Wait()
	}()
	emit := func(r reading) bool {
		select {
		case readings <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var tick <-chan time.Time
	if !o.load {
		interval := time.Duration(float64(time.Second) / o.rate)
		first := time.Duration(s.dev.rng.Int64N(int64(interval) + 1))
		select {
		case <-time.After(first):
		case <-ctx.Done():
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	if o.observe {
		// The gateway observes only a device it knows (configured, or one that
		// has sent a reading): the first reading goes before the registration.
		s.send(ctx, s.dev.nextReading(o.form, time.Now()))
		if cancel := s.observe(ctx); cancel != nil {
			defer cancel()
		}
	}
	for {
		if o.load {
			select {
			case <-ctx.Done():
				return
			case b := <-s.writes:
				s.applyWrites(b, emit)
			default:
				if !emit(s.dev.nextReading(o.form, time.Now())) {
					return
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case b := <-s.writes:
			s.applyWrites(b, emit)
		case now := <-tick:
			if !emit(s.dev.nextReading(o.form, now)) {
				return
			}
		}
	}
}

// observe registers for the device's writes (notifications of /devices/{device})
// and returns what deregisters, or nil when the registration failed.
func (s *coapDevice) observe(ctx context.Context) func() {
	obs, err := s.conn.Observe(ctx, "/devices/"+s.dev.id, func(m *pool.Message) {
		if _, err := m.Observe(); err != nil || m.Code() != codes.Content {
			return
		}
		b, err := m.ReadBody()
		if err != nil || len(b) == 0 {
			return // the registration's answer may carry no value
		}
		select {
		case s.writes <- b:
		default:
			s.c.badWrites.Add(1)
		}
	}, message.Option{ID: message.Accept, Value: []byte{byte(message.AppJSON)}})
	if err != nil {
		s.log.Warn("observe for writes failed; the device takes none", "err", err)
		return nil
	}
	return func() {
		cctx, cancel := context.WithTimeout(context.Background(), disconnectQuiesce*time.Millisecond)
		_ = obs.Cancel(cctx)
		cancel()
	}
}

// applyWrites takes a notification {"point": value, ...} of the gateway's writes.
func (s *coapDevice) applyWrites(b []byte, emit func(reading) bool) {
	rs, err := payload.Decoder{}.DecodeObject(b)
	if err != nil {
		s.c.badWrites.Add(1)
		s.log.Warn("write notification refused", "err", err)
		return
	}
	for _, r := range rs {
		lit := payload.AppendJSON(nil, r.Value)
		rd, err := s.dev.applyWrite("devices/"+s.dev.id+"/"+r.Point+"/set", lit, s.o.form, time.Now())
		if err != nil {
			s.c.badWrites.Add(1)
			s.log.Warn("write refused", "point", r.Point, "err", err)
			continue
		}
		s.c.writes.Add(1)
		s.log.Info("write applied", "point", r.Point, "value", string(lit))
		if !emit(rd) {
			return
		}
	}
}

// send POSTs (objects) or PUTs (points) one reading and counts its answer.
func (s *coapDevice) send(ctx context.Context, r reading) {
	path := "/" + r.topic
	cf := message.AppJSON
	body := r.payload
	switch {
	case s.o.cbor:
		cf, body = message.AppCBOR, jsonToCBOR(body)
	case s.o.form == formNumber:
		cf = message.TextPlain
	}
	rctx, cancel := context.WithTimeout(ctx, coapTimeout)
	defer cancel()
	req, err := s.conn.NewPostRequest(rctx, path, cf, bytes.NewReader(body))
	if err != nil {
		s.c.failed.Add(1)
		return
	}
	defer s.conn.ReleaseMessage(req)
	if s.o.non {
		req.SetType(message.NonConfirmable)
		s.c.published.Add(1)
		if err := s.conn.WriteMessage(req); err != nil {
			s.c.failed.Add(1)
			return
		}
		s.c.done.Add(1)
		return
	}
	s.c.published.Add(1)
	resp, err := s.conn.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.c.failed.Add(1)
			s.c.firstError.Do(func() { s.log.Error("request failed", "path", path, "err", err) })
		}
		return
	}
	defer s.conn.ReleaseMessage(resp)
	if resp.Code() != codes.Changed {
		s.c.failed.Add(1)
		diag, _ := resp.ReadBody()
		s.c.firstError.Do(func() { s.log.Error("refused", "path", path, "code", resp.Code().String(), "diagnostic", string(diag)) })
		return
	}
	s.c.done.Add(1)
}

// jsonToCBOR re-encodes a JSON reading object as a CBOR reading map.
func jsonToCBOR(b []byte) []byte {
	r, err := payload.Decoder{}.Decode(b)
	if err != nil {
		return b
	}
	n := 1
	if !r.SourceTime.IsZero() {
		n++
	}
	if r.Unit != "" {
		n++
	}
	out := payload.AppendCBORMapHead(nil, n)
	out = payload.AppendCBOR(payload.AppendCBORText(out, "value"), r.Value)
	if !r.SourceTime.IsZero() {
		out = payload.AppendCBORText(payload.AppendCBORText(out, "ts"), r.SourceTime.Format(time.RFC3339Nano))
	}
	if r.Unit != "" {
		out = payload.AppendCBORText(payload.AppendCBORText(out, "unit"), r.Unit)
	}
	return out
}

// servedDevice is serve mode's device: its points as observable, writable resources.
type servedDevice struct {
	mu        sync.Mutex
	dev       *device
	seq       uint32
	observers map[*point]map[string]mux.Conn // by token
	maxAge    uint32
	writes    atomic.Uint64
	notes     atomic.Uint64
	log       *slog.Logger
}

// serveCoAP serves one device until ctx ends. ready, when set, receives the bound
// address.
func serveCoAP(ctx context.Context, o *coapOptions, log *slog.Logger, stdout io.Writer, ready chan<- string) error {
	d := &servedDevice{dev: newDevice(o.id, o.points, o.seed, 0), observers: map[*point]map[string]mux.Conn{}, log: log}
	interval := time.Duration(float64(time.Second) / o.rate)
	// Max-Age: three intervals, at least a second: a gateway that hears nothing for
	// that long registers again (the device may have restarted).
	d.maxAge = uint32(max(1, math.Ceil(3*interval.Seconds())))

	tctx, stopTicker := context.WithCancel(context.Background())
	tk := &ticker{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk.run(tctx)
	}()
	defer func() {
		stopTicker()
		wg.Wait()
	}()

	router := mux.NewRouter()
	router.DefaultHandle(mux.HandlerFunc(d.handle))
	common := []any{options.WithMux(router), options.WithErrors(func(error) {}), options.WithPeriodicRunner(tk.add)}
	var addr string
	var serve func() error
	var stop func()
	switch o.transport {
	case "udp":
		l, err := coapNet.NewListenUDP("udp", o.serve)
		if err != nil {
			return err
		}
		addr = l.LocalAddr().String()
		var opts []udpServer.Option
		for _, c := range common {
			opts = append(opts, c.(udpServer.Option))
		}
		s := udp.NewServer(opts...)
		serve, stop = func() error { return s.Serve(l) }, func() { s.Stop(); _ = l.Close() }
	case "tcp":
		l, err := coapNet.NewTCPListener("tcp", o.serve)
		if err != nil {
			return err
		}
		addr = l.Addr().String()
		var opts []tcpServer.Option
		for _, c := range common {
			opts = append(opts, c.(tcpServer.Option))
		}
		s := tcp.NewServer(opts...)
		serve, stop = func() error { return s.Serve(l) }, func() { s.Stop(); _ = l.Close() }
	case "dtls":
		key := []byte(o.pskKey)
		l, err := coapNet.NewDTLSListener("udp", o.serve, coapNet.NewDTLSServerOptions(
			piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256)))
		if err != nil {
			return err
		}
		addr = l.Addr().String()
		var opts []dtlsServer.Option
		for _, c := range common {
			opts = append(opts, c.(dtlsServer.Option))
		}
		s := dtls.NewServer(opts...)
		serve, stop = func() error { return s.Serve(l) }, func() { s.Stop(); _ = l.Close() }
	}
	served := make(chan error, 1)
	go func() { served <- serve() }()
	scheme := map[string]string{"udp": "coap", "tcp": "coap+tcp", "dtls": "coaps"}[o.transport]
	log.Info("serving", "address", addr, "transport", o.transport, "points", len(d.dev.points), "max_age", d.maxAge)
	fmt.Fprintf(stdout, "# a gateway config for this device:\ndevices:\n  - id: %s\n    protocol: coap\n    address: %s://%s\n    observe: true\n    points:\n", o.id, scheme, addr)
	for _, p := range d.dev.points {
		fmt.Fprintf(stdout, "      - {name: %s, path: /points/%s, writable: true}\n", p.name, p.name)
	}
	if ready != nil {
		ready <- addr
	}

	t := time.NewTicker(interval)
	defer t.Stop()
	stats := time.NewTicker(o.statsEvery)
	defer stats.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			<-served
			return nil
		case err := <-served:
			return err
		case <-stats.C:
			log.Info("stats", "notifications", d.notes.Load(), "writes", d.writes.Load())
		case <-t.C:
			d.step()
		}
	}
}

// step advances every point and notifies its observers.
func (d *servedDevice) step() {
	d.mu.Lock()
	var changed []*point
	for _, p := range d.dev.points {
		p.step(d.dev.rng)
		changed = append(changed, p)
	}
	d.mu.Unlock()
	for _, p := range changed {
		d.notify(p)
	}
}

func (d *servedDevice) notify(p *point) {
	d.mu.Lock()
	d.seq++
	seq, value := d.seq, p.literal()
	obs := make(map[string]mux.Conn, len(d.observers[p]))
	for k, v := range d.observers[p] {
		obs[k] = v
	}
	d.mu.Unlock()
	for token, cc := range obs {
		m := cc.AcquireMessage(cc.Context())
		m.SetCode(codes.Content)
		m.SetToken([]byte(token))
		m.SetObserve(seq + 2)
		m.SetContentFormat(message.TextPlain)
		m.SetOptionUint32(message.MaxAge, d.maxAge)
		m.SetBody(bytes.NewReader([]byte(textValue(value))))
		// A non-confirmable notification: a slow observer must not hold the device.
		m.SetType(message.NonConfirmable)
		err := cc.WriteMessage(m)
		cc.ReleaseMessage(m)
		if err != nil {
			d.mu.Lock()
			delete(d.observers[p], token)
			d.mu.Unlock()
			continue
		}
		d.notes.Add(1)
	}
}

// textValue is a JSON literal as text/plain: strings without their quotes.
func textValue(lit string) string {
	if s, err := strconv.Unquote(lit); err == nil && strings.HasPrefix(lit, `"`) {
		return s
	}
	return lit
}

// handle serves /points/{name}: GET (with Observe 0 or 1) and PUT.
func (d *servedDevice) handle(w mux.ResponseWriter, r *mux.Message) {
	path, _ := r.Options().Path()
	name, ok := strings.CutPrefix(path, "/points/")
	d.mu.Lock()
	p := d.dev.byName[name]
	d.mu.Unlock()
	if !ok || p == nil {
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
		return
	}
	switch r.Code() {
	case codes.GET:
		d.mu.Lock()
		var opts []message.Option
		if obs, err := r.Options().Observe(); err == nil {
			switch obs {
			case 0:
				if d.observers[p] == nil {
					d.observers[p] = map[string]mux.Conn{}
				}
				if len(d.observers[p]) < 1024 {
					d.observers[p][string(r.Token())] = w.Conn()
					d.seq++
					opts = append(opts, message.Option{ID: message.Observe, Value: encodeUint(d.seq + 2)})
				}
			case 1:
				delete(d.observers[p], string(r.Token()))
			}
		}
		value := p.literal()
		d.mu.Unlock()
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(textValue(value))), opts...)
		w.Message().SetOptionUint32(message.MaxAge, d.maxAge)
	case codes.PUT, codes.POST:
		b, err := r.ReadBody()
		if err == nil {
			r, derr := payload.Decoder{MaxSize: maxWriteSize}.Decode(b)
			if derr != nil {
				err = derr
			} else {
				d.mu.Lock()
				p.held = string(payload.AppendJSON(nil, r.Value))
				if r.Value.Kind() == bridge.KindString {
					p.held = strconv.Quote(r.Value.String())
				}
				d.mu.Unlock()
			}
		}
		if err != nil {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, strings.NewReader(err.Error()))
			return
		}
		d.writes.Add(1)
		d.log.Info("write applied", "point", p.name, "value", p.held)
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		// Observers hear of it now (before the 2.04, which go-coap sends when this
		// returns); notifications are non-confirmable, so this does not wait.
		d.notify(p)
	default:
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
	}
}

func encodeUint(v uint32) []byte {
	switch {
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return []byte{byte(v >> 8), byte(v)}
	}
	return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
}
