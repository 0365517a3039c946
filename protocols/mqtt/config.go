package mqtt

import (
	"errors"
	"fmt"
	"net"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
	egtls "github.com/edgegate/edgegate/tls"
)

// Name is the config section and the devices' `protocol:` value.
const Name = "mqtt"

func init() {
	protocols.Register(func() protocols.Config { return NewConfig() })
}

// Defaults. Each bound exists because a value comes from the network: without it one
// client could take the memory of a small machine.
const (
	DefaultAddress        = "127.0.0.1:1883"
	DefaultTopic          = "devices/{device}/{point}"
	DefaultMaxConnections = 10000
	// DefaultMaxPacketSize is the largest MQTT packet read, header included; larger
	// ones end the connection (MQTT-3.2.2-15).
	DefaultMaxPacketSize = 64 << 10
	// DefaultMaxPointsPerMessage bounds an object of points.
	DefaultMaxPointsPerMessage = payload.DefaultMaxPoints
	// DefaultConnectTimeout is how long a new connection has to finish its TLS
	// handshake and send CONNECT; after that mochi's keepalive deadline applies.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxInflight is how many QoS 1/2 messages a client may have unacknowledged
	// towards the broker (MQTT v5 Receive Maximum), and the outbound queue per client.
	DefaultMaxInflight = 256
	// DefaultMaxRetained bounds the broker's retained messages; beyond it a retained
	// publish is delivered but not retained.
	DefaultMaxRetained = 10000
	// DefaultSessionExpiry bounds how long the session of a disconnected client with
	// a persistent session (clean=false, or a v5 session expiry) is kept.
	DefaultSessionExpiry = time.Hour
	// DefaultAuthFailureBurst and DefaultAuthFailureInterval throttle failed logins
	// per source (an IP address, an IPv6 /64): a burst of failures, then one more
	// password check per interval (login.go).
	DefaultAuthFailureBurst    = 10
	DefaultAuthFailureInterval = 5 * time.Second
	// DefaultAuthCacheTTL is how long a successful password check is remembered, so
	// that a reconnecting client skips bcrypt.
	DefaultAuthCacheTTL = 10 * time.Minute
	// maxAuthCacheTTL: a remembered login outlives a revoked password no longer than
	// a reload (a changed password_hash ends it) or this.
	maxAuthCacheTTL = 24 * time.Hour
)

// Config is the `mqtt:` section plus the `devices:` entries with `protocol: mqtt`.
// NewConfig sets the defaults; the gateway then decodes the section strictly over it
// (protocols.DecodeStrict) and calls Validate.
type Config struct {
	Listeners      []ListenerConfig `yaml:"listeners"`
	AllowAnonymous bool             `yaml:"allow_anonymous"`
	Users          []UserConfig     `yaml:"users"`
	// Clients says which devices a certificate login publishes for, where that
	// is not the device named like its identity (certauth.go).
	Clients []ClientConfig `yaml:"clients"`
	Topics  []TopicConfig  `yaml:"topics"`

	MaxConnections      int           `yaml:"max_connections"`
	MaxPacketSize       int           `yaml:"max_packet_size"`
	MaxPointsPerMessage int           `yaml:"max_points_per_message"`
	MaxInflight         int           `yaml:"max_inflight"`
	MaxRetained         int           `yaml:"max_retained"`
	ConnectTimeout      time.Duration `yaml:"connect_timeout"`
	SessionExpiry       time.Duration `yaml:"session_expiry"`

	// ClientID binds client ids to logins: a path.Match glob in which {username}
	// stands for the username, or a certificate login's identity (session.go).
	// Empty: any id, but an id whose session another identity holds is refused.
	ClientID            string        `yaml:"client_id"`
	AuthFailureBurst    int           `yaml:"auth_failure_burst"`
	AuthFailureInterval time.Duration `yaml:"auth_failure_interval"`
	AuthCacheTTL        time.Duration `yaml:"auth_cache_ttl"` // 0: no cache

	// Sparkplug makes the broker a Sparkplug B host application (sparkplug.go,
	// docs/sparkplug.md). Off by default.
	Sparkplug SparkplugConfig `yaml:"sparkplug"`

	// Devices come from the top-level `devices:` list (AddDevice), not this section.
	Devices []DeviceConfig `yaml:"-"`
}

