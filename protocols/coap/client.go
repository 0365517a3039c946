package coap

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/backoff"
	"github.com/edgegate/edgegate/protocols/payload"
	egtls "github.com/edgegate/edgegate/tls"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The client side: devices that serve resources (coap://, coaps://, coap+tcp://,
// coaps+tcp://). The gateway connects to each, observes its points' resources (or
// polls them every poll_interval), and PUTs writes to them. A device that restarts
// forgets its observers; the gateway notices because a notification is due (the
// previous one's Max-Age has passed, RFC 7641 section 3.3.1) and registers again.
// A request that fails ends the connection; the gateway then connects again with
// backoff.

const (
	// reconnectMin and reconnectMax bound the pause between connection attempts.
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 30 * time.Second
	// defaultMaxAge is a notification's freshness without a Max-Age option.
	defaultMaxAge = 60 * time.Second
	// minReregister bounds how often an observation is registered again.
	minReregister = time.Second
)

// reconnect paces connection attempts: doubling from reconnectMin up to
// reconnectMax, each pause drawn from its upper half, so that devices lost
// together are not all dialled again in the same instant.
var reconnect = backoff.Policy{Min: reconnectMin, Max: reconnectMax, Jitter: 0.5}

type clientPoint struct {
	name     string
	path     string
	unit     string
	priority bridge.Priority
	writable bool
}

// clientConn is what the device loop needs of go-coap's UDP, DTLS and TCP clients.
type clientConn interface {
	mux.Conn
}

type clientDevice struct {
	a        *Adapter
	id       string
	labels   map[string]string
	scheme   deviceScheme
	hostport string
	observe  bool
	poll     time.Duration
	timeout  time.Duration
	psk      *DevicePSK
	pskKey   []byte
	tlsSrc   *egtls.Source // coaps:// with certificates, coaps+tcp://: rotates
	tls      *tls.Config   // coaps+tcp://: tlsSrc's configuration
	tlsName  string        // the name the device's certificate must carry
	points   []*clientPoint
	byName   map[string]*clientPoint

	mu   sync.Mutex
	conn clientConn // while connected

	checksMu sync.Mutex
	checks   []func(time.Time) bool // go-coap's periodic work of the current connection
}

func newClientDevice(a *Adapter, d DeviceConfig) (*clientDevice, error) {
	scheme, hostport, err := parseAddress(d.Address)
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	cd := &clientDevice{
		a:        a,
		id:       d.ID,
		labels:   d.Labels,
		scheme:   scheme,
		hostport: hostport,
		observe:  d.Observe,
		poll:     d.PollInterval,
		timeout:  d.Timeout,
		psk:      d.PSK,
		byName:   make(map[string]*clientPoint, len(d.Points)),
	}
	if cd.poll == 0 {
		cd.poll = DefaultPollInterval
	}
	if cd.timeout == 0 {
		cd.timeout = DefaultTimeout
	}
	for _, p := range d.Points {
		prio, _ := bridge.ParsePriority(p.Priority)
		cp := &clientPoint{name: p.Name, path: p.Path, unit: p.Unit, priority: prio, writable: p.Writable}
		cd.points = append(cd.points, cp)
		cd.byName[p.Name] = cp
	}
	if d.PSK != nil {
		if cd.pskKey, err = readKeyFile(d.PSK.KeyFile); err != nil {
			return nil, fmt.Errorf("psk: key_file: %w", err)
		}
	}
	if t := d.TLS; t != nil {
		// From the gateway's TLS store: the CA bundle and the gateway's own
		// certificate are read again when their files change, and each new
		// handshake (a reconnect) uses them.
		src, err := a.tlsStore.ClientSource(t)
		if err != nil {
			return nil, err
		}
		cd.tlsSrc = src
		cd.tlsName, _, _ = net.SplitHostPort(hostport)
		if t.ServerName != "" {
			cd.tlsName = t.ServerName
		}
		cd.tls = src.ClientConfig()
		cd.tls.ServerName = cd.tlsName
	}
	return cd, nil
}

// run connects, serves and reconnects until the run ends.
func (cd *clientDevice) run(st *runState) {
	sink := st.sink
	b := backoff.New(reconnect)
	for st.ctx.Err() == nil {
		sink.State(cd.id, bridge.StateConnecting, nil)
		conn, err := cd.dial(st.ctx)
		if err == nil {
			cd.setConn(conn)
			err = cd.serve(st, conn, b)
			cd.setConn(nil)
			_ = conn.Close()
			<-conn.Done()
		}
		if st.ctx.Err() != nil {
			break
		}
		cd.a.metrics.clientRequests.WithLabelValues("CONNECT", "error").Inc()
		sink.State(cd.id, bridge.StateError, err)
		wait := b.Next()
		limitedLog(cd.a.log, cd.a.lim, slog.LevelWarn, "coap: device unreachable", "device", cd.id, "address", cd.hostport, "err", err, "retry_in", wait.Round(time.Millisecond))
		_ = backoff.Sleep(st.ctx, wait) // the loop ends with st.ctx
	}
	sink.State(cd.id, bridge.StateDisconnected, nil)
}

func (cd *clientDevice) setConn(c clientConn) {
	cd.mu.Lock()
	cd.conn = c
	cd.mu.Unlock()
}

func (cd *clientDevice) currentConn() clientConn {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	return cd.conn
}

// periodic is go-coap's periodic runner for the device's connections: the adapter's
// ticker calls the functions, so that go-coap starts no goroutine of its own for
// them (its default sleeps in one for seconds after the connection closed).
func (cd *clientDevice) periodic(f func(time.Time) bool) {
	cd.checksMu.Lock()
	cd.checks = append(cd.checks, f)
	cd.checksMu.Unlock()
}

func (cd *clientDevice) checkExpirations(now time.Time) {
	cd.checksMu.Lock()
	checks := cd.checks
	cd.checksMu.Unlock()
	var keep []func(time.Time) bool
	for _, f := range checks {
		if f(now) {
			keep = append(keep, f)
		}
	}
	cd.checksMu.Lock()
	// Functions registered meanwhile are kept too.
	cd.checks = append(keep, cd.checks[len(checks):]...)
	cd.checksMu.Unlock()
}

// dial connects over the address's transport, with the DTLS or TLS handshake done
// within the device's timeout.
func (cd *clientDevice) dial(ctx context.Context) (clientConn, error) {
	a := cd.a
	dialer := &net.Dialer{Timeout: cd.timeout}
	switch {
	case cd.scheme.network == "tcp":
		opts := []tcp.Option{
			options.WithDialer(dialer),
			options.WithErrors(a.coapErrors),
			options.WithPeriodicRunner(cd.periodic),
			options.WithMaxMessageSize(uint32(a.cfg.MaxMessageSize)),
		}
		if cd.scheme.secure {
			opts = append(opts, options.WithTLS(cd.tls))
		}
		return tcp.Dial(cd.hostport, opts...)
	case !cd.scheme.secure:
		return udp.Dial(cd.hostport, options.WithDialer(dialer), options.WithErrors(a.coapErrors),
			options.WithPeriodicRunner(cd.periodic), options.WithMaxMessageSize(uint32(a.cfg.MaxMessageSize)))
	}
	nc, err := dialer.DialContext(ctx, "udp", cd.hostport)
	if err != nil {
		return nil, err
	}
	var dopts []piondtls.ClientOption
	dopts = append(dopts, piondtls.WithLoggerFactory(pionLogger{log: a.log, lim: a.lim}),
		piondtls.WithExtendedMasterSecret(piondtls.RequestExtendedMasterSecret))
	if cd.psk != nil {
		key := cd.pskKey
		dopts = append(dopts,
			piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			piondtls.WithPSKIdentityHint([]byte(cd.psk.Identity)),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_CCM,
				piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256, piondtls.TLS_PSK_WITH_AES_128_CBC_SHA256))
	} else {
		dopts = append(dopts, egtls.DTLSClientOptions(cd.tlsSrc, cd.tlsName)...)
		dopts = append(dopts, piondtls.WithCipherSuites(egtls.DTLSCertificateSuites...))
	}
	dc, err := piondtls.ClientWithOptions(dtlsnet.PacketConnFromConn(nc), nc.RemoteAddr(), dopts...)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, cd.timeout)
	defer cancel()
	if err := dc.HandshakeContext(hctx); err != nil {
		_ = dc.Close()
		return nil, fmt.Errorf("DTLS handshake: %w", err)
	}
	return dtls.Client(dc, options.WithErrors(a.coapErrors), options.WithPeriodicRunner(cd.periodic),
		options.WithMaxMessageSize(uint32(a.cfg.MaxMessageSize)), options.WithCloseSocket()), nil
}

