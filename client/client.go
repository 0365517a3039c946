package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/tls/tlsbase"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// ErrPlaintext is returned by Dial for a plaintext connection to an address other
// machines can reach, without WithInsecure: the gateway refuses such listeners too.
var ErrPlaintext = errors.New("client: plaintext to a non-loopback address")

// Option configures Dial.
type Option func(*options) error

type options struct {
	tls       *tls.Config
	insecure  bool
	backoff   Backoff
	dialOpts  []grpc.DialOption
	keepalive time.Duration
}

// Backoff says how long a Subscription waits between attempts to reconnect: Min
// after the first failure, multiplied by Factor after each further one up to Max,
// each wait ±Jitter (a fraction) at random so that many workloads restarted by one
// gateway restart do not come back at the same instant. The same bounds drive the
// connection's own reconnects.
type Backoff struct {
	Min, Max time.Duration
	Factor   float64
	Jitter   float64
	// MaxAttempts bounds the reconnects in a row without a message in between;
	// 0: until the Subscription's context ends.
	MaxAttempts int
}

// DefaultBackoff: 100ms doubling to 5s, ±20%, until the context ends.
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second, Factor: 2, Jitter: 0.2}

// WithTLS connects with TLS using cfg (cloned). Set cfg.Certificates for mutual TLS.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) error {
		if cfg == nil {
			return errors.New("client: WithTLS: nil config")
		}
		o.tls = cfg.Clone()
		return nil
	}
}

// WithTLSFiles connects with TLS: caFile is the PEM bundle the gateway's
// certificate must chain to (empty: the system's roots), and certFile and keyFile,
// when given, are the client's certificate for mutual TLS. These are the CLI's
// --cacert, --cert and --key.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pool, err := tlsbase.LoadPool(caFile)
			if err != nil {
				return fmt.Errorf("client: cacert: %w", err)
			}
			cfg.RootCAs = pool
		}
		if (certFile == "") != (keyFile == "") {
			return errors.New("client: cert and key go together")
		}
		if certFile != "" {
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("client: cert %s, key %s: %w", certFile, keyFile, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		o.tls = cfg
		return nil
	}
}

// WithInsecure allows plaintext to an address other machines can reach. Without
// it, plaintext is only for loopback addresses and Unix sockets.
func WithInsecure() Option {
	return func(o *options) error { o.insecure = true; return nil }
}

// WithBackoff replaces DefaultBackoff; zero fields keep their default.
func WithBackoff(b Backoff) Option {
	return func(o *options) error {
		if b.Min > 0 {
			o.backoff.Min = b.Min
		}
		if b.Max > 0 {
			o.backoff.Max = b.Max
		}
		if b.Factor >= 1 {
			o.backoff.Factor = b.Factor
		}
		if b.Jitter > 0 && b.Jitter < 1 {
			o.backoff.Jitter = b.Jitter
		}
		if b.MaxAttempts > 0 {
			o.backoff.MaxAttempts = b.MaxAttempts
		}
		if o.backoff.Max < o.backoff.Min {
			return fmt.Errorf("client: backoff: max %s is less than min %s", o.backoff.Max, o.backoff.Min)
		}
		return nil
	}
}

// WithKeepalive pings an idle connection this often (default 20s; the gateway
// accepts no more than one ping every 10s), so that a gateway that vanished
// without closing the connection is noticed within about twice that.
func WithKeepalive(every time.Duration) Option {
	return func(o *options) error {
		if every < 10*time.Second {
			return fmt.Errorf("client: keepalive %s: the gateway allows pings every 10s at most", every)
		}
		o.keepalive = every
		return nil
	}
}

// WithDialOptions adds gRPC dial options (interceptors, a custom dialer...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) error { o.dialOpts = append(o.dialOpts, opts...); return nil }
}

// Client talks to one gateway. It is safe for concurrent use; Close it when done.
type Client struct {
	cc      *grpc.ClientConn
	api     pb.GatewayClient
	backoff Backoff
}

// Dial prepares a connection to a gateway at host:port or unix:///path. It does
// not wait for the gateway: the connection is made on first use and remade after
// a failure, so a Client may be created before its gateway starts.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := options{backoff: DefaultBackoff, keepalive: 20 * time.Second}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	target := addr
	local := tlsbase.IsLocal(addr)
	switch {
	case strings.HasPrefix(addr, "unix:"):
		// grpc-go resolves unix:///path and unix:path itself.
	case addr == "":
		return nil, errors.New("client: empty address")
	default:
		target = "passthrough:///" + addr
	}
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	} else if !local && !o.insecure {
		return nil, fmt.Errorf("%w: %s (use WithTLSFiles, or WithInsecure)", ErrPlaintext, addr)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: o.backoff.Min, Multiplier: o.backoff.Factor,
				Jitter: o.backoff.Jitter, MaxDelay: o.backoff.Max,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                o.keepalive,
			Timeout:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	}
	cc, err := grpc.NewClient(target, append(dial, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", addr, err)
	}
	return &Client{cc: cc, api: pb.NewGatewayClient(cc), backoff: o.backoff}, nil
}

// Close closes the connection; open Subscriptions end with an error.
func (c *Client) Close() error { return c.cc.Close() }

// API is the generated client, for what this package does not wrap.
func (c *Client) API() pb.GatewayClient { return c.api }

// Conn is the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.cc }

