package gateway

import (
	"context"
	"sync"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/uplink"
)

// fleetUplink and uplinkStatus name the uplink's types for the gateway's files.
type (
	fleetUplink  = uplink.Uplink
	uplinkStatus = uplink.Status
)

// newUplink builds the fleet uplink when the config has one. It forwards from the
// durable log and takes commands through the hub's Write, as the Write RPC does.
func (g *Gateway) newUplink(cfg *config.Config) error {
	if cfg.Uplink == nil {
		return nil
	}
	if g.journal == nil {
		// config.Parse refuses this; a Config built by hand might not.
		_, err := uplink.New(uplink.Options{Config: cfg.Uplink, GatewayID: cfg.Gateway.ID})
		return err
	}
	u, err := uplink.New(uplink.Options{
		Config:    cfg.Uplink,
		GatewayID: cfg.Gateway.ID,
		DataDir:   cfg.Gateway.DataDir,
		Log:       g.journal,
		Writer:    g.hub,
		Logger:    g.log.With("component", "uplink"),
		Metrics:   g.reg,
	})
	if err != nil {
		return err
	}
	g.uplink = u
	return nil
}

// startUplink runs the uplink, if any, and returns what stops it: it must stop
// before the adapters (its commands write through them) and the journal.
func (g *Gateway) startUplink(fail func(string, error)) (stop func()) {
	if g.uplink == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fail("uplink", g.uplink.Run(ctx))
	}()
	return func() {
		// Run stops within the uplink's own bounds: a command's write
		// (command_timeout) and a moment for acknowledgements in flight.
		cancel()
		wg.Wait()
	}
}

// uplinkStatusPtr is the uplink's state for /status, or nil without one.
func (g *Gateway) uplinkStatusPtr() *uplinkStatus {
	if g.uplink == nil {
		return nil
	}
	st := g.uplink.Status()
	return &st
}
