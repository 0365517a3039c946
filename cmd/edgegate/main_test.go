package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/proto"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "edgegate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	good := writeFile(t, "gateway: {id: store-0042}\nmqtt: {listeners: [{type: tcp, address: 127.0.0.1:1883}]}\n")
	if code, out, errOut := runCmd(t, "check", "--config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check good = %d %q %q", code, out, errOut)
	}
	bad := writeFile(t, `
grpc: {listen: 0.0.0.0:50051}
devices:
  - {id: boiler-1, protocol: bacnet}
`)
	code, _, errOut := runCmd(t, "check", "--config", bad)
	if code != 1 {
		t.Errorf("check bad exit = %d", code)
	}
	for _, want := range []string{"2 problem(s)", "grpc: listen:", `device "boiler-1": protocol: unknown protocol "bacnet"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, _ := runCmd(t, "check"); code != 2 {
		t.Errorf("check without --config exit = %d, want 2", code)
	}
	if code, _, _ := runCmd(t, "check", "--config", filepath.Join(t.TempDir(), "missing.yaml")); code != 1 {
		t.Errorf("missing file exit = %d, want 1", code)
	}
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCmd(t); code != 2 {
		t.Errorf("no args exit = %d", code)
	}
	if code, _, errOut := runCmd(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command = %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "tail", "--server", "192.0.2.1:50051"); code != 2 || !strings.Contains(errOut, "--plaintext") {
		t.Errorf("plaintext to a remote server = %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "tail", "--shed", "sometimes"); code != 2 || !strings.Contains(errOut, "--shed") {
		t.Errorf("tail with an unknown shed policy = %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "tail", "--rate", "-1"); code != 2 || !strings.Contains(errOut, "--rate") {
		t.Errorf("tail with a negative rate = %d %q", code, errOut)
	}
	if code, _, _ := runCmd(t, "write", "a", "b"); code != 2 {
		t.Errorf("write with two args exit = %d", code)
	}
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		typ, in string
		want    *pb.Value
		bad     bool
	}{
		{"auto", "true", &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: true}}, false},
		{"auto", "42", &pb.Value{Kind: &pb.Value_IntValue{IntValue: 42}}, false},
		{"auto", "21.5", &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 21.5}}, false},
		{"auto", "on", &pb.Value{Kind: &pb.Value_StringValue{StringValue: "on"}}, false},
		{"auto", "1", &pb.Value{Kind: &pb.Value_IntValue{IntValue: 1}}, false},
		{"uint", "18446744073709551615", &pb.Value{Kind: &pb.Value_UintValue{UintValue: 1<<64 - 1}}, false},
		{"string", "42", &pb.Value{Kind: &pb.Value_StringValue{StringValue: "42"}}, false},
		{"bytes", "AAH/", &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: []byte{0, 1, 255}}}, false},
		{"int", "x", nil, true},
		{"float", "1", nil, true},
	} {
		got, err := parseValue(c.typ, c.in)
		if c.bad {
			if err == nil {
				t.Errorf("parseValue(%s, %q) accepted", c.typ, c.in)
			}
			continue
		}
		if err != nil || !proto.Equal(got, c.want) {
			t.Errorf("parseValue(%s, %q) = %v, %v; want %v", c.typ, c.in, got, err, c.want)
		}
	}
}

// serve refuses a device past gateway.max_devices, so check must as well.
func TestCheckAppliesMaxDevices(t *testing.T) {
	var b strings.Builder
	b.WriteString("gateway: {max_devices: 2}\ndevices:\n")
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&b, "  - {id: pos-%d, protocol: mqtt}\n", i)
	}
	code, out, errOut := runCmd(t, "check", "--config", writeFile(t, b.String()))
	if code != 1 || !strings.Contains(errOut, "gateway: max_devices: the config declares 3 devices, more than the limit of 2") {
		t.Errorf("check = %d %q %q, want 1 and a problem naming max_devices", code, out, errOut)
	}
}

// check stops on SIGINT or SIGTERM (main cancels the context) instead of parsing
// a large file to the end.
func TestCheckStopsWhenTheContextEnds(t *testing.T) {
	var b strings.Builder
	b.WriteString("devices:\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&b, "  - {id: pos-%d, protocol: mqtt}\n", i)
	}
	file := writeFile(t, b.String())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"check", "--config", file}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "context canceled") || out.Len() != 0 {
		t.Errorf("check with an ended context = %d %q %q, want 1 and context canceled", code, out.String(), errOut.String())
	}
}
