package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
)

// logRate and logBurst bound the log lines servers can cause.
const (
	logRate  = 10 // per second
	logBurst = 20
)

// labelNode is the label every message carries: the point's node id. labelStatus
// is added to a message whose status is not Good: the status code's name.
const (
	labelNode   = "node"
	labelStatus = "status"
)

// Adapter connects to the configured OPC UA servers, one session each.
type Adapter struct {
	cfg     *Config
	log     *slog.Logger
	lim     *limiter
	metrics *metrics
	devices map[string]*device
	order   []*device

	certInterval time.Duration // between checks of the devices' cert_file and key_file

	running   atomic.Bool
	ready     chan struct{}
	readyOnce sync.Once
}

var (
	_ protocols.Adapter = (*Adapter)(nil)
	_ protocols.Writer  = (*Adapter)(nil)
	_ protocols.Reader  = (*Adapter)(nil)
	_ protocols.Readier = (*Adapter)(nil)
)

// point is a configured point, resolved.
type point struct {
	cfg    PointConfig
	index  int // its client handle is index+1
	nodeID *ua.NodeID
	prio   bridge.Priority
	labels map[string]string // the device's labels and the node id; shared, never modified
}

// device is one configured server and its current session.
type device struct {
	a      *Adapter
	cfg    DeviceConfig
	log    *slog.Logger
	points []*point
	byName map[string]*point

	policyURI  string
	mode       ua.MessageSecurityMode
	cert       *clientCert // nil for policy None
	trustedDir string
	rejectDir  string

	// sess is the live session, for writes and reads; nil between sessions.
	sess atomic.Pointer[session]

	dtMu      sync.Mutex
	dataTypes map[int]ua.TypeID // by point index; reset when a write says the type changed

	lastMu sync.Mutex
	last   []bridge.Value // each point's last value, for the BAD message of a failed item
}

func newAdapter(cfg *Config, env protocols.Env) (*Adapter, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{
		cfg:     cfg,
		log:     log.With("protocol", Name),
		metrics: newMetrics(),
		devices: make(map[string]*device, len(cfg.Devices)),
		ready:   make(chan struct{}),

		certInterval: certCheckInterval,
	}
	a.lim = newLimiter(logRate, logBurst, a.metrics.logsDropped)
	gw := env.GatewayID
	if gw == "" {
		gw = "edgegate"
	}
	var shared *identity // the generated client certificate, one for every device
	for _, dc := range cfg.Devices {
		d := &device{
			a: a, cfg: dc, log: a.log.With("device", dc.ID),
			byName:    make(map[string]*point, len(dc.Points)),
			policyURI: policies[dc.Security.policy()],
			mode:      modes[dc.Security.mode()],
			dataTypes: make(map[int]ua.TypeID),
			last:      make([]bridge.Value, len(dc.Points)),
		}
		for i, pc := range dc.Points {
			prio, _ := bridge.ParsePriority(pc.Priority)
			labels := make(map[string]string, len(dc.Labels)+1)
			for k, v := range dc.Labels {
				labels[k] = v
			}
			labels[labelNode] = pc.Node
			p := &point{cfg: pc, index: i, nodeID: ua.MustParseNodeID(pc.Node), prio: prio, labels: labels}
			d.points = append(d.points, p)
			d.byName[pc.Name] = p
		}
		if d.mode != ua.MessageSecurityModeNone {
			sec := dc.Security
			var err error
			switch {
			case sec.CertFile != "":
				if d.cert, err = fileCert(sec.CertFile, sec.KeyFile, dc.ID, d.log, a.metrics); err != nil {
					return nil, fmt.Errorf("device %q: security: cert_file: %w", dc.ID, err)
				}
			default:
				if shared == nil {
					if shared, err = loadOrCreateIdentity(env.DataDir, gw); err != nil {
						return nil, fmt.Errorf("device %q: security: %w", dc.ID, err)
					}
				}
				d.cert = fixedCert(shared, dc.ID, a.metrics)
			}
			d.trustedDir = sec.TrustedDir
			if d.trustedDir == "" {
				if env.DataDir == "" {
					return nil, fmt.Errorf("device %q: security: trusted_dir: required when gateway.data_dir is not set (policy %s trusts only the server certificates it lists)", dc.ID, sec.policy())
				}
				d.trustedDir = filepath.Join(pkiDir(env.DataDir), "trusted")
				// Made now, so that the operator finds where to copy certificates.
				if err := os.MkdirAll(d.trustedDir, 0o700); err != nil {
					return nil, fmt.Errorf("device %q: security: trusted_dir: %w", dc.ID, err)
				}
			}
			// Rejected certificates go to the data dir; without one, to the
			// system's temporary directory, where an operator can still find them.
			if env.DataDir != "" {
				d.rejectDir = filepath.Join(pkiDir(env.DataDir), "rejected")
			} else {
				d.rejectDir = filepath.Join(os.TempDir(), "edgegate-opcua-rejected")
			}
		}
		a.devices[dc.ID] = d
		a.order = append(a.order, d)
	}
	if err := a.metrics.register(env.Metrics); err != nil {
		return nil, fmt.Errorf("opcua: registering metrics: %w", err)
	}
	return a, nil
}

