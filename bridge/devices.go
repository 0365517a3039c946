package bridge

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrTooManyDevices and ErrTooManyPoints reject a message that would grow the device
// registry past its configured bounds: device and point names often come from the
// devices themselves (MQTT topics), so without a bound one bad client could fill
// memory and the metrics with names.
var (
	ErrTooManyDevices = errors.New("too many devices")
	ErrTooManyPoints  = errors.New("too many points for one device")
	ErrUnknownDevice  = errors.New("unknown device")
	ErrUnknownPoint   = errors.New("unknown point")
)

// DeviceInfo is a snapshot of one device's record.
type DeviceInfo struct {
	ID         string
	Protocol   Protocol
	State      DeviceState
	StateSince time.Time
	LastSeen   time.Time
	LastError  string
	Messages   uint64
	Errors     uint64
	Writes     uint64
	Points     []string // sorted
}

type device struct {
	DeviceInfo
	points map[string]struct{}
	// Counters are looked up once per device, not once per message.
	in, out, bad, writes prometheus.Counter
}

// registry holds every device the gateway has seen or been configured with.
type registry struct {
	mu        sync.RWMutex
	m         map[string]*device
	maxDev    int
	maxPoints int
	metrics   *metrics
}

func newRegistry(maxDev, maxPoints int, m *metrics) *registry {
	return &registry{m: make(map[string]*device), maxDev: maxDev, maxPoints: maxPoints, metrics: m}
}

// getLocked returns the device's record, creating it when there is room.
// A device keeps the protocol it was first seen with: two adapters cannot share an id.
func (r *registry) getLocked(id string, p Protocol, now time.Time) (*device, error) {
	d, ok := r.m[id]
	if ok {
		if d.Protocol != p {
			return nil, fmt.Errorf("device %q already belongs to %s, not %s", id, d.Protocol, p)
		}
		return d, nil
	}
	if len(r.m) >= r.maxDev {
		return nil, fmt.Errorf("%w: limit of %d reached, device %q refused", ErrTooManyDevices, r.maxDev, id)
	}
	labels := prometheus.Labels{"protocol": p.String(), "device": id}
	d = &device{
		DeviceInfo: DeviceInfo{ID: id, Protocol: p, State: StateUnspecified, StateSince: now},
		points:     make(map[string]struct{}),
		in:         r.metrics.in.With(labels),
		out:        r.metrics.out.With(labels),
		bad:        r.metrics.bad.With(labels),
		writes:     r.metrics.writes.With(labels),
	}
	r.m[id] = d
	return d, nil
}

// observe records a batch of messages and returns each one's device, or refuses
// the whole batch, recording nothing, when any message would overflow the registry
// or names a device of another protocol.
func (r *registry) observe(msgs []*Message, now time.Time) ([]*device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkLocked(msgs); err != nil {
		return nil, err
	}
	devs := make([]*device, len(msgs))
	for i, m := range msgs {
		d, err := r.getLocked(m.Device, m.Protocol, now)
		if err != nil {
			return nil, err // checkLocked made sure it cannot fail
		}
		d.points[m.Point] = struct{}{}
		d.Messages++
		d.LastSeen = now
		devs[i] = d
	}
	return devs, nil
}

// checkLocked reports the first message of a batch that the registry would refuse,
// counting the devices and points that the batch itself adds. It allocates only
// when the batch brings something new.
func (r *registry) checkLocked(msgs []*Message) error {
	var added map[string]map[string]struct{} // device: points new to the registry
	newDevices := 0
	for _, m := range msgs {
		d, known := r.m[m.Device]
		if known {
			if d.Protocol != m.Protocol {
				return fmt.Errorf("device %q already belongs to %s, not %s", m.Device, d.Protocol, m.Protocol)
			}
			if _, ok := d.points[m.Point]; ok {
				continue
			}
		}
		pts, ok := added[m.Device]
		if !ok {
			if !known {
				if len(r.m)+newDevices >= r.maxDev {
					return fmt.Errorf("%w: limit of %d reached, device %q refused", ErrTooManyDevices, r.maxDev, m.Device)
				}
				newDevices++
			}
			if added == nil {
				added = make(map[string]map[string]struct{})
			}
			pts = make(map[string]struct{})
			added[m.Device] = pts
		}
		if _, ok := pts[m.Point]; ok {
			continue
		}
		have := len(pts)
		if known {
			have += len(d.points)
		}
		if have >= r.maxPoints {
			return fmt.Errorf("%w: device %q has %d points, point %q refused", ErrTooManyPoints, m.Device, r.maxPoints, m.Point)
		}
		pts[m.Point] = struct{}{}
	}
	return nil
}

// addPoints declares configured points, so that they are listed before any reading.
func (r *registry) addPoints(id string, p Protocol, points []string, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := r.getLocked(id, p, now)
	if err != nil {
		return err
	}
	// Known points cost nothing; new ones must all fit, or none is added.
	n := len(d.points)
	for _, pt := range points {
		if _, ok := d.points[pt]; !ok {
			n++
		}
	}
	if n > r.maxPoints {
		return fmt.Errorf("%w: device %q would have %d points, limit %d", ErrTooManyPoints, id, n, r.maxPoints)
	}
	for _, pt := range points {
		d.points[pt] = struct{}{}
	}
	return nil
}

func (r *registry) setState(id string, p Protocol, s DeviceState, cause error, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := r.getLocked(id, p, now)
	if err != nil {
		return err
	}
	if d.State != s {
		if d.State != StateUnspecified {
			r.metrics.devices.WithLabelValues(p.String(), d.State.String()).Dec()
		}
		r.metrics.devices.WithLabelValues(p.String(), s.String()).Inc()
		if s == StateConnected && cause == nil {
			// Recovered: an old error on a connected device only misleads. It is
			// kept through a disconnect, where it says why.
			d.LastError = ""
		}
		d.State = s
		d.StateSince = now
	}
	if cause != nil {
		d.LastError = cause.Error()
	}
	if s == StateConnected {
		d.LastSeen = now
	}
	return nil
}

// invalid counts a payload from the device that did not decode.
func (r *registry) invalid(id string, p Protocol, cause error, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := r.getLocked(id, p, now)
	if err != nil {
		// The registry is full: count it without a device label.
		r.metrics.badUnknown.WithLabelValues(p.String()).Inc()
		return
	}
	d.Errors++
	if cause != nil {
		d.LastError = cause.Error()
	}
	d.bad.Inc()
}

func (r *registry) wrote(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.m[id]; ok {
		d.Writes++
		d.writes.Inc()
	}
}

func (r *registry) protocolOf(id string) (Protocol, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.m[id]
	if !ok {
		return ProtocolUnspecified, false
	}
	return d.Protocol, true
}

func (r *registry) hasPoint(id, point string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.m[id]
	if !ok {
		return false
	}
	_, ok = d.points[point]
	return ok
}

func (r *registry) list(m *Matcher) []DeviceInfo {
	r.mu.RLock()
	out := make([]DeviceInfo, 0, len(r.m))
	for _, d := range r.m {
		if m != nil && !m.MatchDevice(d.ID, d.Protocol) {
			continue
		}
		info := d.DeviceInfo
		info.Points = make([]string, 0, len(d.points))
		for p := range d.points {
			info.Points = append(info.Points, p)
		}
		out = append(out, info)
	}
	r.mu.RUnlock()
	for i := range out {
		sort.Strings(out[i].Points)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// attach gives a message read back from the journal its device's counters.
func (r *registry) attach(m *Message) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if d, ok := r.m[m.Device]; ok && d.Protocol == m.Protocol {
		m.dev = d
	}
}
