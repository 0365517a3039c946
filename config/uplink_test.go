package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

func TestUplinkSection(t *testing.T) {
	c, err := config.Parse([]byte(`
gateway: {id: store-0042, data_dir: /var/lib/edgegate}
uplink:
  nats:
    url: tls://hub.example.com:4222
    tls: {cert_file: site.crt, key_file: site.key, client_ca_file: ca.crt}
    encoding: json
    create_streams: true
    budget: {messages_per_second: 500, bytes_per_second: 65536}
`))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Uplink.NATS
	if n.URL != "tls://hub.example.com:4222" || n.Encoding != "json" || !n.CreateStreams || n.Budget.MessagesPerSecond != 500 || n.TLS.ClientCAFile != "ca.crt" {
		t.Errorf("uplink = %+v", n)
	}
	// Defaults.
	if n.MaxInFlight != 256 || n.AckTimeout != 10*time.Second || n.ReconnectMin != time.Second || n.ReconnectMax != time.Minute ||
		n.PriorityLag != 1000 || n.MaxCommandIDs != 10000 || n.DuplicateWindow != 2*time.Minute {
		t.Errorf("defaults = %+v", n)
	}
	c, err = config.Parse([]byte("gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: 127.0.0.1:4222}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Uplink.NATS.Encoding != "protobuf" {
		t.Errorf("default encoding %q", c.Uplink.NATS.Encoding)
	}
}

func TestUplinkProblems(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no durable log":  {"gateway: {id: s}\nuplink: {nats: {url: 127.0.0.1:4222}}", "uplink: needs the durable log"},
		"sync none":       {"gateway: {id: s, data_dir: /x}\njournal: {sync: none}\nuplink: {nats: {url: 127.0.0.1:4222}}", "uplink: needs the durable log"},
		"no nats":         {"gateway: {id: s, data_dir: /x}\nuplink: {}", "uplink: nats: required"},
		"no url":          {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {}}", "uplink: nats: url: required"},
		"plaintext":       {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: nats://hub.example.com:4222}}", "plaintext"},
		"plaintext creds": {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: 'hub.example.com', credentials_file: /dev/null}}", "plaintext"},
		"bad scheme":      {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: http://hub:80}}", `scheme "http"`},
		"encoding":        {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: 127.0.0.1:4222, encoding: xml}}", "uplink: nats: encoding"},
		"unknown key":     {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: 127.0.0.1:4222, urls: x}}", "field urls not found"},
		"gateway id":      {"gateway: {id: store.42, data_dir: /x}\nuplink: {nats: {url: 127.0.0.1:4222}}", `gateway id "store.42"`},
		"half a cert":     {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: tls://h:1, tls: {cert_file: a}}}", "cert_file and key_file"},
		"budget":          {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: 127.0.0.1:4222, budget: {messages_per_second: -1}}}", "budget"},
		"no creds file":   {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: tls://h:1, credentials_file: /nonexistent/site.creds}}", "credentials_file"},
		"timeouts": {"gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: 127.0.0.1:4222, command_timeout: 1m, command_ack_wait: 30s}}",
			"command_timeout"},
	} {
		_, err := config.Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
	// insecure allows plaintext to a remote hub.
	if _, err := config.Parse([]byte("gateway: {id: s, data_dir: /x}\nuplink: {nats: {url: nats://hub.example.com:4222, insecure: true}}")); err != nil {
		t.Errorf("insecure: %v", err)
	}
}