// Ready is closed once every device has made its first session attempt, whatever
// its outcome: a server that is down must not keep the gateway from serving.
func (a *Adapter) Ready() <-chan struct{} { return a.ready }

// Run keeps a session to each configured server until ctx ends, then closes them
// (each under a deadline) and returns nil.
func (a *Adapter) Run(ctx context.Context, sink protocols.Sink) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("opcua: adapter already running")
	}
	defer a.running.Store(false)
	for _, d := range a.order {
		names := make([]string, len(d.points))
		for i, p := range d.points {
			names[i] = p.cfg.Name
		}
		if err := sink.Declare(d.cfg.ID, names...); err != nil {
			return fmt.Errorf("opcua: device %q: %w", d.cfg.ID, err)
		}
		sink.State(d.cfg.ID, bridge.StateDisconnected, nil)
	}
	var wg sync.WaitGroup
	attempted := make(chan struct{}, len(a.order))
	for _, d := range a.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(ctx, sink, attempted)
		}()
	}
	if len(a.order) > 0 {
		a.log.Info("opcua: connecting", "devices", len(a.order))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watchCerts(ctx, a.certInterval)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range a.order {
			select {
			case <-attempted:
			case <-ctx.Done():
				return
			}
		}
		a.readyOnce.Do(func() { close(a.ready) })
	}()
	wg.Wait()
	return nil
}

// refuse is a write or read refused before anything was sent.
func refuse(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "opcua: "+format, args...)
}

func (a *Adapter) point(device, name string) (*device, *point, error) {
	d := a.devices[device]
	if d == nil {
		return nil, nil, refuse("device %q is not an OPC UA device of this gateway", device)
	}
	p := d.byName[name]
	if p == nil {
		return nil, nil, refuse("device %q has no point %q", device, name)
	}
	return d, p, nil
}

// Write sets a writable point: the value is converted to the node's data type
// (read from the server once, then cached) and written. An unknown or read-only
// point, or a value the type cannot hold, is refused before anything is sent.
func (a *Adapter) Write(ctx context.Context, device, name string, v bridge.Value) error {
	d, p, err := a.point(device, name)
	if err != nil {
		a.metrics.writes.WithLabelValues(device, "refused").Inc()
		return err
	}
	err = d.write(ctx, p, v)
	switch {
	case err == nil:
		a.metrics.writes.WithLabelValues(device, "ok").Inc()
	case status.Code(err) == codes.InvalidArgument:
		a.metrics.writes.WithLabelValues(device, "refused").Inc()
	default:
		a.metrics.writes.WithLabelValues(device, "failed").Inc()
	}
	return err
}

