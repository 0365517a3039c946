// Package clients_test runs the TypeScript and Python examples against a gateway
// in this process, so that `make test` covers the generated stubs of other
// languages. Each test is skipped when its runtime or packages are absent
// (node and `npm ci` in clients/; python3 with grpcio and protobuf).
package clients_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/protocols"
	_ "github.com/edgegate/edgegate/protocols/all"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// paho's client keeps a goroutine a moment after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch"),
	)
}

// kitchen is a gateway with one MQTT fryer that has published three readings and
// listens for writes.
type kitchen struct {
	grpc   string
	writes chan string
}

func startKitchen(t *testing.T) *kitchen {
	t.Helper()
	cfg, err := config.Parse([]byte(`
gateway: {id: clients-test}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
devices:
  - {id: fryer-1, protocol: mqtt, points: [{name: oil_temp, unit: "°C"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g := gatewaytest.Start(t, cfg).Gateway
	k := &kitchen{grpc: g.GRPCAddr().String(), writes: make(chan string, 8)}
	mqttAddr := g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
	fryer := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("fryer-1").SetAutoReconnect(false))
	if tok := fryer.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt: %v", tok.Error())
	}
	t.Cleanup(func() { fryer.Disconnect(100) })
	if tok := fryer.Subscribe("devices/fryer-1/+/set", 1, func(_ paho.Client, m paho.Message) {
		k.writes <- m.Topic() + "=" + string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}
	for _, v := range []string{"171.5", "176.75", "182.25"} {
		if tok := fryer.Publish("devices/fryer-1/oil_temp", 1, false, v); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	return k
}

// run runs a command with a deadline and returns its stdout lines.
func run(t *testing.T, dir string, name string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// checkReadings checks the three fryer readings the examples print first.
func checkReadings(t *testing.T, lines []string) {
	t.Helper()
	if len(lines) < 4 {
		t.Fatalf("output %q", lines)
	}
	want := []float64{171.5, 176.75, 182.25}
	for i, w := range want {
		var m struct {
			Sequence string  `json:"sequence"`
			Device   string  `json:"device"`
			Point    string  `json:"point"`
			Unit     string  `json:"unit"`
			Plain    float64 `json:"plain"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatalf("line %d %q: %v", i, lines[i], err)
		}
		if m.Device != "fryer-1" || m.Point != "oil_temp" || m.Plain != w || m.Unit != "°C" || m.Sequence == "" {
			t.Errorf("line %d: %+v, want oil_temp %v", i, m, w)
		}
	}
	var d struct {
		Devices []struct{ ID string } `json:"devices"`
	}
	if err := json.Unmarshal([]byte(lines[3]), &d); err != nil || len(d.Devices) != 1 || d.Devices[0].ID != "fryer-1" {
		t.Errorf("devices line %q: %v", lines[3], err)
	}
}

// TestTypeScriptExample compiles the TypeScript example with tsc and runs it on
// Node.js: it subscribes, lists the devices and writes the fryer's heater off.
func TestTypeScriptExample(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	tsc := filepath.Join("node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Skip("clients/node_modules is missing: run npm ci in clients/")
	}
	dir, _ := os.Getwd()
	// Compile into a directory of the test's own, so that parallel runs do not
	// share output.
	out := t.TempDir()
	run(t, dir, tsc, "-p", "tsconfig.json", "--outDir", out)
	// The compiled example imports @bufbuild/... from clients/node_modules: link
	// it next to the output.
	if err := os.Symlink(filepath.Join(dir, "node_modules"), filepath.Join(out, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "package.json"), []byte(`{"type": "module"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	k := startKitchen(t)
	lines := run(t, dir, node, filepath.Join(out, "example", "subscribe.js"),
		"--server", k.grpc, "--device", "fryer-*", "--count", "3", "--write", "fryer-1/heater=false")
	checkReadings(t, lines)
	if len(lines) != 5 || lines[4] != `{"wrote":"fryer-1/heater"}` {
		t.Errorf("write line: %q", lines)
	}
	select {
	case w := <-k.writes:
		if w != "devices/fryer-1/heater/set=false" {
			t.Errorf("the device got %q", w)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the TypeScript write did not reach the device")
	}
}

// python finds a python3 that has grpcio and protobuf.
func python(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import grpc, google.protobuf").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 with grpcio and protobuf (Debian: python3-grpcio python3-protobuf)")
	return ""
}

// TestPythonExample runs the Python example on the generated stubs.
func TestPythonExample(t *testing.T) {
	py := python(t)
	k := startKitchen(t)
	dir, _ := os.Getwd()
	lines := run(t, dir, py, filepath.Join("python", "example.py"), "--server", k.grpc, "--device", "fryer-*", "--count", "3")
	checkReadings(t, lines)
}
