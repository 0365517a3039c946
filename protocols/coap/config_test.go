package coap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/protocols"
)

func TestDefaults(t *testing.T) {
	if errs := NewConfig().Validate(); len(errs) > 0 {
		t.Errorf("NewConfig: %v", errs)
	}
	// The embedded default's coap section (this test binary has only coap
	// registered, so the whole file does not parse here).
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(config.Default, &doc); err != nil {
		t.Fatal(err)
	}
	node, ok := doc[Name]
	if !ok {
		t.Fatal("the embedded default has no coap section")
	}
	cc := NewConfig()
	if err := protocols.DecodeStrict(&node, cc); err != nil {
		t.Fatal(err)
	}
	if errs := cc.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(cc.Listeners) != 1 || cc.Listeners[0].Type != "udp" || cc.Listeners[0].Address != "127.0.0.1:5683" {
		t.Errorf("default listeners %+v, want UDP on 127.0.0.1:5683 (docs/coap.md)", cc.Listeners)
	}
}

// TestSectionPresence: a coap section without listeners gets the default listener;
// without a coap section, devices with an address run and nothing listens.
func TestSectionPresence(t *testing.T) {
	for _, c := range []struct {
		yaml      string
		listeners int
	}{
		{"coap: {}\n", 1},
		{"coap: {listeners: []}\n", 0},
		{"coap: {listeners: [{type: tcp, address: '127.0.0.1:5683'}, {type: udp, address: '[::1]:5683'}]}\n", 2},
		{"devices: [{id: d1, protocol: coap, address: 'coap://10.0.0.9', points: [{name: t, path: /t}]}]\n", 0},
		{"coap: {max_connections: 10}\ndevices: [{id: d1, protocol: coap}]\n", 1},
	} {
		cfg, err := config.Parse([]byte(c.yaml))
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		cc := cfg.Protocols[Name].(*Config)
		if len(cc.Listeners) != c.listeners {
			t.Errorf("%q: %d listeners, want %d", c.yaml, len(cc.Listeners), c.listeners)
		}
	}
}

