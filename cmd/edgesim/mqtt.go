package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/tls/tlsbase"
)

// Bounds of the mqtt subcommand's flags.
const (
	maxDevices  = 100000
	maxRate     = 100000 // messages per second per device
	maxInflight = 65535  // the MQTT packet identifier space
	// connectConcurrency bounds connections being opened at once.
	connectConcurrency = 64
	// disconnectQuiesce is how long a device waits for its last messages to go out
	// when it disconnects: shutdown I/O has a deadline.
	disconnectQuiesce = 250 // milliseconds
	// writeQueue bounds the writes waiting for a device's loop.
	writeQueue = 16
)

// mqttOptions are the mqtt subcommand's flags.
type mqttOptions struct {
	broker            string
	devices           int
	rate              float64
	points            int
	qos               int
	payload           string
	username          string
	password          string
	useTLS            bool
	cacert, cert, key string
	duration          time.Duration
	prefix            string
	load              bool
	inflight          int
	seed              uint64
	statsEvery        time.Duration
	form              payloadForm // from payload, set by validate
}

func (o *mqttOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.broker, "broker", "127.0.0.1:1883", "broker address host:port (or a URL: tcp://, ssl://)")
	fs.IntVar(&o.devices, "devices", 1, fmt.Sprintf("simulated devices, one MQTT connection each (1 to %d)", maxDevices))
	fs.Float64Var(&o.rate, "rate", 1, "messages per second per device (fractions allowed: 0.1 is one every 10s); ignored with --load")
	fs.IntVar(&o.points, "points", 3, fmt.Sprintf("points per device (1 to %d): temperature, counter, alarm, humidity, pressure, temperature_2, ...", maxPoints))
	fs.IntVar(&o.qos, "qos", 0, "QoS of readings: 0 or 1")
	fs.StringVar(&o.payload, "payload", "json", `payload form: json ({"value": ..., "ts": ..., "unit": ...}), number (the bare value), or object (every point at once on devices/{device})`)
	fs.StringVar(&o.username, "username", "", "MQTT username; {device} is replaced by the device's id")
	fs.StringVar(&o.password, "password", "", "MQTT password")
	fs.BoolVar(&o.useTLS, "tls", false, "connect with TLS")
	fs.StringVar(&o.cacert, "cacert", "", "CA certificate the broker's certificate chains to (turns on TLS)")
	fs.StringVar(&o.cert, "cert", "", "client certificate, for mutual TLS")
	fs.StringVar(&o.key, "key", "", "client key, for mutual TLS")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until SIGINT or SIGTERM)")
	fs.StringVar(&o.prefix, "prefix", "sim-", "device id prefix: devices are PREFIX1 to PREFIXN; also the MQTT client ids")
	fs.BoolVar(&o.load, "load", false, "load mode: publish as fast as the in-flight window allows and print the achieved rate each second")
	fs.IntVar(&o.inflight, "inflight", 256, "messages in flight per device, not yet acknowledged (QoS 1) or written (QoS 0)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed of the readings (0: from the clock)")
	fs.DurationVar(&o.statsEvery, "stats", 10*time.Second, "log totals this often (load mode prints each second)")
}

