package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/backoff"
	"github.com/edgegate/edgegate/protocols"
)

// The adapter drives sessions and subscriptions itself and uses gopcua (v0.8.0) for
// the transport, the secure channel, the session services and the codec. gopcua's
// automatic reconnection is off: it drops a subscription it fails to recreate
// (gopcua issues #876, #910) and can leave its publish loop paused for good after a
// reconnect (#895). Its subscription API sends one publish request at a time and
// hides keepalives, so the adapter could neither keep up with 10,000 items nor
// notice a silent server. Instead every session attempt is a fresh client, and a
// lost one is closed and made again, with backoff and jitter.

var (
	// errSubscriptionLost ends a publish loop whose subscription the server no
	// longer has; it is made again on the same session.
	errSubscriptionLost = errors.New("the server lost the subscription")
	// errSilent ends a session whose server sent neither data nor keepalive for
	// longer than it promised.
	errSilent = errors.New("no publish response or keepalive in time: the session is presumed lost")
)

// maxRecreations bounds the subscriptions made again on one session before the
// session itself is made again.
const maxRecreations = 3

// maxAcks bounds the acknowledgements waiting for the next publish request.
const maxAcks = 256

// session is one live session to a device's server.
type session struct {
	d           *device
	c           *opcua.Client
	perCall     int // monitored items per CreateMonitoredItems call
	established time.Time
}

// run keeps a session to the device's server until ctx ends.
func (d *device) run(ctx context.Context, sink protocols.Sink, attempted chan<- struct{}) {
	cfg := d.a.cfg
	m := d.a.metrics
	// Doubling from backoff_initial up to backoff_max, each wait drawn from its
	// upper half, so that gateways that lost the same server do not all come back
	// in the same instant.
	b := backoff.New(backoff.Policy{Min: cfg.BackoffInitial, Max: cfg.BackoffMax, Jitter: 0.5})
	announced := false
	announce := func() {
		if !announced {
			announced = true
			attempted <- struct{}{} // buffered for every device
		}
	}
	for {
		sink.State(d.cfg.ID, bridge.StateConnecting, nil)
		up, err := d.session(ctx, sink, announce)
		announce()
		if ctx.Err() != nil {
			sink.State(d.cfg.ID, bridge.StateDisconnected, nil)
			m.backoff.WithLabelValues(d.cfg.ID).Set(0)
			return
		}
		// A session that lasted longer than the wait it would now have earns a
		// quick retry: a server restart after a day of service is not a flapping
		// server.
		if up > b.Ceiling() {
			b.Reset()
		}
		sink.State(d.cfg.ID, bridge.StateError, err)
		wait := b.Next()
		m.backoff.WithLabelValues(d.cfg.ID).Set(wait.Seconds())
		limitedLog(d.log, d.a.lim, slog.LevelWarn, "opcua: no session; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		if backoff.Sleep(ctx, wait) != nil {
			sink.State(d.cfg.ID, bridge.StateDisconnected, nil)
			m.backoff.WithLabelValues(d.cfg.ID).Set(0)
			return
		}
	}
}

