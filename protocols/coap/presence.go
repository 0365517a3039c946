package coap

import (
	"sync"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// presence tracks which sessions speak for which devices that push to the gateway. A
// device is CONNECTED while at least one session has written for it and
// DISCONNECTED when the last of them ends (idle_timeout, or the connection closes).
//
// It is bounded by the bridge's registry: a device is only associated after the
// bridge accepted a message for it; and each session speaks for at most
// maxDevicesPerSession devices, beyond which it is simply not tracked (a gateway in
// front of many devices then does not mark them all disconnected when it goes).
type presence struct {
	mu        sync.Mutex
	sink      protocols.Sink
	byDevice  map[string]map[*session]struct{}
	bySession map[*session]map[string]struct{}
}

const maxDevicesPerSession = 64

func newPresence(sink protocols.Sink) *presence {
	return &presence{
		sink:      sink,
		byDevice:  make(map[string]map[*session]struct{}),
		bySession: make(map[*session]map[string]struct{}),
	}
}

// seen associates a device with a session.
func (p *presence) seen(s *session, device string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	devs := p.bySession[s]
	if _, ok := devs[device]; ok {
		return // the common case: one more request from the same session
	}
	if len(devs) >= maxDevicesPerSession {
		return
	}
	if devs == nil {
		devs = make(map[string]struct{})
		p.bySession[s] = devs
	}
	devs[device] = struct{}{}
	ss := p.byDevice[device]
	if ss == nil {
		ss = make(map[*session]struct{})
		p.byDevice[device] = ss
	}
	ss[s] = struct{}{}
	if len(ss) == 1 {
		p.sink.State(device, bridge.StateConnected, nil)
	}
}

// gone removes a session; its devices that no other session speaks for disconnect.
func (p *presence) gone(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for device := range p.bySession[s] {
		ss := p.byDevice[device]
		delete(ss, s)
		if len(ss) == 0 {
			delete(p.byDevice, device)
			p.sink.State(device, bridge.StateDisconnected, nil)
		}
	}
	delete(p.bySession, s)
}
