// Package grpcapi serves the edgegate.v1.Gateway service over the bridge: it turns
// requests into hub calls and hub messages into the wire form. It owns no
// listener; the gateway package decides where and how it is served.
package grpcapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/client_golang/prometheus"
)

// Consumers keeps durable consumers' positions and owners (bridge/journal
// implements it). An owner is an identity under grpc.authz, "" without: a
// consumer created under an identity belongs to it, and another identity's use
// is journal.ErrNotOwner.
type Consumers interface {
	// CheckConsumer says whether a name may be a consumer's.
	CheckConsumer(name string) error
	// OpenConsumer creates the consumer when new and marks it used; it returns
	// its acknowledged position, and whether it has one.
	OpenConsumer(name, owner string, now time.Time) (uint64, bool, error)
	// AckConsumer moves an existing consumer forward (journal.ErrNoConsumer
	// when it does not exist) and returns its position.
	AckConsumer(name, owner string, seq uint64, now time.Time) (uint64, error)
	RemoveConsumer(name, owner string) error
	ListConsumers() []journal.ConsumerInfo
	// ExpireConsumers forgets those last used before cutoff, except the kept.
	ExpireConsumers(cutoff time.Time, keep func(name string) bool) []string
}

// DefaultConsumerTTL is how long a durable consumer may stay idle (no Subscribe,
// no Ack) before it is forgotten (grpc.consumer_ttl).
const DefaultConsumerTTL = 7 * 24 * time.Hour

// Options bound the service.
type Options struct {
	// MaxSubscribers bounds concurrent Subscribe streams; default 256.
	MaxSubscribers int
	Logger         *slog.Logger
	// Consumers enables durable consumers; nil without a durable log.
	Consumers Consumers
	// SubscriberBudget caps what one stream may ask for (zero: no cap); a stream
	// that asks for nothing gets the cap.
	SubscriberBudget Budget
	// GatewayBudget is shared by every stream (zero: unlimited).
	GatewayBudget Budget
	// MaxPendingPoints bounds the points a SHED_POLICY_LATEST stream holds a
	// pending value for; default DefaultMaxPendingPoints.
	MaxPendingPoints int
	// ConsumerTTL is how long a durable consumer may be idle; default
	// DefaultConsumerTTL.
	ConsumerTTL time.Duration
	// Metrics registers the stream metrics when not nil.
	Metrics prometheus.Registerer
	// Now is the clock of consumers' idle times; default time.Now.
	Now func() time.Time
}

// Server implements pb.GatewayServer.
type Server struct {
	pb.UnimplementedGatewayServer
	hub        *bridge.Hub
	log        *slog.Logger
	subs       chan struct{} // a slot per open Subscribe stream
	consumers  Consumers
	subCap     Budget
	shared     *bucket
	maxPending int
	shed       *prometheus.CounterVec
	held       *prometheus.CounterVec
	conflated  *prometheus.CounterVec
	pending    *prometheus.GaugeVec
	ttl        time.Duration
	now        func() time.Time
	expired    prometheus.Counter
	refused    *prometheus.CounterVec
}

var _ pb.GatewayServer = (*Server)(nil)