// session connects, subscribes and serves until the session is lost or ctx ends;
// it returns how long the session was up (0 when it never was).
func (d *device) session(ctx context.Context, sink protocols.Sink, connected func()) (time.Duration, error) {
	cfg := d.a.cfg
	m := d.a.metrics
	c, err := d.connect(ctx)
	if err != nil {
		result := "error"
		if errors.Is(err, ErrUntrusted) {
			result = "untrusted"
		}
		m.connects.WithLabelValues(d.cfg.ID, result).Inc()
		return 0, err
	}
	m.connects.WithLabelValues(d.cfg.ID, "ok").Inc()
	m.backoff.WithLabelValues(d.cfg.ID).Set(0)
	s := &session{d: d, c: c, perCall: DefaultMaxItemsPerCall, established: time.Now()}
	defer func() {
		// Shutdown I/O has a deadline: a server that stopped answering cannot hold
		// the gateway's stop. Closing the session deletes its subscription.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(cfg.RequestTimeout, 5*time.Second))
		_ = c.Close(cctx)
		cancel()
	}()
	s.readLimits(ctx)
	d.sess.Store(s)
	defer d.sess.Store(nil)
	sink.State(d.cfg.ID, bridge.StateConnected, nil)
	d.log.Info("opcua: session established", "endpoint", d.cfg.Endpoint, "policy", d.cfg.Security.policy(), "mode", d.cfg.Security.mode())
	connected()

	err = s.serve(ctx, sink)
	up := time.Since(s.established)
	m.items.WithLabelValues(d.cfg.ID, "ok").Set(0)
	m.items.WithLabelValues(d.cfg.ID, "failed").Set(0)
	if ctx.Err() != nil {
		return up, ctx.Err()
	}
	m.sessionsLost.WithLabelValues(d.cfg.ID).Inc()
	// Every point is stale now: say so once, until the next session's first values.
	bad := make([]*bridge.Message, len(d.points))
	for i, p := range d.points {
		bad[i] = d.bad(p, ua.StatusBadNotConnected)
	}
	if perr := sink.Publish(ctx, bad...); perr != nil && ctx.Err() == nil {
		limitedLog(d.log, d.a.lim, slog.LevelWarn, "opcua: the bridge refused the BAD messages of a lost session", "err", perr)
	}
	return up, err
}

// connect makes a client with a session: endpoint discovery and the trust check of
// the server certificate first, for a secure policy.
func (d *device) connect(ctx context.Context) (*opcua.Client, error) {
	cfg := d.a.cfg
	opts := []opcua.Option{
		opcua.AutoReconnect(false),
		opcua.DialTimeout(cfg.ConnectTimeout),
		opcua.RequestTimeout(cfg.RequestTimeout),
		opcua.SessionTimeout(cfg.SessionTimeout),
		opcua.ApplicationName("edgegate"),
		opcua.SessionName("edgegate " + d.cfg.ID),
		opcua.SecurityPolicy(d.policyURI),
		opcua.SecurityMode(d.mode),
	}
	tokenType := ua.UserTokenTypeAnonymous
	if d.cfg.Username != "" {
		tokenType = ua.UserTokenTypeUserName
		opts = append(opts, opcua.AuthUsername(d.cfg.Username, d.cfg.Password))
	} else {
		opts = append(opts, opcua.AuthAnonymous())
	}
	if d.mode != ua.MessageSecurityModeNone {
		// The client certificate of the moment: cert_file and key_file are read
		// again here when they changed. The session keeps it for its life.
		id := d.cert.identity()
		ep, err := d.endpoint(ctx)
		if err != nil {
			return nil, err
		}
		if err := trust(ep.ServerCertificate, d.trustedDir, d.rejectDir, d.cfg.ID, time.Now()); err != nil {
			return nil, err
		}
		opts = append(opts,
			opcua.Certificate(id.der),
			opcua.PrivateKey(id.key),
			opcua.SecurityFromEndpoint(ep, tokenType),
		)
		if id.uri != "" {
			opts = append(opts, opcua.ApplicationURI(id.uri))
		}
	}
	c, err := opcua.NewClient(d.cfg.Endpoint, opts...)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+cfg.RequestTimeout)
	defer cancel()
	if err := connectClient(cctx, c); err != nil {
		xctx, xcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = c.Close(xctx)
		xcancel()
		return nil, fmt.Errorf("connecting to %s: %w", d.cfg.Endpoint, err)
	}
	return c, nil
}

// connectClient is Connect, with gopcua's panics (a session it failed to verify
// is used anyway) turned into errors.
func connectClient(ctx context.Context, c *opcua.Client) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the OPC UA client library failed while connecting: %v", r)
		}
	}()
	return c.Connect(ctx)
}