// Write sets one point of one device. The error carries the gateway's status code
// (status.Code): NotFound for an unknown device, FailedPrecondition when its
// adapter takes no writes, and what the device answered. A write is not retried:
// whether it is safe to repeat is the caller's to know.
func (c *Client) Write(ctx context.Context, device, point string, v Value) error {
	if v.IsZero() {
		return fmt.Errorf("write %s/%s: no value", device, point)
	}
	_, err := c.api.Write(ctx, &pb.WriteRequest{Device: device, Point: point, Value: v.v})
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", device, point, err)
	}
	return nil
}

// PointRef names one point of one device.
type PointRef struct{ Device, Point string }

// Read returns the latest cached message of each point, in the order asked. A
// point never seen is an error (NotFound). Without points it returns every point's
// latest message, ordered by device and point (fetched a page at a time: a point
// that first appears meanwhile may be missing).
func (c *Client) Read(ctx context.Context, points ...PointRef) ([]*Message, error) {
	return c.read(ctx, pb.ReadSource_READ_SOURCE_CACHE, points)
}

// ReadDevice asks the devices for the points' values now, where their adapters can
// read on demand (FailedPrecondition where not).
func (c *Client) ReadDevice(ctx context.Context, points ...PointRef) ([]*Message, error) {
	if len(points) == 0 {
		return nil, errors.New("read: a read from the devices must name its points")
	}
	return c.read(ctx, pb.ReadSource_READ_SOURCE_DEVICE, points)
}

func (c *Client) read(ctx context.Context, src pb.ReadSource, points []PointRef) ([]*Message, error) {
	req := &pb.ReadRequest{Source: src}
	for _, p := range points {
		req.Points = append(req.Points, &pb.PointRef{Device: p.Device, Point: p.Point})
	}
	var out []*Message
	for {
		resp, err := c.api.Read(ctx, req)
		if err != nil {
			if len(points) == 1 {
				return nil, fmt.Errorf("read %s/%s: %w", points[0].Device, points[0].Point, err)
			}
			return nil, fmt.Errorf("read: %w", err)
		}
		for _, m := range resp.GetMessages() {
			out = append(out, MessageOf(m))
		}
		// Without points the gateway answers a page at a time.
		if len(points) > 0 || resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// Latest returns one point's latest cached message.
func (c *Client) Latest(ctx context.Context, device, point string) (*Message, error) {
	ms, err := c.Read(ctx, PointRef{device, point})
	if err != nil {
		return nil, err
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("read %s/%s: %d messages in the answer", device, point, len(ms))
	}
	return ms[0], nil
}

// Devices lists the devices whose ids match any of the glob patterns (none: all),
// sorted by id.
func (c *Client) Devices(ctx context.Context, patterns ...string) ([]Device, error) {
	resp, err := c.api.ListDevices(ctx, &pb.ListDevicesRequest{Devices: patterns})
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	out := make([]Device, len(resp.GetDevices()))
	for i, d := range resp.GetDevices() {
		out[i] = deviceOf(d)
	}
	return out, nil
}

// Ack records that durable consumer has handled every message up to and including
// seq; after a disconnect or a gateway restart a Subscription with that consumer
// continues after it. Positions only move forward, so a failed Ack is repaired by
// any later one. Needs the gateway's durable log (FailedPrecondition without). It
// returns the consumer's position after the call. Only a Subscribe creates a
// consumer: an Ack of one that does not exist (never subscribed, deleted, or
// expired after the gateway's grpc.consumer_ttl) is NotFound; under grpc.authz
// another identity's consumer is PermissionDenied.
func (c *Client) Ack(ctx context.Context, consumer string, seq uint64) (uint64, error) {
	resp, err := c.api.Ack(ctx, &pb.AckRequest{Consumer: consumer, Sequence: seq})
	if err != nil {
		return 0, fmt.Errorf("ack consumer %q at %d: %w", consumer, seq, err)
	}
	return resp.GetSequence(), nil
}

// ConsumerInfo describes a durable consumer.
type ConsumerInfo struct {
	Name string
	// Sequence is the acknowledged position, when Acknowledged.
	Sequence     uint64
	Acknowledged bool
	// Owner is the identity it belongs to under grpc.authz; "" for nobody.
	Owner    string
	LastUsed time.Time
	// Expires is when the gateway forgets it if nobody subscribes or acknowledges.
	Expires time.Time
}

// Consumers lists the durable consumers this client may use (under grpc.authz,
// its identity's), sorted by name.
func (c *Client) Consumers(ctx context.Context) ([]ConsumerInfo, error) {
	resp, err := c.api.ListConsumers(ctx, &pb.ListConsumersRequest{})
	if err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	out := make([]ConsumerInfo, len(resp.GetConsumers()))
	for i, p := range resp.GetConsumers() {
		out[i] = ConsumerInfo{Name: p.GetName(), Sequence: p.GetSequence(), Acknowledged: p.GetAcknowledged(), Owner: p.GetOwner(),
			LastUsed: p.GetLastUsed().AsTime(), Expires: p.GetExpires().AsTime()}
	}
	return out, nil
}

// DeleteConsumer forgets a durable consumer and its position (NotFound when
// there is none).
func (c *Client) DeleteConsumer(ctx context.Context, name string) error {
	if _, err := c.api.DeleteConsumer(ctx, &pb.DeleteConsumerRequest{Consumer: name}); err != nil {
		return fmt.Errorf("delete consumer %q: %w", name, err)
	}
	return nil
}