// TestProblemsNameTheirKey: every problem names its listener or device and key.
func TestProblemsNameTheirKey(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "coap: {listners: []}\n", []string{"coap:", "listners"}},
		{"unknown listener key", "coap: {listeners: [{type: udp, address: '127.0.0.1:1', port: 2}]}\n", []string{"coap:", "port"}},
		{"bad type", "coap: {listeners: [{type: quic, address: '127.0.0.1:1'}]}\n", []string{`coap: listeners[0]: type: "quic"`}},
		{"no type", "coap: {listeners: [{address: '127.0.0.1:1'}]}\n", []string{"coap: listeners[0]: type: required"}},
		{"bad address", "coap: {listeners: [{type: udp, address: nowhere}]}\n", []string{`coap: listeners[0]: address "nowhere"`}},
		{"plaintext off loopback", "coap: {listeners: [{type: udp, address: '0.0.0.0:5683'}]}\n", []string{"coap: listeners[0]: address", "non-loopback"}},
		{"dtls without keys", "coap: {listeners: [{type: dtls, address: '0.0.0.0:5684'}]}\n", []string{"coap: listeners[0]: psk or tls"}},
		{"tls without certificate", "coap: {listeners: [{type: tls, address: '127.0.0.1:5684'}]}\n", []string{"coap: listeners[0]: tls: required"}},
		{"psk on udp", "coap: {listeners: [{type: udp, address: '127.0.0.1:1', psk: [{identity: a, key_file: k}]}]}\n", []string{"coap: listeners[0]: psk: only for type dtls"}},
		{"psk without key file", "coap: {listeners: [{type: dtls, address: '127.0.0.1:1', psk: [{identity: s7}]}]}\n", []string{`coap: listeners[0]: psk "s7": key_file: required`}},
		{"psk without identity", "coap: {listeners: [{type: dtls, address: '127.0.0.1:1', psk: [{key_file: k}]}]}\n", []string{"coap: listeners[0]: psk[0]: identity: required"}},
		{"duplicate identity", "coap: {listeners: [{type: dtls, address: '127.0.0.1:1', psk: [{identity: a, key_file: k}, {identity: a, key_file: k}]}]}\n", []string{`psk "a": identity: duplicate`}},
		{"bad glob", "coap: {listeners: [{type: dtls, address: '127.0.0.1:1', psk: [{identity: a, key_file: k, devices: ['[']}]}]}\n", []string{`psk "a": devices: "[" is not a glob`}},
		{"clients without client CA", "coap: {listeners: [{type: tls, address: '127.0.0.1:1', tls: {cert_file: c, key_file: k}, clients: [{identity: x}]}]}\n", []string{"coap: listeners[0]: clients: only with"}},
		{"bad resource", "coap: {resources: [{pattern: '/devices/{point}'}]}\n", []string{`coap: resources[0]: pattern "/devices/{point}"`}},
		{"zero limit", "coap: {max_observations: 0}\n", []string{"coap: max_observations: must be positive"}},
		{"zero per-peer limits", "coap: {max_observations_per_peer: 0, max_handshakes_per_source: -1, max_pending_responses: 0}\n", []string{
			"coap: max_observations_per_peer: must be positive", "coap: max_handshakes_per_source: must be positive", "coap: max_pending_responses: must be positive"}},
		{"message size", "coap: {max_message_size: 100000}\n", []string{"coap: max_message_size"}},
		{"short timeout", "coap: {idle_timeout: 10ms}\n", []string{"coap: idle_timeout: must be at least 1s"}},
		{"device bad scheme", "devices: [{id: d1, protocol: coap, address: 'http://x', points: [{name: a, path: /a}]}]\n", []string{`device "d1": address "http://x": scheme`}},
		{"device path in address", "devices: [{id: d1, protocol: coap, address: 'coap://x/a', points: [{name: a, path: /a}]}]\n", []string{`device "d1": address`, "resource paths belong to the points"}},
		{"device without points", "devices: [{id: d1, protocol: coap, address: 'coap://x'}]\n", []string{`device "d1": points:`}},
		{"point without path", "devices: [{id: d1, protocol: coap, address: 'coap://x', points: [{name: a}]}]\n", []string{`device "d1": point "a": path: required`}},
		{"point bad path", "devices: [{id: d1, protocol: coap, address: 'coap://x', points: [{name: a, path: a}]}]\n", []string{`device "d1": point "a": path "a"`}},
		{"coaps without keys", "devices: [{id: d1, protocol: coap, address: 'coaps://x', points: [{name: a, path: /a}]}]\n", []string{`device "d1": psk or tls`}},
		{"psk for coap", "devices: [{id: d1, protocol: coap, address: 'coap://x', psk: {identity: g, key_file: k}, points: [{name: a, path: /a}]}]\n", []string{`device "d1": psk, tls: only for coaps`}},
		{"psk over tcp", "devices: [{id: d1, protocol: coap, address: 'coaps+tcp://x', psk: {identity: g, key_file: k}, points: [{name: a, path: /a}]}]\n", []string{`device "d1": psk: only for coaps://`}},
		{"tls without CA", "devices: [{id: d1, protocol: coap, address: 'coaps+tcp://x', tls: {cert_file: c, key_file: k}, points: [{name: a, path: /a}]}]\n", []string{`device "d1": tls: ca_file: required`}},
		{"client keys on a push device", "devices: [{id: d1, protocol: coap, observe: true, points: [{name: a, path: /a}]}]\n", []string{`device "d1": observe, poll_interval`, `device "d1": point "a": path, writable`}},
		{"duplicate point", "devices: [{id: d1, protocol: coap, points: [{name: a}, {name: a}]}]\n", []string{`device "d1": point "a": name: duplicate`}},
		{"bad priority", "devices: [{id: d1, protocol: coap, points: [{name: a, priority: urgent}]}]\n", []string{`device "d1": point "a": priority: "urgent"`}},
		{"reserved label", "devices: [{id: d1, protocol: coap, labels: {path: x}}]\n", []string{`device "d1": labels: "path" is set by the adapter`}},
		{"unknown device key", "devices: [{id: d1, protocol: coap, adress: 'coap://x'}]\n", []string{`device "d1"`, "adress"}},
	} {
		_, err := config.Parse([]byte(c.yaml))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		msg := err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not contain %q", c.name, msg, w)
			}
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for content, want := range map[string]string{
		"secret\n": "secret", "secret": "secret", "secret\r\n": "secret", "two\n\n": "two\n", "\x00\x01\n": "\x00\x01",
	} {
		got, err := readKeyFile(write("k", content))
		if err != nil || string(got) != want {
			t.Errorf("key file %q: %q, %v; want %q", content, got, err, want)
		}
	}
	for _, content := range []string{"", "\n", strings.Repeat("k", 300)} {
		if _, err := readKeyFile(write("k", content)); err == nil {
			t.Errorf("key file %q accepted", content)
		}
	}
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", PSK: []PSKConfig{{Identity: "s7", KeyFile: filepath.Join(dir, "missing")}}}}
	_, err := cfg.New(protocols.Env{})
	if err == nil || !strings.Contains(err.Error(), `coap: listeners[0]: psk "s7": key_file`) {
		t.Errorf("missing key file: %v", err)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) {
		t.Errorf("missing key file: %v does not wrap the file error", err)
	}
}
