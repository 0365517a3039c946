package northbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edgegate/edgegate/bridge"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/edgegate/edgegate/uplink"
)

// Config is one entry of the `northbound:` list: a stream to an external MQTT
// broker (docs/northbound.md).
type Config struct {
	// Name names the link: its durable consumer is northbound-<name>, and its
	// metrics carry name="<name>". Letters, digits, '-' and '_'. Required.
	Name string `yaml:"name"`
	// MQTT is the broker and how to reach it. Required.
	MQTT *MQTT `yaml:"mqtt"`
	// Match selects the messages sent, as a Subscribe request's filter does.
	// Empty: everything.
	Match Match `yaml:"match"`
	// Format is json (the default) or sparkplug (a Sparkplug B edge node).
	Format string `yaml:"format"`
	// Sparkplug names the Sparkplug B group and edge node (format sparkplug).
	Sparkplug *Sparkplug `yaml:"sparkplug"`
	// Topic is the json format's topic template: {gateway}, {device} and {point}
	// each fill a whole topic level. Default DefaultTopic.
	Topic string `yaml:"topic"`
	// QoS is 1 (the default: at-least-once, the position moves on the broker's
	// PUBACK) or 0 (the position moves once the message is written to the socket).
	QoS *int `yaml:"qos"`
	// AcceptCommands subscribes to {topic}/set and turns what arrives into writes
	// through the gateway's write path (format json).
	AcceptCommands bool `yaml:"accept_commands"`
}

// MQTT is `northbound[].mqtt`: the broker.
type MQTT struct {
	// URL is tls://host:8883 (also ssl://, mqtts://) or tcp://host:1883 (also
	// mqtt://). Required.
	URL string `yaml:"url"`
	// ClientID is the MQTT client id; default edgegate-<gateway id>-<name>.
	ClientID string `yaml:"client_id"`
	// TLS is the gateway's tls block, client side: a client certificate
	// (cert_file, key_file), the broker's CA (ca_file), server_name. It turns TLS
	// on also for a tcp:// url. Files are read again when they change.
	TLS *etls.Files `yaml:"tls"`
	// Username and PasswordFile log in; the file is read at every connection
	// attempt, so a rotated secret is used from the next one.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Insecure allows plaintext to a broker that is not on loopback.
	Insecure bool `yaml:"insecure"`

	// MaxInFlight bounds publishes awaiting the broker's PUBACK; default 256.
	MaxInFlight int `yaml:"max_in_flight"`
	// AckTimeout: a publish not acknowledged by then ends the connection, which
	// is made again; default 10s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// ConnectTimeout bounds one connection attempt; default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// KeepAlive is the MQTT keep-alive; default 30s.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// ReconnectMin and ReconnectMax bound the backoff between attempts (the
	// uplink's: doubling, each wait drawn from its upper half); defaults 1s, 1m.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

// Match is a Subscribe request's filter: device and point globs, protocols and
// labels, each part that is set must match.
type Match struct {
	Devices   []string          `yaml:"devices"`
	Points    []string          `yaml:"points"`
	Protocols []string          `yaml:"protocols"`
	Labels    map[string]string `yaml:"labels"`
}

// Sparkplug is `northbound[].sparkplug`: the node's group id, and its edge
// node id ({gateway} is the gateway's id; the default).
type Sparkplug struct {
	Group    string `yaml:"group"`
	EdgeNode string `yaml:"edge_node"`
}

// spToken reports whether s can be one level of a Sparkplug topic.
func spToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/+#\x00")
}

// Formats.
const (
	FormatJSON      = "json"
	FormatSparkplug = "sparkplug"
)

// DefaultTopic is the json format's topic template when topic is not set.
const DefaultTopic = "edgegate/{gateway}/{device}/{point}"

// SetDefaults fills in every unset field.
func (c *Config) SetDefaults() {
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.Topic == "" && c.Format == FormatJSON {
		c.Topic = DefaultTopic
	}
	if c.Format == FormatSparkplug {
		if c.Sparkplug == nil {
			c.Sparkplug = &Sparkplug{}
		}
		if c.Sparkplug.EdgeNode == "" {
			c.Sparkplug.EdgeNode = "{gateway}"
		}
	}
	if c.QoS == nil {
		q := 1
		c.QoS = &q
	}
	if c.MQTT == nil {
		return
	}
	m := c.MQTT
	if m.MaxInFlight <= 0 {
		m.MaxInFlight = 256
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&m.AckTimeout, 10*time.Second)
	def(&m.ConnectTimeout, 5*time.Second)
	def(&m.KeepAlive, 30*time.Second)
	def(&m.ReconnectMin, time.Second)
	def(&m.ReconnectMax, time.Minute)
}

// Problem is one problem of an entry: Key is the dotted path of the key at fault
// within the entry ("mqtt.url", "format"), so that the config can say its line.
type Problem struct {
	Key string
	Err error
}

func (p Problem) Error() string { return p.Key + ": " + p.Err.Error() }

