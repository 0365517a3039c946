package k8scheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// No Docker engine here: the Dockerfile is checked for what the image promises
// (static, non-root, distroless, stamped), and the stamp itself is tested by
// building the binary with the Dockerfile's and the Makefile's -X flags.

var xFlag = regexp.MustCompile(`-X ([\w./-]+)=`)

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	var froms []string
	for _, l := range strings.Split(df, "\n") {
		if f, ok := strings.CutPrefix(l, "FROM "); ok {
			froms = append(froms, f)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("not multi-stage: %v", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") && last != "scratch" {
		t.Errorf("final stage %q is neither distroless/static nor scratch", last)
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER 65532:65532", "./cmd/edgegate", `ENTRYPOINT ["/usr/local/bin/edgegate"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// Every port of the contract, TCP and UDP.
	for _, p := range []string{"50051", "8080", "1883", "8883", "5683/udp", "5683/tcp", "5684/udp", "5684/tcp", "802"} {
		if !regexp.MustCompile(`(?m)^EXPOSE .*\b` + regexp.QuoteMeta(p) + `(\s|$)`).MatchString(df) {
			t.Errorf("Dockerfile does not EXPOSE %s", p)
		}
	}
	checkXFlags(t, "Dockerfile", df)
}

func TestMakefileStamp(t *testing.T) {
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	mk := string(b)
	checkXFlags(t, "Makefile", mk)
	if !strings.Contains(mk, `-ldflags "$(LDFLAGS)"`) {
		t.Error("make build does not pass $(LDFLAGS)")
	}
	if !regexp.MustCompile(`(?m)^image:`).MatchString(mk) {
		t.Error("no make image target")
	}
}

func checkXFlags(t *testing.T, file, text string) {
	t.Helper()
	var vars []string
	for _, m := range xFlag.FindAllStringSubmatch(text, -1) {
		vars = append(vars, m[1])
	}
	for _, want := range []string{"github.com/edgegate/edgegate/gateway.Version", "github.com/edgegate/edgegate/gateway.Commit"} {
		found := false
		for _, v := range vars {
			found = found || v == want
		}
		if !found {
			t.Errorf("%s does not set %s with -X (sets %v)", file, want, vars)
		}
	}
}

// TestVersionStamp builds edgegate as the image does (static, -X flags) and runs
// `edgegate --version` and `edgegate version`.
func TestVersionStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the edgegate binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "edgegate")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X github.com/edgegate/edgegate/gateway.Version=v9.8.7-test -X github.com/edgegate/edgegate/gateway.Commit=0123456789ab",
		"-o", bin, "./cmd/edgegate")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := "edgegate v9.8.7-test (commit 0123456789ab, " + runtime.Version()
	for _, arg := range []string{"--version", "version"} {
		out, err := exec.CommandContext(ctx, bin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("edgegate %s: %v\n%s", arg, err, out)
		}
		if !strings.HasPrefix(string(out), want) {
			t.Errorf("edgegate %s = %q, want it to start with %q", arg, out, want)
		}
	}
	// Static: what distroless/static (no libc) needs.
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CGO_ENABLED=0") {
		t.Errorf("the binary is not built with CGO_ENABLED=0:\n%s", out)
	}
}
