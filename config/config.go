// Package config reads and checks the gateway's YAML configuration: the gateway,
// grpc and http sections here, each protocol's section and devices through the
// protocols registry. It validates everything and reports every problem at once,
// each naming its device and key; it starts nothing.
package config

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/functions"
	"github.com/edgegate/edgegate/protocols"
	etls "github.com/edgegate/edgegate/tls"
	"gopkg.in/yaml.v3"
)

// Default is the embedded configuration `edgegate serve` runs without --config:
// everything on loopback, where plaintext is allowed because nothing leaves the
// machine.
//
//go:embed default.yaml
var Default []byte

// Config is the whole gateway configuration.
type Config struct {
	Gateway Gateway `yaml:"gateway"`
	GRPC    GRPC    `yaml:"grpc"`
	HTTP    HTTP    `yaml:"http"`
	Journal Journal `yaml:"journal"`
	// Uplink is the fleet uplink (uplink.go); nil without an uplink section.
	Uplink *Uplink `yaml:"uplink"`
	// Northbound are the streams to external MQTT brokers (northbound.go;
	// docs/northbound.md).
	Northbound []Northbound `yaml:"northbound"`
	// Tunnels are TLS listeners each forwarding to a plain TCP device port (tls.go).
	Tunnels []etls.TunnelConfig `yaml:"tunnels"`
	// Functions are the edge functions (package functions; docs/functions.md).
	Functions []functions.Config `yaml:"functions"`
	// Reporting are the report-by-exception and sampling rules applied to every
	// message before the hub (reporting.go; docs/reporting.md).
	Reporting []ReportRule `yaml:"reporting"`
	// FunctionSet is Functions compiled at load; the gateway's pipeline takes it
	// over (and closes it).
	FunctionSet *functions.Set `yaml:"-"`
	// Protocols holds each configured protocol's config by name: those with a
	// section in the file and those named by a device.
	Protocols map[string]protocols.Config `yaml:"-"`
	// source holds each protocol's section and devices in a canonical form
	// (source.go), so that a reload can tell which protocols changed. A builder, not
	// a string: appending device by device to a string copied it whole each time
	// (quadratic in devices).
	source map[string]*strings.Builder
	// devices are the `devices:` entries as the registry sees them (limits.go).
	devices []Device
	// northboundNode is the `northbound:` list as written, for the lines of
	// its problems.
	northboundNode *yaml.Node
}

