package modbus

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/prometheus/client_golang/prometheus"
)

// Labels the adapter puts on every message: where the point lives on the device.
const (
	labelRegister = "register"
	labelAddress  = "address"
)

// point is one configured point, compiled. The fields after the blank line are its
// reporting state, owned by its line's goroutine.
type point struct {
	name     string
	unit     string
	kind     registerKind
	addr     uint16
	typ      Type
	order    ByteOrder
	regs     int // registers (1 for a bit)
	scaled   bool
	scale    float64
	offset   float64
	deadband bridge.Deadband
	writable bool
	priority bridge.Priority
	labels   map[string]string

	last      bridge.Value   // last published value
	lastQ     bridge.Quality // and its quality
	lastPub   time.Time
	published bool
	split     splitLevel // how far requests with it were split after refusals
	badUntil  time.Time  // refused alone: not read again before this
}

// end is one past the point's last register or bit.
func (p *point) end() int { return int(p.addr) + p.regs }

// decode reads the point's value from a read response's data that starts at start.
func (p *point) decode(data []byte, start uint16) (bridge.Value, error) {
	off := int(p.addr - start)
	if p.kind.bits() {
		return bridge.Bool(bit(data, off)), nil
	}
	v, err := Decode(p.typ, p.order, data[2*off:2*(off+p.regs)])
	if err != nil || !p.scaled {
		return v, err
	}
	f, _ := v.Float()
	a := f * p.scale
	return bridge.Double(roundTo(a+p.offset, max(math.Abs(a), math.Abs(p.offset)))), nil
}

// roundTo rounds x to 15 significant digits of mag, the largest term it was summed
// from: all a double holds for certain. So 403 × 0.1 − 40 reads as 0.3, not
// 0.300000000000004.
func roundTo(x, mag float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) || x == 0 || mag == 0 || math.IsInf(mag, 0) {
		return x
	}
	digits := 14 - int(math.Floor(math.Log10(mag)))
	var text string
	switch {
	case digits < 0 || digits > 300:
		text = strconv.FormatFloat(x, 'g', 15, 64)
	default:
		text = strconv.FormatFloat(x, 'f', digits, 64)
	}
	r, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return x
	}
	return r
}

// encode turns a value written by a client into the point's wire bytes (registers),
// reversing the scale. For a coil it returns one byte, 0 or 1.
func (p *point) encode(v bridge.Value) ([]byte, error) {
	if p.kind == kindCoil {
		on, err := asBool(v)
		if err != nil {
			return nil, err
		}
		if on {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	}
	if p.scaled {
		f, ok := v.Float()
		if !ok || v.Kind() == bridge.KindBool {
			return nil, errValuef("%s is not a number", v.Kind())
		}
		raw := (f - p.offset) / p.scale
		switch p.typ {
		case TypeFloat32, TypeFloat64:
		default:
			raw = math.Round(raw)
		}
		v = bridge.Double(raw)
	}
	return Encode(p.typ, p.order, v, p.regs)
}

// unchanged reports whether v is close enough to the last published value not to be
// published again: the bridge's deadband, which the gateway's reporting rules share.
func (p *point) unchanged(v bridge.Value) bool {
	return !p.deadband.Changed(p.last, v)
}

// splitLevel records what a point's refused requests taught: a request that spans
// registers the device does not have is refused whole, so after a refusal the
// points of the request are read alone; those the device answers then join others
// only where no register lies between them, and those it answers only alone stay
// alone.
type splitLevel uint8

const (
	splitNone       splitLevel = iota // joins others within max_gap
	splitContiguous                   // joins others only without a gap
	splitAlone                        // read alone
)

// block is one read request: a run of points of one table of one device.
type block struct {
	kind   registerKind
	start  uint16
	count  uint16
	points []*point
	req    request
}

// planBlocks groups a device's points into as few read requests as the limits allow:
// points of a table in address order join a request while the registers between
// them number at most maxGap (maxBitGap for bits) and the request stays within
// maxRegs registers (maxBits bits). Points split after refusals join others only
// without a gap, or not at all (see splitLevel).
func planBlocks(points []*point, maxGap, maxBitGap, maxRegs, maxBits int) []*block {
	sorted := slices.Clone(points)
	slices.SortStableFunc(sorted, func(a, b *point) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.addr, b.addr)
	})
	var out []*block
	var cur *block
	curEnd := 0
	curSplit := splitNone // the most split point of cur
	for _, p := range sorted {
		limit, gap := maxRegs, maxGap
		if p.kind.bits() {
			limit, gap = maxBits, maxBitGap
		}
		end := max(curEnd, p.end())
		if cur != nil && (p.split != splitNone || curSplit != splitNone) {
			gap = 0
		}
		if cur != nil && p.split != splitAlone && curSplit != splitAlone && cur.kind == p.kind &&
			int(p.addr)-curEnd <= gap && end-int(cur.start) <= limit {
			cur.points = append(cur.points, p)
			curEnd = end
			curSplit = max(curSplit, p.split)
			continue
		}
		if cur != nil {
			cur.count = uint16(curEnd - int(cur.start))
			out = append(out, cur)
		}
		cur = &block{kind: p.kind, start: p.addr, points: []*point{p}}
		curEnd = p.end()
		curSplit = p.split
	}
	if cur != nil {
		cur.count = uint16(curEnd - int(cur.start))
		out = append(out, cur)
	}
	for _, b := range out {
		b.req = readRequest(b.kind, b.start, b.count)
	}
	return out
}

