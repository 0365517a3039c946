package gateway

import (
	"context"
	"sync"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/northbound"
)

// newNorthbound builds the northbound MQTT links the config lists. With the
// durable log each is a durable consumer of it; without, it streams from the
// hub's memory (lossy across restarts and long outages: docs/northbound.md).
// Commands take the hub's Write through grpcapi.Write, as the Write RPC does.
func (g *Gateway) newNorthbound(cfg *config.Config) error {
	if len(cfg.Northbound) == 0 {
		return nil
	}
	m := northbound.NewMetrics(g.reg)
	for i := range cfg.Northbound {
		o := northbound.Options{
			Config:    &cfg.Northbound[i],
			GatewayID: cfg.Gateway.ID,
			Hub:       g.hub,
			Logger:    g.log.With("component", "northbound"),
			Metrics:   m,
		}
		if g.journal != nil {
			o.Log = g.journal
		} else {
			g.log.Warn("northbound: no durable log (gateway.data_dir): the link streams from memory, and what the broker misses during a long outage or a restart is lost",
				"name", cfg.Northbound[i].Name)
		}
		l, err := northbound.New(o)
		if err != nil {
			return err
		}
		g.northbound = append(g.northbound, l)
	}
	return nil
}

// startNorthbound runs the links and returns what stops them: they must stop
// before the adapters (their commands write through them) and the journal.
func (g *Gateway) startNorthbound(fail func(string, error)) (stop func()) {
	if len(g.northbound) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range g.northbound {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail("northbound "+l.Name(), l.Run(ctx))
		}()
	}
	return func() {
		// Run stops within the link's own bounds: a command's write and a moment
		// for acknowledgements in flight.
		cancel()
		wg.Wait()
	}
}

// northboundStatus is the links' state for /status, or nil without any.
func (g *Gateway) northboundStatus() []northbound.Status {
	if len(g.northbound) == 0 {
		return nil
	}
	out := make([]northbound.Status, len(g.northbound))
	for i, l := range g.northbound {
		out[i] = l.Status()
	}
	return out
}