// Read reads a point's value from the server now.
func (a *Adapter) Read(ctx context.Context, device, name string) (*bridge.Message, error) {
	d, p, err := a.point(device, name)
	if err != nil {
		a.metrics.reads.WithLabelValues(device, "refused").Inc()
		return nil, err
	}
	m, err := d.read(ctx, p)
	if err != nil {
		a.metrics.reads.WithLabelValues(device, "failed").Inc()
		return nil, err
	}
	a.metrics.reads.WithLabelValues(device, "ok").Inc()
	return m, nil
}

func (d *device) write(ctx context.Context, p *point, v bridge.Value) error {
	if !p.cfg.Writable {
		return refuse("device %q point %q is read-only (writable: false in the config)", d.cfg.ID, p.cfg.Name)
	}
	if v.IsZero() {
		return refuse("device %q point %q: no value", d.cfg.ID, p.cfg.Name)
	}
	s := d.sess.Load()
	if s == nil {
		return status.Errorf(codes.Unavailable, "opcua: device %q is not connected", d.cfg.ID)
	}
	t, err := d.dataType(ctx, s.c, p)
	if err != nil {
		return err
	}
	vr, err := FromValue(v, t)
	if err != nil {
		return refuse("device %q point %q: %v", d.cfg.ID, p.cfg.Name, err)
	}
	res, err := s.c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: p.nodeID, AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: vr},
	}}})
	if err != nil {
		return status.Errorf(codes.Unavailable, "opcua: device %q point %q: write: %v", d.cfg.ID, p.cfg.Name, err)
	}
	if len(res.Results) != 1 {
		return status.Errorf(codes.Internal, "opcua: device %q point %q: the server answered %d results for one write", d.cfg.ID, p.cfg.Name, len(res.Results))
	}
	switch st := res.Results[0]; {
	case Quality(st) == bridge.QualityGood:
		return nil
	case st == ua.StatusBadTypeMismatch:
		d.dtMu.Lock()
		delete(d.dataTypes, p.index) // the node may have changed type: read it again next time
		d.dtMu.Unlock()
		return status.Errorf(codes.InvalidArgument, "opcua: device %q point %q: the server refused %s as %s: %v", d.cfg.ID, p.cfg.Name, v.GoString(), t, st)
	case st == ua.StatusBadNotWritable, st == ua.StatusBadUserAccessDenied:
		return status.Errorf(codes.PermissionDenied, "opcua: device %q point %q: %v", d.cfg.ID, p.cfg.Name, st)
	case st == ua.StatusBadNodeIDUnknown:
		return status.Errorf(codes.NotFound, "opcua: device %q point %q: node %s: %v", d.cfg.ID, p.cfg.Name, p.cfg.Node, st)
	default:
		return status.Errorf(codes.FailedPrecondition, "opcua: device %q point %q: %v", d.cfg.ID, p.cfg.Name, st)
	}
}

// dataType is the built-in type of a point's node, read once from its DataType
// attribute.
func (d *device) dataType(ctx context.Context, c *opcua.Client, p *point) (ua.TypeID, error) {
	d.dtMu.Lock()
	t, ok := d.dataTypes[p.index]
	d.dtMu.Unlock()
	if ok {
		return t, nil
	}
	res, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: p.nodeID, AttributeID: ua.AttributeIDDataType}}})
	if err != nil {
		return 0, status.Errorf(codes.Unavailable, "opcua: device %q point %q: reading the data type: %v", d.cfg.ID, p.cfg.Name, err)
	}
	if len(res.Results) != 1 {
		return 0, status.Errorf(codes.Internal, "opcua: device %q point %q: %d results for one read", d.cfg.ID, p.cfg.Name, len(res.Results))
	}
	dv := res.Results[0]
	if Quality(dv.Status) == bridge.QualityBad {
		code := codes.FailedPrecondition
		if dv.Status == ua.StatusBadNodeIDUnknown {
			code = codes.NotFound
		}
		return 0, status.Errorf(code, "opcua: device %q point %q: reading the data type of %s: %v", d.cfg.ID, p.cfg.Name, p.cfg.Node, dv.Status)
	}
	var dt *ua.NodeID
	if dv.Value != nil {
		dt = dv.Value.NodeID()
	}
	t, ok = builtinOf(dt)
	if !ok {
		return 0, refuse("device %q point %q: node %s has data type %v, which edgegate cannot write (structures and other types are not supported)", d.cfg.ID, p.cfg.Name, p.cfg.Node, dt)
	}
	d.dtMu.Lock()
	d.dataTypes[p.index] = t
	d.dtMu.Unlock()
	return t, nil
}