// validate checks every flag and reports every problem at once.
func (o *mqttOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.devices < 1 || o.devices > maxDevices {
		bad("--devices: %d is not between 1 and %d", o.devices, maxDevices)
	}
	if o.points < 1 || o.points > maxPoints {
		bad("--points: %d is not between 1 and %d", o.points, maxPoints)
	}
	if !o.load && (!(o.rate > 0) || o.rate > maxRate || math.IsInf(o.rate, 0)) {
		bad("--rate: %v is not above 0 and at most %d messages per second", o.rate, maxRate)
	}
	if o.qos != 0 && o.qos != 1 {
		bad("--qos: %d is not 0 or 1", o.qos)
	}
	if f, ok := parseForm(o.payload); ok {
		o.form = f
	} else {
		bad("--payload: %q is not json, number or object", o.payload)
	}
	if o.inflight < 1 || o.inflight > maxInflight {
		bad("--inflight: %d is not between 1 and %d", o.inflight, maxInflight)
	}
	if o.duration < 0 {
		bad("--duration: %v is negative", o.duration)
	}
	if o.statsEvery <= 0 {
		bad("--stats: %v is not positive", o.statsEvery)
	}
	if err := validName(o.prefix + strconv.Itoa(o.devices)); err != nil {
		bad("--prefix: %q does not make a valid device id: %v", o.prefix, err)
	}
	if o.password != "" && o.username == "" {
		bad("--password needs --username")
	}
	if (o.cert == "") != (o.key == "") {
		bad("--cert and --key go together")
	}
	if _, err := o.brokerURL(); err != nil {
		bad("--broker: %v", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return nil
}

func (o *mqttOptions) tlsOn() bool {
	return o.useTLS || o.cacert != "" || o.cert != "" || strings.HasPrefix(o.broker, "ssl://") ||
		strings.HasPrefix(o.broker, "tls://") || strings.HasPrefix(o.broker, "mqtts://")
}

// brokerURL is the broker as paho wants it: scheme://host:port.
func (o *mqttOptions) brokerURL() (string, error) {
	b := o.broker
	if i := strings.Index(b, "://"); i >= 0 {
		switch scheme := b[:i]; scheme {
		case "tcp", "mqtt":
			if o.useTLS || o.cacert != "" || o.cert != "" {
				return "", fmt.Errorf("%q is plaintext but TLS flags are set", b)
			}
			b = "tcp://" + b[i+3:]
		case "ssl", "tls", "mqtts":
			b = "ssl://" + b[i+3:]
		default:
			return "", fmt.Errorf("unknown scheme %q (want tcp or ssl)", scheme)
		}
	} else if o.tlsOn() {
		b = "ssl://" + b
	} else {
		b = "tcp://" + b
	}
	hostport := b[strings.Index(b, "://")+3:]
	if _, port, err := splitHostPort(hostport); err != nil || port == "" {
		return "", fmt.Errorf("%q is not host:port", o.broker)
	}
	return b, nil
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", errors.New("missing port")
	}
	if _, err := strconv.ParseUint(s[i+1:], 10, 16); err != nil {
		return "", "", fmt.Errorf("bad port %q", s[i+1:])
	}
	return s[:i], s[i+1:], nil
}

func (o *mqttOptions) tlsConfig() (*tls.Config, error) {
	if !o.tlsOn() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
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

// counters are the run's totals, shared by every device.
type counters struct {
	published  atomic.Uint64 // handed to the client
	done       atomic.Uint64 // acknowledged (QoS 1) or written (QoS 0)
	failed     atomic.Uint64
	writes     atomic.Uint64 // writes received and applied
	badWrites  atomic.Uint64
	lost       atomic.Uint64 // connections lost
	connected  atomic.Int64
	firstError sync.Once
}

func init() {
	register(command{
		name: "mqtt",
		summary: `  edgesim mqtt [flags]      MQTT devices: readings on devices/{device}/{point},
                            writes taken from devices/{device}/{point}/set
`,
		run: mqttMain,
	})
}

func mqttMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o mqttOptions
	if err := parseOptions("mqtt", &o, args, stderr); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return runMQTT(ctx, &o, log, stdout)
}

// runMQTT connects the devices, runs them until ctx ends or the duration passes, and
// disconnects them.
func runMQTT(ctx context.Context, o *mqttOptions, log *slog.Logger, stdout io.Writer) error {
	url, err := o.brokerURL()
	if err != nil {
		return err
	}
	tc, err := o.tlsConfig()
	if err != nil {
		return err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	raiseFileLimit(o.devices, log)
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var c counters
	sims := make([]*simDevice, o.devices)
	for i := range sims {
		id := o.prefix + strconv.Itoa(i+1)
		sims[i] = &simDevice{
			dev:    newDevice(id, o.points, o.seed, uint64(i)),
			opts:   o,
			c:      &c,
			log:    log.With("device", id),
			writes: make(chan paho.Message, writeQueue),
		}
	}

	// Connect in parallel, a bounded number at a time.
	start := time.Now()
	log.Info("connecting", "broker", url, "devices", o.devices)
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
			if err := s.connect(ctx, url, tc); err != nil {
				if connErr.Add(1) <= 5 {
					s.log.Error("connect failed", "err", err)
				}
			}
		}()
	}
	wg.Wait()
	up := 0
	for _, s := range sims {
		if s.client != nil {
			up++
		}
	}
	defer disconnectAll(sims)
	if ctx.Err() != nil {
		return nil
	}
	if up == 0 {
		return fmt.Errorf("no device could connect to %s", url)
	}
	log.Info("connected", "devices", up, "failed", o.devices-up, "took", time.Since(start).Round(time.Millisecond))

	runCtx, stopRun := context.WithCancel(ctx)
	var runWG sync.WaitGroup
	for _, s := range sims {
		if s.client == nil {
			continue
		}
		runWG.Add(1)
		go func() {
			defer runWG.Done()
			s.run(runCtx)
		}()
	}
	began := time.Now()
	reportStats(ctx, o, &c, began, log, stdout)
	stopRun()
	runWG.Wait()
	elapsed := time.Since(began)
	done := c.done.Load()
	pub, failed := c.published.Load(), c.failed.Load()
	log.Info("stopped", "published", pub, "delivered", done, "failed", failed, "unconfirmed", pub-done-failed,
		"writes", c.writes.Load(), "bad_writes", c.badWrites.Load(), "connections_lost", c.lost.Load(),
		"elapsed", elapsed.Round(time.Millisecond), "rate", fmt.Sprintf("%.0f/s", float64(done)/elapsed.Seconds()))
	return nil
}

