package mqtt

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	egtls "github.com/edgegate/edgegate/tls"
)

// decode does what the gateway does: defaults, then a strict decode of the section.
func decode(t *testing.T, src string) (*Config, error) {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(src), &node); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	if len(node.Content) == 0 {
		return cfg, nil
	}
	return cfg, protocols.DecodeStrict(node.Content[0], cfg)
}

func TestRegistered(t *testing.T) {
	newCfg, ok := protocols.Lookup("mqtt")
	if !ok {
		t.Fatal("mqtt is not registered")
	}
	cfg := newCfg()
	if cfg.Name() != "mqtt" || cfg.Protocol() != bridge.ProtocolMQTT {
		t.Errorf("registered %q %v", cfg.Name(), cfg.Protocol())
	}
	if _, ok := cfg.(protocols.DeviceTaker); !ok {
		t.Error("the config does not take devices")
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := decode(t, `allow_anonymous: true`)
	if err != nil {
		t.Fatal(err)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("defaults do not validate: %v", errs)
	}
	if len(cfg.Listeners) != 1 || cfg.Listeners[0].Address != DefaultAddress || cfg.Topics[0].Pattern != DefaultTopic {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.MaxConnections != DefaultMaxConnections || cfg.MaxPacketSize != DefaultMaxPacketSize || cfg.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("bounds: %+v", cfg)
	}
}

func TestFullConfig(t *testing.T) {
	cfg, err := decode(t, `
listeners:
  - {type: tcp, address: 127.0.0.1:1883}
  - {type: tls, address: 0.0.0.0:8883, tls: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt}}
  - {type: tcp, address: 0.0.0.0:1884, insecure: true}
allow_anonymous: false
users: [{username: pos-1, password_hash: "`+hash(t, "x")+`", publish: ["devices/pos-1/#"], subscribe: ["devices/pos-1/+/set"]}]
topics: [{pattern: "devices/{device}/{point}"}, {pattern: "plant/{device}"}]
max_connections: 100
max_packet_size: 4096
max_points_per_message: 10
max_inflight: 16
max_retained: 50
connect_timeout: 3s
session_expiry: 10m
client_id: "{username}-*"
auth_failure_burst: 3
auth_failure_interval: 1m
auth_cache_ttl: 0s
`)
	if err != nil {
		t.Fatal(err)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("valid config refused: %v", errs)
	}
	if cfg.Listeners[1].TLS.ClientCAFile != "ca.crt" || cfg.MaxInflight != 16 || cfg.SessionExpiry.Minutes() != 10 ||
		cfg.ClientID != "{username}-*" || cfg.AuthFailureBurst != 3 || cfg.AuthFailureInterval.Minutes() != 1 || cfg.AuthCacheTTL != 0 {
		t.Errorf("decoded: %+v", cfg)
	}
}

func TestUnknownKey(t *testing.T) {
	if _, err := decode(t, `listeners: [{type: tcp, adress: 127.0.0.1:1883}]`); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := decode(t, `max_conections: 5`); err == nil {
		t.Error("unknown top-level key accepted")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string // a substring of one of the errors
	}{
		{"no listeners", func(c *Config) { c.Listeners = nil }, "mqtt: listeners: at least one"},
		{"plaintext off loopback", func(c *Config) { c.Listeners[0].Address = "0.0.0.0:1883" }, `mqtt: listeners[0]: address "0.0.0.0:1883": plaintext`},
		{"bad address", func(c *Config) { c.Listeners[0].Address = "nowhere" }, `mqtt: listeners[0]: address "nowhere"`},
		{"bad type", func(c *Config) { c.Listeners[0].Type = "ws" }, `mqtt: listeners[0]: type: "ws"`},
		{"tls without files", func(c *Config) { c.Listeners[0].Type = "tls" }, "mqtt: listeners[0]: tls: required"},
		{"tls without key", func(c *Config) {
			c.Listeners[0] = ListenerConfig{Type: "tls", Address: "0.0.0.0:8883", TLS: &egtls.Files{CertFile: "a"}}
		}, "mqtt: listeners[0]: tls: key_file"},
		{"tls block on tcp", func(c *Config) { c.Listeners[0].TLS = &egtls.Files{} }, "only for type tls"},
		{"zero max_connections", func(c *Config) { c.MaxConnections = 0 }, "mqtt: max_connections: must be positive"},
		{"tiny packets", func(c *Config) { c.MaxPacketSize = 10 }, "mqtt: max_packet_size"},
		{"huge inflight", func(c *Config) { c.MaxInflight = 70000 }, "mqtt: max_inflight"},
		{"no connect timeout", func(c *Config) { c.ConnectTimeout = 0 }, "mqtt: connect_timeout"},
		{"no failure burst", func(c *Config) { c.AuthFailureBurst = 0 }, "mqtt: auth_failure_burst: must be positive"},
		{"no failure interval", func(c *Config) { c.AuthFailureInterval = 0 }, "mqtt: auth_failure_interval: must be positive"},
		{"cache for ever", func(c *Config) { c.AuthCacheTTL = 48 * time.Hour }, "mqtt: auth_cache_ttl: must be between"},
		{"bad client_id glob", func(c *Config) { c.ClientID = "{username}-[" }, `mqtt: client_id: "{username}-[" is not a glob`},
		{"bad pattern", func(c *Config) { c.Topics = []TopicConfig{{Pattern: "devices/+/{point}"}} }, `mqtt: topics[0]: pattern "devices/+/{point}"`},
		{"no patterns", func(c *Config) { c.Topics = nil }, "mqtt: topics: at least one"},
		{"user without hash", func(c *Config) { c.Users = []UserConfig{{Username: "u"}} }, `mqtt: user "u": password_hash: required`},
		{"plain password", func(c *Config) { c.Users = []UserConfig{{Username: "u", PasswordHash: "secret"}} }, `mqtt: user "u": password_hash: not a bcrypt hash`},
		{"bad filter", func(c *Config) {
			c.Users = []UserConfig{{Username: "u", PasswordHash: hash(t, "p"), Publish: []string{"a/#/b"}}}
		}, `mqtt: user "u": publish[0]: "a/#/b"`},
		{"duplicate user", func(c *Config) {
			c.Users = []UserConfig{{Username: "u", PasswordHash: hash(t, "p")}, {Username: "u", PasswordHash: hash(t, "p")}}
		}, `mqtt: user "u": username: duplicate`},
		{"user without name", func(c *Config) { c.Users = []UserConfig{{PasswordHash: hash(t, "p")}} }, "mqtt: users[0]: username: required"},
		{"device priority", func(c *Config) {
			c.Devices = []DeviceConfig{{ID: "d", Protocol: "mqtt", Points: []PointConfig{{Name: "p", Priority: "urgent"}}}}
		}, `device "d": point "p": priority: "urgent"`},
		{"device point slash", func(c *Config) {
			c.Devices = []DeviceConfig{{ID: "d", Protocol: "mqtt", Points: []PointConfig{{Name: "a/b"}}}}
		}, `device "d": point "a/b": name`},
		{"device topic label", func(c *Config) {
			c.Devices = []DeviceConfig{{ID: "d", Protocol: "mqtt", Labels: map[string]string{"topic": "x"}}}
		}, `device "d": labels: "topic"`},
		{"duplicate device", func(c *Config) {
			c.Devices = []DeviceConfig{{ID: "d", Protocol: "mqtt"}, {ID: "d", Protocol: "mqtt"}}
		}, `device "d": id: duplicate`},
		{"duplicate point", func(c *Config) {
			c.Devices = []DeviceConfig{{ID: "d", Protocol: "mqtt", Points: []PointConfig{{Name: "p"}, {Name: "p"}}}}
		}, `device "d": point "p": name: duplicate`},
	} {
		cfg := testConfig()
		c.edit(cfg)
		errs := cfg.Validate()
		found := false
		for _, err := range errs {
			found = found || strings.Contains(err.Error(), c.want)
		}
		if !found {
			t.Errorf("%s: errors %v, want one containing %q", c.name, errs, c.want)
		}
		if _, err := cfg.New(protocols.Env{}); err == nil {
			t.Errorf("%s: New accepted an invalid config", c.name)
		}
	}
}

func TestAddDevice(t *testing.T) {
	cfg := NewConfig()
	add := func(src string) error {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(src), &node); err != nil {
			t.Fatal(err)
		}
		return cfg.AddDevice(node.Content[0])
	}
	if err := add(`{id: pos-1, protocol: mqtt, labels: {site: "0042"}, points: [{name: drawer, priority: critical}, {name: temp, unit: "°C"}]}`); err != nil {
		t.Fatal(err)
	}
	if err := add(`{id: pos-2, protocol: mqtt, address: tcp://x}`); err == nil || !strings.Contains(err.Error(), "address") {
		t.Errorf("unknown device key: %v", err)
	}
	if len(cfg.Devices) != 1 || cfg.Devices[0].Points[0].Priority != "critical" || cfg.Devices[0].Labels["site"] != "0042" {
		t.Errorf("devices: %+v", cfg.Devices)
	}
}

func TestNewLoadsTLS(t *testing.T) {
	cfg := testConfig()
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Type: "tls", Address: "127.0.0.1:0",
		TLS: &egtls.Files{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}})
	_, err := cfg.New(protocols.Env{})
	if err == nil || !strings.Contains(err.Error(), "mqtt: listeners[1]") {
		t.Errorf("missing certificate: %v", err)
	}
}

func TestBindError(t *testing.T) {
	e := start(t, testConfig())
	cfg := testConfig()
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Type: "tcp", Address: e.addr()})
	ad, err := cfg.New(protocols.Env{})
	if err != nil {
		t.Fatal(err)
	}
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	defer hub.Close()
	err = ad.Run(t.Context(), hub.Ingest(bridge.ProtocolMQTT))
	if err == nil || !strings.Contains(err.Error(), "mqtt: listeners[1]") {
		t.Errorf("Run with a taken port: %v", err)
	}
}