// ListenerConfig is one network listener.
type ListenerConfig struct {
	Type     string       `yaml:"type"` // tcp or tls
	Address  string       `yaml:"address"`
	TLS      *egtls.Files `yaml:"tls"`
	Insecure bool         `yaml:"insecure"` // allow plaintext on a non-loopback address
}

// UserConfig is one account. Publish and Subscribe are MQTT topic filters (+ and #);
// an absent list allows nothing.
type UserConfig struct {
	Username     string   `yaml:"username"`
	PasswordHash string   `yaml:"password_hash"` // bcrypt
	Publish      []string `yaml:"publish"`
	Subscribe    []string `yaml:"subscribe"`
}

// SparkplugConfig is the `mqtt.sparkplug:` section. The key names enabled and host_id
// are a contract (docs/sparkplug.md).
type SparkplugConfig struct {
	Enabled bool   `yaml:"enabled"`
	HostID  string `yaml:"host_id"` // spBv1.0/STATE/{host_id}
	// Bounds on what edge nodes can make the gateway hold.
	MaxMetricsPerPayload int `yaml:"max_metrics_per_payload"`
	MaxAliasesPerNode    int `yaml:"max_aliases_per_node"` // metrics a node and its devices declare in births
	MaxNodes             int `yaml:"max_nodes"`
	// RebirthInterval is the least time between two rebirth requests to one node.
	RebirthInterval time.Duration `yaml:"rebirth_interval"`
}

// Sparkplug defaults (docs/sparkplug.md).
const (
	DefaultSparkplugHostID               = "edgegate"
	DefaultSparkplugMaxMetricsPerPayload = 1024
	DefaultSparkplugMaxAliasesPerNode    = 10000
	DefaultSparkplugMaxNodes             = 1000
	DefaultSparkplugRebirthInterval      = 5 * time.Second
)

func (c SparkplugConfig) validate() []error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if err := payload.ValidName(c.HostID); err != nil {
		errs = append(errs, fmt.Errorf("mqtt: sparkplug: host_id %q: %w", c.HostID, err))
	}
	for _, p := range []struct {
		key string
		v   int
	}{
		{"max_metrics_per_payload", c.MaxMetricsPerPayload},
		{"max_aliases_per_node", c.MaxAliasesPerNode},
		{"max_nodes", c.MaxNodes},
	} {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("mqtt: sparkplug: %s: must be positive, got %d", p.key, p.v))
		}
	}
	if c.RebirthInterval <= 0 {
		errs = append(errs, fmt.Errorf("mqtt: sparkplug: rebirth_interval: must be positive, got %s", c.RebirthInterval))
	}
	return errs
}

// TopicConfig maps topics to devices and points, see topics.go.
type TopicConfig struct {
	Pattern string `yaml:"pattern"`
}

// DeviceConfig is a `devices:` entry with `protocol: mqtt`: static labels, units and
// priorities for a device that publishes over MQTT.
type DeviceConfig struct {
	ID       string            `yaml:"id"`
	Protocol string            `yaml:"protocol"`
	Labels   map[string]string `yaml:"labels"`
	Points   []PointConfig     `yaml:"points"`
}

// PointConfig is one configured point of a device.
type PointConfig struct {
	Name     string `yaml:"name"`
	Unit     string `yaml:"unit"`
	Priority string `yaml:"priority"` // low, normal (default), high, critical
}

// NewConfig returns the defaults: one plaintext listener on loopback, the default
// topic mapping, no users and no anonymous access.
func NewConfig() *Config {
	return &Config{
		Listeners:           []ListenerConfig{{Type: "tcp", Address: DefaultAddress}},
		Topics:              []TopicConfig{{Pattern: DefaultTopic}},
		MaxConnections:      DefaultMaxConnections,
		MaxPacketSize:       DefaultMaxPacketSize,
		MaxPointsPerMessage: DefaultMaxPointsPerMessage,
		MaxInflight:         DefaultMaxInflight,
		MaxRetained:         DefaultMaxRetained,
		ConnectTimeout:      DefaultConnectTimeout,
		SessionExpiry:       DefaultSessionExpiry,
		AuthFailureBurst:    DefaultAuthFailureBurst,
		AuthFailureInterval: DefaultAuthFailureInterval,
		AuthCacheTTL:        DefaultAuthCacheTTL,
		Sparkplug: SparkplugConfig{
			HostID:               DefaultSparkplugHostID,
			MaxMetricsPerPayload: DefaultSparkplugMaxMetricsPerPayload,
			MaxAliasesPerNode:    DefaultSparkplugMaxAliasesPerNode,
			MaxNodes:             DefaultSparkplugMaxNodes,
			RebirthInterval:      DefaultSparkplugRebirthInterval,
		},
	}
}