// endpoint asks the server for its endpoints and picks the configured policy and
// mode; the configured URL is kept (servers behind NAT announce other hosts).
func (d *device) endpoint(ctx context.Context) (*ua.EndpointDescription, error) {
	cfg := d.a.cfg
	gctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+cfg.RequestTimeout)
	defer cancel()
	eps, err := getEndpoints(gctx, d.cfg.Endpoint, cfg)
	if err != nil {
		return nil, fmt.Errorf("asking %s for its endpoints: %w", d.cfg.Endpoint, err)
	}
	var offered []string
	for _, ep := range eps {
		if ep.SecurityPolicyURI == d.policyURI && ep.SecurityMode == d.mode {
			return ep, nil
		}
		offered = append(offered, strings.TrimPrefix(ep.SecurityPolicyURI, ua.SecurityPolicyURIPrefix)+"/"+strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode"))
	}
	slices.Sort(offered)
	offered = slices.Compact(offered)
	return nil, fmt.Errorf("the server offers no endpoint with policy %s and mode %s (it offers %s)",
		d.cfg.Security.policy(), d.cfg.Security.mode(), strings.Join(offered, ", "))
}

func getEndpoints(ctx context.Context, endpoint string, cfg *Config) (eps []*ua.EndpointDescription, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the OPC UA client library failed: %v", r)
		}
	}()
	c, err := opcua.NewClient(endpoint, opcua.AutoReconnect(false), opcua.DialTimeout(cfg.ConnectTimeout), opcua.RequestTimeout(cfg.RequestTimeout))
	if err != nil {
		return nil, err
	}
	if err := c.Dial(ctx); err != nil {
		return nil, err
	}
	defer func() {
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = c.Close(xctx)
		cancel()
	}()
	res, err := c.GetEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	return res.Endpoints, nil
}

// readLimits reads the server's MaxMonitoredItemsPerCall; a server that says
// nothing (or 0, no limit) gets DefaultMaxItemsPerCall at a time.
func (s *session) readLimits(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, s.d.a.cfg.RequestTimeout)
	defer cancel()
	res, err := s.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{
		NodeID:      ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall),
		AttributeID: ua.AttributeIDValue,
	}}})
	if err != nil || len(res.Results) != 1 || res.Results[0].Value == nil {
		return
	}
	if n := res.Results[0].Value.Uint(); n > 0 && res.Results[0].Status == ua.StatusOK {
		s.perCall = int(min(n, 10000))
	}
}

func send[T ua.Response](ctx context.Context, c *opcua.Client, req ua.Request) (T, error) {
	var res T
	err := c.Send(ctx, req, func(v ua.Response) error {
		r, ok := v.(T)
		if !ok {
			return fmt.Errorf("the server answered %T to %T", v, req)
		}
		res = r
		return nil
	})
	return res, err
}

// serve subscribes and publishes until the session is lost or ctx ends. A lost
// subscription is made again on the same session, a few times.
func (s *session) serve(ctx context.Context, sink protocols.Sink) error {
	d := s.d
	for made := 0; ; made++ {
		subID, keepalive, err := s.subscribe(ctx)
		if err != nil {
			return fmt.Errorf("creating the subscription: %w", err)
		}
		failed, err := s.monitor(ctx, sink, subID, d.points)
		if err != nil {
			return fmt.Errorf("creating monitored items: %w", err)
		}
		err = s.publish(ctx, sink, subID, keepalive, failed)
		if !errors.Is(err, errSubscriptionLost) || ctx.Err() != nil || made == maxRecreations {
			return err
		}
		d.a.metrics.subsRecreated.WithLabelValues(d.cfg.ID).Inc()
		limitedLog(d.log, d.a.lim, slog.LevelWarn, "opcua: subscription lost; making it again", "err", err)
		// Should the server still hold it (a status change said it was lost), it
		// goes, so that it does not keep sampling for nobody until its lifetime ends.
		dctx, cancel := context.WithTimeout(ctx, d.a.cfg.RequestTimeout)
		_, _ = send[*ua.DeleteSubscriptionsResponse](dctx, s.c, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{subID}})
		cancel()
	}
}