// serve observes or polls the device's points until a request fails, the
// connection closes or the run ends.
func (cd *clientDevice) serve(st *runState, conn clientConn, b *backoff.Backoff) error {
	ctx := st.ctx
	type watch struct {
		p       *clientPoint
		obs     mux.Observation
		last    atomic.Int64 // unix nanoseconds of the last notification
		maxAge  atomic.Int64 // its Max-Age
		reg     time.Time    // when it was last registered
		polling bool         // the device does not offer Observe for it
	}
	watches := make([]*watch, len(cd.points))
	register := func(w *watch) error {
		rctx, cancel := context.WithTimeout(ctx, cd.timeout)
		defer cancel()
		obs, err := conn.Observe(rctx, w.p.path, func(n *pool.Message) {
			w.last.Store(time.Now().UnixNano())
			age := defaultMaxAge
			if v, err := n.GetOptionUint32(message.MaxAge); err == nil {
				age = time.Duration(v) * time.Second
			}
			w.maxAge.Store(int64(age))
			cd.received(st, w.p, n)
		})
		cd.a.metrics.clientRequests.WithLabelValues("OBSERVE", result(err)).Inc()
		if err != nil {
			return fmt.Errorf("observe %s: %w", w.p.path, err)
		}
		w.obs = obs
		w.reg = time.Now()
		if obs.Canceled() {
			w.polling = true // answered without Observe: poll it instead
		}
		return nil
	}
	defer func() {
		n := 0
		for _, w := range watches {
			if w != nil && w.obs != nil && !w.polling {
				n++
				cctx, cancel := context.WithTimeout(context.Background(), min(cd.timeout, shutdownGrace))
				_ = w.obs.Cancel(cctx)
				cancel()
			}
		}
		cd.a.metrics.clientObserved.Sub(float64(n))
	}()
	for i, p := range cd.points {
		w := &watch{p: p, polling: !cd.observe}
		watches[i] = w
		if cd.observe {
			if err := register(w); err != nil {
				return err
			}
			if !w.polling {
				cd.a.metrics.clientObserved.Inc()
			}
		}
	}
	if err := cd.pollAll(st, conn, watchPoints(watches, func(w *watch) (*clientPoint, bool) { return w.p, w.polling })); err != nil {
		return err
	}
	st.sink.State(cd.id, bridge.StateConnected, nil)
	b.Reset()

	check := time.NewTicker(min(250*time.Millisecond, cd.poll))
	defer check.Stop()
	nextPoll := time.Now().Add(cd.poll)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Done():
			return errors.New("connection closed")
		case now := <-check.C:
			for _, w := range watches {
				if w.polling || w.obs == nil {
					continue
				}
				// A notification is due when the last one's Max-Age has passed:
				// the device may have restarted and forgotten us.
				last := max(w.last.Load(), w.reg.UnixNano())
				due := time.Duration(w.maxAge.Load())
				if due == 0 {
					due = defaultMaxAge
				}
				if now.UnixNano()-last < int64(max(due+due/8, minReregister)) {
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, cd.timeout)
				_ = w.obs.Cancel(cctx)
				cancel()
				if err := register(w); err != nil {
					return err
				}
			}
			if !now.Before(nextPoll) {
				nextPoll = now.Add(cd.poll)
				if err := cd.pollAll(st, conn, watchPoints(watches, func(w *watch) (*clientPoint, bool) { return w.p, w.polling })); err != nil {
					return err
				}
			}
		}
	}
}

