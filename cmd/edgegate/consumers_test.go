package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
)

// TestConsumersAndPagedRead: read follows the pages of a Read of every point;
// consumers lists the durable consumer a tail made, and consumers delete forgets it.
func TestConsumersAndPagedRead(t *testing.T) {
	g := startDurable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server := g.GRPCAddr().String()
	in := g.Hub().Ingest(bridge.ProtocolMQTT)
	for i := range 5 {
		if err := in.Publish(ctx, &bridge.Message{Device: fmt.Sprint("d", i), Point: "p", Value: bridge.Int(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	cmd := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		n := 1 // the command's words, before its flags
		if len(args) > 1 && args[1] == "delete" {
			n = 2
		}
		code := run(ctx, append(args[:n:n], append([]string{"--server", server}, args[n:]...)...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// Five points in pages of two: three requests, every point once.
	code, out, errOut := cmd("read", "--page-size", "2")
	if code != 0 || strings.Count(out, "\n") != 5 || !strings.Contains(out, `"d0"`) || !strings.Contains(out, `"d4"`) {
		t.Fatalf("read = %d %q %q", code, out, errOut)
	}

	// A tail with a consumer creates it, and acknowledges what it printed.
	tailConsumer(t, ctx, server, "kds", 5)

	code, out, errOut = cmd("consumers", "--json")
	var c struct {
		Name         string `json:"name"`
		Sequence     string `json:"sequence"`
		Acknowledged bool   `json:"acknowledged"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &c) != nil || c.Name != "kds" || c.Sequence != "5" || !c.Acknowledged {
		t.Fatalf("consumers --json = %d %q %q", code, out, errOut)
	}
	code, out, _ = cmd("consumers")
	if code != 0 || !strings.HasPrefix(out, "CONSUMER") || !strings.Contains(out, "kds") {
		t.Errorf("consumers = %d %q", code, out)
	}
	if code, out, errOut = cmd("consumers", "delete", "kds"); code != 0 || !strings.Contains(out, "kds") {
		t.Fatalf("consumers delete = %d %q %q", code, out, errOut)
	}
	if code, out, _ = cmd("consumers", "--json"); code != 0 || out != "" {
		t.Errorf("after delete: %d %q", code, out)
	}
	if code, _, errOut = cmd("consumers", "delete", "kds"); code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Errorf("delete twice = %d %q", code, errOut)
	}
	if code, _, _ = cmd("consumers", "delete"); code != 2 {
		t.Errorf("delete without a name = %d, want 2", code)
	}
}

// startDurable runs a gateway with a durable log, gRPC on a loopback port.
func startDurable(t *testing.T) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {data_dir: %s}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
`, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	return gatewaytest.Start(t, cfg).Gateway
}