// reportStats prints progress until ctx ends: each second in load mode, otherwise
// every --stats.
func reportStats(ctx context.Context, o *mqttOptions, c *counters, began time.Time, log *slog.Logger, stdout io.Writer) {
	every := o.statsEvery
	if o.load {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := uint64(0), began
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			done := c.done.Load()
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			last, lastAt = done, now
			if o.load {
				fmt.Fprintf(stdout, "t=%-6s rate=%.0f msg/s delivered=%d in_flight=%d failed=%d connected=%d\n",
					now.Sub(began).Round(time.Second), rate, done, c.published.Load()-done-c.failed.Load(),
					c.failed.Load(), c.connected.Load())
				continue
			}
			log.Info("stats", "rate", fmt.Sprintf("%.1f/s", rate), "delivered", done, "failed", c.failed.Load(),
				"writes", c.writes.Load(), "connected", c.connected.Load())
		}
	}
}

// simDevice is one device and its connection.
type simDevice struct {
	dev    *device
	opts   *mqttOptions
	c      *counters
	log    *slog.Logger
	client paho.Client
	writes chan paho.Message // from paho's handler to the device loop
}

// connect opens the device's connection. It reconnects by itself after a loss and
// subscribes to its write topic on every connection.
func (s *simDevice) connect(ctx context.Context, url string, tc *tls.Config) error {
	o := s.opts
	id := s.dev.id
	po := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(id).
		SetCleanSession(true).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetOrderMatters(true). // the handler below never blocks
		SetOnConnectHandler(func(cl paho.Client) {
			s.c.connected.Add(1)
			topic := "devices/" + id + "/+/set"
			t := cl.Subscribe(topic, 1, s.onWrite)
			go func() {
				if t.WaitTimeout(10*time.Second) && t.Error() != nil {
					s.log.Error("subscribe failed", "topic", topic, "err", t.Error())
				}
			}()
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.c.connected.Add(-1)
			s.c.lost.Add(1)
			s.log.Warn("connection lost; reconnecting", "err", err)
		})
	if o.username != "" {
		po.SetUsername(strings.ReplaceAll(o.username, "{device}", id))
		po.SetPassword(o.password)
	}
	if tc != nil {
		po.SetTLSConfig(tc)
	}
	cl := paho.NewClient(po)
	t := cl.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		// Connect gives up by itself after its timeout; make sure it is closed.
		go func() {
			t.Wait()
			cl.Disconnect(0)
		}()
		return ctx.Err()
	}
	if err := t.Error(); err != nil {
		return err
	}
	s.client = cl
	return nil
}