// subscribe creates the subscription; keepalive is the longest the server may stay
// silent.
func (s *session) subscribe(ctx context.Context) (uint32, time.Duration, error) {
	cfg := s.d.a.cfg
	iv := s.d.cfg.publishingInterval()
	keep := uint32(min(max(math.Ceil(float64(cfg.KeepAlive)/float64(iv)), 1), 1<<16))
	res, err := send[*ua.CreateSubscriptionResponse](ctx, s.c, &ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: float64(iv) / float64(time.Millisecond),
		RequestedMaxKeepAliveCount:  keep,
		// Part 4 §5.13.2: at least three keepalives; four leaves room for a slow
		// round trip before the server gives the subscription up.
		RequestedLifetimeCount:     4 * keep,
		MaxNotificationsPerPublish: uint32(cfg.MaxNotificationsPerPublish),
		PublishingEnabled:          true,
	})
	if err != nil {
		return 0, 0, err
	}
	riv := time.Duration(res.RevisedPublishingInterval * float64(time.Millisecond))
	if riv <= 0 {
		riv = iv
	}
	return res.SubscriptionID, riv * time.Duration(max(res.RevisedMaxKeepAliveCount, 1)), nil
}

// monitor creates monitored items for pts in batches the server allows. It
// returns the points whose items failed; each has been published BAD.
func (s *session) monitor(ctx context.Context, sink protocols.Sink, subID uint32, pts []*point) ([]*point, error) {
	d := s.d
	var failed []*point
	var bad []*bridge.Message
	var causes []string
	batch := s.perCall
	for i := 0; i < len(pts); {
		n := min(batch, len(pts)-i)
		items := make([]*ua.MonitoredItemCreateRequest, n)
		for j, p := range pts[i : i+n] {
			items[j] = p.createRequest()
		}
		res, err := send[*ua.CreateMonitoredItemsResponse](ctx, s.c, &ua.CreateMonitoredItemsRequest{
			SubscriptionID: subID, TimestampsToReturn: ua.TimestampsToReturnBoth, ItemsToCreate: items,
		})
		if errors.Is(err, ua.StatusBadTooManyOperations) && batch > 1 {
			batch /= 2 // the server's limit is lower than it said
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(res.Results) != n {
			return nil, fmt.Errorf("the server answered %d results for %d items", len(res.Results), n)
		}
		for j, r := range res.Results {
			p := pts[i+j]
			if Quality(r.StatusCode) == bridge.QualityBad {
				failed = append(failed, p)
				bad = append(bad, d.bad(p, r.StatusCode))
				if len(causes) < 5 {
					causes = append(causes, fmt.Sprintf("point %q (node %s): %s", p.cfg.Name, p.cfg.Node, statusName(r.StatusCode)))
				}
			}
		}
		i += n
	}
	m := d.a.metrics
	if len(pts) == len(d.points) {
		m.items.WithLabelValues(d.cfg.ID, "ok").Set(float64(len(pts) - len(failed)))
	} else {
		m.items.WithLabelValues(d.cfg.ID, "ok").Add(float64(len(pts) - len(failed)))
	}
	m.items.WithLabelValues(d.cfg.ID, "failed").Set(float64(len(failed)))
	if len(failed) > 0 {
		cause := fmt.Errorf("%d of %d monitored items failed: %s", len(failed), len(pts), strings.Join(causes, "; "))
		sink.State(d.cfg.ID, bridge.StateConnected, cause)
		limitedLog(d.log, d.a.lim, slog.LevelWarn, "opcua: monitored items failed; marked BAD and retried", "err", cause)
		if err := sink.Publish(ctx, bad...); err != nil && ctx.Err() == nil {
			limitedLog(d.log, d.a.lim, slog.LevelWarn, "opcua: the bridge refused BAD messages", "err", err)
		}
	}
	return failed, nil
}

func (p *point) createRequest() *ua.MonitoredItemCreateRequest {
	filter := ua.NewExtensionObject(nil)
	if p.cfg.Deadband > 0 {
		filter = ua.NewExtensionObject(&ua.DataChangeFilter{
			Trigger:       ua.DataChangeTriggerStatusValue,
			DeadbandType:  uint32(ua.DeadbandTypeAbsolute),
			DeadbandValue: p.cfg.Deadband,
		})
	}
	return &ua.MonitoredItemCreateRequest{
		ItemToMonitor:  &ua.ReadValueID{NodeID: p.nodeID, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		MonitoringMode: ua.MonitoringModeReporting,
		RequestedParameters: &ua.MonitoringParameters{
			ClientHandle:     uint32(p.index + 1),
			SamplingInterval: float64(p.cfg.samplingInterval()) / float64(time.Millisecond),
			Filter:           filter,
			QueueSize:        max(p.cfg.QueueSize, 1),
			DiscardOldest:    true,
		},
	}
}

// acks are the notification messages received and not yet acknowledged.
type acks struct {
	mu   sync.Mutex
	list []*ua.SubscriptionAcknowledgement
}

func (a *acks) add(subID, seq uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.list) == maxAcks {
		// Never sent (publish requests failing): the server's retransmission
		// queue forgets them in time anyway.
		a.list = a.list[1:]
	}
	a.list = append(a.list, &ua.SubscriptionAcknowledgement{SubscriptionID: subID, SequenceNumber: seq})
}

func (a *acks) take() []*ua.SubscriptionAcknowledgement {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.list
	a.list = nil
	if out == nil {
		out = []*ua.SubscriptionAcknowledgement{}
	}
	return out
}

// publish keeps publish requests at the server and turns what they bring into
// messages, in sequence order, until the subscription or session is lost.
func (s *session) publish(ctx context.Context, sink protocols.Sink, subID uint32, keepalive time.Duration, failed []*point) error {
	d := s.d
	cfg := d.a.cfg
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	responses := make(chan *ua.PublishResponse, cfg.PublishRequests)
	var ack acks
	var wg sync.WaitGroup
	for range cfg.PublishRequests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.publisher(pctx, cancel, &ack, responses)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.receive(pctx, cancel, sink, subID, keepalive, failed, &ack, responses)
	}()
	wg.Wait()
	if err := context.Cause(pctx); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// publisher keeps one publish request at the server.
func (s *session) publisher(ctx context.Context, fail context.CancelCauseFunc, ack *acks, out chan<- *ua.PublishResponse) {
	for ctx.Err() == nil {
		taken := ack.take()
		res, err := send[*ua.PublishResponse](ctx, s.c, &ua.PublishRequest{SubscriptionAcknowledgements: taken})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			for _, a := range taken {
				ack.add(a.SubscriptionID, a.SequenceNumber)
			}
			switch {
			case errors.Is(err, ua.StatusBadTimeout):
				continue // the keepalive watchdog decides whether the server is gone
			case errors.Is(err, ua.StatusBadNoSubscription), errors.Is(err, ua.StatusBadSubscriptionIDInvalid):
				fail(fmt.Errorf("%w: %v", errSubscriptionLost, err))
			case errors.Is(err, ua.StatusBadTooManyPublishRequests):
				// The server takes fewer: this request slot closes.
			default:
				fail(fmt.Errorf("publish: %w", err))
			}
			return
		}
		select {
		case out <- res:
		case <-ctx.Done():
			return
		}
	}
}

