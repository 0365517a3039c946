package uplink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	etls "github.com/edgegate/edgegate/tls"
	"github.com/edgegate/edgegate/tls/tlsbase"
)

// Config is the `uplink:` section of the gateway's config.
type Config struct {
	NATS *NATS `yaml:"nats"`
}

// NATS is `uplink.nats`: the JetStream hub and how to reach it.
type NATS struct {
	// URL is the hub, or several of a cluster separated by commas:
	// tls://hub.example.com:4222. Required.
	URL string `yaml:"url"`
	// TLS turns on TLS (also for a nats:// URL) and, with cert_file and key_file,
	// presents a client certificate (mTLS). The client side of the gateway's one
	// tls block shape: ca_file (or client_ca_file) is the CA the hub's certificate
	// must chain to, server_name, min_version. Files are read again when they change.
	TLS *etls.Files `yaml:"tls"`
	// CredentialsFile is a NATS credentials file (JWT and NKey seed) for the site.
	CredentialsFile string `yaml:"credentials_file"`
	// Insecure allows plaintext to a hub that is not on loopback.
	Insecure bool `yaml:"insecure"`
	// Encoding of data payloads and command results: protobuf (default) or json
	// (protojson). Commands are decoded in the same encoding.
	Encoding string `yaml:"encoding"`
	// CreateStreams creates EDGEGATE and EDGEGATE_CMD when they are missing
	// (development; a production hub defines them, see docs/uplink.md).
	CreateStreams bool `yaml:"create_streams"`
	// Budget bounds what the forwarder sends; zero rates are unlimited.
	Budget Budget `yaml:"budget"`

	// MaxInFlight bounds publishes awaiting the hub's acknowledgement; default 256.
	MaxInFlight int `yaml:"max_in_flight"`
	// AckTimeout is how long a publish may wait for its acknowledgement before the
	// connection is given up and made again; default 10s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// ConnectTimeout bounds one connection attempt; default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts (each wait is jittered); defaults 1s and 1m.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// PriorityLag is how many messages the forwarder may be behind the log before
	// it sends high and critical messages ahead of the rest; default 1000.
	PriorityLag int `yaml:"priority_lag"`
	// CommandTimeout bounds one command's write to its device; default 5s.
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// CommandAckWait is the AckWait of the command consumer when the gateway
	// creates it: a command not acknowledged in that time is delivered again;
	// default 30s.
	CommandAckWait time.Duration `yaml:"command_ack_wait"`
	// MaxCommandIDs bounds the executed command ids kept (on disk and in memory)
	// so that a redelivered command is not run again; default 10000.
	MaxCommandIDs int `yaml:"max_command_ids"`
	// DuplicateWindow is the hub's de-duplication window for the streams that
	// create_streams creates; default 2m (see docs/uplink.md).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
}

// Budget is a token-bucket rate in messages and bytes per second (a burst of one
// second's worth); zero is unlimited.
type Budget struct {
	MessagesPerSecond float64 `yaml:"messages_per_second"`
	BytesPerSecond    float64 `yaml:"bytes_per_second"`
}

// Encodings.
const (
	EncodingProtobuf = "protobuf"
	EncodingJSON     = "json"
)

// SetDefaults fills in every unset field.
func (c *Config) SetDefaults() {
	if c.NATS == nil {
		return
	}
	n := c.NATS
	if n.Encoding == "" {
		n.Encoding = EncodingProtobuf
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if n.MaxInFlight <= 0 {
		n.MaxInFlight = 256
	}
	def(&n.AckTimeout, 10*time.Second)
	def(&n.ConnectTimeout, 5*time.Second)
	def(&n.ReconnectMin, time.Second)
	def(&n.ReconnectMax, time.Minute)
	if n.PriorityLag <= 0 {
		n.PriorityLag = 1000
	}
	def(&n.CommandTimeout, 5*time.Second)
	def(&n.CommandAckWait, 30*time.Second)
	if n.MaxCommandIDs <= 0 {
		n.MaxCommandIDs = 10000
	}
	def(&n.DuplicateWindow, 2*time.Minute)
}

// Validate returns every problem, each naming its key. gatewayID is the gateway's
// id, which becomes part of subjects and names.
func (c *Config) Validate(gatewayID string) []error {
	var probs []error
	add := func(format string, a ...any) { probs = append(probs, fmt.Errorf("uplink: "+format, a...)) }
	if c.NATS == nil {
		add("nats: required (the only kind of hub)")
		return probs
	}
	n := c.NATS
	if !IsToken(gatewayID) {
		add("gateway id %q: it is part of the hub's subjects and consumer names, so only letters, digits, '-' and '_' (set gateway.id)", gatewayID)
	}
	urls, err := n.urls()
	if err != nil {
		add("nats: url: %v", err)
	}
	if n.TLS != nil {
		if err := n.TLS.ValidateClient(); err != nil {
			add("nats: %v", err)
		}
	}
	if err == nil && n.TLS == nil && !n.Insecure {
		for _, u := range urls {
			if u.Scheme == "tls" {
				continue
			}
			if !tlsbase.IsLocal(u.Host) {
				add("nats: url: %s: plaintext to a hub that is not on loopback; use tls://, a tls section, or insecure: true", u.Host)
			}
		}
	}
	switch n.Encoding {
	case EncodingProtobuf, EncodingJSON:
	default:
		add("nats: encoding: %q is not protobuf or json", n.Encoding)
	}
	if n.Budget.MessagesPerSecond < 0 || n.Budget.BytesPerSecond < 0 {
		add("nats: budget: rates must not be negative")
	}
	if n.MaxInFlight > 65536 {
		add("nats: max_in_flight: %d is more than 65536", n.MaxInFlight)
	}
	if n.MaxCommandIDs > 1_000_000 {
		add("nats: max_command_ids: %d is more than 1000000", n.MaxCommandIDs)
	}
	if n.ReconnectMax < n.ReconnectMin {
		add("nats: reconnect_max: %s is less than reconnect_min (%s)", n.ReconnectMax, n.ReconnectMin)
	}
	if n.CommandTimeout >= n.CommandAckWait {
		add("nats: command_timeout: %s must be less than command_ack_wait (%s), or a slow write would be delivered again while it runs", n.CommandTimeout, n.CommandAckWait)
	}
	for key, f := range map[string]string{"credentials_file": n.CredentialsFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				add("nats: %s: %v", key, err)
			}
		}
	}
	return probs
}

