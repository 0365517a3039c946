package config

import (
	"errors"

	"github.com/edgegate/edgegate/uplink"
)

// Uplink is the `uplink:` section: the fleet uplink to a NATS JetStream hub. Its
// keys and defaults are the uplink package's (docs/uplink.md).
type Uplink = uplink.Config

// validateUplink fills in the uplink's defaults and checks it: its own keys, and
// that the durable log it forwards from is there.
func (c *Config) validateUplink() Problems {
	if c.Uplink == nil {
		return nil
	}
	c.Uplink.SetDefaults()
	probs := Problems(c.Uplink.Validate(c.Gateway.ID))
	if !c.Durable() {
		probs = append(probs, errors.New("uplink: needs the durable log, which is its store-and-forward buffer (set gateway.data_dir, and journal.sync other than none)"))
	}
	return probs
}
