package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/bridge"
)

// An observation is a client's GET with Observe on a device resource: the gateway
// then sends it that device's writes (the Write RPC) as notifications (RFC 7641).
// On /devices/{device}/{point} it gets the point's writes, as the value alone; on
// /devices/{device} every write of the device, as an object {"point": value}.
//
// Over UDP and DTLS notifications are confirmable: an acknowledgement is the
// observer's receipt, and a reset or a notification that is never acknowledged ends
// the observation (RFC 7641 sections 3.6 and 4.5). An observation also ends when the
// client deregisters (GET with Observe 1) or its session ends.
type observation struct {
	s      *session
	token  message.Token
	device string
	point  string // "" for all of the device's points
	accept format
	seq    atomic.Uint32
	reset  atomic.Bool // the observer answered a notification with a reset
	gone   atomic.Bool
	// inflight counts notifications not yet acknowledged: at most
	// maxNotifyInflight, beyond which a write skips this observer.
	inflight atomic.Int32
}

// maxNotifyInflight bounds the unacknowledged notifications of one observation
// (each waits in a goroutine for up to notifyTimeout).
const maxNotifyInflight = 8

// nextSeq is the Observe option value of the next notification: 24 bits, increasing,
// starting after the registration's 2 (RFC 7641 section 4.4).
func (o *observation) nextSeq() uint32 { return (o.seq.Add(1) + 2) & 0xffffff }

// errTooManyObservations is wrapped by add's refusals; the error's text is the
// reason label of observations_refused_total.
var errTooManyObservations = errors.New("too many observations")

type observationRefusal string

func (r observationRefusal) Error() string { return string(r) }
func (observationRefusal) Unwrap() error   { return errTooManyObservations }

// observations is every registered observation, bounded in total, per session and
// per peer (a source address, whatever its ports: one host opening sessions from
// many ports gets no more).
type observations struct {
	mu         sync.Mutex
	max        int
	perSession int
	perPeer    int
	n          int
	byDevice   map[string]map[*observation]struct{}
	bySession  map[*session]map[string]*observation // by token
	byPeer     map[netip.Addr]int
	gauge      prometheus.Gauge
}

func newObservations(max, perSession, perPeer int, gauge prometheus.Gauge) *observations {
	return &observations{
		max:        max,
		perSession: perSession,
		perPeer:    perPeer,
		byDevice:   make(map[string]map[*observation]struct{}),
		bySession:  make(map[*session]map[string]*observation),
		byPeer:     make(map[netip.Addr]int),
		gauge:      gauge,
	}
}

// add registers o, replacing an observation of the same session with the same token
// (a client refreshing its registration). A refusal's error is an
// observationRefusal.
func (r *observations) add(o *observation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := string(o.token)
	mine := r.bySession[o.s]
	if old, ok := mine[key]; ok {
		r.removeLocked(old)
		mine = r.bySession[o.s]
	}
	switch {
	case r.n >= r.max:
		return observationRefusal(obsMax)
	case len(mine) >= r.perSession:
		return observationRefusal(obsPerConnection)
	case r.byPeer[o.s.peer] >= r.perPeer:
		return observationRefusal(obsPerPeer)
	}
	r.byPeer[o.s.peer]++
	if mine == nil {
		mine = make(map[string]*observation)
		r.bySession[o.s] = mine
	}
	mine[key] = o
	devs := r.byDevice[o.device]
	if devs == nil {
		devs = make(map[*observation]struct{})
		r.byDevice[o.device] = devs
	}
	devs[o] = struct{}{}
	r.n++
	r.gauge.Set(float64(r.n))
	return nil
}

func (r *observations) remove(o *observation) {
	r.mu.Lock()
	r.removeLocked(o)
	r.mu.Unlock()
}

func (r *observations) removeLocked(o *observation) {
	mine := r.bySession[o.s]
	if mine[string(o.token)] != o {
		return
	}
	o.gone.Store(true)
	delete(mine, string(o.token))
	if len(mine) == 0 {
		delete(r.bySession, o.s)
	}
	devs := r.byDevice[o.device]
	delete(devs, o)
	if len(devs) == 0 {
		delete(r.byDevice, o.device)
	}
	if r.byPeer[o.s.peer]--; r.byPeer[o.s.peer] <= 0 {
		delete(r.byPeer, o.s.peer)
	}
	r.n--
	r.gauge.Set(float64(r.n))
}