// onWrite runs in paho's goroutine: it must not block, so a write that finds the
// device's queue full is dropped with a log line.
func (s *simDevice) onWrite(_ paho.Client, m paho.Message) {
	select {
	case s.writes <- m:
	default:
		s.c.badWrites.Add(1)
		s.log.Warn("write dropped: the device is busy", "topic", m.Topic())
	}
}

// run publishes readings until ctx ends, at --rate or, in load mode, as fast as the
// in-flight window allows.
func (s *simDevice) run(ctx context.Context) {
	o := s.opts
	acks := make(chan paho.Token, o.inflight) // the window: full means wait
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		s.countAcks(ctx, acks)
	}()
	defer func() {
		close(acks)
		<-ackDone
	}()

	var tick <-chan time.Time
	if !o.load {
		interval := time.Duration(float64(time.Second) / o.rate)
		// Spread the devices over the first interval so they do not publish in step.
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
	for {
		if o.load {
			select {
			case <-ctx.Done():
				return
			case m := <-s.writes:
				s.write(ctx, m, acks)
			default:
				s.publish(ctx, s.dev.nextReading(o.form, time.Now()), acks)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case m := <-s.writes:
			s.write(ctx, m, acks)
		case now := <-tick:
			s.publish(ctx, s.dev.nextReading(o.form, now), acks)
		}
	}
}

// write applies a write and reports the new value at once.
func (s *simDevice) write(ctx context.Context, m paho.Message, acks chan<- paho.Token) {
	r, err := s.dev.applyWrite(m.Topic(), m.Payload(), s.opts.form, time.Now())
	if err != nil {
		s.c.badWrites.Add(1)
		s.log.Warn("write refused", "topic", m.Topic(), "err", err)
		return
	}
	s.c.writes.Add(1)
	s.log.Info("write applied", "topic", m.Topic(), "payload", string(r.payload))
	s.publish(ctx, r, acks)
}

// publish hands one reading to the client and its token to the window. While the
// connection is down nothing is published: paho would hold it in memory unbounded.
func (s *simDevice) publish(ctx context.Context, r reading, acks chan<- paho.Token) {
	if !s.client.IsConnectionOpen() {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		return
	}
	t := s.client.Publish(r.topic, byte(s.opts.qos), false, r.payload)
	s.c.published.Add(1)
	select {
	case acks <- t:
	case <-ctx.Done():
	}
}

// countAcks waits for each token in turn and counts it. When ctx ends it gives the
// remaining tokens a moment, then stops waiting.
func (s *simDevice) countAcks(ctx context.Context, acks <-chan paho.Token) {
	for t := range acks {
		select {
		case <-t.Done():
		case <-ctx.Done():
			if !t.WaitTimeout(disconnectQuiesce * time.Millisecond) {
				s.c.failed.Add(1)
				continue
			}
		}
		if err := t.Error(); err != nil {
			s.c.failed.Add(1)
			s.c.firstError.Do(func() { s.log.Error("publish failed", "err", err) })
			continue
		}
		s.c.done.Add(1)
	}
}

// disconnectAll closes every connection, a bounded number at a time, each within
// the quiesce deadline.
func disconnectAll(sims []*simDevice) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, s := range sims {
		if s.client == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.client.Disconnect(disconnectQuiesce)
		}()
	}
	wg.Wait()
}

// raiseFileLimit lifts the soft limit on open files towards the hard limit: each
// device is a connection.
func raiseFileLimit(devices int, log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	need := uint64(devices) + 64
	if rl.Cur >= need {
		return
	}
	rl.Cur = min(need, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("could not raise the open-file limit", "err", err)
	}
	if rl.Cur < need {
		log.Warn("the open-file limit is below the number of devices; some will not connect", "limit", rl.Max, "devices", devices)
	}
}
