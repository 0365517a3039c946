package clients_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStubsMatchProto regenerates every language's stubs from gateway.proto as
// `make proto` and `make clients` do, into a temporary directory, and compares
// them with the committed ones: a change to the proto without regenerating fails
// here instead of in a workload. Lines that name a generator's version are not
// compared (another protoc release writes another version, the same code). Skipped
// when protoc or a plugin is missing (CI installs them: protobuf-compiler,
// libprotobuf-dev, protobuf-compiler-grpc, npm ci in clients/).
func TestStubsMatchProto(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc is not installed (Debian: protobuf-compiler)")
	}
	if _, err := os.Stat("/usr/include/google/protobuf/timestamp.proto"); err != nil {
		t.Skip("protobuf's well-known types are not installed (Debian: libprotobuf-dev)")
	}
	grpcPython, err := exec.LookPath("grpc_python_plugin")
	if err != nil {
		t.Skip("grpc_python_plugin is not installed (Debian: protobuf-compiler-grpc)")
	}
	es, err := filepath.Abs("node_modules/.bin/protoc-gen-es")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(es); err != nil {
		t.Skip("clients/node_modules is missing: run npm ci in clients/")
	}
	goTool := func(name string) string {
		out, err := exec.Command("go", "tool", "-n", name).Output()
		if err != nil {
			t.Skipf("go tool -n %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	genGo, genGoGRPC := goTool("protoc-gen-go"), goTool("protoc-gen-go-grpc")

	out := t.TempDir()
	for _, d := range []string{"go", "ts", "python"} {
		if err := os.Mkdir(filepath.Join(out, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(protoc, "-I", "proto", "-I", "/usr/include",
		"--plugin=protoc-gen-go="+genGo, "--go_out=paths=source_relative:"+filepath.Join(out, "go"),
		"--plugin=protoc-gen-go-grpc="+genGoGRPC, "--go-grpc_out=paths=source_relative:"+filepath.Join(out, "go"),
		"--plugin=protoc-gen-es="+es, "--es_out="+filepath.Join(out, "ts"), "--es_opt=target=ts,import_extension=js",
		"--python_out="+filepath.Join(out, "python"), "--pyi_out="+filepath.Join(out, "python"),
		"--plugin=protoc-gen-grpc_python="+grpcPython, "--grpc_python_out="+filepath.Join(out, "python"),
		"proto/edgegate/v1/gateway.proto")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for committed, fresh := range map[string]string{
		"../proto/edgegate/v1/gateway.pb.go":      "go/edgegate/v1/gateway.pb.go",
		"../proto/edgegate/v1/gateway_grpc.pb.go": "go/edgegate/v1/gateway_grpc.pb.go",
		"ts/gen/edgegate/v1/gateway_pb.ts":        "ts/edgegate/v1/gateway_pb.ts",
		"python/edgegate/v1/gateway_pb2.py":       "python/edgegate/v1/gateway_pb2.py",
		"python/edgegate/v1/gateway_pb2.pyi":      "python/edgegate/v1/gateway_pb2.pyi",
		"python/edgegate/v1/gateway_pb2_grpc.py":  "python/edgegate/v1/gateway_pb2_grpc.py",
	} {
		want, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, fresh))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(withoutVersions(want), withoutVersions(got)) {
			t.Errorf("%s is not what gateway.proto generates: run make proto clients", committed)
		}
	}
}

// withoutVersions drops the lines that name a generator's version.
func withoutVersions(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		l := string(line)
		if strings.Contains(l, "protoc ") && strings.Contains(l, "v") && (strings.HasPrefix(l, "//") || strings.HasPrefix(l, "#")) ||
			strings.Contains(l, "protoc-gen-") && strings.HasPrefix(l, "//") ||
			strings.Contains(l, "Protobuf Python Version") || strings.Contains(l, "GRPC_GENERATED_VERSION") ||
			strings.Contains(l, "ValidateProtobufRuntimeVersion") {
			continue
		}
		out = append(out, line)
	}
	return bytes.Join(out, []byte("\n"))
}