// New returns the service for a hub.
func New(hub *bridge.Hub, opts Options) *Server {
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxPendingPoints <= 0 {
		opts.MaxPendingPoints = DefaultMaxPendingPoints
	}
	if opts.ConsumerTTL <= 0 {
		opts.ConsumerTTL = DefaultConsumerTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{hub: hub, log: opts.Logger, subs: make(chan struct{}, opts.MaxSubscribers), consumers: opts.Consumers,
		subCap: opts.SubscriberBudget, shared: newBucket(opts.GatewayBudget), maxPending: opts.MaxPendingPoints,
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_subscriber_shed_total",
			Help: "Messages a stream dropped because its budget was spent (shed policy drop, or latest with its pending points at their bound), by priority.",
		}, []string{"priority"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_subscriber_held_total", Help: "Messages that waited for a stream's budget (or, shed policy latest, became a pending value), by priority.",
		}, []string{"priority"}),
		conflated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_subscriber_conflated_total",
			Help: "Pending values a stream never sent because a newer value of the same point replaced them (shed policy latest), by priority.",
		}, []string{"priority"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgegate_subscriber_pending", Help: "Values that wait for a stream's budget as their point's latest (shed policy latest), by priority.",
		}, []string{"priority"}),
	}
	s.ttl, s.now = opts.ConsumerTTL, opts.Now
	s.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgegate_grpc_consumers_expired_total", Help: "Durable consumers forgotten after grpc.consumer_ttl without a Subscribe or an Ack.",
	})
	s.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgegate_grpc_consumer_refused_total",
		Help: "Uses of a durable consumer refused: not_owner (another identity's), unknown (Ack or delete of one that does not exist), full (1,024 consumers).",
	}, []string{"reason"})
	if opts.Metrics != nil {
		opts.Metrics.MustRegister(s.shed, s.held, s.conflated, s.pending, s.expired, s.refused)
		if s.consumers != nil {
			opts.Metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "edgegate_grpc_consumers", Help: "Durable consumers of clients (the gateway's own, uplink*, are not counted); at most 1,024 in all.",
			}, func() float64 { return float64(len(s.clientConsumers(""))) }))
		}
	}
	return s
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { pb.RegisterGatewayServer(g, s) }

// Header keys the Subscribe stream sends before its first message.
const (
	// HeaderSkipped counts messages after the requested start that are no longer
	// retained and will not be delivered.
	HeaderSkipped = "edgegate-skipped"
	// HeaderFirstSequence is the sequence the stream reads first.
	HeaderFirstSequence = "edgegate-first-sequence"
)

// sendBatch bounds how many messages one hub read hands to the stream.
const sendBatch = 256

// Subscribe streams the matching messages until the client goes away, the
// subscriber falls too far behind (RESOURCE_EXHAUSTED), or the gateway stops
// (UNAVAILABLE).
func (s *Server) Subscribe(req *pb.SubscribeRequest, stream grpc.ServerStreamingServer[pb.Message]) error {
	// Every argument is checked before anything is held or created.
	want := Budget{MessagesPerSecond: req.GetBudget().GetMessagesPerSecond(), BytesPerSecond: req.GetBudget().GetBytesPerSecond()}
	if err := checkRate("budget.messages_per_second", want.MessagesPerSecond); err != nil {
		return err
	}
	if err := checkRate("budget.bytes_per_second", want.BytesPerSecond); err != nil {
		return err
	}
	f := bridge.Filter{Devices: req.GetDevices(), Points: req.GetPoints(), Labels: req.GetLabels(),
		Within: AllowedDevices(stream.Context())} // authorization: what this client may see
	for _, p := range req.GetProtocols() {
		f.Protocols = append(f.Protocols, bridge.Protocol(p))
	}
	match, err := f.Compile()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "filter: %v", err)
	}
	// The name shows on the status page: who subscribed, and as which consumer.
	opts := bridge.SubscribeOptions{Match: match, Name: peerAddr(stream.Context())}
	if c := req.GetConsumer(); c != "" {
		opts.Name = c + " @ " + opts.Name
	}
	switch st := req.GetStart().(type) {
	case *pb.SubscribeRequest_FromEarliest:
		if st.FromEarliest {
			opts.Start = bridge.StartEarliest
		}
	case *pb.SubscribeRequest_AfterSequence:
		opts.Start, opts.After = bridge.StartAfter, st.AfterSequence
	}
	name := req.GetConsumer()
	if name != "" {
		if err := s.checkConsumer(name); err != nil {
			return err
		}
	}
	select {
	case s.subs <- struct{}{}:
		defer func() { <-s.subs }()
	default:
		return status.Errorf(codes.ResourceExhausted, "the gateway serves at most %d subscribers", cap(s.subs))
	}
	if name != "" {
		// A Subscribe is what creates a consumer, for its caller.
		s.expireConsumers()
		pos, ok, err := s.consumers.OpenConsumer(name, callerIdentity(stream.Context()), s.now())
		if err != nil {
			return s.consumerStatus(name, err)
		}
		if ok {
			opts.Start, opts.After = bridge.StartAfter, pos
		}
	}
	sub, err := s.hub.Subscribe(opts)
	if err != nil {
		return hubStatus(err)
	}
	defer sub.Close()
	md := metadata.Pairs(HeaderFirstSequence, strconv.FormatUint(sub.Cursor(), 10))
	if n := sub.Skipped(); n > 0 {
		md.Append(HeaderSkipped, strconv.FormatUint(n, 10))
	}
	if err := stream.SendHeader(md); err != nil {
		return err
	}
	p := &pacer{own: newBucket(want.capped(s.subCap)), shared: s.shared}
	return s.pump(stream.Context(), sub, stream, p, req.GetShed())
}