// receive handles publish responses in sequence order, watches for silence and
// retries failed items.
func (s *session) receive(ctx context.Context, fail context.CancelCauseFunc, sink protocols.Sink, subID uint32,
	keepalive time.Duration, failed []*point, ack *acks, in <-chan *ua.PublishResponse) {
	d := s.d
	cfg := d.a.cfg
	silence := 2*keepalive + cfg.RequestTimeout
	last := time.Now()
	watch := time.NewTicker(min(max(keepalive/2, 50*time.Millisecond), time.Second))
	defer watch.Stop()
	var retry <-chan time.Time
	var retryTimer *time.Timer
	if len(failed) > 0 {
		retryTimer = time.NewTimer(cfg.BackoffMax)
		defer retryTimer.Stop()
		retry = retryTimer.C
	}
	var next uint32 // the sequence number expected next; 0 before the first
	pending := map[uint32]*ua.PublishResponse{}
	handle := func(r *ua.PublishResponse) {
		if err := s.handle(ctx, sink, r); err != nil {
			fail(err)
			return
		}
		ack.add(subID, r.NotificationMessage.SequenceNumber)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch.C:
			if time.Since(last) > silence {
				fail(fmt.Errorf("%w (%v)", errSilent, silence))
				return
			}
		case <-retry:
			f, err := s.monitor(ctx, sink, subID, failed)
			if err != nil {
				fail(fmt.Errorf("creating monitored items again: %w", err))
				return
			}
			failed = f
			if len(failed) > 0 {
				retryTimer.Reset(cfg.BackoffMax)
			} else {
				sink.State(d.cfg.ID, bridge.StateConnected, nil)
				retry = nil
			}
		case r := <-in:
			last = time.Now()
			if r.SubscriptionID != subID || r.NotificationMessage == nil || len(r.NotificationMessage.NotificationData) == 0 {
				continue // a keepalive, or a late answer for an old subscription
			}
			seq := r.NotificationMessage.SequenceNumber
			switch {
			case next == 0 || seq == next:
				handle(r)
				next = seq + 1
			case seqAfter(seq, next):
				pending[seq] = r
			default:
				handle(r) // a late one: better late than lost
				continue
			}
			// Deliver what is now in order; skip a gap once every request slot has
			// answered past it (the server will not send what is missing).
			for len(pending) > 0 && ctx.Err() == nil {
				if p, ok := pending[next]; ok {
					delete(pending, next)
					handle(p)
					next++
					continue
				}
				if len(pending) < cfg.PublishRequests {
					break
				}
				lowest := next
				for sq := range pending {
					if lowest == next || seqAfter(lowest, sq) {
						lowest = sq
					}
				}
				next = lowest
			}
		}
	}
}