func (d *device) read(ctx context.Context, p *point) (*bridge.Message, error) {
	s := d.sess.Load()
	if s == nil {
		return nil, status.Errorf(codes.Unavailable, "opcua: device %q is not connected", d.cfg.ID)
	}
	res, err := s.c.Read(ctx, &ua.ReadRequest{
		TimestampsToReturn: ua.TimestampsToReturnBoth,
		NodesToRead:        []*ua.ReadValueID{{NodeID: p.nodeID, AttributeID: ua.AttributeIDValue}},
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "opcua: device %q point %q: read: %v", d.cfg.ID, p.cfg.Name, err)
	}
	if len(res.Results) != 1 {
		return nil, status.Errorf(codes.Internal, "opcua: device %q point %q: %d results for one read", d.cfg.ID, p.cfg.Name, len(res.Results))
	}
	m, err := d.message(p, res.Results[0])
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "opcua: device %q point %q: %v", d.cfg.ID, p.cfg.Name, err)
	}
	return m, nil
}

// message turns a data value of a point into a message. A value without a value
// (a Bad status, usually) carries the point's last value, or the status code's
// name when there was none, so that the BAD reaches the subscribers.
func (d *device) message(p *point, dv *ua.DataValue) (*bridge.Message, error) {
	if dv == nil {
		return nil, errNoValue
	}
	q := Quality(dv.Status)
	val, err := ToValue(dv.Value)
	if err != nil {
		if q == bridge.QualityGood {
			return nil, err
		}
		val = d.lastValue(p, dv.Status)
	} else if q != bridge.QualityBad {
		d.lastMu.Lock()
		d.last[p.index] = val
		d.lastMu.Unlock()
	}
	src := dv.SourceTimestamp
	if src.IsZero() {
		src = dv.ServerTimestamp
	}
	labels := p.labels
	if q != bridge.QualityGood {
		labels = withStatus(labels, dv.Status)
	}
	return &bridge.Message{
		Device: d.cfg.ID, Point: p.cfg.Name, Value: val, Quality: q, SourceTime: src,
		Unit: p.cfg.Unit, Labels: labels, Priority: p.prio,
	}, nil
}

func (d *device) lastValue(p *point, st ua.StatusCode) bridge.Value {
	d.lastMu.Lock()
	v := d.last[p.index]
	d.lastMu.Unlock()
	if v.IsZero() {
		return bridge.String(statusName(st))
	}
	return v
}

// bad is the message that marks a point BAD: its item failed, or its session ended.
func (d *device) bad(p *point, st ua.StatusCode) *bridge.Message {
	return &bridge.Message{
		Device: d.cfg.ID, Point: p.cfg.Name, Value: d.lastValue(p, st), Quality: bridge.QualityBad,
		Unit: p.cfg.Unit, Labels: withStatus(p.labels, st), Priority: p.prio,
	}
}

func withStatus(base map[string]string, st ua.StatusCode) map[string]string {
	out := make(map[string]string, len(base)+1)
	for k, v := range base {
		out[k] = v
	}
	out[labelStatus] = statusName(st)
	return out
}

// statusName is a status code's symbolic name as Part 6 spells it
// ("BadNodeIdUnknown"; gopcua says "StatusBadNodeIDUnknown"), or its hex.
func statusName(st ua.StatusCode) string {
	if d, ok := ua.StatusCodes[st]; ok && d.Name != "" {
		return strings.ReplaceAll(strings.TrimPrefix(d.Name, "Status"), "ID", "Id")
	}
	return fmt.Sprintf("0x%08X", uint32(st))
}
