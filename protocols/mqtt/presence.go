package mqtt

import (
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// presence tracks which connected clients speak for which devices. A device is
// CONNECTED while at least one client has published for it (or connected with its id)
// and DISCONNECTED when the last of them goes.
//
// Clients are keyed by their *mochi.Client, not their id: when a client takes over a
// session with the same id, the old connection's disconnect arrives after the new one
// connected, and must not disconnect the devices the new one speaks for.
//
// It is bounded by the bridge's registry: a device is only associated after the
// bridge accepted a message for it (or it is configured).
type presence struct {
	mu       sync.Mutex
	sink     protocols.Sink
	byDevice map[string]map[*mochi.Client]struct{}
	byClient map[*mochi.Client]map[string]struct{}
}

func newPresence(sink protocols.Sink) *presence {
	return &presence{
		sink:     sink,
		byDevice: make(map[string]map[*mochi.Client]struct{}),
		byClient: make(map[*mochi.Client]map[string]struct{}),
	}
}

// seen associates a device with a client.
func (p *presence) seen(cl *mochi.Client, device string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	devs := p.byClient[cl]
	if _, ok := devs[device]; ok {
		return // the common case: one more message from the same client
	}
	if devs == nil {
		devs = make(map[string]struct{})
		p.byClient[cl] = devs
	}
	devs[device] = struct{}{}
	cls := p.byDevice[device]
	if cls == nil {
		cls = make(map[*mochi.Client]struct{})
		p.byDevice[device] = cls
	}
	cls[cl] = struct{}{}
	if len(cls) == 1 {
		p.sink.State(device, bridge.StateConnected, nil)
	}
}

// gone removes a client; its devices that no other client speaks for disconnect.
func (p *presence) gone(cl *mochi.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for device := range p.byClient[cl] {
		cls := p.byDevice[device]
		delete(cls, cl)
		if len(cls) == 0 {
			delete(p.byDevice, device)
			p.sink.State(device, bridge.StateDisconnected, nil)
		}
	}
	delete(p.byClient, cl)
}

// dead disconnects a device whatever clients spoke for it (a Sparkplug NDEATH or
// DDEATH): the next reading from any of them connects it again.
func (p *presence) dead(device string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for cl := range p.byDevice[device] {
		delete(p.byClient[cl], device)
	}
	delete(p.byDevice, device)
	p.sink.State(device, bridge.StateDisconnected, nil)
}