// urls parses the comma-separated hub URLs.
func (n *NATS) urls() ([]*url.URL, error) {
	if strings.TrimSpace(n.URL) == "" {
		return nil, errors.New("required")
	}
	var out []*url.URL
	for s := range strings.SplitSeq(n.URL, ",") {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "nats", "tls":
		default:
			return nil, fmt.Errorf("%s: scheme %q is not nats or tls", s, u.Scheme)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			u.Host = net.JoinHostPort(u.Host, "4222")
		}
		out = append(out, u)
	}
	return out, nil
}

// tlsConfig builds the client TLS configuration, or nil without a tls section.
// It presents the certificate and trusts the CA of the moment: the files are
// read again when they change.
func (n *NATS) tlsConfig() (*tls.Config, error) {
	if n.TLS == nil {
		return nil, nil
	}
	src, err := n.TLS.Source(false)
	if err != nil {
		return nil, fmt.Errorf("uplink: nats: %w", err)
	}
	return src.ClientConfig(), nil
}

// IsToken reports whether s is a non-empty run of letters, digits, '-' and '_':
// safe as one token of a NATS subject and as a consumer name.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

func tokenByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_'
}

// Sanitize makes s one subject token: every character other than an ASCII letter,
// digit, '-' or '_' becomes '_' (one per character, so "°C" becomes "_C"); the
// empty string becomes "_".
func Sanitize(s string) string {
	if IsToken(s) {
		return s
	}
	if s == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < 0x80 && tokenByte(byte(r)) {
			b.WriteByte(byte(r))
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Subjects and names of the contract (docs/uplink.md).
const (
	DataStream    = "EDGEGATE"
	CommandStream = "EDGEGATE_CMD"
)

// DataSubject is where a message of device and point is published.
func DataSubject(gatewayID, device, point string) string {
	return "edgegate.data." + gatewayID + "." + Sanitize(device) + "." + Sanitize(point)
}

// CommandSubject is the subject a gateway's commands are published on.
func CommandSubject(gatewayID string) string { return "edgegate.cmd." + gatewayID }

// ResultSubject is where a gateway publishes its command results.
func ResultSubject(gatewayID string) string { return "edgegate.result." + gatewayID }

// ConsumerName is the gateway's durable consumer on the command stream.
func ConsumerName(gatewayID string) string { return "edgegate-" + gatewayID }

// InboxPrefix is the prefix of the gateway's reply subjects: the hub lets a site
// subscribe to InboxPrefix(id)+".>" and nothing else.
func InboxPrefix(gatewayID string) string { return "_INBOX." + gatewayID }

// MsgID is the Nats-Msg-Id of the message with sequence seq.
func MsgID(gatewayID string, seq uint64) string {
	return fmt.Sprintf("%s:%d", gatewayID, seq)
}

// SitePermissions are the subjects a site's NATS user needs on the hub, and all
// it should get: publish on its own data and results, use its own command
// consumer (look it up, create it once, pull, acknowledge), and receive replies
// on its own inboxes. docs/uplink.md shows them as server config and for nsc.
func SitePermissions(gatewayID string) (publish, subscribe []string) {
	c := ConsumerName(gatewayID)
	publish = []string{
		"edgegate.data." + gatewayID + ".>",
		ResultSubject(gatewayID),
		"$JS.API.CONSUMER.INFO." + CommandStream + "." + c,
		"$JS.API.CONSUMER.CREATE." + CommandStream + "." + c + "." + CommandSubject(gatewayID),
		"$JS.API.CONSUMER.MSG.NEXT." + CommandStream + "." + c,
		"$JS.ACK." + CommandStream + "." + c + ".>",
	}
	subscribe = []string{InboxPrefix(gatewayID) + ".>"}
	return publish, subscribe
}
