package opcua

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/payload"
)

// Name is the config section and the devices' `protocol:` value.
const Name = "opcua"

func init() {
	protocols.Register(func() protocols.Config { return NewConfig() })
}

// Defaults and bounds of the `opcua:` section. Each bound exists because the other
// side is a machine on the plant network that the gateway does not control.
const (
	DefaultMaxPointsPerDevice = 10000
	LimitMaxPointsPerDevice   = 100000
	DefaultRequestTimeout     = 10 * time.Second
	DefaultConnectTimeout     = 10 * time.Second
	DefaultBackoffInitial     = 500 * time.Millisecond
	DefaultBackoffMax         = 30 * time.Second
	// DefaultKeepAlive is how often a quiet subscription says it is alive; a
	// subscription silent for twice that plus the request timeout is taken for dead.
	DefaultKeepAlive = 5 * time.Second
	// DefaultPublishRequests is how many publish requests are kept at the server, so
	// that one is always there when notifications are ready.
	DefaultPublishRequests            = 3
	LimitPublishRequests              = 16
	DefaultMaxNotificationsPerPublish = 2000
	// DefaultMaxItemsPerCall is the batch of monitored items created per call when
	// the server does not say (OperationLimits.MaxMonitoredItemsPerCall).
	DefaultMaxItemsPerCall  = 500
	DefaultSamplingInterval = time.Second
	DefaultSessionTimeout   = time.Minute
	// MinInterval bounds sampling and publishing intervals from below.
	MinInterval     = 10 * time.Millisecond
	MaxQueueSize    = 1000
	MaxCredentialsB = 4096
)

// Config is the `opcua:` section plus the `devices:` entries with `protocol: opcua`.
type Config struct {
	MaxPointsPerDevice         int           `yaml:"max_points_per_device"`
	RequestTimeout             time.Duration `yaml:"request_timeout"`
	ConnectTimeout             time.Duration `yaml:"connect_timeout"`
	BackoffInitial             time.Duration `yaml:"backoff_initial"`
	BackoffMax                 time.Duration `yaml:"backoff_max"`
	KeepAlive                  time.Duration `yaml:"keepalive"`
	SessionTimeout             time.Duration `yaml:"session_timeout"`
	PublishRequests            int           `yaml:"publish_requests"`
	MaxNotificationsPerPublish int           `yaml:"max_notifications_per_publish"`

	// Devices come from the top-level `devices:` list (AddDevice).
	Devices []DeviceConfig `yaml:"-"`
}

// DeviceConfig is one OPC UA server the gateway connects to.
type DeviceConfig struct {
	ID       string            `yaml:"id"`
	Protocol string            `yaml:"protocol"`
	Endpoint string            `yaml:"endpoint"`
	Security SecurityConfig    `yaml:"security"`
	Username string            `yaml:"username"`
	Password string            `yaml:"password"`
	Labels   map[string]string `yaml:"labels"`
	// PublishingInterval is the subscription's; default the smallest sampling
	// interval of the points.
	PublishingInterval time.Duration `yaml:"publishing_interval"`
	Points             []PointConfig `yaml:"points"`
}

