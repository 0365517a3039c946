package functions

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestABIProtoMatchesCode: examples/functions/abi.proto, compiled by protoc, has the
// field numbers and types the codec uses.
func TestABIProtoMatchesCode(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc is not installed (Debian: protobuf-compiler)")
	}
	out := filepath.Join(t.TempDir(), "abi.pb")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, protoc, "-I", "../proto", "-I", "../examples/functions", "-I", "/usr/include",
		"--include_imports", "--descriptor_set_out="+out, "abi.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	fields := map[string]*descriptorpb.FieldDescriptorProto{}
	for _, f := range set.File {
		for _, m := range f.MessageType {
			for _, fd := range m.Field {
				fields[f.GetPackage()+"."+m.GetName()+"."+fd.GetName()] = fd
			}
		}
	}
	for name, want := range map[string]struct {
		num int32
		typ descriptorpb.FieldDescriptorProto_Type
	}{
		"edgegate.functions.v1.Batch.messages":  {fieldMessages, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE},
		"edgegate.functions.v1.Output.messages": {fieldMessages, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE},
		"edgegate.functions.v1.Output.writes":   {fieldWrites, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE},
		"edgegate.functions.v1.Output.drop":     {fieldDrop, descriptorpb.FieldDescriptorProto_TYPE_UINT32},
		"edgegate.functions.v1.Output.error":    {fieldError, descriptorpb.FieldDescriptorProto_TYPE_STRING},
	} {
		fd := fields[name]
		if fd == nil || fd.GetNumber() != want.num || fd.GetType() != want.typ {
			t.Errorf("%s: %v; want number %d type %v", name, fd, want.num, want.typ)
		}
	}
}

// interopScript decodes the Batch on stdin with Python's protobuf and prints it as
// JSON, then prints an Output in hex: the ABI as a module in another language,
// with another protobuf library, sees it.
const interopScript = `
import sys, json
sys.path.insert(0, sys.argv[1])
import abi_pb2
from edgegate.v1 import gateway_pb2
batch = abi_pb2.Batch()
batch.ParseFromString(sys.stdin.buffer.read())
seen = [{"device": m.device, "point": m.point, "kind": m.value.WhichOneof("kind"),
         "double": m.value.double_value, "int": m.value.int_value, "labels": dict(m.labels),
         "source_time": m.source_time.seconds, "has_gateway_time": m.HasField("gateway_time")} for m in batch.messages]
out = abi_pb2.Output()
d = out.messages.add()
d.device, d.point, d.unit = "fryer-1", "oil_temp_f", "°F"
d.value.double_value = 356.0
d.labels["from"] = "python"
d.priority = gateway_pb2.PRIORITY_HIGH
w = out.writes.add()
w.device, w.point = "fryer-1", "setpoint"
w.value.int_value = 170
out.drop.extend([1])
print(json.dumps(seen))
print(out.SerializeToString().hex())
`

// TestABIInteropPython: a batch the gateway encodes decodes in Python's protobuf,
// and an Output Python encodes decodes in the gateway.
func TestABIInteropPython(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc is not installed (Debian: protobuf-compiler)")
	}
	python := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import google.protobuf").Run() == nil {
			python = path
			break
		}
	}
	if python == "" {
		t.Skip("no python3 with google.protobuf (Debian: python3-protobuf)")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	gen := exec.CommandContext(ctx, protoc, "-I", "../proto", "-I", "../examples/functions", "-I", "/usr/include",
		"--python_out="+dir, "abi.proto", "edgegate/v1/gateway.proto")
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	batch := encodeBatch(nil, []*bridge.Message{
		{Device: "fryer-1", Point: "oil_temp", Value: bridge.Double(180.5), Labels: map[string]string{"line": "a"}, SourceTime: time.Unix(1700000000, 0)},
		{Device: "fryer-1", Point: "count", Value: bridge.Int(-7)},
	})
	cmd := exec.CommandContext(ctx, python, "-c", interopScript, dir)
	cmd.Stdin = bytes.NewReader(batch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	if len(lines) != 2 {
		t.Fatalf("python printed %q", stdout)
	}
	var seen []struct {
		Device, Point, Kind string
		Double              float64
		Int                 int64
		Labels              map[string]string
		SourceTime          int64 `json:"source_time"`
		HasGatewayTime      bool  `json:"has_gateway_time"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &seen); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0].Device != "fryer-1" || seen[0].Kind != "double_value" || seen[0].Double != 180.5 ||
		seen[0].Labels["line"] != "a" || seen[0].SourceTime != 1700000000 || seen[0].HasGatewayTime ||
		seen[1].Kind != "int_value" || seen[1].Int != -7 {
		t.Errorf("python read the batch as %+v", seen)
	}
	raw, err := hex.DecodeString(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeOutput(raw)
	if err != nil {
		t.Fatalf("decoding python's output: %v", err)
	}
	if len(out.messages) != 1 || len(out.writes) != 1 || len(out.drop) != 1 || out.drop[0] != 1 {
		t.Fatalf("decoded %+v", out)
	}
	m := out.messages[0]
	if m.Device != "fryer-1" || m.Point != "oil_temp_f" || !m.Value.Equal(bridge.Double(356)) || m.Unit != "°F" ||
		m.Priority != bridge.PriorityHigh || m.Labels["from"] != "python" {
		t.Errorf("message %+v", m)
	}
	if w := out.writes[0]; w.device != "fryer-1" || w.point != "setpoint" || !w.value.Equal(bridge.Int(170)) {
		t.Errorf("write %+v", w)
	}
}
