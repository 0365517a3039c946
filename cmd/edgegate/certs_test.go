package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
)

func TestCertsInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errOut := runCmd(t, "certs", "init", "--dir", dir, "--hosts", "127.0.0.1, gateway.local", "--client-name", "spiffe://site/kitchen-display")
	if code != 0 {
		t.Fatalf("certs init = %d %q %q", code, out, errOut)
	}
	for _, n := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"} {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(n, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", n, fi.Mode().Perm())
		}
	}
	if code, _, errOut := runCmd(t, "certs", "init", "--dir", dir, "--hosts", "x"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("certs init over existing files = %d %q", code, errOut)
	}
	for _, args := range [][]string{
		{"certs"},
		{"certs", "renew"},
		{"certs", "init", "--hosts", "x"},
		{"certs", "init", "--dir", dir},
		{"certs", "init", "--dir", dir, "--hosts", "x", "extra"},
	} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%q exit = %d, want 2", args, code)
		}
	}
	if code, out, _ := runCmd(t, "certs", "help"); code != 0 || !strings.Contains(out, "--client-name") {
		t.Errorf("certs help = %d %q", code, out)
	}
}

// TestCertsInitServesMTLS: the files `certs init` writes, used as the README says,
// give a gateway with mutual TLS that the client commands reach with --cacert
// --cert --key, and that refuses them without a certificate.
func TestCertsInitServesMTLS(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := runCmd(t, "certs", "init", "--dir", dir, "--hosts", "127.0.0.1,localhost", "--client-name", "spiffe://site/ops"); code != 0 {
		t.Fatalf("certs init = %d %q %q", code, out, errOut)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
grpc:
  listen: 127.0.0.1:0
  tls: {cert_file: %q, key_file: %q, client_ca_file: %q}
  authz: [{identity: "spiffe://site/ops", subscribe: ["*"], write: ["*"]}]
http: {listen: "off"}
`, f("server.crt"), f("server.key"), f("ca.crt"))))
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg).Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Hub().Ingest(bridge.ProtocolMQTT).Publish(ctx, &bridge.Message{Device: "fryer-1", Point: "oil_temp", Value: bridge.Double(180)}); err != nil {
		t.Fatal(err)
	}
	server := g.GRPCAddr().String()
	var out bytes.Buffer
	if code := run(ctx, []string{"devices", "--server", server, "--cacert", f("ca.crt"), "--cert", f("client.crt"), "--key", f("client.key")}, &out, &out); code != 0 || !strings.Contains(out.String(), "fryer-1") {
		t.Errorf("devices with the client certificate = %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"devices", "--server", server, "--cacert", f("ca.crt")}, &out, &out); code == 0 || !strings.Contains(out.String(), "Unauthenticated") {
		t.Errorf("devices without a certificate = %d:\n%s", code, out.String())
	}
}