// Validate returns every problem of an entry whose defaults are set. gatewayID
// is the gateway's id, which the topics may carry.
func (c *Config) Validate(gatewayID string) []Problem {
	var probs []Problem
	add := func(key, format string, a ...any) {
		probs = append(probs, Problem{Key: key, Err: fmt.Errorf(format, a...)})
	}
	if !uplink.IsToken(c.Name) {
		add("name", "%q: required, letters, digits, '-' and '_' (it names the link's durable consumer and metrics)", c.Name)
	} else if len(c.Name) > 64 {
		add("name", "%q is longer than 64 bytes", c.Name)
	}
	switch c.Format {
	case FormatJSON:
		// A sparkplug section is allowed (the contract's example has both) and
		// is used only with format sparkplug.
		if _, err := parseTemplate(c.Topic); err != nil {
			add("topic", "%v", err)
		}
	case FormatSparkplug:
		// topic is used only with format json; Sparkplug's topics are
		// spBv1.0/{group}/<type>/{edge_node}[/<device>].
		if c.Topic != "" {
			if _, err := parseTemplate(c.Topic); err != nil {
				add("topic", "%v", err)
			}
		}
		sp := c.Sparkplug
		if sp == nil || sp.Group == "" {
			add("sparkplug.group", "required with format: sparkplug")
		} else if !spToken(sp.Group) {
			add("sparkplug.group", "%q: one topic level, without '/', '+', '#'", sp.Group)
		}
		if sp != nil {
			if node := strings.ReplaceAll(sp.EdgeNode, "{gateway}", gatewayID); !spToken(node) {
				add("sparkplug.edge_node", "%q is %q, which is not one topic level without '/', '+', '#'", sp.EdgeNode, node)
			}
		}
	default:
		add("format", "%q is not json or sparkplug", c.Format)
	}
	if q := *c.QoS; q != 0 && q != 1 {
		add("qos", "%d: 1 (at least once) or 0; 2 is not offered", q)
	}
	if _, err := c.Match.compile(); err != nil {
		add("match", "%v", err)
	}
	if c.MQTT == nil {
		add("mqtt", "required (url, and how to log in)")
		return probs
	}
	m := c.MQTT
	u, err := m.broker()
	if err != nil {
		add("mqtt.url", "%v", err)
	}
	if m.TLS != nil {
		if err := m.TLS.ValidateClient(); err != nil {
			add("mqtt.tls", "%v", err)
		}
	}
	if err == nil {
		if err := etls.CheckPeer(u.Host, m.TLS != nil || u.Scheme == "tls", m.Insecure); err != nil {
			add("mqtt.url", "%v", err)
		}
	}
	if m.PasswordFile != "" {
		if m.Username == "" {
			add("mqtt.password_file", "needs a username (MQTT 3.1.1 sends no password without one)")
		}
		if _, err := os.Stat(m.PasswordFile); err != nil {
			add("mqtt.password_file", "%v", err)
		}
	}
	if len(m.ClientID) > 65535 {
		add("mqtt.client_id", "longer than 65535 bytes")
	}
	if m.MaxInFlight > 65535 {
		add("mqtt.max_in_flight", "%d is more than 65535 (MQTT packet ids)", m.MaxInFlight)
	}
	if m.ReconnectMax < m.ReconnectMin {
		add("mqtt.reconnect_max", "%s is less than reconnect_min (%s)", m.ReconnectMax, m.ReconnectMin)
	}
	return probs
}

// ValidateList validates every entry and that names are unique. Each problem's
// Key starts with the entry's index: "[1].mqtt.url".
func ValidateList(list []Config, gatewayID string) []Problem {
	var probs []Problem
	seen := map[string]int{}
	for i := range list {
		c := &list[i]
		for _, p := range c.Validate(gatewayID) {
			probs = append(probs, Problem{Key: fmt.Sprintf("[%d].%s", i, p.Key), Err: p.Err})
		}
		if j, dup := seen[c.Name]; dup && c.Name != "" {
			probs = append(probs, Problem{Key: fmt.Sprintf("[%d].name", i), Err: fmt.Errorf("%q is also the name of northbound[%d]", c.Name, j)})
		}
		seen[c.Name] = i
	}
	return probs
}

// compile turns the match into the hub's matcher.
func (m Match) compile() (*bridge.Matcher, error) {
	f := bridge.Filter{Devices: m.Devices, Points: m.Points, Labels: m.Labels}
	for _, p := range m.Protocols {
		pr, ok := bridge.ParseProtocol(p)
		if !ok {
			return nil, fmt.Errorf("protocols: unknown protocol %q", p)
		}
		f.Protocols = append(f.Protocols, pr)
	}
	return f.Compile()
}

// broker parses the url: the scheme is tcp or tls (ssl, mqtts and mqtt are read
// as those), with a default port of 1883 or 8883.
func (m *MQTT) broker() (*url.URL, error) {
	s := strings.TrimSpace(m.URL)
	if s == "" {
		return nil, errors.New("required")
	}
	if !strings.Contains(s, "://") {
		return nil, fmt.Errorf("%q: give a scheme, tls:// or tcp://", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.User != nil {
		return nil, errors.New("no credentials in the url: use username and password_file")
	}
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme = "tcp"
	case "tls", "ssl", "mqtts":
		u.Scheme = "tls"
	default:
		return nil, fmt.Errorf("scheme %q is not tcp or tls", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q has no host", s)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%q: an MQTT broker url has no path", s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		port := "1883"
		if u.Scheme == "tls" {
			port = "8883"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}

// dialURL is the url paho dials: tls:// when a tls section is given, whatever
// the scheme.
func (m *MQTT) dialURL() (string, error) {
	u, err := m.broker()
	if err != nil {
		return "", err
	}
	if m.TLS != nil {
		u.Scheme = "tls"
	}
	return u.String(), nil
}

// tlsConfig is the client TLS configuration: the tls section's, following its
// files; without one, the system roots for a tls:// url; nil for plaintext.
func (m *MQTT) tlsConfig() (*tls.Config, error) {
	if m.TLS == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	src, err := m.TLS.Source(false)
	if err != nil {
		return nil, err
	}
	return src.ClientConfig(), nil
}

// readPassword reads password_file, without the newline that editors and
// `echo` leave at its end.
func (m *MQTT) readPassword() (string, error) {
	if m.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(m.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