// seqAfter reports whether a comes after b, with wrap-around.
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// handle turns one notification message into messages for the bridge, as one batch.
func (s *session) handle(ctx context.Context, sink protocols.Sink, r *ua.PublishResponse) error {
	d := s.d
	m := d.a.metrics
	var msgs []*bridge.Message
	for _, eo := range r.NotificationMessage.NotificationData {
		if eo == nil {
			continue
		}
		switch n := eo.Value.(type) {
		case *ua.DataChangeNotification:
			m.notifications.WithLabelValues(d.cfg.ID).Add(float64(len(n.MonitoredItems)))
			if msgs == nil {
				msgs = make([]*bridge.Message, 0, len(n.MonitoredItems))
			}
			for _, it := range n.MonitoredItems {
				if it == nil || it.ClientHandle == 0 || int(it.ClientHandle) > len(d.points) {
					sink.Invalid(d.cfg.ID, fmt.Errorf("a notification for unknown client handle %v", it))
					continue
				}
				p := d.points[it.ClientHandle-1]
				msg, err := d.message(p, it.Value)
				if err != nil {
					sink.Invalid(d.cfg.ID, fmt.Errorf("point %q: %w", p.cfg.Name, err))
					continue
				}
				msgs = append(msgs, msg)
			}
		case *ua.StatusChangeNotification:
			if Quality(n.Status) == bridge.QualityBad {
				return fmt.Errorf("%w: status change %s", errSubscriptionLost, statusName(n.Status))
			}
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := sink.Publish(ctx, msgs...); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		m.dropped.WithLabelValues(d.cfg.ID).Add(float64(len(msgs)))
		limitedLog(d.log, d.a.lim, slog.LevelWarn, "opcua: the bridge refused notifications", "count", len(msgs), "err", err)
	}
	return nil
}
