package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
