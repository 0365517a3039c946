package coap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
	egtls "github.com/edgegate/edgegate/tls"
)

// Name is the config section and the devices' `protocol:` value.
const Name = "coap"

func init() {
	protocols.Register(func() protocols.Config { return NewConfig() })
}

// Defaults. Each bound exists because a value comes from the network: without it one
// peer could take the memory of a small machine. doc.go lists them with their keys.
const (
	DefaultAddress  = "127.0.0.1:5683"
	DefaultResource = "/devices/{device}/{point}"
	// DefaultMaxConnections bounds sessions, adapter-wide: UDP peers (by address),
	// DTLS sessions and TCP or TLS connections, including those still in handshake.
	DefaultMaxConnections = 4096
	// DefaultMaxMessageSize bounds one CoAP message: a UDP datagram, a decrypted DTLS
	// record, a TCP frame. Larger payloads travel block-wise.
	DefaultMaxMessageSize = 8192
	// DefaultMaxPayloadSize bounds a request's payload after block-wise reassembly.
	DefaultMaxPayloadSize = 16 << 10
	// DefaultMaxPointsPerMessage bounds an object of points.
	DefaultMaxPointsPerMessage = payload.DefaultMaxPoints
	// DefaultMaxOptions bounds the options of one request.
	DefaultMaxOptions = 32
	// DefaultMaxObservations bounds observations adapter-wide, and per session.
	DefaultMaxObservations              = 4096
	DefaultMaxObservationsPerConnection = 16
	// DefaultMaxObservationsPerPeer bounds the observations of one source address
	// (every port of it): a host cannot take more than a quarter of them, however
	// many sessions it opens. Raise it for many observers behind one NAT.
	DefaultMaxObservationsPerPeer = 1024
	// DefaultMaxHandshakesPerSource bounds the DTLS handshakes in progress from one
	// source address, so that one host cannot hold every handshake slot.
	DefaultMaxHandshakesPerSource = 8
	// DefaultMaxPendingResponses bounds the confirmable readings whose answer waits
	// for the durable log, adapter-wide; beyond it a new one is answered 5.03.
	DefaultMaxPendingResponses = 4096
	// DefaultMaxCachedValues bounds the adapter's own latest-value cache for GET.
	DefaultMaxCachedValues = 65536
	// DefaultIdleTimeout ends a session without traffic (and without observations):
	// a DTLS session is forgotten and must be shaken hands again.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultHandshakeTimeout bounds a DTLS or TLS handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultBlockTimeout bounds a block-wise transfer from its first block to its last.
	DefaultBlockTimeout = 10 * time.Second
	// Client side: how often points without observe are read, how long a request may
	// take, and the longest pause between reconnection attempts.
	DefaultPollInterval = 10 * time.Second
	DefaultTimeout      = 5 * time.Second
)

// Config is the `coap:` section plus the `devices:` entries with `protocol: coap`.
// NewConfig sets the defaults; the gateway then decodes the section strictly over it
// (protocols.DecodeStrict) and calls Validate.
type Config struct {
	Listeners []ListenerConfig `yaml:"listeners"`
	Resources []ResourceConfig `yaml:"resources"`

	MaxConnections               int           `yaml:"max_connections"`
	MaxMessageSize               int           `yaml:"max_message_size"`
	MaxPayloadSize               int           `yaml:"max_payload_size"`
	MaxPointsPerMessage          int           `yaml:"max_points_per_message"`
	MaxOptions                   int           `yaml:"max_options"`
	MaxObservations              int           `yaml:"max_observations"`
	MaxObservationsPerConnection int           `yaml:"max_observations_per_connection"`
	MaxObservationsPerPeer       int           `yaml:"max_observations_per_peer"`
	MaxHandshakesPerSource       int           `yaml:"max_handshakes_per_source"`
	MaxPendingResponses          int           `yaml:"max_pending_responses"`
	MaxCachedValues              int           `yaml:"max_cached_values"`
	IdleTimeout                  time.Duration `yaml:"idle_timeout"`
	HandshakeTimeout             time.Duration `yaml:"handshake_timeout"`
	BlockTimeout                 time.Duration `yaml:"block_timeout"`

	// Devices come from the top-level `devices:` list (AddDevice), not this section.
	Devices []DeviceConfig `yaml:"-"`
}