var (
	_ protocols.Config      = (*Config)(nil)
	_ protocols.DeviceTaker = (*Config)(nil)
)

// Name implements protocols.Config.
func (c *Config) Name() string { return Name }

// Protocol implements protocols.Config.
func (c *Config) Protocol() bridge.Protocol { return bridge.ProtocolMQTT }

// AddDevice takes one `devices:` entry. Decoding errors are returned at once; the
// rest is checked by Validate with everything else.
func (c *Config) AddDevice(node *yaml.Node) error {
	var d DeviceConfig
	if err := protocols.DecodeStrict(node, &d); err != nil {
		if d.ID != "" {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
		return err
	}
	c.Devices = append(c.Devices, d)
	return nil
}

// Validate returns every problem, each naming its key (and device).
func (c *Config) Validate() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if len(c.Listeners) == 0 {
		add("mqtt: listeners: at least one is required")
	}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("mqtt: listeners[%d]", i)
		if err := l.validate(); err != nil {
			add("%s: %w", key, err)
		}
	}
	positive := []struct {
		key string
		v   int
	}{
		{"max_connections", c.MaxConnections},
		{"max_packet_size", c.MaxPacketSize},
		{"max_points_per_message", c.MaxPointsPerMessage},
		{"max_inflight", c.MaxInflight},
		{"max_retained", c.MaxRetained},
		{"auth_failure_burst", c.AuthFailureBurst},
	}
	for _, p := range positive {
		if p.v <= 0 {
			add("mqtt: %s: must be positive, got %d", p.key, p.v)
		}
	}
	if c.MaxPacketSize > 0 && c.MaxPacketSize < 128 {
		add("mqtt: max_packet_size: %d bytes cannot carry a CONNECT; use at least 128", c.MaxPacketSize)
	}
	if c.MaxInflight > 65535 {
		add("mqtt: max_inflight: at most 65535 (MQTT Receive Maximum), got %d", c.MaxInflight)
	}
	if c.ConnectTimeout <= 0 {
		add("mqtt: connect_timeout: must be positive, got %s", c.ConnectTimeout)
	}
	if c.SessionExpiry < 0 || c.SessionExpiry > 1<<32*time.Second {
		add("mqtt: session_expiry: must be between 0 and 136 years, got %s", c.SessionExpiry)
	}
	if c.AuthFailureInterval <= 0 {
		add("mqtt: auth_failure_interval: must be positive, got %s", c.AuthFailureInterval)
	}
	if c.AuthCacheTTL < 0 || c.AuthCacheTTL > maxAuthCacheTTL {
		add("mqtt: auth_cache_ttl: must be between 0 (no cache) and %s, got %s", maxAuthCacheTTL, c.AuthCacheTTL)
	}
	if err := validateClientIDPattern(c.ClientID); err != nil {
		add("mqtt: %w", err)
	}
	errs = append(errs, c.Sparkplug.validate()...)

	users := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("mqtt: users[%d]", i)
		if u.Username != "" {
			key = fmt.Sprintf("mqtt: user %q", u.Username)
		}
		for _, err := range u.validate() {
			add("%s: %w", key, err)
		}
		if users[u.Username] {
			add("%s: username: duplicate", key)
		}
		users[u.Username] = true
	}

	clients := map[string]bool{}
	for i, cc := range c.Clients {
		key := fmt.Sprintf("mqtt: clients[%d]", i)
		if cc.Identity != "" {
			key = fmt.Sprintf("mqtt: client %q", cc.Identity)
		}
		for _, err := range cc.validate() {
			add("%s: %w", key, err)
		}
		if clients[cc.Identity] {
			add("%s: identity: listed twice", key)
		}
		clients[cc.Identity] = true
	}
	if len(c.Clients) > 0 && !c.hasClientCertListener() {
		add("mqtt: clients: no tls listener has client_ca_file, so no client logs in by certificate")
	}

	if len(c.Topics) == 0 {
		add("mqtt: topics: at least one pattern is required")
	}
	for i, t := range c.Topics {
		if _, err := compilePattern(t.Pattern); err != nil {
			add("mqtt: topics[%d]: pattern %q: %w", i, t.Pattern, err)
		}
	}

	ids := map[string]bool{}
	for _, d := range c.Devices {
		for _, err := range d.validate() {
			add("device %q: %w", d.ID, err)
		}
		if ids[d.ID] {
			add("device %q: id: duplicate", d.ID)
		}
		ids[d.ID] = true
	}
	return errs
}

