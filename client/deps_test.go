package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: a workload that imports the client compiles grpc, protobuf and
// the standard library, and of edgegate only the generated code, tls/tlsbase and
// internal/backoff (both the standard library only);
// not the gateway's packages, pion/dtls or Prometheus (docs/client.md).
func TestDependencies(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goCmd, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/edgegate/edgegate/client",
		"github.com/edgegate/edgegate/proto/edgegate/v1",
		"github.com/edgegate/edgegate/tls/tlsbase",
		"github.com/edgegate/edgegate/internal/backoff", // the standard library only
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
		"google.golang.org/genproto/googleapis/rpc",
		"golang.org/x/net",
		"golang.org/x/sys",
		"golang.org/x/text",
	}
	for _, pkg := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a+"/") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("the client depends on %s", pkg)
		}
	}
}
