package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	etls "github.com/edgegate/edgegate/tls"
)

func TestTunnelsAndAuthz(t *testing.T) {
	c, err := config.Parse([]byte(`
grpc:
  listen: 0.0.0.0:50051
  tls: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt, min_version: "1.3"}
  authz:
    - {identity: "spiffe://site/kitchen-display", subscribe: ["fryer-*"], write: ["fryer-*"]}
    - {identity: "spiffe://site/dashboard-*", subscribe: ["*"]}
tunnels:
  - {name: plc, listen: 0.0.0.0:802, target: 10.0.0.7:502, tls: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt}}
  - name: opcua
    listen: 0.0.0.0:4843
    target: 10.0.0.8:4840
    tls: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt}
    allow: ["spiffe://site/scada"]
    max_connections: 4
    idle_timeout: 30s
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.GRPC.Authz) != 2 || c.GRPC.Authz[0].Write[0] != "fryer-*" || c.GRPC.TLS.MinVersion != "1.3" {
		t.Errorf("grpc = %+v", c.GRPC)
	}
	if len(c.Tunnels) != 2 {
		t.Fatalf("tunnels = %+v", c.Tunnels)
	}
	plc, opc := c.Tunnels[0], c.Tunnels[1]
	if plc.MaxConnections != etls.DefaultTunnelMaxConnections || plc.IdleTimeout != etls.DefaultTunnelIdleTimeout || plc.ConnectTimeout != etls.DefaultTunnelConnectTimeout {
		t.Errorf("plc defaults = %+v", plc)
	}
	if opc.MaxConnections != 4 || opc.IdleTimeout != 30*time.Second || opc.Allow[0] != "spiffe://site/scada" {
		t.Errorf("opcua = %+v", opc)
	}
}

func TestTLSProblems(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"authz without mTLS", "grpc: {tls: {cert_file: a, key_file: b}, authz: [{identity: x, subscribe: ['*']}]}\n",
			[]string{"grpc: authz: needs client certificates", "client_ca_file"}},
		{"authz without tls", "grpc: {authz: [{identity: x, subscribe: ['*']}]}\n", []string{"grpc: authz: needs client certificates"}},
		{"authz entry grants nothing", "grpc: {tls: {cert_file: a, key_file: b, client_ca_file: c}, authz: [{identity: x}]}\n",
			[]string{`grpc: authz: identity "x": grants nothing`}},
		{"authz bad glob", "grpc: {tls: {cert_file: a, key_file: b, client_ca_file: c}, authz: [{identity: x, write: ['[z']}]}\n",
			[]string{`grpc: authz: identity "x": write[0]`}},
		{"authz no identity", "grpc: {tls: {cert_file: a, key_file: b, client_ca_file: c}, authz: [{subscribe: ['*']}]}\n",
			[]string{"grpc: authz[0]: identity: required"}},
		{"authz twice", "grpc: {tls: {cert_file: a, key_file: b, client_ca_file: c}, authz: [{identity: x, subscribe: [a]}, {identity: x, write: [b]}]}\n",
			[]string{`identity "x": identity: listed twice`}},
		{"authz unknown key", "grpc: {authz: [{identity: x, read: ['*']}]}\n", []string{"grpc:", "read"}},
		{"bad min_version", "grpc: {listen: 0.0.0.0:1, tls: {cert_file: a, key_file: b, min_version: '1.0'}}\n", []string{"grpc: tls: min_version"}},
		{"tunnel without client CA", "tunnels: [{name: plc, listen: 0.0.0.0:802, target: 10.0.0.7:502, tls: {cert_file: a, key_file: b}}]\n",
			[]string{`tunnel "plc": tls: client_ca_file is required`}},
		{"tunnel bad target", "tunnels: [{name: plc, listen: 0.0.0.0:802, target: 10.0.0.7, tls: {cert_file: a, key_file: b, client_ca_file: c}}]\n",
			[]string{`tunnel "plc": target`}},
		{"tunnel without name", "tunnels: [{listen: 0.0.0.0:802, target: 10.0.0.7:502, tls: {cert_file: a, key_file: b, client_ca_file: c}}]\n",
			[]string{`tunnels[0]: name`}},
		{"tunnel unknown key", "tunnels: [{name: plc, listen: 0.0.0.0:802, target: 10.0.0.7:502, tls: {cert_file: a, key_file: b, client_ca_file: c}, port: 1}]\n",
			[]string{"tunnels:", "port"}},
		{"tunnels with one name", `tunnels:
  - {name: plc, listen: 0.0.0.0:802, target: 10.0.0.7:502, tls: {cert_file: a, key_file: b, client_ca_file: c}}
  - {name: plc, listen: 0.0.0.0:803, target: 10.0.0.8:502, tls: {cert_file: a, key_file: b, client_ca_file: c}}
`, []string{`tunnel "plc": name: also used by tunnels[0]`}},
		{"tunnels on one port", `tunnels:
  - {name: a, listen: 0.0.0.0:802, target: 10.0.0.7:502, tls: {cert_file: a, key_file: b, client_ca_file: c}}
  - {name: b, listen: 0.0.0.0:802, target: 10.0.0.8:502, tls: {cert_file: a, key_file: b, client_ca_file: c}}
`, []string{`tunnel "b": listen: 0.0.0.0:802 is also tunnels[0]'s`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("no problem says %q:\n%v", w, err)
				}
			}
		})
	}
}
