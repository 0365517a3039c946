// Package protocols is the contract between the gateway and its protocol adapters,
// and the registry through which adapters make themselves known.
//
// An adapter is small: Run(ctx, sink) runs until ctx ends, hands every message to the
// sink and reports device state there. Optional abilities (writes, on-demand reads)
// are separate interfaces found by type assertion. Each protocol lives in its own
// package under protocols/ and registers its Config in init(); the gateway imports
// the set it is built with (see protocols/all), and never a protocol directly.
package protocols

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/edgegate/edgegate/bridge"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

// Sink receives what an adapter produces. It is safe for concurrent use.
type Sink interface {
	// Publish hands messages to the bridge, in order, as one batch. It returns once
	// they are ordered and visible; only then may the adapter acknowledge them to the
	// device. An error means none of them were accepted.
	Publish(ctx context.Context, msgs ...*bridge.Message) error
	// Submit is Publish without the wait for the durable log: it returns once the
	// messages are ordered and visible, and the receipt says when they are on disk.
	// An adapter that acknowledges devices acknowledges once the receipt is ready,
	// and meanwhile goes on reading (a connection pipelines; QoS 0 never waits).
	Submit(ctx context.Context, msgs ...*bridge.Message) (bridge.Receipt, error)
	// Barrier is a receipt that is ready once everything submitted so far is on
	// disk: what an adapter acknowledges without submitting it (a refusal, a
	// message that is not a reading) waits for it, to keep a device's acks in order.
	Barrier() bridge.Receipt
	// State records a device's connection state and, for an error state, its cause.
	State(device string, s bridge.DeviceState, cause error)
	// Declare registers a configured device and its points before any reading.
	Declare(device string, points ...string) error
	// Invalid counts a payload from a device that did not decode.
	Invalid(device string, cause error)
}

var _ Sink = (*bridge.Ingest)(nil)

// Adapter connects one protocol's devices to the bridge. Run returns when ctx ends
// (with nil) or when the adapter cannot go on (with the reason). It never closes
// what it did not open, and every goroutine it starts has stopped when it returns.
type Adapter interface {
	Run(ctx context.Context, sink Sink) error
}

// Writer is an adapter that can set a device's point.
type Writer = bridge.Writer

// Reader is an adapter that can read a device's point on demand.
type Reader = bridge.Reader

// Env is what the gateway gives an adapter to be built with.
type Env struct {
	Logger    *slog.Logger
	Metrics   prometheus.Registerer // nil: no metrics registered
	GatewayID string
	DataDir   string
	// TLS is the gateway's certificate store: TLS.Source(files) gives a listener
	// a certificate that follows its files (rotation) and checks client
	// certificates against the CA of the moment. Nil works (a Source of its own).
	TLS *etls.Store
}

// Config is one protocol's configuration: its top-level section of the config file,
// plus the `devices:` entries that name it. The config is the factory.
type Config interface {
	// Name is the section key and the `protocol:` value of its devices.
	Name() string
	// Protocol is the bridge protocol its messages carry.
	Protocol() bridge.Protocol
	// Validate returns every problem, each naming its device and key.
	Validate() []error
	// New builds the adapter. It may open nothing: listening and connecting belong
	// to Run.
	New(env Env) (Adapter, error)
}

// DeviceTaker is a Config that takes `devices:` entries naming its protocol. Decode
// node strictly: an unknown key is an error.
type DeviceTaker interface {
	AddDevice(node *yaml.Node) error
}

// Readier is an adapter that can say when it is serving (its listeners are bound,
// its first connections made). The gateway's /readyz waits for every Readier.
type Readier interface {
	Ready() <-chan struct{}
}

// Listening is an adapter that accepts connections; Addrs returns the addresses it
// is bound to once Ready, in config order (tests listen on port 0 and ask).
type Listening interface {
	Addrs() []net.Addr
}

// Reconfigurer is an adapter that can take a changed config while it runs, touching
// only what changed: devices added start, devices removed stop, devices changed
// restart, and every other device and client connection goes on. It returns an error
// wrapping ErrRestartRequired when the change needs a fresh adapter (new listeners,
// say); the gateway then restarts this adapter alone.
type Reconfigurer interface {
	Reconfigure(ctx context.Context, cfg Config) error
}

// ErrRestartRequired says a config change cannot be applied in place.
var ErrRestartRequired = errors.New("the change needs the adapter restarted")