func watchPoints[W any](ws []W, f func(W) (*clientPoint, bool)) []*clientPoint {
	var out []*clientPoint
	for _, w := range ws {
		if p, ok := f(w); ok {
			out = append(out, p)
		}
	}
	return out
}

// pollAll reads each point once.
func (cd *clientDevice) pollAll(st *runState, conn clientConn, points []*clientPoint) error {
	for _, p := range points {
		rctx, cancel := context.WithTimeout(st.ctx, cd.timeout)
		resp, err := conn.Get(rctx, p.path)
		cancel()
		cd.a.metrics.clientRequests.WithLabelValues("GET", result(err)).Inc()
		if err != nil {
			return fmt.Errorf("GET %s: %w", p.path, err)
		}
		cd.received(st, p, resp)
		conn.ReleaseMessage(resp)
	}
	return nil
}

// received publishes a response or notification of a point.
func (cd *clientDevice) received(st *runState, p *clientPoint, m *pool.Message) {
	if m.Code() != codes.Content {
		if m.Code() != codes.Valid {
			st.sink.Invalid(cd.id, fmt.Errorf("%s answered %s", p.path, codeName(m.Code())))
		}
		return
	}
	cf := formatOf(m.ContentFormat())
	raw, err := m.ReadBody()
	if err == nil {
		var rd payload.Reading
		rd, err = decodePoint(cd.a.decoder, cf, raw)
		if err == nil {
			cd.publish(st, p, rd)
			return
		}
	}
	if errors.Is(err, errUnsupportedFormat) {
		err = fmt.Errorf("%w: %s", payload.ErrInvalidPayload, err)
	}
	cd.a.metrics.badPayloads.Inc()
	st.sink.Invalid(cd.id, fmt.Errorf("point %q: %w", p.name, err))
}

