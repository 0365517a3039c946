package opcuasim

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// The engine is the simulator's Subscription and MonitoredItem service sets. gopcua's
// own (v0.8.0) accepts monitored items on nodes that do not exist, reuses
// subscription ids after a delete, holds a lock while it blocks on a full channel of
// a subscription that may have stopped, and leaves a goroutine per subscription
// running after Close; a simulator used to test recovery needs each of those right.
// Everything else (secure channels, sessions, security, reads, writes, discovery)
// is gopcua's server.

// Bounds: the simulator is a test tool, but a benchmark makes it hold a lot.
const (
	maxQueuedPublishes = 64      // per session
	maxItemsTotal      = 1 << 20 // monitored items across all subscriptions
	maxQueueSize       = 100     // per monitored item
	minInterval        = 10 * time.Millisecond
	// maxNotif bounds the notifications of one publish response: gopcua's server
	// sends a response as one chunk, which a client with the usual 64 KiB receive
	// buffer refuses (and drops the connection) when it is larger; a notification
	// of a scalar with both timestamps takes about 30 bytes.
	maxNotif = 1500
)

type pubReq struct {
	sc       *uasc.SecureChannel
	reqID    uint32
	handle   uint32
	deadline time.Time
	results  []ua.StatusCode // of the acknowledgements it carried
}

type session struct {
	reqs []*pubReq
	subs int
}

type item struct {
	id, handle uint32
	key        string
	sub        *subscription
	queue      []*ua.DataValue
	qsize      int
	reporting  bool
	deadband   float64 // absolute; 0: every change
	last       float64
	hasLast    bool
}

type subscription struct {
	id        uint32
	sess      any
	interval  time.Duration
	keepAlive uint32
	lifetime  uint32
	maxNotif  int
	enabled   bool
	items     map[uint32]*item
	ready     map[*item]struct{}
	seq       uint32
	idle      uint32 // intervals since the last message sent
	backlog   bool   // the last response said MoreNotifications
	starved   uint32 // intervals with something to send and no publish request
	stop      chan struct{}
	wake      chan struct{} // a publish request came while notifications wait
}

type engine struct {
	srv             *server.Server
	ns              *namespace
	log             logger
	maxItemsPerCall uint32

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	subs     map[uint32]*subscription
	sessions map[any]*session
	byNode   map[string]map[*item]struct{}
	nItems   int
	nextSub  uint32
	nextItem uint32
	sent     uint64 // notifications sent, for Stats
}

func newEngine(srv *server.Server, ns *namespace, log logger, maxItemsPerCall uint32) *engine {
	ctx, cancel := context.WithCancel(context.Background())
	return &engine{
		srv: srv, ns: ns, log: log, maxItemsPerCall: maxItemsPerCall,
		ctx: ctx, cancel: cancel,
		subs:     make(map[uint32]*subscription),
		sessions: make(map[any]*session),
		byNode:   make(map[string]map[*item]struct{}),
		// Ids unlikely to repeat across restarts, as Part 4 §5.13.2 recommends, so
		// that a client holding an old id is told it is invalid.
		nextSub:  rand.Uint32N(1 << 30),
		nextItem: rand.Uint32N(1 << 30),
	}
}

// register installs the handlers; gopcua keeps the first registered for a type.
func (e *engine) register() {
	h := map[uint16]server.Handler{
		id.CreateSubscriptionRequest_Encoding_DefaultBinary:   e.createSubscription,
		id.ModifySubscriptionRequest_Encoding_DefaultBinary:   e.modifySubscription,
		id.SetPublishingModeRequest_Encoding_DefaultBinary:    e.setPublishingMode,
		id.PublishRequest_Encoding_DefaultBinary:              e.publish,
		id.RepublishRequest_Encoding_DefaultBinary:            e.republish,
		id.DeleteSubscriptionsRequest_Encoding_DefaultBinary:  e.deleteSubscriptions,
		id.CreateMonitoredItemsRequest_Encoding_DefaultBinary: e.createMonitoredItems,
		id.ModifyMonitoredItemsRequest_Encoding_DefaultBinary: e.modifyMonitoredItems,
		id.SetMonitoringModeRequest_Encoding_DefaultBinary:    e.setMonitoringMode,
		id.DeleteMonitoredItemsRequest_Encoding_DefaultBinary: e.deleteMonitoredItems,
	}
	for t, f := range h {
		e.srv.RegisterHandler(t, f)
	}
}

