package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/prometheus/client_golang/prometheus"
)

// adapter is one protocol's running adapter.
type adapter struct {
	name     string
	protocol bridge.Protocol
	cfg      protocols.Config
	impl     protocols.Adapter
	metrics  *trackingRegisterer // what it registered, undone when it is replaced
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned
	stopping bool          // set before cancel: its end is expected
	ended    bool          // Run returned (set before done is closed)
}

// adapterSet starts, stops and swaps adapters. Each runs with a context of its own,
// so that a reload can stop one without touching the others, and all stop before the
// hub closes.
//
// Every adapter started stays owned until its Run returns: one that a reload took
// out but that did not stop in time is draining, no longer a protocol's adapter but
// still waited for at shutdown, and its protocol starts no other adapter until it
// has returned (two would bind the same ports and publish together).
type adapterSet struct {
	g        *Gateway
	mu       sync.Mutex
	list     []*adapter          // sorted by name
	draining []*adapter          // taken out, cancelled, Run not returned yet
	closed   bool                // stopAll began: nothing starts any more
	ctx      context.Context     // parent of every adapter's context; nil until run
	fail     func(string, error) // reports an adapter that ended by itself
}

// build makes an adapter from its config, without running it.
func (g *Gateway) build(name string, pc protocols.Config) (*adapter, error) {
	tr := &trackingRegisterer{reg: g.reg}
	impl, err := pc.New(protocols.Env{
		Logger:    g.log.With("protocol", name),
		Metrics:   tr,
		GatewayID: g.config().Gateway.ID,
		DataDir:   g.config().Gateway.DataDir,
		TLS:       g.tls,
	})
	if err != nil {
		tr.unregisterAll()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &adapter{name: name, protocol: pc.Protocol(), cfg: pc, impl: impl, metrics: tr}, nil
}

// trackingRegisterer registers on the gateway's registry and remembers what, so
// that a replaced adapter's metrics can be taken out before its successor registers
// the same names.
type trackingRegisterer struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector
}

func (t *trackingRegisterer) Register(c prometheus.Collector) error {
	if err := t.reg.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *trackingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t *trackingRegisterer) Unregister(c prometheus.Collector) bool { return t.reg.Unregister(c) }

func (t *trackingRegisterer) unregisterAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cs {
		t.reg.Unregister(c)
	}
	t.cs = nil
}

// sink is what an adapter hands its messages to: the edge functions, in front of
// the hub.
func (g *Gateway) sink(p bridge.Protocol) protocols.Sink {
	return g.functions.Sink(g.hub.Ingest(p))
}

// route points the hub's writes and reads for a protocol at an adapter, or at
// nothing when a is nil.
func (g *Gateway) route(p bridge.Protocol, a *adapter) {
	var w bridge.Writer
	var r bridge.Reader
	if a != nil {
		w, _ = a.impl.(protocols.Writer)
		r, _ = a.impl.(protocols.Reader)
	}
	g.hub.SetWriter(p, w)
	g.hub.SetReader(p, r)
}

func (s *adapterSet) add(a *adapter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, a)
	for i := len(s.list) - 1; i > 0 && s.list[i].name < s.list[i-1].name; i-- {
		s.list[i], s.list[i-1] = s.list[i-1], s.list[i]
	}
}

func (s *adapterSet) get(name string) *adapter {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.list {
		if a.name == name {
			return a
		}
	}
	return nil
}

func (s *adapterSet) all() []*adapter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*adapter(nil), s.list...)
}

// errStopping refuses to start an adapter once the gateway is stopping.
var errStopping = errors.New("the gateway is stopping")

// start runs an adapter that is in the set; it refuses once stopAll began, so that
// no adapter starts behind shutdown's back.
func (s *adapterSet) start(a *adapter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStopping
	}
	ctx, cancel := context.WithCancel(s.ctx)
	a.cancel, a.done = cancel, make(chan struct{})
	s.g.route(a.protocol, a)
	go func() {
		defer close(a.done)
		err := a.impl.Run(ctx, s.g.sink(a.protocol))
		s.mu.Lock()
		expected := a.stopping
		a.ended = true
		drained := false
		for i, o := range s.draining {
			if o == a {
				s.draining = append(s.draining[:i], s.draining[i+1:]...)
				drained = true
				break
			}
		}
		s.mu.Unlock()
		if drained {
			s.g.log.Warn("adapter stopped at last, after a reload gave up waiting for it; a reload can start its protocol again", "protocol", a.name)
		}
		if !expected {
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			s.fail(a.name, err)
		}
	}()
	return nil
}

// stop ends an adapter and waits for it, up to timeout. It reports whether it ended.
func (s *adapterSet) stop(a *adapter, timeout time.Duration) bool {
	s.mu.Lock()
	a.stopping = true
	cancel, done := a.cancel, a.done
	s.mu.Unlock()
	if cancel == nil {
		return true // never started
	}
	cancel()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// retire takes a stopped (or stopping) adapter out of the set. One whose Run has not
// returned stays owned, draining, until it does; retire reports whether it did.
func (s *adapterSet) retire(a *adapter) (draining bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.list {
		if o == a {
			s.list = append(s.list[:i], s.list[i+1:]...)
			break
		}
	}
	if a.cancel == nil || a.ended {
		return false
	}
	s.draining = append(s.draining, a)
	return true
}

// drained waits, up to timeout, for the draining adapters of protocol name to
// return. It reports whether none is left.
func (s *adapterSet) drained(name string, timeout time.Duration) bool {
	s.mu.Lock()
	var wait []chan struct{}
	for _, a := range s.draining {
		if a.name == name {
			wait = append(wait, a.done)
		}
	}
	s.mu.Unlock()
	deadline := time.After(timeout)
	for _, done := range wait {
		select {
		case <-done:
		case <-deadline:
			return false
		}
	}
	return true
}

// stopAll stops every adapter at once, draining ones included, and waits for all of
// them, up to timeout. Nothing starts after it began.
func (s *adapterSet) stopAll(timeout time.Duration) bool {
	s.mu.Lock()
	s.closed = true
	var cancels []context.CancelFunc
	var dones []chan struct{}
	for _, a := range append(append([]*adapter(nil), s.list...), s.draining...) {
		a.stopping = true
		if a.cancel == nil {
			continue // never started
		}
		cancels = append(cancels, a.cancel)
		dones = append(dones, a.done)
	}
	s.mu.Unlock()
	deadline := time.After(timeout)
	for _, cancel := range cancels {
		cancel()
	}
	for _, done := range dones {
		select {
		case <-done:
		case <-deadline:
			return false
		}
	}
	return true
}