func (cd *clientDevice) publish(st *runState, p *clientPoint, rd payload.Reading) {
	labels := make(map[string]string, len(cd.labels)+1)
	for k, v := range cd.labels {
		labels[k] = v
	}
	labels[labelPath] = p.path
	unit := rd.Unit
	if unit == "" {
		unit = p.unit
	}
	msg := &bridge.Message{
		Device: cd.id, Point: p.name, Value: rd.Value, Quality: rd.Quality,
		SourceTime: rd.SourceTime, Unit: unit, Labels: labels, Priority: p.priority,
	}
	// Submit without waiting for the durable log: nothing here is acknowledged to
	// the device (it is the gateway that observes or polls it), so a wait for the
	// disk would only delay the next reading; the hub keeps the order.
	if _, err := st.sink.Submit(st.ctx, msg); err != nil {
		if st.ctx.Err() == nil {
			limitedLog(cd.a.log, cd.a.lim, slog.LevelWarn, "coap: the bridge refused a reading", "device", cd.id, "point", p.name, "err", err)
		}
		return
	}
	ts := msg.SourceTime
	if ts.IsZero() {
		ts = msg.GatewayTime
	}
	cd.a.latest.put(cd.id, []reading{{point: p.name, value: msg.Value, ts: ts, unit: msg.Unit}})
}