// cancel removes the session's observation with this token, if any.
func (r *observations) cancel(s *session, token message.Token) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.bySession[s][string(token)]; ok {
		r.removeLocked(o)
	}
}

func (r *observations) removeSession(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.bySession[s] {
		r.removeLocked(o)
	}
}

// observers returns the observations a write of device's point reaches.
func (r *observations) observers(device, point string) []*observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*observation
	for o := range r.byDevice[device] {
		if o.point == "" || o.point == point {
			out = append(out, o)
		}
	}
	return out
}

// writePush delivers a write to the observers of a device that pushes to the
// gateway. It returns nil as soon as one observer received it (acknowledged it, over
// UDP and DTLS), ErrNoObserver when nobody observes, else why none received it or
// ctx's error. The notifications go on after Write returns, within notifyTimeout, so
// that an observer that never acknowledges is found and removed whatever the
// caller's deadline; they are the run's goroutines, and end with it.
func (a *Adapter) writePush(ctx context.Context, st *runState, device, point string, v bridge.Value) error {
	obs := a.obs.observers(device, point)
	if len(obs) == 0 {
		return fmt.Errorf("%w %q (point %q)", ErrNoObserver, device, point)
	}
	results := make(chan error, len(obs))
	started := 0
	var errs []error
	for _, o := range obs {
		if o.inflight.Add(1) > maxNotifyInflight {
			o.inflight.Add(-1)
			errs = append(errs, fmt.Errorf("an observer has %d notifications unacknowledged", maxNotifyInflight))
			continue
		}
		if !st.handlers.enter() {
			o.inflight.Add(-1)
			break
		}
		started++
		go func() {
			defer st.handlers.leave()
			defer o.inflight.Add(-1)
			nctx, cancel := context.WithTimeout(st.ctx, notifyTimeout)
			defer cancel()
			results <- a.notify(nctx, o, point, v)
		}()
	}
	if started == 0 {
		if len(errs) > 0 {
			return fmt.Errorf("coap: write to %q: %w", device, errors.Join(errs...))
		}
		return ErrNotRunning
	}
	for range started {
		select {
		case err := <-results:
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		case <-ctx.Done():
			return fmt.Errorf("coap: write to %q: no observer acknowledged yet: %w", device, ctx.Err())
		}
	}
	return fmt.Errorf("coap: write to %q: no observer received it: %w", device, errors.Join(errs...))
}

// notify sends one notification and waits for its acknowledgement (UDP, DTLS) or
// until it is written (TCP, TLS). A failure ends the observation.
func (a *Adapter) notify(ctx context.Context, o *observation, point string, v bridge.Value) error {
	if o.gone.Load() {
		return errors.New("observation ended")
	}
	var cf format
	var body []byte
	if o.point == "" {
		cf, body = encodeObject(o.accept, []reading{{point: point, value: v}})
	} else {
		cf, body = encodeValue(o.accept, v)
	}
	cc := o.s.conn
	msg := cc.AcquireMessage(ctx)
	defer cc.ReleaseMessage(msg)
	msg.SetCode(codes.Content)
	msg.SetToken(o.token)
	msg.SetObserve(o.nextSeq())
	msg.SetContentFormat(cf.media())
	msg.SetBody(bytes.NewReader(body))
	if o.s.udp != nil {
		mid := o.s.udp.GetMessageID()
		msg.SetMessageID(mid)
		msg.SetType(message.Confirmable)
		o.s.mu.Lock()
		o.s.pendingMID[mid] = o
		o.s.mu.Unlock()
		defer func() {
			o.s.mu.Lock()
			delete(o.s.pendingMID, mid)
			o.s.mu.Unlock()
		}()
	}
	err := cc.WriteMessage(msg)
	switch {
	case err == nil && o.reset.Load():
		// go-coap counts a reset as an answer; RFC 7641 counts it as "not
		// interested": monitor removed the observation.
		a.metrics.notifications.WithLabelValues(notifyReset).Inc()
		return errors.New("the observer reset the notification")
	case err != nil:
		if o.s.st.ctx.Err() != nil {
			return err // the run ends; so does the observation
		}
		a.metrics.notifications.WithLabelValues(notifyFailed).Inc()
		a.obs.remove(o)
		return err
	}
	a.metrics.notifications.WithLabelValues(notifyAcknowledged).Inc()
	return nil
}