// Gateway is the `gateway:` section.
type Gateway struct {
	ID      string            `yaml:"id"`
	DataDir string            `yaml:"data_dir"`
	Labels  map[string]string `yaml:"labels"`
	// Retain is how many recent messages are held in memory for replay and slow
	// subscribers (rounded up to a power of two).
	Retain int `yaml:"retain"`
	// SubscriberQueue is how far behind a subscriber may fall before SlowConsumer applies.
	SubscriberQueue int `yaml:"subscriber_queue"`
	// SlowConsumer is "disconnect", "drop_oldest" or "hold" (read what the ring no
	// longer has from the durable log). The default is hold with a durable log,
	// disconnect without.
	SlowConsumer       string `yaml:"slow_consumer"`
	MaxDevices         int    `yaml:"max_devices"`
	MaxPointsPerDevice int    `yaml:"max_points_per_device"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
	// ShutdownTimeout bounds a graceful stop; default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// GRPC is the `grpc:` section.
type GRPC struct {
	// Listen is host:port or unix:///path. Default 127.0.0.1:50051.
	Listen   string      `yaml:"listen"`
	TLS      *etls.Files `yaml:"tls"`
	Insecure bool        `yaml:"insecure"`
	// Authz says which client identities may do what (tls.go); it needs
	// tls.client_ca_file. Absent: every client with a good certificate may do
	// everything.
	Authz []AuthzRule `yaml:"authz"`
	// MaxSubscribers bounds concurrent Subscribe streams; default 256.
	MaxSubscribers int `yaml:"max_subscribers"`
	// MaxConnections bounds concurrent client connections; default 1024.
	MaxConnections int `yaml:"max_connections"`
	// SubscriberBudget caps the budget one Subscribe stream may ask for; a stream
	// that asks for none gets this. Zero rates: no cap.
	SubscriberBudget Budget `yaml:"subscriber_budget"`
	// Budget is shared by every Subscribe stream. Zero rates: unlimited.
	Budget Budget `yaml:"budget"`
	// HandshakeTimeout bounds a connection's TLS and HTTP/2 handshake: a socket
	// that has not sent the HTTP/2 preface by then is closed. Zero: 5s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ConsumerTTL forgets a durable consumer after this long without a Subscribe
	// or an Ack. Zero: 168h (7 days).
	ConsumerTTL time.Duration `yaml:"consumer_ttl"`
}

// Budget is a token-bucket rate in messages and bytes per second (a burst of 1.5
// seconds' worth, the last half second kept for HIGH and CRITICAL messages; see
// docs/durability.md); zero is unlimited.
type Budget struct {
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	BytesPerSecond    float64 `yaml:"bytes_per_second"`
}

// HTTP is the `http:` section: health, readiness, metrics and status.
type HTTP struct {
	// Listen is host:port; default 127.0.0.1:8080. "off" disables it.
	Listen   string      `yaml:"listen"`
	TLS      *etls.Files `yaml:"tls"`
	Insecure bool        `yaml:"insecure"`
}

// Defaults for the sections that keep their loopback address when absent.
const (
	DefaultGRPCListen = "127.0.0.1:50051"
	DefaultHTTPListen = "127.0.0.1:8080"
)

// Sections that belong to later parts of the contract; refused with a clear error
// rather than accepted silently.
var notYet = map[string]string{}

// Load reads a config file.
func Load(path string) (*Config, error) { return LoadContext(context.Background(), path) }

// LoadContext is Load that gives up when ctx ends (`check` on SIGTERM).
func LoadContext(ctx context.Context, path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseContext(ctx, b)
}

// Problems is every problem found in a config, one a line.
type Problems []error

func (p Problems) Error() string {
	s := make([]string, len(p))
	for i, e := range p {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Parse decodes and validates a config. On failure the error is a Problems
// listing every problem found.
func Parse(b []byte) (*Config, error) { return ParseContext(context.Background(), b) }

// ParseContext is Parse that gives up when ctx ends, with ctx's error (not a
// Problems): a large config takes seconds, and `check` must stop on a signal. It
// looks at ctx between devices and before each long step; decoding the YAML text
// itself is not interrupted.
func ParseContext(ctx context.Context, b []byte) (*Config, error) {
	c := &Config{Protocols: map[string]protocols.Config{}, source: map[string]*strings.Builder{}}
	var probs Problems
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, Problems{fmt.Errorf("config: %w", err)}
	}
	if len(root.Content) == 0 {
		c.setDefaults()
		return c, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, Problems{fmt.Errorf("config: line %d: the top level must be a mapping", doc.Line)}
	}
	var devices, profiles *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		key, val := doc.Content[i].Value, doc.Content[i+1]
		if seen[key] {
			probs = append(probs, fmt.Errorf("%s: line %d: duplicate key", key, doc.Content[i].Line))
			continue
		}
		seen[key] = true
		var err error
		switch key {
		case "gateway":
			err = protocols.DecodeStrict(val, &c.Gateway)
		case "grpc":
			err = protocols.DecodeStrict(val, &c.GRPC)
		case "http":
			err = protocols.DecodeStrict(val, &c.HTTP)
		case "journal":
			err = protocols.DecodeStrict(val, &c.Journal)
		case "uplink":
			c.Uplink = &Uplink{}
			err = protocols.DecodeStrict(val, c.Uplink)
		case "northbound":
			if err = protocols.DecodeStrict(val, &c.Northbound); err != nil {
				c.Northbound = nil // half decoded: checking it would only add noise
			}
			c.northboundNode = val
		case "tunnels":
			err = protocols.DecodeStrict(val, &c.Tunnels)
		case "functions":
			if err = protocols.DecodeStrict(val, &c.Functions); err != nil {
				c.Functions = nil // half decoded: compiling it would only add noise
			}
		case "reporting":
			err = protocols.DecodeStrict(val, &c.Reporting)
		case "devices":
			devices = val
		case "profiles":
			profiles = val
		default:
			if what, ok := notYet[key]; ok {
				err = fmt.Errorf("%s are not in this build of edgegate yet", what)
				break
			}
			newCfg, ok := protocols.Lookup(key)
			if !ok {
				err = fmt.Errorf("line %d: unknown key (known: gateway, grpc, http, journal, uplink, northbound, tunnels, functions, reporting, profiles, devices, %s)", doc.Content[i].Line, strings.Join(protocols.Names(), ", "))
				break
			}
			pc := newCfg()
			err = protocols.DecodeStrict(val, pc)
			c.Protocols[key] = pc
			c.addSource(key, val)
		}
		if err != nil {
			probs = append(probs, fmt.Errorf("%s: %w", key, err))
		}
	}
	c.setDefaults()
	x := expandProfiles(profiles, devices) // profiles.go: before any protocol sees a device
	probs = append(probs, x.probs...)
	probs = append(probs, c.decodeDevices(ctx, x.devices)...)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	probs = append(probs, c.validate()...)
	probs = append(probs, c.validateLimits()...)
	probs = x.nameProfiles(probs)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Functions last: compiling a WebAssembly module takes a while.
	set, errs := functions.Compile(c.Functions, functions.CompileOptions{})
	for _, err := range errs {
		probs = append(probs, fmt.Errorf("functions: %w", err))
	}
	if len(probs) > 0 {
		set.Close()
		return nil, probs
	}
	c.FunctionSet = set
	return c, nil
}

func (c *Config) setDefaults() {
	for i := range c.Tunnels {
		c.Tunnels[i].SetDefaults()
	}
	if c.GRPC.Listen == "" {
		c.GRPC.Listen = DefaultGRPCListen
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultHTTPListen
	}
	if c.GRPC.MaxSubscribers <= 0 {
		c.GRPC.MaxSubscribers = 256
	}
	if c.GRPC.MaxConnections <= 0 {
		c.GRPC.MaxConnections = 1024
	}
	if c.Gateway.ID == "" {
		if h, err := os.Hostname(); err == nil {
			c.Gateway.ID = h
		} else {
			c.Gateway.ID = "edgegate"
		}
	}
	if c.Gateway.ShutdownTimeout <= 0 {
		c.Gateway.ShutdownTimeout = 10 * time.Second
	}
	if c.Gateway.LogLevel == "" {
		c.Gateway.LogLevel = "info"
	}
	// Zero only: a negative bound is an error that validate reports.
	if c.Gateway.MaxDevices == 0 {
		c.Gateway.MaxDevices = DefaultMaxDevices
	}
	if c.Gateway.MaxPointsPerDevice == 0 {
		c.Gateway.MaxPointsPerDevice = DefaultMaxPointsPerDevice
	}
}

// decodeDevices hands each `devices:` entry to the config of the protocol it names,
// creating that config when the file has no section for it.
func (c *Config) decodeDevices(ctx context.Context, list *yaml.Node) Problems {
	if list == nil {
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		return Problems{fmt.Errorf("devices: line %d: must be a list", list.Line)}
	}
	var probs Problems
	ids := map[string]int{}
	for i, n := range list.Content {
		if i%64 == 0 && ctx.Err() != nil {
			return probs // Parse reports ctx's error
		}
		var head struct {
			ID       string `yaml:"id"`
			Protocol string `yaml:"protocol"`
		}
		if err := n.Decode(&head); err != nil {
			probs = append(probs, fmt.Errorf("devices[%d]: line %d: %w", i, n.Line, err))
			continue
		}
		where := fmt.Sprintf("devices[%d]", i)
		if head.ID != "" {
			where = fmt.Sprintf("device %q", head.ID)
		}
		switch {
		case head.ID == "":
			probs = append(probs, fmt.Errorf("%s: line %d: id is required", where, n.Line))
			continue
		}
		if err := validName(head.ID); err != nil {
			probs = append(probs, fmt.Errorf("%s: line %d: id: %w", where, keyLine(n, "id"), err))
			continue
		}
		if j, dup := ids[head.ID]; dup {
			probs = append(probs, fmt.Errorf("%s: id also used by devices[%d]", where, j))
			continue
		}
		ids[head.ID] = i
		probs = append(probs, c.declare(where, n, head.ID, head.Protocol)...)
		newCfg, ok := protocols.Lookup(head.Protocol)
		if !ok {
			probs = append(probs, fmt.Errorf("%s: protocol: unknown protocol %q (known: %s)", where, head.Protocol, strings.Join(protocols.Names(), ", ")))
			continue
		}
		pc, ok := c.Protocols[head.Protocol]
		if !ok {
			pc = newCfg()
			c.Protocols[head.Protocol] = pc
		}
		taker, ok := pc.(protocols.DeviceTaker)
		if !ok {
			probs = append(probs, fmt.Errorf("%s: protocol %q takes no devices entries", where, head.Protocol))
			continue
		}
		if err := taker.AddDevice(n); err != nil {
			probs = append(probs, fmt.Errorf("%s: %w", where, err))
		}
		c.addSource(head.Protocol, n)
	}
	return probs
}

func (c *Config) validate() Problems {
	var probs Problems
	add := func(err error) {
		if err != nil {
			probs = append(probs, err)
		}
	}
	g := c.Gateway
	if _, ok := bridge.ParseSlowPolicy(g.SlowConsumer); !ok {
		add(fmt.Errorf("gateway: slow_consumer: %q is not disconnect, drop_oldest or hold", g.SlowConsumer))
	}
	probs = append(probs, c.validateJournal()...)
	probs = append(probs, c.validateUplink()...)
	probs = append(probs, c.validateNorthbound()...)
	probs = append(probs, c.validateReporting()...)
	if g.Retain < 0 || g.SubscriberQueue < 0 || g.MaxDevices < 0 || g.MaxPointsPerDevice < 0 {
		add(errors.New("gateway: retain, subscriber_queue, max_devices and max_points_per_device must not be negative"))
	}
	if g.Retain > 1<<24 {
		add(fmt.Errorf("gateway: retain: %d is more than the limit of %d", g.Retain, 1<<24))
	}
	if g.Retain > 0 && g.SubscriberQueue > g.Retain {
		add(fmt.Errorf("gateway: subscriber_queue: %d is more than retain (%d)", g.SubscriberQueue, g.Retain))
	}
	switch g.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(fmt.Errorf("gateway: log_level: %q is not debug, info, warn or error", g.LogLevel))
	}
	for k, v := range g.Labels {
		if k == "" || len(k) > bridge.MaxNameLen || len(v) > 1024 {
			add(fmt.Errorf("gateway: labels: %q: keys must be 1 to %d bytes, values at most 1024", k, bridge.MaxNameLen))
		}
	}
	add(checkListener("grpc", c.GRPC.Listen, c.GRPC.TLS, c.GRPC.Insecure))
	probs = append(probs, c.validateTLS()...)
	for key, b := range map[string]Budget{"subscriber_budget": c.GRPC.SubscriberBudget, "budget": c.GRPC.Budget} {
		// !(x >= 0) is also true of NaN, which would pass every comparison.
		if !(b.MessagesPerSecond >= 0) || !(b.BytesPerSecond >= 0) || math.IsInf(b.MessagesPerSecond, 0) || math.IsInf(b.BytesPerSecond, 0) {
			add(fmt.Errorf("grpc: %s: rates must be finite numbers, zero or more", key))
		}
	}
	if c.GRPC.HandshakeTimeout < 0 || c.GRPC.ConsumerTTL < 0 {
		add(errors.New("grpc: handshake_timeout and consumer_ttl must not be negative"))
	}
	if c.HTTP.Listen != "off" {
		add(checkListener("http", c.HTTP.Listen, c.HTTP.TLS, c.HTTP.Insecure))
		if strings.HasPrefix(c.HTTP.Listen, "unix:") {
			add(errors.New("http: listen: unix sockets are not supported for http"))
		}
	}
	names := make([]string, 0, len(c.Protocols))
	for n := range c.Protocols {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, err := range c.Protocols[n].Validate() {
			probs = append(probs, err)
		}
	}
	return probs
}

func checkListener(section, addr string, files *etls.Files, insecure bool) error {
	if files != nil {
		if err := files.Validate(); err != nil {
			return fmt.Errorf("%s: %w", section, err)
		}
	}
	if err := etls.CheckListener(addr, files != nil, insecure); err != nil {
		return fmt.Errorf("%s: listen: %w", section, err)
	}
	return nil
}

// HubConfig is the bridge configuration the gateway section asks for.
func (c *Config) HubConfig() bridge.HubConfig {
	p, _ := bridge.ParseSlowPolicy(c.Gateway.SlowConsumer)
	if c.Gateway.SlowConsumer == "" && c.Durable() {
		p = bridge.SlowHold
	}
	return bridge.HubConfig{
		Retain:             c.Gateway.Retain,
		QueueSize:          c.Gateway.SubscriberQueue,
		SlowPolicy:         p,
		MaxDevices:         c.Gateway.MaxDevices,
		MaxPointsPerDevice: c.Gateway.MaxPointsPerDevice,
	}
}
