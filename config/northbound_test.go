package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// TestNorthboundSection: the contract's example is taken, with its defaults.
func TestNorthboundSection(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "mqtt")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(`
gateway: {id: store-0042, data_dir: /var/lib/edgegate}
northbound:
  - name: uns
    mqtt: {url: "tls://broker.example:8883", client_id: store-0042, tls: {ca_file: ca.crt, cert_file: site.crt, key_file: site.key}, username: site, password_file: ` + secret + `, insecure: false}
    match: {devices: ["*"], points: ["*"]}     # SubscribeRequest's filter
    format: json                                # or sparkplug
    sparkplug: {group: stores, edge_node: "{gateway}"}
    topic: "sites/{gateway}/{device}/{point}"   # format json
    qos: 1
    accept_commands: true
  - name: local
    mqtt: {url: "tcp://127.0.0.1:1883"}
  - name: spb
    mqtt: {url: "tcp://127.0.0.1:1883"}
    format: sparkplug
    sparkplug: {group: stores}
`))
	if err != nil {
		t.Fatal(err)
	}
	if sp := c.Northbound[2]; sp.Format != "sparkplug" || sp.Sparkplug.Group != "stores" || sp.Sparkplug.EdgeNode != "{gateway}" || sp.Topic != "" {
		t.Errorf("northbound[2] = %+v", sp)
	}
	if len(c.Northbound) != 3 {
		t.Fatalf("northbound = %+v", c.Northbound)
	}
	n := c.Northbound[0]
	if n.Name != "uns" || n.MQTT.URL != "tls://broker.example:8883" || n.MQTT.ClientID != "store-0042" || n.MQTT.TLS.CAFile != "ca.crt" ||
		n.MQTT.Username != "site" || n.Topic != "sites/{gateway}/{device}/{point}" || *n.QoS != 1 || !n.AcceptCommands ||
		len(n.Match.Devices) != 1 || n.Format != "json" {
		t.Errorf("northbound[0] = %+v, mqtt %+v", n, n.MQTT)
	}
	d := c.Northbound[1]
	if d.Format != "json" || d.Topic != "edgegate/{gateway}/{device}/{point}" || *d.QoS != 1 || d.AcceptCommands ||
		d.MQTT.MaxInFlight != 256 || d.MQTT.AckTimeout != 10*time.Second || d.MQTT.ReconnectMin != time.Second || d.MQTT.ReconnectMax != time.Minute {
		t.Errorf("defaults: %+v, mqtt %+v", d, d.MQTT)
	}
}

// TestNorthboundProblems: each problem names its entry, line and key.
func TestNorthboundProblems(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"sparkplug group": {"northbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883}\n    format: sparkplug\n",
			`northbound "uns": line 2: sparkplug.group: required with format: sparkplug`},
		"sparkplug node": {"gateway: {id: s}\nnorthbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883}\n    format: sparkplug\n    sparkplug: {group: g, edge_node: \"a/{gateway}\"}\n",
			`northbound "uns": line 6: sparkplug.edge_node: "a/{gateway}" is "a/s"`},
		"format":    {"northbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883}\n    format: xml\n", `northbound "uns": line 4: format: "xml" is not json or sparkplug`},
		"plaintext": {"northbound:\n  - name: uns\n    mqtt:\n      url: tcp://broker.example:1883\n", `northbound "uns": line 4: mqtt.url: plaintext to a non-loopback address: broker.example:1883`},
		"no url":    {"northbound:\n  - name: uns\n    mqtt: {client_id: x}\n", `northbound "uns": line 3: mqtt.url: required`},
		"no mqtt":   {"northbound:\n  - name: uns\n", `northbound "uns": line 2: mqtt: required`},
		"no name":   {"northbound:\n  - mqtt: {url: tcp://127.0.0.1:1883}\n", `northbound[0]: line 2: name: "": required`},
		"bad name":  {"northbound:\n  - name: u.n.s\n    mqtt: {url: tcp://127.0.0.1:1883}\n", `line 2: name: "u.n.s"`},
		"duplicate": {"northbound:\n  - {name: a, mqtt: {url: tcp://127.0.0.1:1883}}\n  - {name: a, mqtt: {url: tcp://127.0.0.1:1884}}\n",
			`northbound "a": line 3: name: "a" is also the name of northbound[0]`},
		"qos":         {"northbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883}\n    qos: 2\n", `line 4: qos: 2`},
		"topic":       {"northbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883}\n    topic: a/{device}\n", `line 4: topic: "a/{device}": needs {device} and {point}`},
		"match":       {"northbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883}\n    match: {devices: ['[']}\n", `line 4: match: devices: bad pattern`},
		"scheme":      {"northbound:\n  - name: uns\n    mqtt: {url: 'ws://127.0.0.1:1883'}\n", `mqtt.url: scheme "ws" is not tcp or tls`},
		"password":    {"northbound:\n  - name: uns\n    mqtt: {url: tls://b:8883, username: u, password_file: /nonexistent/secret}\n", `mqtt.password_file: stat /nonexistent/secret`},
		"unknown key": {"northbound:\n  - name: uns\n    mqtt: {url: tcp://127.0.0.1:1883, password: x}\n", "field password not found"},
	} {
		_, err := config.Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