// close stops every subscription's goroutine and forgets everything.
func (e *engine) close() {
	e.cancel()
	e.wg.Wait()
	e.mu.Lock()
	e.subs = map[uint32]*subscription{}
	e.sessions = map[any]*session{}
	e.byNode = map[string]map[*item]struct{}{}
	e.nItems = 0
	e.mu.Unlock()
}

func header(handle uint32, s ua.StatusCode) *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      handle,
		ServiceResult:      s,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		StringTable:        []string{},
		AdditionalHeader:   ua.NewExtensionObject(nil),
	}
}

func (e *engine) sessionOf(h *ua.RequestHeader) (any, error) {
	s := e.srv.Session(h)
	if s == nil {
		return nil, ua.StatusBadSessionIDInvalid
	}
	return s, nil
}

func revise(interval float64) time.Duration {
	d := time.Duration(interval * float64(time.Millisecond))
	if d < minInterval || math.IsNaN(interval) {
		d = minInterval
	}
	return min(d, time.Hour)
}

func (e *engine) createSubscription(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.CreateSubscriptionRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	keep := max(req.RequestedMaxKeepAliveCount, 1)
	life := max(req.RequestedLifetimeCount, 3*keep)
	maxN := int(req.MaxNotificationsPerPublish)
	if maxN == 0 || maxN > maxNotif {
		maxN = maxNotif
	}
	e.mu.Lock()
	e.nextSub++
	s := &subscription{
		id: e.nextSub, sess: sess, interval: revise(req.RequestedPublishingInterval),
		keepAlive: keep, lifetime: life, maxNotif: maxN, enabled: req.PublishingEnabled,
		items: make(map[uint32]*item), ready: make(map[*item]struct{}), stop: make(chan struct{}),
		wake: make(chan struct{}, 1),
	}
	e.subs[s.id] = s
	ss := e.sessions[sess]
	if ss == nil {
		ss = &session{}
		e.sessions[sess] = ss
	}
	ss.subs++
	e.wg.Add(1)
	e.mu.Unlock()
	go e.run(s)
	return &ua.CreateSubscriptionResponse{
		ResponseHeader:            header(req.RequestHeader.RequestHandle, ua.StatusOK),
		SubscriptionID:            s.id,
		RevisedPublishingInterval: float64(s.interval) / float64(time.Millisecond),
		RevisedLifetimeCount:      life,
		RevisedMaxKeepAliveCount:  keep,
	}, nil
}

// subLocked finds a subscription of the session.
func (e *engine) subLocked(sess any, id uint32) *subscription {
	s := e.subs[id]
	if s == nil || s.sess != sess {
		return nil
	}
	return s
}

