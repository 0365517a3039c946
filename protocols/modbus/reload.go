package modbus

import (
	"context"
	"fmt"
	"reflect"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

var _ protocols.Reconfigurer = (*Adapter)(nil)

// lineRun is a running line: its own context, so that a reload can stop one line
// (one TCP connection or serial port) and leave the others polling.
type lineRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// topology is the lines and devices a config makes.
type topology struct {
	lines   []*line
	devices map[string]*device
	lineOf  map[string]*line
	confs   map[*line][]DeviceConfig
}

// topology groups a config's devices by connection: devices behind one TCP address
// or on one serial line share it.
func (a *Adapter) topology(c *Config) (*topology, error) {
	t := &topology{devices: map[string]*device{}, lineOf: map[string]*line{}, confs: map[*line][]DeviceConfig{}}
	byKey := map[string]*line{}
	for _, dc := range c.Devices {
		ep, err := parseAddress(dc.Address)
		if err != nil {
			return nil, fmt.Errorf("device %q: address: %w", dc.ID, err)
		}
		l := byKey[ep.key()]
		if l == nil {
			l = newLine(a, ep)
			byKey[ep.key()] = l
			t.lines = append(t.lines, l)
		}
		d := newDevice(dc, c, a.metrics)
		l.devices = append(l.devices, d)
		t.devices[d.id] = d
		t.lineOf[d.id] = l
		t.confs[l] = append(t.confs[l], dc)
	}
	return t, nil
}

func declare(sink protocols.Sink, l *line) error {
	for _, d := range l.devices {
		names := make([]string, len(d.points))
		for i, p := range d.points {
			names[i] = p.name
		}
		if err := sink.Declare(d.id, names...); err != nil {
			return fmt.Errorf("modbus: device %q: %w", d.id, err)
		}
		sink.State(d.id, bridge.StateConnecting, nil)
	}
	return nil
}

func (a *Adapter) startLineLocked(l *line) {
	ctx, cancel := context.WithCancel(a.runCtx)
	r := &lineRun{cancel: cancel, done: make(chan struct{})}
	a.runs[l] = r
	sink := a.sink
	go func() {
		defer close(r.done)
		l.run(ctx, sink)
	}()
}

// Reconfigure applies a changed device list line by line: a connection whose devices
// are unchanged goes on polling untouched; one whose devices changed is stopped and
// started again with the new ones; new connections start and removed ones stop.
// A change to the section's own settings needs a new adapter (ErrRestartRequired).
func (a *Adapter) Reconfigure(ctx context.Context, pc protocols.Config) error {
	next, ok := pc.(*Config)
	if !ok {
		return fmt.Errorf("modbus: reconfigure with a %T", pc)
	}
	curSection, nextSection := *a.cfg, *next
	curSection.Devices, nextSection.Devices = nil, nil
	if !reflect.DeepEqual(curSection, nextSection) {
		return fmt.Errorf("modbus: section settings changed: %w", protocols.ErrRestartRequired)
	}
	t, err := a.topology(next)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if a.runCtx == nil {
		a.mu.Unlock()
		return fmt.Errorf("modbus: not running: %w", protocols.ErrRestartRequired)
	}
	// Match new lines to old ones by what they were built from.
	oldByKey := map[string]*line{}
	for _, l := range a.lines {
		oldByKey[l.ep.key()] = l
	}
	var stop []*lineRun
	var start []*line
	kept := map[*line]bool{}
	for i, nl := range t.lines {
		ol := oldByKey[nl.ep.key()]
		if ol != nil && reflect.DeepEqual(a.confs[ol], t.confs[nl]) {
			// Unchanged: keep the running line and its devices.
			t.lines[i] = ol
			for _, d := range ol.devices {
				t.devices[d.id], t.lineOf[d.id] = d, ol
			}
			t.confs[ol] = a.confs[ol]
			kept[ol] = true
			continue
		}
		start = append(start, nl)
	}
	// Declare before anything stops: a registry that refuses a device (full) must
	// leave every line as it was, not stopped with no successor.
	for _, l := range start {
		if err := declare(a.sink, l); err != nil {
			a.mu.Unlock()
			return err
		}
	}
	removed := map[string]bool{}
	for _, ol := range a.lines {
		if kept[ol] {
			continue
		}
		if r := a.runs[ol]; r != nil {
			stop = append(stop, r)
			delete(a.runs, ol)
		}
		for _, d := range ol.devices {
			removed[d.id] = true
		}
	}
	a.mu.Unlock()
	// Stop the changed lines before their successors open the same connections.
	for _, r := range stop {
		r.cancel()
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range removed {
		if _, still := t.devices[id]; !still {
			a.sink.State(id, bridge.StateDisconnected, nil)
		}
	}
	a.lines, a.devices, a.lineOf, a.confs = t.lines, t.devices, t.lineOf, t.confs
	for _, l := range start {
		a.startLineLocked(l)
	}
	a.log.Info("modbus: reconfigured in place", "restarted_connections", len(start), "stopped_connections", len(stop), "devices", len(t.devices))
	return nil
}