// SecurityConfig is a device's secure channel. Policy and Mode default to
// Basic256Sha256 and SignAndEncrypt; None must be written out for both.
type SecurityConfig struct {
	Policy     string `yaml:"policy"`
	Mode       string `yaml:"mode"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	TrustedDir string `yaml:"trusted_dir"`
}

// PointConfig is one monitored node.
type PointConfig struct {
	Name             string        `yaml:"name"`
	Node             string        `yaml:"node"`
	SamplingInterval time.Duration `yaml:"sampling_interval"`
	// Deadband is absolute, in the value's units; 0 reports every change.
	Deadband  float64 `yaml:"deadband"`
	QueueSize uint32  `yaml:"queue_size"`
	Writable  bool    `yaml:"writable"`
	Unit      string  `yaml:"unit"`
	Priority  string  `yaml:"priority"`
}

// Policies and modes, as written in the config.
var (
	policies = map[string]string{
		"None":                  ua.SecurityPolicyURINone,
		"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
		"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
		"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
	}
	// refused are the policies OPC UA deprecated (SHA-1 signatures, RSA 1.5).
	refused = map[string]bool{"Basic128Rsa15": true, "Basic256": true}
	modes   = map[string]ua.MessageSecurityMode{
		"None":           ua.MessageSecurityModeNone,
		"Sign":           ua.MessageSecurityModeSign,
		"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
	}
)

// Defaults for a device's security.
const (
	DefaultPolicy = "Basic256Sha256"
	DefaultMode   = "SignAndEncrypt"
)

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		MaxPointsPerDevice:         DefaultMaxPointsPerDevice,
		RequestTimeout:             DefaultRequestTimeout,
		ConnectTimeout:             DefaultConnectTimeout,
		BackoffInitial:             DefaultBackoffInitial,
		BackoffMax:                 DefaultBackoffMax,
		KeepAlive:                  DefaultKeepAlive,
		SessionTimeout:             DefaultSessionTimeout,
		PublishRequests:            DefaultPublishRequests,
		MaxNotificationsPerPublish: DefaultMaxNotificationsPerPublish,
	}
}

var (
	_ protocols.Config      = (*Config)(nil)
	_ protocols.DeviceTaker = (*Config)(nil)
)

// Name implements protocols.Config.
func (c *Config) Name() string { return Name }

// Protocol implements protocols.Config.
func (c *Config) Protocol() bridge.Protocol { return bridge.ProtocolOPCUA }

// AddDevice takes one `devices:` entry, strictly.
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
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MaxPointsPerDevice <= 0 || c.MaxPointsPerDevice > LimitMaxPointsPerDevice {
		add("opcua: max_points_per_device: %d is not between 1 and %d", c.MaxPointsPerDevice, LimitMaxPointsPerDevice)
	}
	if c.PublishRequests < 1 || c.PublishRequests > LimitPublishRequests {
		add("opcua: publish_requests: %d is not between 1 and %d", c.PublishRequests, LimitPublishRequests)
	}
	if c.MaxNotificationsPerPublish < 1 || c.MaxNotificationsPerPublish > 65535 {
		add("opcua: max_notifications_per_publish: %d is not between 1 and 65535", c.MaxNotificationsPerPublish)
	}
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"request_timeout", c.RequestTimeout, 100 * time.Millisecond, 10 * time.Minute},
		{"connect_timeout", c.ConnectTimeout, 100 * time.Millisecond, 10 * time.Minute},
		{"backoff_initial", c.BackoffInitial, time.Millisecond, time.Hour},
		{"backoff_max", c.BackoffMax, time.Millisecond, 24 * time.Hour},
		{"keepalive", c.KeepAlive, 100 * time.Millisecond, 10 * time.Minute},
		{"session_timeout", c.SessionTimeout, time.Second, 24 * time.Hour},
	} {
		if d.v < d.min || d.v > d.max {
			add("opcua: %s: %v is not between %v and %v", d.key, d.v, d.min, d.max)
		}
	}
	if c.BackoffMax < c.BackoffInitial {
		add("opcua: backoff_max: %v is less than backoff_initial (%v)", c.BackoffMax, c.BackoffInitial)
	}
	if c.KeepAlive >= c.RequestTimeout {
		add("opcua: keepalive: %v must be shorter than request_timeout (%v): a publish request waits up to a keepalive for its answer", c.KeepAlive, c.RequestTimeout)
	}
	ids := map[string]bool{}
	for _, d := range c.Devices {
		for _, err := range d.validate(c.MaxPointsPerDevice) {
			add("device %q: %w", d.ID, err)
		}
		if ids[d.ID] {
			add("device %q: id: duplicate", d.ID)
		}
		ids[d.ID] = true
	}
	return errs
}

// policy and mode with the defaults applied.
func (s SecurityConfig) policy() string {
	if s.Policy == "" {
		return DefaultPolicy
	}
	return s.Policy
}

func (s SecurityConfig) mode() string {
	if s.Mode == "" {
		return DefaultMode
	}
	return s.Mode
}

func (s SecurityConfig) validate() []error {
	var errs []error
	p, m := s.policy(), s.mode()
	switch {
	case refused[p]:
		errs = append(errs, fmt.Errorf("security: policy: %s is deprecated by OPC UA and refused; use Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss", p))
	case policies[p] == "":
		errs = append(errs, fmt.Errorf("security: policy: %q is not None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss", p))
	}
	if _, ok := modes[m]; !ok {
		errs = append(errs, fmt.Errorf("security: mode: %q is not None, Sign or SignAndEncrypt", m))
	}
	// None is never a default: both must say it, and together.
	if (p == "None") != (m == "None") {
		errs = append(errs, fmt.Errorf("security: policy %s and mode %s do not go together: None must be written out for both (policy: None, mode: None) or for neither", p, m))
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		errs = append(errs, errors.New("security: cert_file and key_file go together (or neither: a certificate is then generated in the data dir)"))
	}
	return errs
}

func (d DeviceConfig) validate(maxPoints int) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := payload.ValidName(d.ID); err != nil {
		add("id: %w", err)
	}
	if d.Protocol != Name {
		add("protocol: %q is not %s", d.Protocol, Name)
	}
	if err := validEndpoint(d.Endpoint); err != nil {
		add("endpoint: %w", err)
	}
	errs = append(errs, d.Security.validate()...)
	if d.Password != "" && d.Username == "" {
		add("password: needs username")
	}
	if len(d.Username) > MaxCredentialsB || len(d.Password) > MaxCredentialsB {
		add("username, password: at most %d bytes", MaxCredentialsB)
	}
	if d.Username != "" && d.Security.policy() == "None" {
		// gopcua encrypts the password with the server's key, which None has not:
		// it would go in the clear.
		add("username: a password is not sent over policy None; use a secure policy")
	}
	if d.PublishingInterval != 0 && (d.PublishingInterval < MinInterval || d.PublishingInterval > time.Hour) {
		add("publishing_interval: %v is not between %v and 1h", d.PublishingInterval, MinInterval)
	}
	for k, v := range d.Labels {
		if k == labelNode {
			add("labels: %q is set by the adapter", k)
		}
		if k == "" || len(k) > bridge.MaxNameLen || len(v) > bridge.MaxNameLen {
			add("labels: %q: key must be 1 to %d bytes, value at most %d", k, bridge.MaxNameLen, bridge.MaxNameLen)
		}
	}
	if len(d.Points) == 0 {
		add("points: at least one is required")
	}
	if len(d.Points) > maxPoints {
		add("points: %d is more than max_points_per_device (%d)", len(d.Points), maxPoints)
	}
	names := map[string]bool{}
	for i, p := range d.Points {
		key := fmt.Sprintf("points[%d]", i)
		if p.Name != "" {
			key = fmt.Sprintf("point %q", p.Name)
		}
		if err := payload.ValidName(p.Name); err != nil {
			add("%s: name: %w", key, err)
		}
		if names[p.Name] {
			add("%s: name: duplicate", key)
		}
		names[p.Name] = true
		if _, err := ua.ParseNodeID(p.Node); err != nil || !strings.Contains(p.Node, "=") {
			add("%s: node: %q is not a node id (e.g. \"ns=1;s=Line1.Temperature\" or \"i=2258\"): %v", key, p.Node, err)
		}
		if p.SamplingInterval != 0 && (p.SamplingInterval < MinInterval || p.SamplingInterval > time.Hour) {
			add("%s: sampling_interval: %v is not between %v and 1h", key, p.SamplingInterval, MinInterval)
		}
		if p.Deadband < 0 || math.IsNaN(p.Deadband) || math.IsInf(p.Deadband, 0) {
			add("%s: deadband: %v must be a finite number, 0 or more", key, p.Deadband)
		}
		if p.QueueSize > MaxQueueSize {
			add("%s: queue_size: %d is more than %d", key, p.QueueSize, MaxQueueSize)
		}
		if _, ok := bridge.ParsePriority(p.Priority); !ok {
			add("%s: priority: %q is not low, normal, high or critical", key, p.Priority)
		}
		if len(p.Unit) > bridge.MaxNameLen {
			add("%s: unit: longer than %d bytes", key, bridge.MaxNameLen)
		}
	}
	return errs
}

func validEndpoint(s string) error {
	if s == "" {
		return errors.New("required (opc.tcp://host:port[/path])")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "opc.tcp" {
		return fmt.Errorf("%q: the scheme must be opc.tcp", s)
	}
	if u.Hostname() == "" || u.Port() == "" || strings.ContainsAny(u.Host, " ") {
		return fmt.Errorf("%q: host and port are required", s)
	}
	return nil
}

// samplingInterval of a point, with the default.
func (p PointConfig) samplingInterval() time.Duration {
	if p.SamplingInterval == 0 {
		return DefaultSamplingInterval
	}
	return p.SamplingInterval
}

// publishingInterval of a device: its own, or the smallest sampling interval.
func (d DeviceConfig) publishingInterval() time.Duration {
	if d.PublishingInterval != 0 {
		return d.PublishingInterval
	}
	iv := time.Duration(math.MaxInt64)
	for _, p := range d.Points {
		iv = min(iv, p.samplingInterval())
	}
	if iv == time.Duration(math.MaxInt64) {
		return DefaultSamplingInterval
	}
	return iv
}

// New builds the adapter: it checks the config, loads or generates certificates and
// reads the trust lists. It connects to nothing; Run does.
func (c *Config) New(env protocols.Env) (protocols.Adapter, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return newAdapter(c, env)
}
