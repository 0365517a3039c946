package mqtt

import (
	"context"
	"fmt"
	"reflect"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

var _ protocols.Reconfigurer = (*Adapter)(nil)

// Reconfigure applies a changed config without dropping a connection: accounts and
// their access lists, anonymous access, topic patterns, configured devices, and the
// payload and retained bounds are swapped whole; a connected client is checked
// against the new access lists from its next packet on. Listeners, connection and
// session limits, and the sparkplug section, need a new broker: those changes return
// ErrRestartRequired.
func (a *Adapter) Reconfigure(ctx context.Context, pc protocols.Config) error {
	next, ok := pc.(*Config)
	if !ok {
		return fmt.Errorf("mqtt: reconfigure with a %T", pc)
	}
	cur := a.cur().cfg
	if !reflect.DeepEqual(cur.Listeners, next.Listeners) || cur.MaxConnections != next.MaxConnections ||
		cur.MaxInflight != next.MaxInflight || cur.ConnectTimeout != next.ConnectTimeout ||
		cur.SessionExpiry != next.SessionExpiry || cur.MaxPacketSize != next.MaxPacketSize ||
		cur.Sparkplug != next.Sparkplug {
		return fmt.Errorf("mqtt: listeners, connection limits or sparkplug changed: %w", protocols.ErrRestartRequired)
	}
	lv, err := newLive(next)
	if err != nil {
		return err
	}
	a.sinkMu.Lock()
	sink := a.sink
	a.sinkMu.Unlock()
	if sink != nil {
		for _, d := range next.Devices {
			if _, known := a.cur().devices[d.ID]; known {
				continue
			}
			points := make([]string, len(d.Points))
			for i, p := range d.Points {
				points[i] = p.Name
			}
			if err := sink.Declare(d.ID, points...); err != nil {
				return fmt.Errorf("mqtt: device %q: %w", d.ID, err)
			}
			sink.State(d.ID, bridge.StateDisconnected, nil)
		}
	}
	a.live.Store(lv)
	a.log.Info("mqtt: reconfigured in place", "devices", len(next.Devices), "users", len(next.Users), "topics", len(next.Topics))
	return nil
}
