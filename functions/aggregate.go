package functions

import (
	"cmp"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/prometheus/client_golang/prometheus"
)

type aggFn int

const (
	aggAvg aggFn = iota
	aggMin
	aggMax
	aggSum
	aggCount
	aggLast
)

func parseAggFn(s string) (aggFn, bool) {
	switch s {
	case "avg":
		return aggAvg, true
	case "min":
		return aggMin, true
	case "max":
		return aggMax, true
	case "sum":
		return aggSum, true
	case "count":
		return aggCount, true
	case "last":
		return aggLast, true
	}
	return 0, false
}

func (f aggFn) numeric() bool { return f != aggCount && f != aggLast }

// errNotNumeric is the failure of avg, min, max and sum on a string or bytes value.
var errNotNumeric = errors.New("the value is not a number or bool")

// windowKey is one device's window: windows are per device, so a match of several
// points aggregates them together (the average of four temperature probes).
type windowKey struct {
	device string
	start  int64 // UnixNano of the window's start
}

// window accumulates one device's messages of one window. It copies what it needs
// of a message rather than keep it: the hub stamps a message after the functions
// have seen it.
type window struct {
	sink          *sink // of the device's protocol: the emission goes there
	device        string
	n             int64
	sum, min, max float64
	worst         bridge.Quality // the worst quality of the window's messages
	// Of the last message.
	last     bridge.Value
	unit     string
	labels   map[string]string // not modified by anyone once set on a message
	priority bridge.Priority
}

// windows is an aggregate function's state: open windows by device and start.
// Windows are tumbling and aligned to the Unix epoch (a 60s window starts on the
// minute), on the gateway's clock when each message passes.
type windows struct {
	mu   sync.Mutex
	open map[windowKey]*window
	// earliest is the smallest start in open, when open is not empty.
	earliest int64
	// limit bounds open windows; a message that would open one more is a failure.
	limit int
	gauge prometheus.Gauge
}

// maxOpenWindows bounds one aggregate's state: devices times the windows not yet
// emitted (normally one, two around a boundary).
const maxOpenWindows = 2 * 10_000

func newWindows(gauge prometheus.Gauge) *windows {
	return &windows{open: make(map[windowKey]*window), limit: maxOpenWindows, gauge: gauge}
}

var errTooManyWindows = errors.New("too many open windows")

// add puts a message in its window. earlier reports that the earliest window to
// end is now earlier than before (the first window opened), so the timer must be
// set again.
func (w *windows) add(fn aggFn, size time.Duration, now time.Time, s *sink, m *bridge.Message) (earlier bool, err error) {
	f, numeric := m.Value.Float()
	if fn.numeric() && !numeric {
		return false, errNotNumeric
	}
	k := windowKey{device: m.Device, start: now.Truncate(size).UnixNano()}
	w.mu.Lock()
	defer w.mu.Unlock()
	win := w.open[k]
	if win == nil {
		if len(w.open) >= w.limit {
			return false, errTooManyWindows
		}
		win = &window{min: math.Inf(1), max: math.Inf(-1)}
		if len(w.open) == 0 || k.start < w.earliest {
			w.earliest, earlier = k.start, true
		}
		w.open[k] = win
		w.gauge.Set(float64(len(w.open)))
	}
	win.sink = s
	win.n++
	win.sum += f
	win.min = min(win.min, f)
	win.max = max(win.max, f)
	win.device, win.last, win.unit, win.labels, win.priority = m.Device, m.Value, m.Unit, m.Labels, m.Priority
	win.worst = max(win.worst, m.Quality) // good < uncertain < bad
	return earlier, nil
}

// emission is one message an aggregate emits, and where it goes.
type emission struct {
	sink *sink
	msg  *bridge.Message
}

// due removes and returns the windows that ended by now, as messages.
func (w *windows) due(c *Config, fn aggFn, now time.Time) []emission {
	size := c.Aggregate.Window
	end := now.UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.open) == 0 || w.earliest+int64(size) > end {
		return nil
	}
	var out []emission
	first := true
	for k, win := range w.open {
		if k.start+int64(size) > end {
			if first || k.start < w.earliest {
				w.earliest, first = k.start, false
			}
			continue
		}
		delete(w.open, k)
		out = append(out, emission{sink: win.sink, msg: win.message(c, fn, time.Unix(0, k.start+int64(size)))})
	}
	w.gauge.Set(float64(len(w.open)))
	slices.SortFunc(out, func(a, b emission) int {
		return cmp.Or(a.msg.SourceTime.Compare(b.msg.SourceTime), strings.Compare(a.msg.Device, b.msg.Device))
	})
	return out
}

// next is the end of the earliest open window, or false.
func (w *windows) next(size time.Duration) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.open) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, w.earliest+int64(size)), true
}

func (win *window) message(c *Config, fn aggFn, end time.Time) *bridge.Message {
	a := c.Aggregate
	m := &bridge.Message{
		Device:     win.device,
		Point:      a.Point,
		Protocol:   win.sink.protocol,
		Quality:    win.worst,
		SourceTime: end,
		Unit:       win.unit,
		Priority:   win.priority,
		Labels:     derivedLabels(win.labels, c.Name),
	}
	switch fn {
	case aggAvg:
		m.Value = bridge.Double(win.sum / float64(win.n))
	case aggMin:
		m.Value = bridge.Double(win.min)
	case aggMax:
		m.Value = bridge.Double(win.max)
	case aggSum:
		m.Value = bridge.Double(win.sum)
	case aggCount:
		m.Value = bridge.Int(win.n)
		m.Unit = ""
	case aggLast:
		m.Value = win.last
	}
	if a.Unit != "" {
		m.Unit = a.Unit
	}
	return m
}

// derivedLabels copies a source's labels and adds derived_from.
func derivedLabels(src map[string]string, function string) map[string]string {
	out := make(map[string]string, len(src)+1)
	maps.Copy(out, src)
	out[labelDerivedFrom] = function
	return out
}