func (e *engine) modifySubscription(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.ModifySubscriptionRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.subLocked(sess, req.SubscriptionID)
	if s == nil {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	// The interval is kept: the subscription's ticker was made with it.
	s.keepAlive = max(req.RequestedMaxKeepAliveCount, 1)
	s.lifetime = max(req.RequestedLifetimeCount, 3*s.keepAlive)
	if req.MaxNotificationsPerPublish > 0 {
		s.maxNotif = min(int(req.MaxNotificationsPerPublish), maxNotif)
	}
	return &ua.ModifySubscriptionResponse{
		ResponseHeader:            header(req.RequestHeader.RequestHandle, ua.StatusOK),
		RevisedPublishingInterval: float64(s.interval) / float64(time.Millisecond),
		RevisedLifetimeCount:      s.lifetime,
		RevisedMaxKeepAliveCount:  s.keepAlive,
	}, nil
}

func (e *engine) setPublishingMode(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.SetPublishingModeRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	res := make([]ua.StatusCode, len(req.SubscriptionIDs))
	for i, sid := range req.SubscriptionIDs {
		s := e.subLocked(sess, sid)
		if s == nil {
			res[i] = ua.StatusBadSubscriptionIDInvalid
			continue
		}
		s.enabled = req.PublishingEnabled
	}
	return &ua.SetPublishingModeResponse{
		ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), Results: res, DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

func (e *engine) publish(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.PublishRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ss := e.sessions[sess]
	if ss == nil || ss.subs == 0 {
		return nil, ua.StatusBadNoSubscription
	}
	if len(ss.reqs) >= maxQueuedPublishes {
		return nil, ua.StatusBadTooManyPublishRequests
	}
	// No retransmission queue: every acknowledgement of a live subscription is
	// taken, since nothing is kept to be acknowledged.
	results := make([]ua.StatusCode, len(req.SubscriptionAcknowledgements))
	for i, a := range req.SubscriptionAcknowledgements {
		if e.subLocked(sess, a.SubscriptionID) == nil {
			results[i] = ua.StatusBadSubscriptionIDInvalid
		}
	}
	timeout := time.Duration(req.RequestHeader.TimeoutHint) * time.Millisecond
	if timeout <= 0 {
		timeout = time.Hour
	}
	ss.reqs = append(ss.reqs, &pubReq{sc: sc, reqID: reqID, handle: req.RequestHeader.RequestHandle,
		deadline: time.Now().Add(timeout), results: results})
	// A subscription with a backlog answers now rather than at its next interval.
	for _, s := range e.subs {
		if s.sess == sess && len(s.ready) > 0 && s.backlog {
			select {
			case s.wake <- struct{}{}:
			default:
			}
			break
		}
	}
	return nil, nil // answered by a subscription when it has something to say
}

func (e *engine) republish(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	return nil, ua.StatusBadMessageNotAvailable
}

func (e *engine) deleteSubscriptions(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.DeleteSubscriptionsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	res := make([]ua.StatusCode, len(req.SubscriptionIDs))
	var answer []*pubReq
	e.mu.Lock()
	for i, sid := range req.SubscriptionIDs {
		s := e.subLocked(sess, sid)
		if s == nil {
			res[i] = ua.StatusBadSubscriptionIDInvalid
			continue
		}
		answer = append(answer, e.deleteLocked(s)...)
	}
	e.mu.Unlock()
	e.noSubscription(answer)
	return &ua.DeleteSubscriptionsResponse{
		ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), Results: res, DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

// deleteLocked removes a subscription and its items. It returns the session's
// queued publish requests when it was the session's last subscription: they are
// to be answered with BadNoSubscription.
func (e *engine) deleteLocked(s *subscription) []*pubReq {
	if e.subs[s.id] != s {
		return nil
	}
	delete(e.subs, s.id)
	close(s.stop)
	for _, it := range s.items {
		e.unlinkLocked(it)
	}
	ss := e.sessions[s.sess]
	if ss == nil {
		return nil
	}
	ss.subs--
	if ss.subs > 0 {
		return nil
	}
	delete(e.sessions, s.sess)
	return ss.reqs
}

func (e *engine) unlinkLocked(it *item) {
	if m := e.byNode[it.key]; m != nil {
		delete(m, it)
		if len(m) == 0 {
			delete(e.byNode, it.key)
		}
	}
	e.nItems--
}

func (e *engine) noSubscription(reqs []*pubReq) {
	for _, p := range reqs {
		_ = p.sc.SendResponseWithContext(e.ctx, p.reqID, &ua.ServiceFault{ResponseHeader: header(p.handle, ua.StatusBadNoSubscription)})
	}
}

// dropAll deletes every subscription, as a server that lost them would.
func (e *engine) dropAll() {
	var answer []*pubReq
	e.mu.Lock()
	for _, s := range e.subs {
		answer = append(answer, e.deleteLocked(s)...)
	}
	e.mu.Unlock()
	e.noSubscription(answer)
}

func (e *engine) createMonitoredItems(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.CreateMonitoredItemsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	switch n := len(req.ItemsToCreate); {
	case n == 0:
		return nil, ua.StatusBadNothingToDo
	case e.maxItemsPerCall > 0 && n > int(e.maxItemsPerCall):
		return nil, ua.StatusBadTooManyOperations
	}
	type initial struct {
		it *item
		dv *ua.DataValue
	}
	var initials []initial
	res := make([]*ua.MonitoredItemCreateResult, len(req.ItemsToCreate))
	e.mu.Lock()
	s := e.subLocked(sess, req.SubscriptionID)
	if s == nil {
		e.mu.Unlock()
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	for i, c := range req.ItemsToCreate {
		r := &ua.MonitoredItemCreateResult{FilterResult: ua.NewExtensionObject(nil)}
		res[i] = r
		key, st := e.ns.key(c.ItemToMonitor)
		if st == ua.StatusOK && e.nItems >= maxItemsTotal {
			st = ua.StatusBadTooManyMonitoredItems
		}
		var db float64
		if st == ua.StatusOK {
			db, st = deadband(c.RequestedParameters)
		}
		if st != ua.StatusOK {
			r.StatusCode = st
			continue
		}
		e.nextItem++
		it := &item{
			id: e.nextItem, handle: c.RequestedParameters.ClientHandle, key: key, sub: s,
			qsize:     min(max(int(c.RequestedParameters.QueueSize), 1), maxQueueSize),
			reporting: c.MonitoringMode == ua.MonitoringModeReporting,
			deadband:  db,
		}
		s.items[it.id] = it
		m := e.byNode[key]
		if m == nil {
			m = make(map[*item]struct{})
			e.byNode[key] = m
		}
		m[it] = struct{}{}
		e.nItems++
		r.MonitoredItemID = it.id
		r.RevisedSamplingInterval = max(c.RequestedParameters.SamplingInterval, 0)
		r.RevisedQueueSize = uint32(it.qsize)
		initials = append(initials, initial{it: it})
	}
	e.mu.Unlock()
	// The first value of each item, read outside the engine's lock.
	for i := range initials {
		nid := ua.NewStringNodeID(e.ns.ID(), initials[i].it.key)
		initials[i].dv = e.ns.Attribute(nid, ua.AttributeIDValue)
	}
	e.mu.Lock()
	for _, in := range initials {
		if s.items[in.it.id] == in.it {
			e.queueLocked(in.it, in.dv, true)
		}
	}
	e.mu.Unlock()
	return &ua.CreateMonitoredItemsResponse{
		ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), Results: res, DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

// key is the namespace key of a node to monitor, or why it cannot be monitored.
func (ns *namespace) key(rv *ua.ReadValueID) (string, ua.StatusCode) {
	if rv == nil || rv.NodeID == nil {
		return "", ua.StatusBadNodeIDInvalid
	}
	if rv.AttributeID != ua.AttributeIDValue {
		return "", ua.StatusBadAttributeIDInvalid
	}
	if rv.NodeID.Namespace() != ns.ID() || rv.NodeID.Type() != ua.NodeIDTypeString {
		return "", ua.StatusBadNodeIDUnknown
	}
	k := rv.NodeID.StringID()
	ns.mu.RLock()
	_, ok := ns.vars[k]
	ns.mu.RUnlock()
	if !ok {
		return "", ua.StatusBadNodeIDUnknown
	}
	return k, ua.StatusOK
}

// deadband reads a DataChangeFilter: absolute deadbands only.
func deadband(p *ua.MonitoringParameters) (float64, ua.StatusCode) {
	if p == nil {
		return 0, ua.StatusBadMonitoringModeInvalid
	}
	if p.Filter == nil || p.Filter.Value == nil {
		return 0, ua.StatusOK
	}
	f, ok := p.Filter.Value.(*ua.DataChangeFilter)
	if !ok {
		return 0, ua.StatusBadMonitoredItemFilterUnsupported
	}
	switch f.DeadbandType {
	case uint32(ua.DeadbandTypeNone):
		return 0, ua.StatusOK
	case uint32(ua.DeadbandTypeAbsolute):
		return f.DeadbandValue, ua.StatusOK
	}
	return 0, ua.StatusBadDeadbandFilterInvalid
}

// changed is the namespace's hook: every new value of a variable.
func (e *engine) changed(key string, dv *ua.DataValue) {
	e.mu.Lock()
	for it := range e.byNode[key] {
		e.queueLocked(it, dv, false)
	}
	e.mu.Unlock()
}

func (e *engine) queueLocked(it *item, dv *ua.DataValue, first bool) {
	if !it.reporting {
		return
	}
	if it.deadband > 0 && !first && dv.Value != nil {
		if f, ok := number(dv.Value.Value()); ok {
			if it.hasLast && math.Abs(f-it.last) <= it.deadband {
				return
			}
			it.last, it.hasLast = f, true
		}
	}
	if len(it.queue) == it.qsize {
		copy(it.queue, it.queue[1:]) // discard the oldest
		it.queue = it.queue[:len(it.queue)-1]
	}
	it.queue = append(it.queue, dv)
	it.sub.ready[it] = struct{}{}
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

func (e *engine) modifyMonitoredItems(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.ModifyMonitoredItemsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.subLocked(sess, req.SubscriptionID)
	if s == nil {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	res := make([]*ua.MonitoredItemModifyResult, len(req.ItemsToModify))
	for i, m := range req.ItemsToModify {
		r := &ua.MonitoredItemModifyResult{FilterResult: ua.NewExtensionObject(nil)}
		res[i] = r
		it := s.items[m.MonitoredItemID]
		if it == nil {
			r.StatusCode = ua.StatusBadMonitoredItemIDInvalid
			continue
		}
		db, st := deadband(m.RequestedParameters)
		if st != ua.StatusOK {
			r.StatusCode = st
			continue
		}
		it.deadband = db
		it.handle = m.RequestedParameters.ClientHandle
		it.qsize = min(max(int(m.RequestedParameters.QueueSize), 1), maxQueueSize)
		r.RevisedQueueSize = uint32(it.qsize)
		r.RevisedSamplingInterval = max(m.RequestedParameters.SamplingInterval, 0)
	}
	return &ua.ModifyMonitoredItemsResponse{
		ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), Results: res, DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

func (e *engine) setMonitoringMode(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.SetMonitoringModeRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.subLocked(sess, req.SubscriptionID)
	if s == nil {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	res := make([]ua.StatusCode, len(req.MonitoredItemIDs))
	for i, mid := range req.MonitoredItemIDs {
		it := s.items[mid]
		if it == nil {
			res[i] = ua.StatusBadMonitoredItemIDInvalid
			continue
		}
		it.reporting = req.MonitoringMode == ua.MonitoringModeReporting
	}
	return &ua.SetMonitoringModeResponse{
		ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), Results: res, DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

func (e *engine) deleteMonitoredItems(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.DeleteMonitoredItemsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	sess, err := e.sessionOf(req.RequestHeader)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.subLocked(sess, req.SubscriptionID)
	if s == nil {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	res := make([]ua.StatusCode, len(req.MonitoredItemIDs))
	for i, mid := range req.MonitoredItemIDs {
		it := s.items[mid]
		if it == nil {
			res[i] = ua.StatusBadMonitoredItemIDInvalid
			continue
		}
		delete(s.items, mid)
		delete(s.ready, it)
		e.unlinkLocked(it)
	}
	return &ua.DeleteMonitoredItemsResponse{
		ResponseHeader: header(req.RequestHeader.RequestHandle, ua.StatusOK), Results: res, DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

// outgoing is a response to send once the engine's lock is released.
type outgoing struct {
	req  *pubReq
	resp ua.Response
}

// run is one subscription's publishing timer (Part 4 §5.13.1.1, simplified: no
// retransmission queue, publishing by the interval).
func (e *engine) run(s *subscription) {
	defer e.wg.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-s.stop:
			return
		case <-t.C:
		case <-s.wake:
		}
		out, expired := e.tick(s, time.Now())
		for _, o := range out {
			if err := o.req.sc.SendResponseWithContext(e.ctx, o.req.reqID, o.resp); err != nil && e.log != nil {
				e.log.Debug("opcuasim: sending a publish response: %v", err)
			}
		}
		if expired {
			return
		}
	}
}

// tick decides what the subscription sends this interval.
func (e *engine) tick(s *subscription, now time.Time) (out []outgoing, expired bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs[s.id] != s {
		return nil, true
	}
	ss := e.sessions[s.sess]
	// Publish requests past their timeout hint are answered with BadTimeout.
	live := ss.reqs[:0]
	for _, p := range ss.reqs {
		if now.After(p.deadline) {
			out = append(out, outgoing{p, &ua.ServiceFault{ResponseHeader: header(p.handle, ua.StatusBadTimeout)}})
			continue
		}
		live = append(live, p)
	}
	ss.reqs = live
	pop := func() *pubReq {
		if len(ss.reqs) == 0 {
			return nil
		}
		p := ss.reqs[0]
		ss.reqs = ss.reqs[1:]
		return p
	}
	s.backlog = false
	if s.enabled && len(s.ready) > 0 {
		for len(s.ready) > 0 {
			p := pop()
			if p == nil {
				s.starved++
				if s.starved > s.lifetime {
					e.deleteLocked(s)
					return out, true
				}
				return out, false
			}
			s.starved, s.idle = 0, 0
			out = append(out, outgoing{p, e.dataLocked(s, p, now)})
		}
		return out, false
	}
	s.idle++
	if s.idle < s.keepAlive {
		return out, false
	}
	p := pop()
	if p == nil {
		s.starved++
		if s.starved > s.lifetime {
			e.deleteLocked(s)
			return out, true
		}
		return out, false
	}
	s.idle, s.starved = 0, 0
	out = append(out, outgoing{p, e.response(s, p, &ua.NotificationMessage{
		SequenceNumber: s.seq + 1, PublishTime: now, NotificationData: []*ua.ExtensionObject{},
	}, false)})
	return out, false
}

// dataLocked takes up to maxNotif queued values into one notification message.
func (e *engine) dataLocked(s *subscription, p *pubReq, now time.Time) ua.Response {
	var items []*ua.MonitoredItemNotification
	for it := range s.ready {
		if len(items)+len(it.queue) > s.maxNotif && len(items) > 0 {
			break
		}
		for _, dv := range it.queue {
			items = append(items, &ua.MonitoredItemNotification{ClientHandle: it.handle, Value: dv})
		}
		it.queue = it.queue[:0]
		delete(s.ready, it)
	}
	e.sent += uint64(len(items))
	s.backlog = len(s.ready) > 0
	s.seq++
	if s.seq == 0 {
		s.seq = 1
	}
	dcn := &ua.DataChangeNotification{MonitoredItems: items, DiagnosticInfos: []*ua.DiagnosticInfo{}}
	return e.response(s, p, &ua.NotificationMessage{
		SequenceNumber: s.seq, PublishTime: now, NotificationData: []*ua.ExtensionObject{ua.NewExtensionObject(dcn)},
	}, len(s.ready) > 0)
}

func (e *engine) response(s *subscription, p *pubReq, msg *ua.NotificationMessage, more bool) ua.Response {
	return &ua.PublishResponse{
		ResponseHeader:           header(p.handle, ua.StatusOK),
		SubscriptionID:           s.id,
		AvailableSequenceNumbers: []uint32{},
		MoreNotifications:        more,
		NotificationMessage:      msg,
		Results:                  p.results,
		DiagnosticInfos:          []*ua.DiagnosticInfo{},
	}
}

// stats counts what the engine holds.
func (e *engine) stats() (subs, items int, sent uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs), e.nItems, e.sent
}
