package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
	_ "github.com/edgegate/edgegate/protocols/all"
	etls "github.com/edgegate/edgegate/tls"
)

func TestDefaultParses(t *testing.T) {
	c, err := config.Parse(config.Default)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC.Listen != config.DefaultGRPCListen || c.HTTP.Listen != config.DefaultHTTPListen {
		t.Errorf("listen = %q %q", c.GRPC.Listen, c.HTTP.Listen)
	}
	if _, ok := c.Protocols["mqtt"]; !ok {
		t.Error("the default runs MQTT")
	}
}

func TestEmptyConfigListensNowhereButGRPCAndHTTP(t *testing.T) {
	c, err := config.Parse([]byte("gateway: {id: store-0042}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Protocols) != 0 {
		t.Errorf("protocols = %v, want none", c.Protocols)
	}
	if c.GRPC.Listen != config.DefaultGRPCListen || c.HTTP.Listen != config.DefaultHTTPListen || c.Gateway.ID != "store-0042" {
		t.Errorf("config = %+v", c)
	}
}

// Each case lists substrings that must each appear in one problem line.
func TestProblemsNameTheirKey(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "gatway: {}\n", []string{`gatway: line 1: unknown key`}},
		{"unknown nested key", "grpc: {listen: 127.0.0.1:1, tsl: {}}\n", []string{"grpc:", "tsl"}},
		{"plaintext grpc on all interfaces", "grpc: {listen: 0.0.0.0:50051}\n", []string{"grpc: listen:", "non-loopback"}},
		{"plaintext http", "http: {listen: ':8080'}\n", []string{"http: listen:"}},
		{"tls without key", "grpc: {listen: 0.0.0.0:1, tls: {cert_file: a.crt}}\n", []string{"grpc: tls: key_file is required"}},
		{"bad slow policy", "gateway: {slow_consumer: sometimes}\n", []string{`gateway: slow_consumer: "sometimes"`}},
		{"queue over retain", "gateway: {retain: 16, subscriber_queue: 32}\n", []string{"gateway: subscriber_queue"}},
		{"bad log level", "gateway: {log_level: loud}\n", []string{"gateway: log_level"}},
		{"device without id", "devices: [{protocol: mqtt}]\n", []string{"devices[0]", "id is required"}},
		{"device unknown protocol", "devices: [{id: boiler-1, protocol: bacnet}]\n", []string{`device "boiler-1": protocol: unknown protocol "bacnet"`}},
		{"duplicate device ids", "devices: [{id: a, protocol: mqtt}, {id: a, protocol: mqtt}]\n", []string{`device "a": id also used by devices[0]`}},
		{"tunnel without tls", "tunnels: [{name: plc, listen: 0.0.0.0:802, target: 10.0.0.7:502}]\n", []string{`tunnel "plc": tls: required`}},
		{"duplicate key", "grpc: {}\ngrpc: {}\n", []string{"grpc: line 2: duplicate key"}},
		{"not a mapping", "- a\n", []string{"top level must be a mapping"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			var probs config.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error %T is not Problems: %v", err, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems %q do not mention %q", err, w)
				}
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	_, err := config.Parse([]byte(`
grpc: {listen: 0.0.0.0:50051}
http: {listen: 0.0.0.0:8080}
gateway: {slow_consumer: never}
`))
	var probs config.Problems
	if !errors.As(err, &probs) || len(probs) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
}

func TestInsecureAndTLSAllowNonLoopback(t *testing.T) {
	c, err := config.Parse([]byte(`
grpc: {listen: 0.0.0.0:50051, tls: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt}}
http: {listen: 0.0.0.0:8080, insecure: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC.TLS == nil || *c.GRPC.TLS != (etls.Files{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt"}) {
		t.Errorf("tls = %+v", c.GRPC.TLS)
	}
}

func TestExampleConfigsCheck(t *testing.T) {
	files, _ := filepath.Glob("../examples/*/*.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "# edgegate config") {
			continue // manifests, not gateway configs
		}
		if _, err := config.Parse(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