// checkRate refuses a rate from the network that is not a finite number >= 0:
// NaN compares false with everything, so it would pass every cap (issue 19.10).
func checkRate(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return status.Errorf(codes.InvalidArgument, "%s: %v is not a rate: it must be a finite number, zero or more", field, v)
	}
	return nil
}

// pump sends the subscription's messages on the stream, within the pacer's
// budget, until the stream or the subscription ends.
//
// Over budget, HIGH and CRITICAL messages wait for tokens, in order, whatever the
// policy. LOW and NORMAL ones are dropped (DROP), wait in order with the others
// (HOLD), or become their point's pending value (LATEST), which is sent when the
// budget allows: after every hub batch, and when the hub has nothing new, once
// the refill gives the oldest pending value its tokens (a timer, not a poll).
func (s *Server) pump(ctx context.Context, sub *bridge.Subscription, stream grpc.ServerStreamingServer[pb.Message], p *pacer, policy pb.ShedPolicy) error {
	send := func(m *bridge.Message, pm *pb.Message) error {
		if err := stream.Send(pm); err != nil {
			return err
		}
		m.Delivered()
		return nil
	}
	var q *pendingQueue
	if policy == pb.ShedPolicy_SHED_POLICY_LATEST && p.limited() {
		q = newPendingQueue(s.maxPending)
		defer func() {
			for prio, n := range q.counts() {
				s.pending.WithLabelValues(prio.String()).Sub(float64(n))
			}
		}()
	}
	// flush sends pending values, NORMAL before LOW, oldest first, while the
	// budget allows. HIGH and CRITICAL messages never wait here: the stream
	// handles each as it reads it.
	flush := func() error {
		for v := q.front(); v != nil; v = q.front() {
			if !p.allow(v.m.Priority, v.size) {
				return nil
			}
			q.remove(v)
			s.pending.WithLabelValues(v.m.Priority.String()).Dec()
			if err := send(v.m, v.pm); err != nil {
				return err
			}
		}
		return nil
	}
	// keep makes a LOW or NORMAL message its point's pending value.
	keep := func(v *pendingValue) error {
		prio := v.m.Priority.String()
		if q.len() >= q.max {
			// Full: what the budget allows now makes room first.
			if err := flush(); err != nil {
				return err
			}
		}
		replaced, ok := q.put(v)
		switch {
		case !ok:
			s.shed.WithLabelValues(prio).Inc()
			return nil
		case replaced != nil:
			s.conflated.WithLabelValues(replaced.m.Priority.String()).Inc()
			s.pending.WithLabelValues(replaced.m.Priority.String()).Dec()
		}
		s.pending.WithLabelValues(prio).Inc()
		s.held.WithLabelValues(prio).Inc()
		return nil
	}
	buf := make([]*bridge.Message, 0, sendBatch)
	for {
		// With pending values and nothing new, wake when the refill lets the
		// oldest one go.
		next, cancel := ctx, context.CancelFunc(nil)
		if q != nil {
			if v := q.front(); v != nil {
				next, cancel = context.WithTimeout(ctx, p.delay(v.m.Priority, v.size))
			}
		}
		batch, err := sub.Next(next, buf)
		if cancel != nil {
			cancel()
		}
		if err != nil {
			if next == ctx || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
				return hubStatus(err)
			}
			batch = nil // the timer: the pending values' turn
		}
		for _, m := range batch {
			pm := pbconv.ToProto(m)
			if !p.limited() {
				if err := send(m, pm); err != nil {
					return err
				}
				continue
			}
			size := 0
			if p.needsSize() {
				size = proto.Size(pm)
			}
			important := m.Priority >= bridge.PriorityHigh
			if q != nil && important {
				// A point's priority can rise (an edge function escalates an
				// alarm, a reload): its pending value is older than this one and
				// must not follow it.
				if old := q.drop(pointKey{m.Device, m.Point}); old != nil {
					s.conflated.WithLabelValues(old.m.Priority.String()).Inc()
					s.pending.WithLabelValues(old.m.Priority.String()).Dec()
				}
			}
			if q != nil && !important && q.blocks(m) {
				// Older values of this class wait: this one waits behind them.
				if err := keep(&pendingValue{key: pointKey{m.Device, m.Point}, m: m, pm: pm, size: size}); err != nil {
					return err
				}
				continue
			}
			if !p.allow(m.Priority, size) {
				// Over budget. Shedding the low end keeps the high end on time:
				// HIGH and CRITICAL wait for tokens, never lost.
				switch {
				case important || policy != pb.ShedPolicy_SHED_POLICY_DROP && q == nil:
					// HOLD, or a policy this gateway does not know (a newer
					// client's): losing nothing is the safe reading.
					s.held.WithLabelValues(m.Priority.String()).Inc()
					if err := p.wait(ctx, m.Priority, size); err != nil {
						return hubStatus(err)
					}
				case q != nil:
					if err := keep(&pendingValue{key: pointKey{m.Device, m.Point}, m: m, pm: pm, size: size}); err != nil {
						return err
					}
					continue
				default:
					s.shed.WithLabelValues(m.Priority.String()).Inc()
					continue
				}
			}
			if err := send(m, pm); err != nil {
				return err
			}
		}
		if q != nil {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// Write routes a write to the device's adapter.
func (s *Server) Write(ctx context.Context, req *pb.WriteRequest) (*pb.WriteResponse, error) {
	if err := checkRef(req.GetDevice(), req.GetPoint()); err != nil {
		return nil, err
	}
	v, err := pbconv.ValueFromProto(req.GetValue())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := Write(ctx, s.hub, req.GetDevice(), req.GetPoint(), v); err != nil {
		return nil, err
	}
	return &pb.WriteResponse{Device: req.GetDevice(), Point: req.GetPoint(), RequestId: req.GetRequestId()}, nil
}

// Write is the gateway's one write path, the Write RPC's and every other way in
// that sets a point (the northbound MQTT links' commands): it checks the names
// and the value as the RPC does, then routes the write through w (the hub). Its
// errors are gRPC statuses: INVALID_ARGUMENT for a write no device can take,
// else what the hub's error maps to.
func Write(ctx context.Context, w bridge.Writer, device, point string, v bridge.Value) error {
	if err := checkRef(device, point); err != nil {
		return err
	}
	if d, ok := v.AsDouble(); ok && (math.IsNaN(d) || math.IsInf(d, 0)) {
		// No register or node takes it as a setpoint, and adapters would convert it
		// to an integer type each in its own undefined way.
		return status.Errorf(codes.InvalidArgument, "device %q point %q: %v is not a value a device can be set to", device, point, d)
	}
	if err := w.Write(ctx, device, point, v); err != nil {
		return hubStatus(err)
	}
	return nil
}

// checkRef refuses a device or point name that no device can have (the rules of
// bridge.Ingest): an adapter would refuse it with an error that reads as
// retryable (UNAVAILABLE), and retrying cannot help.
func checkRef(device, point string) error {
	for _, n := range [...]struct{ what, name string }{{"device", device}, {"point", point}} {
		switch {
		case n.name == "":
			return status.Errorf(codes.InvalidArgument, "%s is required", n.what)
		case len(n.name) > bridge.MaxNameLen:
			return status.Errorf(codes.InvalidArgument, "%s name is %d bytes long, the limit is %d", n.what, len(n.name), bridge.MaxNameLen)
		case !utf8.ValidString(n.name):
			return status.Errorf(codes.InvalidArgument, "%s name %q is not UTF-8", n.what, n.name)
		}
	}
	return nil
}

// ReservedConsumerPrefix starts the names of the gateway's own durable consumers
// (the uplink's positions): a client may not read or move them.
const ReservedConsumerPrefix = "uplink"

// NorthboundConsumerPrefix starts the durable consumers of the northbound MQTT
// links (northbound-<name>), the gateway's own too.
const NorthboundConsumerPrefix = "northbound-"

// Reserved reports whether a durable consumer is the gateway's own: clients may
// not use, move or list it, and it never expires.
func Reserved(name string) bool {
	return strings.HasPrefix(name, ReservedConsumerPrefix) || strings.HasPrefix(name, NorthboundConsumerPrefix)
}

// checkConsumer refuses a consumer RPC without the durable log
// (FAILED_PRECONDITION) or with a name a client may not use (INVALID_ARGUMENT).
func (s *Server) checkConsumer(name string) error {
	if s.consumers == nil {
		return status.Error(codes.FailedPrecondition, "durable consumers need the durable log: set gateway.data_dir")
	}
	if Reserved(name) {
		return status.Errorf(codes.InvalidArgument, "consumer: names starting with %q or %q are the gateway's own", ReservedConsumerPrefix, NorthboundConsumerPrefix)
	}
	if err := s.consumers.CheckConsumer(name); err != nil {
		return status.Errorf(codes.InvalidArgument, "consumer: %v", err)
	}
	return nil
}

// consumerStatus maps a consumer refusal to its code, and counts it.
func (s *Server) consumerStatus(name string, err error) error {
	switch {
	case errors.Is(err, journal.ErrNotOwner):
		s.refused.WithLabelValues("not_owner").Inc()
		return status.Errorf(codes.PermissionDenied, "consumer %q belongs to another identity (grpc.authz)", name)
	case errors.Is(err, journal.ErrNoConsumer):
		s.refused.WithLabelValues("unknown").Inc()
		return status.Errorf(codes.NotFound, "consumer %q does not exist: a Subscribe with it creates it (it may have been deleted, or expired after %v idle)", name, s.ttl)
	case errors.Is(err, journal.ErrTooManyConsumers):
		s.refused.WithLabelValues("full").Inc()
		return status.Errorf(codes.ResourceExhausted, "consumer %q: %v: delete unused ones (edgegate consumers delete NAME)", name, err)
	case errors.Is(err, journal.ErrBadConsumer):
		return status.Errorf(codes.InvalidArgument, "consumer: %v", err)
	}
	return status.Errorf(codes.Unavailable, "consumer %q: %v", name, err)
}

// expireConsumers forgets the client consumers idle for longer than the TTL. It
// runs at every consumer RPC (a scan of at most 1,024 entries): an idle consumer
// stays on disk until the next one, but no client can see or use it.
func (s *Server) expireConsumers() {
	gone := s.consumers.ExpireConsumers(s.now().Add(-s.ttl), func(name string) bool {
		return Reserved(name)
	})
	if len(gone) > 0 {
		s.expired.Add(float64(len(gone)))
		s.log.Info("durable consumers expired", "consumers", gone, "idle_for", s.ttl)
	}
}

// clientConsumers lists the consumers of clients that owner may see (all of
// them for ""): its own, and those that belong to nobody.
func (s *Server) clientConsumers(owner string) []journal.ConsumerInfo {
	var out []journal.ConsumerInfo
	for _, c := range s.consumers.ListConsumers() {
		if !Reserved(c.Name) && (owner == "" || c.Owner == "" || c.Owner == owner) {
			out = append(out, c)
		}
	}
	return out
}

// Ack stores a durable consumer's position.
func (s *Server) Ack(ctx context.Context, req *pb.AckRequest) (*pb.AckResponse, error) {
	if err := s.checkConsumer(req.GetConsumer()); err != nil {
		return nil, err
	}
	if last := s.hub.LastSequence(); req.GetSequence() > last {
		return nil, status.Errorf(codes.InvalidArgument, "sequence %d is after the last one assigned, %d", req.GetSequence(), last)
	}
	s.expireConsumers()
	pos, err := s.consumers.AckConsumer(req.GetConsumer(), callerIdentity(ctx), req.GetSequence(), s.now())
	if err != nil {
		return nil, s.consumerStatus(req.GetConsumer(), err)
	}
	return &pb.AckResponse{Sequence: pos}, nil
}

// ListConsumers lists the durable consumers the caller may use.
func (s *Server) ListConsumers(ctx context.Context, req *pb.ListConsumersRequest) (*pb.ListConsumersResponse, error) {
	if s.consumers == nil {
		return nil, status.Error(codes.FailedPrecondition, "durable consumers need the durable log: set gateway.data_dir")
	}
	s.expireConsumers()
	resp := &pb.ListConsumersResponse{}
	for _, c := range s.clientConsumers(callerIdentity(ctx)) {
		resp.Consumers = append(resp.Consumers, &pb.Consumer{Name: c.Name, Sequence: c.Sequence, Acknowledged: c.Acked, Owner: c.Owner,
			LastUsed: timestamppb.New(c.LastUsed), Expires: timestamppb.New(c.LastUsed.Add(s.ttl))})
	}
	return resp, nil
}

// DeleteConsumer forgets one of the caller's durable consumers.
func (s *Server) DeleteConsumer(ctx context.Context, req *pb.DeleteConsumerRequest) (*pb.DeleteConsumerResponse, error) {
	if err := s.checkConsumer(req.GetConsumer()); err != nil {
		return nil, err
	}
	s.expireConsumers()
	if err := s.consumers.RemoveConsumer(req.GetConsumer(), callerIdentity(ctx)); err != nil {
		return nil, s.consumerStatus(req.GetConsumer(), err)
	}
	return &pb.DeleteConsumerResponse{}, nil
}

// maxReadPoints bounds one Read request, and a page of a Read of every point.
const maxReadPoints = 10000

// DefaultReadPageSize is the page of a Read of every point that does not say
// how many it wants: a response of 51,200 points was 5.2 MB, past a client's
// default 4 MB limit (issue 19.9).
const DefaultReadPageSize = 1000

// Read returns latest values from the cache, or from the devices on request.
func (s *Server) Read(ctx context.Context, req *pb.ReadRequest) (*pb.ReadResponse, error) {
	if len(req.GetPoints()) > maxReadPoints {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d points a request", maxReadPoints)
	}
	if len(req.GetPoints()) == 0 {
		if req.GetSource() == pb.ReadSource_READ_SOURCE_DEVICE {
			return nil, status.Error(codes.InvalidArgument, "a read from the devices must name its points")
		}
		return s.readPage(ctx, req)
	}
	resp := &pb.ReadResponse{}
	for _, ref := range req.GetPoints() {
		if err := checkRef(ref.GetDevice(), ref.GetPoint()); err != nil {
			return nil, err
		}
	}
	for _, ref := range req.GetPoints() {
		var m *bridge.Message
		if req.GetSource() == pb.ReadSource_READ_SOURCE_DEVICE {
			var err error
			if m, err = s.hub.ReadDevice(ctx, ref.GetDevice(), ref.GetPoint()); err != nil {
				return nil, hubStatus(err)
			}
		} else {
			var ok bool
			if m, ok = s.hub.Latest(ref.GetDevice(), ref.GetPoint()); !ok {
				return nil, status.Errorf(codes.NotFound, "no value for device %q point %q", ref.GetDevice(), ref.GetPoint())
			}
		}
		resp.Messages = append(resp.Messages, pbconv.ToProto(m))
	}
	return resp, nil
}

// readPage returns a page of every point's latest message, ordered by device and
// point, from after the point the token names.
func (s *Server) readPage(ctx context.Context, req *pb.ReadRequest) (*pb.ReadResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Errorf(codes.InvalidArgument, "page_size %d is negative", size)
	case size == 0:
		size = DefaultReadPageSize
	case size > maxReadPoints:
		size = maxReadPoints
	}
	var after pointKey
	if t := req.GetPageToken(); t != "" {
		var err error
		if after, err = decodePageToken(t); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "page_token: %v", err)
		}
	}
	allowed := AllowedDevices(ctx) // authorization: a page holds only what the caller may see
	all := s.hub.LatestAll()
	rest := all[:0]
	for _, m := range all {
		if (after == pointKey{} || comparePoints(pointKey{m.Device, m.Point}, after) > 0) && (allowed == nil || matchAny(allowed, m.Device)) {
			rest = append(rest, m)
		}
	}
	slices.SortFunc(rest, func(a, b *bridge.Message) int {
		return comparePoints(pointKey{a.Device, a.Point}, pointKey{b.Device, b.Point})
	})
	resp := &pb.ReadResponse{Messages: make([]*pb.Message, 0, min(size, len(rest)))}
	bytes := 0
	for i, m := range rest {
		pm := pbconv.ToProto(m)
		n := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(pm)) // as a field of the response
		if i == size || i > 0 && bytes+n > maxReadPageBytes-pageTokenRoom {
			last := rest[i-1]
			resp.NextPageToken = encodePageToken(pointKey{last.Device, last.Point})
			break
		}
		bytes += n
		resp.Messages = append(resp.Messages, pm)
	}
	return resp, nil
}