// ListenerConfig is one network listener.
type ListenerConfig struct {
	Type    string `yaml:"type"` // udp, tcp, dtls or tls
	Address string `yaml:"address"`
	// TLS is the listener's certificate (dtls, tls), read again when its files
	// change; with client_ca_file, clients must present a certificate that chains
	// to it, and its identity (tls.Identity) is theirs.
	TLS *egtls.Files `yaml:"tls"`
	// PSK lists the pre-shared keys a dtls listener accepts.
	PSK []PSKConfig `yaml:"psk"`
	// Clients says which devices a certificate's identity may write, where that is
	// not just the device of the same name.
	Clients  []ClientConfig `yaml:"clients"`
	Insecure bool           `yaml:"insecure"` // allow plaintext on a non-loopback address
}

// PSKConfig is one DTLS pre-shared key. The key file holds the key's bytes; one
// trailing newline is ignored.
type PSKConfig struct {
	Identity string `yaml:"identity"`
	KeyFile  string `yaml:"key_file"`
	// Devices are glob patterns (path.Match) of the devices the identity may write
	// and observe; absent, it may write the device named like it.
	Devices []string `yaml:"devices"`
}

// ClientConfig maps a client certificate's identity to the devices it may write.
type ClientConfig struct {
	// Identity is the certificate's identity as every listener sees it
	// (tls.Identity): its SPIFFE URI SAN, else its first DNS SAN, else its
	// common name.
	Identity string   `yaml:"identity"`
	Devices  []string `yaml:"devices"`
}

// ResourceConfig maps request paths to devices and points, see paths.go.
type ResourceConfig struct {
	Pattern string `yaml:"pattern"`
}

// DeviceConfig is a `devices:` entry with `protocol: coap`. Without an address it
// gives static labels, units and priorities for a device that pushes to the gateway;
// with one (coap://, coaps://, coap+tcp://, coaps+tcp://) the gateway is the client
// and observes or polls the device's resources.
type DeviceConfig struct {
	ID       string            `yaml:"id"`
	Protocol string            `yaml:"protocol"`
	Labels   map[string]string `yaml:"labels"`
	Address  string            `yaml:"address"`
	// Observe registers for notifications of every point instead of polling them.
	Observe      bool          `yaml:"observe"`
	PollInterval time.Duration `yaml:"poll_interval"`
	Timeout      time.Duration `yaml:"timeout"`
	PSK          *DevicePSK    `yaml:"psk"` // coaps:// with a pre-shared key
	// TLS is the `tls:` block of a client side for coaps:// (certificates) and
	// coaps+tcp://: ca_file (required, unless insecure_skip_verify), and
	// optionally the gateway's cert_file/key_file, server_name (default: the
	// address's host) and min_version.
	TLS    *egtls.Files  `yaml:"tls"`
	Points []PointConfig `yaml:"points"`
}

// DevicePSK is the gateway's identity and key towards a device.
type DevicePSK struct {
	Identity string `yaml:"identity"`
	KeyFile  string `yaml:"key_file"`
}

// PointConfig is one configured point of a device.
type PointConfig struct {
	Name     string `yaml:"name"`
	Path     string `yaml:"path"` // the resource on the device (devices with an address)
	Unit     string `yaml:"unit"`
	Priority string `yaml:"priority"` // low, normal (default), high, critical
	// Writable lets the Write RPC PUT to the resource (devices with an address).
	Writable bool `yaml:"writable"`
}

// NewConfig returns the defaults: the default resource mapping and no listener. A
// `coap:` section without a `listeners` key gets one plaintext UDP listener on
// loopback (UnmarshalYAML); without a `coap:` section at all, the adapter listens
// nowhere and only serves the devices it is the client of (docs/coap.md: a protocol
// section that is absent listens nowhere).
func NewConfig() *Config {
	return &Config{
		Resources:                    []ResourceConfig{{Pattern: DefaultResource}},
		MaxConnections:               DefaultMaxConnections,
		MaxMessageSize:               DefaultMaxMessageSize,
		MaxPayloadSize:               DefaultMaxPayloadSize,
		MaxPointsPerMessage:          DefaultMaxPointsPerMessage,
		MaxOptions:                   DefaultMaxOptions,
		MaxObservations:              DefaultMaxObservations,
		MaxObservationsPerConnection: DefaultMaxObservationsPerConnection,
		MaxObservationsPerPeer:       DefaultMaxObservationsPerPeer,
		MaxHandshakesPerSource:       DefaultMaxHandshakesPerSource,
		MaxPendingResponses:          DefaultMaxPendingResponses,
		MaxCachedValues:              DefaultMaxCachedValues,
		IdleTimeout:                  DefaultIdleTimeout,
		HandshakeTimeout:             DefaultHandshakeTimeout,
		BlockTimeout:                 DefaultBlockTimeout,
	}
}