func (c *Config) hasClientCertListener() bool {
	for _, l := range c.Listeners {
		if l.Type == "tls" && l.TLS.HasClientCA() {
			return true
		}
	}
	return false
}

func (l ListenerConfig) validate() error {
	switch l.Type {
	case "tcp":
		if l.TLS != nil {
			return errors.New("tls: only for type tls")
		}
	case "tls":
		if l.TLS == nil {
			return errors.New("tls: required for type tls")
		}
		if err := l.TLS.Validate(); err != nil {
			return err
		}
	case "":
		return errors.New("type: required (tcp or tls)")
	default:
		return fmt.Errorf("type: %q is not tcp or tls", l.Type)
	}
	if _, _, err := net.SplitHostPort(l.Address); err != nil {
		return fmt.Errorf("address %q: %w", l.Address, err)
	}
	if err := egtls.CheckListener(l.Address, l.Type == "tls", l.Insecure); err != nil {
		return fmt.Errorf("address %q: %w", l.Address, err)
	}
	return nil
}

func (u UserConfig) validate() []error {
	var errs []error
	if u.Username == "" {
		errs = append(errs, errors.New("username: required"))
	}
	if u.PasswordHash == "" {
		errs = append(errs, errors.New("password_hash: required (a bcrypt hash, e.g. from htpasswd -nbB)"))
	} else if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
		errs = append(errs, fmt.Errorf("password_hash: not a bcrypt hash: %w", err))
	}
	for i, f := range u.Publish {
		if !validACLFilter(f) {
			errs = append(errs, fmt.Errorf("publish[%d]: %q is not an MQTT topic filter", i, f))
		}
	}
	for i, f := range u.Subscribe {
		if !validACLFilter(f) {
			errs = append(errs, fmt.Errorf("subscribe[%d]: %q is not an MQTT topic filter", i, f))
		}
	}
	return errs
}

func validACLFilter(f string) bool {
	return mochi.IsValidFilter(f, false) && !isSharedFilter(f)
}

func (d DeviceConfig) validate() []error {
	var errs []error
	if err := payload.ValidName(d.ID); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	}
	if d.Protocol != Name {
		errs = append(errs, fmt.Errorf("protocol: %q is not %s", d.Protocol, Name))
	}
	for k, v := range d.Labels {
		if k == labelTopic {
			errs = append(errs, fmt.Errorf("labels: %q is set by the adapter", k))
		}
		if k == "" || len(k) > bridge.MaxNameLen || len(v) > bridge.MaxNameLen {
			errs = append(errs, fmt.Errorf("labels: %q: key must be 1 to %d bytes, value at most %d", k, bridge.MaxNameLen, bridge.MaxNameLen))
		}
	}
	points := map[string]bool{}
	for i, p := range d.Points {
		key := fmt.Sprintf("points[%d]", i)
		if p.Name != "" {
			key = fmt.Sprintf("point %q", p.Name)
		}
		if err := payload.ValidName(p.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: name: %w", key, err))
		}
		if points[p.Name] {
			errs = append(errs, fmt.Errorf("%s: name: duplicate", key))
		}
		points[p.Name] = true
		if _, ok := bridge.ParsePriority(p.Priority); !ok {
			errs = append(errs, fmt.Errorf("%s: priority: %q is not low, normal, high or critical", key, p.Priority))
		}
		if len(p.Unit) > bridge.MaxNameLen {
			errs = append(errs, fmt.Errorf("%s: unit: longer than %d bytes", key, bridge.MaxNameLen))
		}
	}
	return errs
}

// New builds the adapter: it checks the config, loads the TLS files and compiles the
// topic patterns and accounts. It opens nothing; Run listens.
func (c *Config) New(env protocols.Env) (protocols.Adapter, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newAdapter(c, env)
}
