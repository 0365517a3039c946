// Package kitchen is the kitchen display workload: it follows a restaurant's
// point-of-sale terminals and fryers through edgegate, keeps the board of open
// orders, and when a fryer's oil gets too hot it raises an alert and turns that
// fryer's heater off with a write.
//
// It knows the devices only by the names edgegate gives them:
//   - pos-* devices publish `order` ("ID: item, item, ...", a string) to open an
//     order and `served` (its ID, a number or a string) to close it (an MQTT device publishes these on
//     devices/pos-1/order and devices/pos-1/served);
//   - fryer-* devices report `oil_temp` (a number, °C) and `heater` (a bool), and
//     take a write of `heater` (over Modbus, a coil).
//
// The board is rebuilt from what the gateway retains when the display starts
// (FromEarliest), and the subscription resumes by itself across gateway restarts,
// so no order is lost or shown twice. Turning a heater off is safe to repeat, so a
// replayed hot reading may repeat the write; it is paced per fryer.
package kitchen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgegate/edgegate/client"
)

// Config of a Display. The zero value works.
type Config struct {
	// Hot is the oil temperature (°C) at which a fryer's heater is turned off;
	// default 195.
	Hot float64
	// Cool clears the alert once the oil is below it; default Hot - 15.
	Cool float64
	// Retry is the least time between two writes to one fryer's heater while it is
	// hot and not yet reported off; default 5s.
	Retry time.Duration
	// MaxOrders bounds the open orders kept (the oldest are dropped, counted);
	// default 500.
	MaxOrders int
	// WriteTimeout bounds one heater write; default 5s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

func (c *Config) defaults() {
	if c.Hot == 0 {
		c.Hot = 195
	}
	if c.Cool == 0 || c.Cool >= c.Hot {
		c.Cool = c.Hot - 15
	}
	if c.Retry <= 0 {
		c.Retry = 5 * time.Second
	}
	if c.MaxOrders <= 0 {
		c.MaxOrders = 500
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Order is one open order.
type Order struct {
	ID       string
	Terminal string
	Items    []string
	Placed   time.Time
}

// Fryer is what the display knows of one fryer.
type Fryer struct {
	ID       string
	Temp     float64
	HasTemp  bool
	Heater   *bool // nil until the fryer reports it
	Alert    bool  // too hot: the heater was (or is being) turned off
	AlertAt  time.Time
	Writes   int    // heater-off writes sent
	WriteErr string // the last write's error, if it failed
	lastTry  time.Time
}

// Board is a snapshot of the display.
type Board struct {
	Orders        []Order // oldest first
	Fryers        []Fryer // by id
	DroppedOrders int     // open orders dropped for MaxOrders
	Last          uint64  // the last sequence applied
}

// Alerts lists the fryers with an alert.
func (b Board) Alerts() []Fryer {
	var out []Fryer
	for _, f := range b.Fryers {
		if f.Alert {
			out = append(out, f)
		}
	}
	return out
}

// Order returns an open order by id.
func (b Board) Order(id string) (Order, bool) {
	for _, o := range b.Orders {
		if o.ID == id {
			return o, true
		}
	}
	return Order{}, false
}

// Fryer returns a fryer by id.
func (b Board) Fryer(id string) (Fryer, bool) {
	for _, f := range b.Fryers {
		if f.ID == id {
			return f, true
		}
	}
	return Fryer{}, false
}

// Display is the kitchen display's model and its loop.
type Display struct {
	cfg Config

	mu      sync.Mutex
	orders  map[string]*Order
	fryers  map[string]*Fryer
	dropped int
	last    uint64
	changed chan struct{} // closed and replaced on every change
}

// New returns an empty display.
func New(cfg Config) *Display {
	cfg.defaults()
	return &Display{cfg: cfg, orders: map[string]*Order{}, fryers: map[string]*Fryer{}, changed: make(chan struct{})}
}

// Board returns a snapshot.
func (d *Display) Board() Board {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := Board{DroppedOrders: d.dropped, Last: d.last}
	for _, o := range d.orders {
		oc := *o
		oc.Items = append([]string(nil), o.Items...)
		b.Orders = append(b.Orders, oc)
	}
	sort.Slice(b.Orders, func(i, j int) bool {
		if !b.Orders[i].Placed.Equal(b.Orders[j].Placed) {
			return b.Orders[i].Placed.Before(b.Orders[j].Placed)
		}
		return b.Orders[i].ID < b.Orders[j].ID
	})
	for _, f := range d.fryers {
		fc := *f
		if f.Heater != nil {
			h := *f.Heater
			fc.Heater = &h
		}
		b.Fryers = append(b.Fryers, fc)
	}
	sort.Slice(b.Fryers, func(i, j int) bool { return b.Fryers[i].ID < b.Fryers[j].ID })
	return b
}

// Wait returns once cond holds for the board, or ctx's error.
func (d *Display) Wait(ctx context.Context, cond func(Board) bool) error {
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		if cond(d.Board()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Bump closes an order from the kitchen's side (the cook pressed its button).
func (d *Display) Bump(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.orders[id]; !ok {
		return false
	}
	delete(d.orders, id)
	d.notifyLocked()
	return true
}

func (d *Display) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// ParseOrder reads "ID: item, item, ...".
func ParseOrder(s string) (id string, items []string, err error) {
	id, rest, ok := strings.Cut(s, ":")
	id = strings.TrimSpace(id)
	if !ok || id == "" {
		return "", nil, fmt.Errorf("order %q: want \"ID: item, item\"", s)
	}
	for _, it := range strings.Split(rest, ",") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	return id, items, nil
}

// Apply updates the board with one message and returns the fryer whose heater
// must be turned off now, if any.
func (d *Display) Apply(m *client.Message, now time.Time) (heaterOff string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.notifyLocked()
	d.last = m.Sequence
	switch {
	case strings.HasPrefix(m.Device, "pos-"):
		d.applyPOS(m)
	case strings.HasPrefix(m.Device, "fryer-"):
		return d.applyFryer(m, now)
	}
	return ""
}

func (d *Display) applyPOS(m *client.Message) {
	switch m.Point {
	case "order":
		s, ok := m.Value.Text()
		if !ok {
			d.cfg.Logger.Warn("an order that is not text", "device", m.Device, "kind", m.Value.Kind())
			return
		}
		id, items, err := ParseOrder(s)
		if err != nil {
			d.cfg.Logger.Warn("unreadable order", "device", m.Device, "err", err)
			return
		}
		placed := m.SourceTime
		if placed.IsZero() {
			placed = m.GatewayTime
		}
		if _, dup := d.orders[id]; !dup && len(d.orders) >= d.cfg.MaxOrders {
			d.dropOldestLocked()
		}
		d.orders[id] = &Order{ID: id, Terminal: m.Device, Items: items, Placed: placed}
	case "served":
		// "1042" arrives as a number, "A-17" as text: String formats either.
		delete(d.orders, strings.TrimSpace(m.Value.String()))
	}
}

func (d *Display) dropOldestLocked() {
	var oldest *Order
	for _, o := range d.orders {
		if oldest == nil || o.Placed.Before(oldest.Placed) {
			oldest = o
		}
	}
	if oldest != nil {
		delete(d.orders, oldest.ID)
		d.dropped++
	}
}

func (d *Display) applyFryer(m *client.Message, now time.Time) string {
	f, ok := d.fryers[m.Device]
	if !ok {
		f = &Fryer{ID: m.Device}
		d.fryers[m.Device] = f
	}
	switch m.Point {
	case "heater":
		if on, ok := m.Value.Bool(); ok {
			f.Heater = &on
		}
		return ""
	case "oil_temp":
		t, ok := m.Value.Float64()
		if !ok || !m.Good() {
			return "" // a reading that cannot be trusted neither raises nor clears
		}
		f.Temp, f.HasTemp = t, true
		switch {
		case t >= d.cfg.Hot:
			if !f.Alert {
				f.Alert, f.AlertAt = true, now
			}
		case t < d.cfg.Cool:
			f.Alert = false
		}
	}
	if f.Alert && (f.Heater == nil || *f.Heater) && now.Sub(f.lastTry) >= d.cfg.Retry {
		f.lastTry = now
		return f.ID
	}
	return ""
}

func (d *Display) wrote(fryer string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.notifyLocked()
	f := d.fryers[fryer]
	f.Writes++
	f.WriteErr = ""
	if err != nil {
		f.WriteErr = err.Error()
	}
}

// Run follows the gateway until ctx ends: it rebuilds the board from what the
// gateway retains, then applies every new message, writing heaters off as needed.
// It returns nil when ctx ends, or the subscription's error when the gateway
// refused it for good.
func (d *Display) Run(ctx context.Context, c *client.Client) error {
	sub, err := c.Subscribe(ctx, client.Filter{Devices: []string{"pos-*", "fryer-*"}}, client.FromEarliest())
	if err != nil {
		return err
	}
	defer sub.Close()
	log := d.cfg.Logger
	for {
		m, err := sub.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fryer := d.Apply(m, time.Now())
		if fryer == "" {
			continue
		}
		// Synchronous on purpose: the write is the point of the alert, and the
		// next reading is worth less than getting the heater off.
		wctx, cancel := context.WithTimeout(ctx, d.cfg.WriteTimeout)
		err = c.Write(wctx, fryer, "heater", client.Bool(false))
		cancel()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		d.wrote(fryer, err)
		if err != nil {
			log.Error("turning a hot fryer's heater off failed", "fryer", fryer, "err", err)
		} else {
			log.Warn("fryer too hot: heater turned off", "fryer", fryer, "oil_temp", m.Value.String(), "hot", d.cfg.Hot)
		}
	}
}