var (
	_ protocols.Config      = (*Config)(nil)
	_ protocols.DeviceTaker = (*Config)(nil)
)

// UnmarshalYAML decodes the `coap:` section strictly, and gives it the default
// listener when it names none.
func (c *Config) UnmarshalYAML(node *yaml.Node) error {
	type plain Config // without this method: no recursion
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		c.Listeners = defaultListeners()
		return nil
	}
	if err := protocols.DecodeStrict(node, (*plain)(c)); err != nil {
		return err
	}
	if !hasKey(node, "listeners") {
		c.Listeners = defaultListeners()
	}
	return nil
}

func defaultListeners() []ListenerConfig {
	return []ListenerConfig{{Type: "udp", Address: DefaultAddress}}
}

func hasKey(node *yaml.Node, key string) bool {
	if node.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return true
		}
	}
	return false
}

// Name implements protocols.Config.
func (c *Config) Name() string { return Name }

// Protocol implements protocols.Config.
func (c *Config) Protocol() bridge.Protocol { return bridge.ProtocolCoAP }

// AddDevice takes one `devices:` entry. Decoding errors are returned at once; the
// rest is checked by Validate with everything else.
func (c *Config) AddDevice(node *yaml.Node) error {
	d := DeviceConfig{}
	if err := protocols.DecodeStrict(node, &d); err != nil {
		if d.ID != "" {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
		return err
	}
	c.Devices = append(c.Devices, d)
	return nil
}

// Validate returns every problem, each naming its key (and listener or device).
func (c *Config) Validate() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("coap: listeners[%d]", i)
		for _, err := range l.validate() {
			add("%s: %w", key, err)
		}
	}
	positive := []struct {
		key string
		v   int
	}{
		{"max_connections", c.MaxConnections},
		{"max_message_size", c.MaxMessageSize},
		{"max_payload_size", c.MaxPayloadSize},
		{"max_points_per_message", c.MaxPointsPerMessage},
		{"max_options", c.MaxOptions},
		{"max_observations", c.MaxObservations},
		{"max_observations_per_connection", c.MaxObservationsPerConnection},
		{"max_observations_per_peer", c.MaxObservationsPerPeer},
		{"max_handshakes_per_source", c.MaxHandshakesPerSource},
		{"max_pending_responses", c.MaxPendingResponses},
		{"max_cached_values", c.MaxCachedValues},
	}
	for _, p := range positive {
		if p.v <= 0 {
			add("coap: %s: must be positive, got %d", p.key, p.v)
		}
	}
	if c.MaxMessageSize > 0 && (c.MaxMessageSize < 64 || c.MaxMessageSize > 65507) {
		add("coap: max_message_size: %d is not between 64 and 65507 bytes (the largest UDP payload)", c.MaxMessageSize)
	}
	if c.MaxPayloadSize > 16<<20 {
		add("coap: max_payload_size: %d is more than 16 MiB", c.MaxPayloadSize)
	}
	if c.MaxOptions > 256 {
		add("coap: max_options: %d is more than 256", c.MaxOptions)
	}
	durations := []struct {
		key string
		v   time.Duration
	}{
		{"idle_timeout", c.IdleTimeout},
		{"handshake_timeout", c.HandshakeTimeout},
		{"block_timeout", c.BlockTimeout},
	}
	for _, d := range durations {
		if d.v < time.Second {
			add("coap: %s: must be at least 1s, got %s", d.key, d.v)
		}
	}
	for i, r := range c.Resources {
		if _, err := compilePattern(r.Pattern); err != nil {
			add("coap: resources[%d]: pattern %q: %w", i, r.Pattern, err)
		}
	}
	if len(c.Listeners) > 0 && len(c.Resources) == 0 {
		add("coap: resources: at least one pattern is required when there are listeners")
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

func (l ListenerConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	secure := false
	switch l.Type {
	case "udp", "tcp":
		if l.TLS != nil {
			add("tls: only for type dtls or tls")
		}
		if len(l.PSK) > 0 {
			add("psk: only for type dtls")
		}
	case "dtls":
		if l.TLS == nil && len(l.PSK) == 0 {
			add("psk or tls: a dtls listener needs pre-shared keys, a certificate or both")
		}
		secure = true
	case "tls":
		if l.TLS == nil {
			add("tls: required for type tls")
		}
		if len(l.PSK) > 0 {
			add("psk: only for type dtls (TLS over TCP takes certificates)")
		}
		secure = true
	case "":
		add("type: required (udp, tcp, dtls or tls)")
	default:
		add("type: %q is not udp, tcp, dtls or tls", l.Type)
	}
	if l.TLS != nil {
		if err := l.TLS.Validate(); err != nil {
			add("%w", err)
		}
	}
	if len(l.Clients) > 0 && (l.TLS == nil || l.TLS.ClientCAFile == "") {
		add("clients: only with tls: {client_ca_file: ...}, which makes clients present certificates")
	}
	if _, _, err := net.SplitHostPort(l.Address); err != nil {
		add("address %q: %w", l.Address, err)
	} else if err := egtls.CheckListener(l.Address, secure, l.Insecure); err != nil {
		add("address %q: %w", l.Address, err)
	}
	idents := map[string]bool{}
	for i, p := range l.PSK {
		key := fmt.Sprintf("psk[%d]", i)
		if p.Identity != "" {
			key = fmt.Sprintf("psk %q", p.Identity)
		}
		switch {
		case p.Identity == "":
			add("%s: identity: required", key)
		case len(p.Identity) > 128:
			add("%s: identity: longer than 128 bytes", key)
		case idents[p.Identity]:
			add("%s: identity: duplicate", key)
		}
		idents[p.Identity] = true
		if p.KeyFile == "" {
			add("%s: key_file: required", key)
		}
		for _, err := range validGlobs(p.Devices) {
			add("%s: devices: %w", key, err)
		}
	}
	names := map[string]bool{}
	for i, cl := range l.Clients {
		key := fmt.Sprintf("clients[%d]", i)
		if cl.Identity == "" {
			add("%s: identity: required", key)
		} else if names[cl.Identity] {
			add("clients %q: identity: duplicate", cl.Identity)
		}
		names[cl.Identity] = true
		for _, err := range validGlobs(cl.Devices) {
			add("%s: devices: %w", key, err)
		}
	}
	return errs
}

func validGlobs(list []string) []error {
	var errs []error
	for _, g := range list {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			errs = append(errs, fmt.Errorf("%q is not a glob pattern", g))
		}
	}
	return errs
}