// write PUTs a value to a writable point's resource, as text (bytes as
// application/octet-stream), and waits for 2.01, 2.04 or 2.03.
func (cd *clientDevice) write(ctx context.Context, point string, v bridge.Value) error {
	p, ok := cd.byName[point]
	if !ok {
		return fmt.Errorf("%w: device %q has no point %q", bridge.ErrUnknownPoint, cd.id, point)
	}
	if !p.writable {
		return status.Error(grpccodes.InvalidArgument, fmt.Errorf("%w: device %q point %q (set writable: true)", ErrNotWritable, cd.id, point).Error())
	}
	conn := cd.currentConn()
	if conn == nil {
		return fmt.Errorf("coap: device %q is not connected", cd.id)
	}
	cf, body := encodeValue(formatText, v)
	rctx, cancel := context.WithTimeout(ctx, cd.timeout)
	defer cancel()
	resp, err := conn.Put(rctx, p.path, cf.media(), bytes.NewReader(body))
	cd.a.metrics.clientRequests.WithLabelValues("PUT", result(err)).Inc()
	if err != nil {
		return fmt.Errorf("coap: PUT %s to device %q: %w", p.path, cd.id, err)
	}
	defer conn.ReleaseMessage(resp)
	switch resp.Code() {
	case codes.Changed, codes.Created, codes.Valid:
		return nil
	}
	diag, _ := resp.ReadBody()
	return deviceRefusal(fmt.Sprintf("coap: PUT %s to device %q", p.path, cd.id), resp.Code(), string(diag))
}

// deviceRefusal is a device's error response as an error with a gRPC status: a
// client error (4.xx) is the request's fault, FailedPrecondition; a server error
// (5.xx), Unavailable.
func deviceRefusal(what string, code codes.Code, diagnostic string) error {
	gc := grpccodes.Unavailable
	if uint8(code)>>5 == 4 {
		gc = grpccodes.FailedPrecondition
	}
	return status.Errorf(gc, "%s: the device answered %s %s", what, codeName(code), clipString(diagnostic, 100))
}

// read GETs a point's resource now.
func (cd *clientDevice) read(ctx context.Context, point string) (*bridge.Message, error) {
	p, ok := cd.byName[point]
	if !ok {
		return nil, fmt.Errorf("%w: device %q has no point %q", bridge.ErrUnknownPoint, cd.id, point)
	}
	conn := cd.currentConn()
	if conn == nil {
		return nil, fmt.Errorf("coap: device %q is not connected", cd.id)
	}
	rctx, cancel := context.WithTimeout(ctx, cd.timeout)
	defer cancel()
	resp, err := conn.Get(rctx, p.path)
	cd.a.metrics.clientRequests.WithLabelValues("GET", result(err)).Inc()
	if err != nil {
		return nil, fmt.Errorf("coap: GET %s of device %q: %w", p.path, cd.id, err)
	}
	defer conn.ReleaseMessage(resp)
	body, _ := resp.ReadBody()
	if resp.Code() != codes.Content {
		return nil, deviceRefusal(fmt.Sprintf("coap: GET %s of device %q", p.path, cd.id), resp.Code(), string(body))
	}
	rd, err := decodePoint(cd.a.decoder, formatOf(resp.ContentFormat()), body)
	if err != nil {
		return nil, status.Errorf(grpccodes.DataLoss, "coap: GET %s of device %q: %v", p.path, cd.id, err)
	}
	labels := make(map[string]string, len(cd.labels)+1)
	for k, v := range cd.labels {
		labels[k] = v
	}
	labels[labelPath] = p.path
	unit := rd.Unit
	if unit == "" {
		unit = p.unit
	}
	return &bridge.Message{
		Device: cd.id, Point: p.name, Protocol: bridge.ProtocolCoAP, Value: rd.Value, Quality: rd.Quality,
		SourceTime: rd.SourceTime, GatewayTime: time.Now(), Unit: unit, Labels: labels, Priority: p.priority,
	}, nil
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