// maxReadPageBytes bounds a page of a Read of every point on the wire, whatever
// its page size: half of a client's default limit (4 MiB) leaves room, and
// 10,000 messages with long names and labels would pass it.
const maxReadPageBytes = 2 << 20

// pageTokenRoom is kept for next_page_token: two names of at most
// bridge.MaxNameLen bytes in base64 are under 700 bytes.
const pageTokenRoom = 1024

func comparePoints(a, b pointKey) int {
	if c := strings.Compare(a.device, b.device); c != 0 {
		return c
	}
	return strings.Compare(a.point, b.point)
}

// A page token names the last point of the page before: a version byte, the
// device's length as a uvarint, the device and the point, in unpadded base64url.
// Names may hold any byte but are bounded, so the token is too.
const pageTokenVersion = 1

func encodePageToken(k pointKey) string {
	b := binary.AppendUvarint([]byte{pageTokenVersion}, uint64(len(k.device)))
	b = append(append(b, k.device...), k.point...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(t string) (pointKey, error) {
	bad := errors.New("not a token this gateway issued (pass next_page_token as it came)")
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(b) < 2 || b[0] != pageTokenVersion {
		return pointKey{}, bad
	}
	n, used := binary.Uvarint(b[1:])
	rest := b[1+max(used, 0):]
	if used <= 0 || n == 0 || n > bridge.MaxNameLen || n > uint64(len(rest)) {
		return pointKey{}, bad
	}
	k := pointKey{device: string(rest[:n]), point: string(rest[n:])}
	if k.point == "" || len(k.point) > bridge.MaxNameLen {
		return pointKey{}, bad
	}
	return k, nil
}

// ListDevices lists the registered devices that match the request.
func (s *Server) ListDevices(ctx context.Context, req *pb.ListDevicesRequest) (*pb.ListDevicesResponse, error) {
	f := bridge.Filter{Devices: req.GetDevices()}
	for _, p := range req.GetProtocols() {
		f.Protocols = append(f.Protocols, bridge.Protocol(p))
	}
	match, err := f.Compile()
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter: %v", err)
	}
	resp := &pb.ListDevicesResponse{}
	for _, d := range s.hub.Devices(match) {
		resp.Devices = append(resp.Devices, pbconv.DeviceToProto(d))
	}
	return resp, nil
}

// hubStatus maps bridge and adapter errors to gRPC status codes. An error that
// already carries a status (from an adapter) keeps it.
func hubStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, bridge.ErrSlowConsumer):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, bridge.ErrClosed):
		return status.Error(codes.Unavailable, "the gateway is shutting down")
	case errors.Is(err, bridge.ErrUnknownDevice), errors.Is(err, bridge.ErrUnknownPoint):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, bridge.ErrNoWriter), errors.Is(err, bridge.ErrNoReader):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, bridge.ErrInvalidMessage):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, bridge.ErrDataLoss):
		return status.Error(codes.DataLoss, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}