// deviceScheme is what an address's scheme says about the transport.
type deviceScheme struct {
	network string // udp or tcp
	secure  bool
}

var schemes = map[string]deviceScheme{
	"coap":      {"udp", false},
	"coaps":     {"udp", true},
	"coap+tcp":  {"tcp", false},
	"coaps+tcp": {"tcp", true},
}

// parseAddress reads coap://host:port (the port defaults to 5683, or 5684 for coaps)
// into the scheme and host:port.
func parseAddress(addr string) (deviceScheme, string, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return deviceScheme{}, "", err
	}
	s, ok := schemes[u.Scheme]
	if !ok {
		return deviceScheme{}, "", fmt.Errorf("scheme %q is not coap, coaps, coap+tcp or coaps+tcp", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return deviceScheme{}, "", errors.New("no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return deviceScheme{}, "", errors.New("only scheme://host:port; resource paths belong to the points")
	}
	port := u.Port()
	if port == "" {
		port = "5683"
		if s.secure {
			port = "5684"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return deviceScheme{}, "", fmt.Errorf("port %q", port)
	}
	return s, net.JoinHostPort(u.Hostname(), port), nil
}

func (d DeviceConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := payload.ValidName(d.ID); err != nil {
		add("id: %w", err)
	}
	if d.Protocol != Name {
		add("protocol: %q is not %s", d.Protocol, Name)
	}
	for k, v := range d.Labels {
		if k == labelPath || k == labelPeer {
			add("labels: %q is set by the adapter", k)
		}
		if k == "" || len(k) > bridge.MaxNameLen || len(v) > bridge.MaxNameLen {
			add("labels: %q: key must be 1 to %d bytes, value at most %d", k, bridge.MaxNameLen, bridge.MaxNameLen)
		}
	}
	client := d.Address != ""
	var scheme deviceScheme
	if client {
		var err error
		if scheme, _, err = parseAddress(d.Address); err != nil {
			add("address %q: %w", d.Address, err)
		}
		if d.PollInterval < 0 || (d.PollInterval > 0 && d.PollInterval < 10*time.Millisecond) {
			add("poll_interval: must be at least 10ms, got %s", d.PollInterval)
		}
		if d.Timeout < 0 || (d.Timeout > 0 && d.Timeout < 10*time.Millisecond) {
			add("timeout: must be at least 10ms, got %s", d.Timeout)
		}
		if len(d.Points) == 0 {
			add("points: a device with an address needs at least one point")
		}
		if scheme.secure && d.PSK == nil && d.TLS == nil {
			add("psk or tls: a %s:// device needs a pre-shared key or certificates", strings.Split(d.Address, ":")[0])
		}
		if !scheme.secure && (d.PSK != nil || d.TLS != nil) {
			add("psk, tls: only for coaps:// and coaps+tcp:// addresses")
		}
		if scheme.network == "tcp" && d.PSK != nil {
			add("psk: only for coaps:// (DTLS); coaps+tcp:// takes certificates")
		}
		if p := d.PSK; p != nil {
			if p.Identity == "" {
				add("psk: identity: required")
			}
			if p.KeyFile == "" {
				add("psk: key_file: required")
			}
		}
		if t := d.TLS; t != nil {
			if t.CAFile == "" && t.ClientCAFile == "" && !t.InsecureSkipVerify {
				add("tls: ca_file: required (the CA the device's certificate chains to)")
			}
			if err := t.ValidateClient(); err != nil {
				add("%w", err)
			}
		}
	} else {
		if d.Observe || d.PollInterval != 0 || d.Timeout != 0 || d.PSK != nil || d.TLS != nil {
			add("observe, poll_interval, timeout, psk, tls: only for a device with an address (the gateway as client)")
		}
	}
	points := map[string]bool{}
	paths := map[string]bool{}
	for i, p := range d.Points {
		key := fmt.Sprintf("points[%d]", i)
		if p.Name != "" {
			key = fmt.Sprintf("point %q", p.Name)
		}
		if err := payload.ValidName(p.Name); err != nil {
			add("%s: name: %w", key, err)
		}
		if points[p.Name] {
			add("%s: name: duplicate", key)
		}
		points[p.Name] = true
		if _, ok := bridge.ParsePriority(p.Priority); !ok {
			add("%s: priority: %q is not low, normal, high or critical", key, p.Priority)
		}
		if len(p.Unit) > bridge.MaxNameLen {
			add("%s: unit: longer than %d bytes", key, bridge.MaxNameLen)
		}
		switch {
		case !client && (p.Path != "" || p.Writable):
			add("%s: path, writable: only for a device with an address", key)
		case client && p.Path == "":
			add("%s: path: required (the resource on the device, such as /sensors/temp)", key)
		case client:
			if err := validResourcePath(p.Path); err != nil {
				add("%s: path %q: %w", key, p.Path, err)
			}
			if paths[p.Path] {
				add("%s: path %q: duplicate", key, p.Path)
			}
			paths[p.Path] = true
		}
	}
	return errs
}

func validResourcePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("must start with '/'")
	}
	for _, s := range splitPath(p) {
		if s == "" {
			return errors.New("empty segment")
		}
		if len(s) > 255 {
			return errors.New("a segment is longer than 255 bytes")
		}
	}
	if strings.ContainsAny(p, "?#") {
		return errors.New("no query or fragment")
	}
	return nil
}

// readKeyFile reads a pre-shared key: the file's bytes, one trailing newline
// ("\n" or "\r\n") ignored.
func readKeyFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s holds no key", name)
	}
	if len(b) > 256 {
		return nil, fmt.Errorf("%s: a key of %d bytes is more than 256", name, len(b))
	}
	return b, nil
}

// New builds the adapter: it checks the config, loads keys and certificates and
// compiles the resource patterns. It opens nothing; Run listens and connects.
func (c *Config) New(env protocols.Env) (protocols.Adapter, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newAdapter(c, env)
}