// device is one configured device, compiled. The fields after the blank line are
// owned by its line's goroutine.
type device struct {
	id        string
	unit      byte
	interval  time.Duration
	phase     time.Duration // where in the interval its polls fall
	timeout   time.Duration
	heartbeat time.Duration
	maxGap    int
	maxBitGap int
	maxRegs   int
	maxBits   int
	points    []*point
	byName    map[string]*point
	m         deviceMetrics

	blocks    []*block
	due       time.Time
	state     bridge.DeviceState
	errText   string
	bad       int  // points currently BAD
	failures  int  // RTU: polls in a row the unit did not answer
	replanned bool // a request was split: plan the blocks again
	msgs      []*bridge.Message
}

type deviceMetrics struct {
	polls, skipped, requests, busy prometheus.Counter
	bad, state                     prometheus.Gauge
	errors                         *prometheus.CounterVec // by class, curried with the device
}

func newDevice(d DeviceConfig, c *Config, m *metrics) *device {
	dev := &device{
		id:        d.ID,
		unit:      byte(*d.UnitID),
		interval:  cmp.Or(d.PollInterval, c.PollInterval),
		timeout:   cmp.Or(d.Timeout, c.Timeout),
		heartbeat: cmp.Or(d.Heartbeat, c.Heartbeat),
		maxGap:    c.MaxGap,
		maxBitGap: c.MaxBitGap,
		maxRegs:   cmp.Or(d.MaxRegisters, c.MaxRegisters),
		maxBits:   c.MaxBits,
		byName:    make(map[string]*point, len(d.Points)),
		state:     bridge.StateConnecting,
	}
	if d.MaxGap != nil {
		dev.maxGap = *d.MaxGap
	}
	// Spread the devices' polls over the interval, each at a fixed place of its own,
	// so that a thousand devices polled each second are not all read at once.
	h := fnv.New64a()
	h.Write([]byte(d.ID))
	dev.phase = time.Duration(h.Sum64() % uint64(dev.interval))
	for _, pc := range d.Points {
		p, _ := compilePoint(pc, dev.maxRegs) // Validate has passed
		p.labels = map[string]string{labelRegister: p.kind.String(), labelAddress: strconv.Itoa(int(p.addr))}
		for k, v := range d.Labels {
			p.labels[k] = v
		}
		dev.points = append(dev.points, p)
		dev.byName[p.name] = p
	}
	dev.blocks = planBlocks(dev.points, dev.maxGap, dev.maxBitGap, dev.maxRegs, dev.maxBits)
	if m != nil {
		dev.m = m.device(d.ID)
		dev.m.state.Set(float64(bridge.StateConnecting))
	}
	return dev
}

// report adds a message for p to the device's batch when it is due: the value or
// quality changed (beyond the deadband), or the heartbeat has passed since the point
// was last published.
func (d *device) report(p *point, v bridge.Value, q bridge.Quality, now time.Time) {
	if p.published && q == p.lastQ && now.Sub(p.lastPub) < d.heartbeat && p.unchanged(v) {
		return
	}
	d.setQuality(p, q)
	p.last, p.lastPub, p.published = v, now, true
	d.msgs = append(d.msgs, &bridge.Message{
		Device:   d.id,
		Point:    p.name,
		Value:    v,
		Quality:  q,
		Unit:     p.unit,
		Labels:   p.labels,
		Priority: p.priority,
	})
}

// setQuality records p's quality, counting the device's BAD points.
func (d *device) setQuality(p *point, q bridge.Quality) {
	if q == bridge.QualityBad && p.lastQ != bridge.QualityBad {
		d.bad++
		d.m.bad.Set(float64(d.bad))
	} else if q != bridge.QualityBad && p.lastQ == bridge.QualityBad {
		d.bad--
		d.m.bad.Set(float64(d.bad))
	}
	p.lastQ = q
}

// reportBad marks p BAD, keeping its last value. A point that never had a value is
// counted BAD but not published: a BAD message needs a value, and a made-up zero
// would be read as a reading of 0. Its device's state and last_error say why it
// has none, and its first reading is published as usual.
func (d *device) reportBad(p *point, now time.Time) {
	if p.lastQ == bridge.QualityBad {
		return
	}
	if p.last.IsZero() {
		d.setQuality(p, bridge.QualityBad)
		return
	}
	d.report(p, p.last, bridge.QualityBad, now)
}
