package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

// browserDeps finds node, playwright-core (clients/node_modules, from `npm ci` in
// clients/) and Debian's chromium, or skips.
func browserDeps(t *testing.T) (node, playwright, chromium string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	playwright, _ = filepath.Abs(filepath.Join("..", "clients", "node_modules", "playwright-core"))
	if _, err := os.Stat(filepath.Join(playwright, "index.mjs")); err != nil {
		t.Skip("playwright-core is not installed: run npm ci in clients/")
	}
	chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	return node, playwright, chromium
}

// TestStatusPageInBrowser loads the status page in a real Chromium against a
// gateway with simulated devices (MQTT fryers, a Modbus fryer from the simulator),
// sees a new device appear and its value change, a numeric point's sparkline and a
// device's state with since-when, filters the live stream, checks at 1280x800 that
// the subscribers table shows its DROPPED column, and keeps screenshots in
// data/artifacts/status-page.png and status-page-1280.png.
func TestStatusPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	node, playwright, chromium := browserDeps(t)

	// A Modbus fryer: oil temperature in a holding register, the heater on a coil.
	fryer3, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fryer3.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fryer3.Stop)
	oil := sim.Point{Register: sim.Holding, Address: 0, Type: "float32"}
	fryer3.Set(1, oil, bridge.Double(176.5))
	fryer3.Set(1, sim.Point{Register: sim.Coil, Address: 0}, bridge.Bool(true))

	closeIdle(t)
	g := startConfig(t, fmt.Sprintf(`
gateway: {id: store-0042, labels: {site: "0042"}}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
modbus: {}
devices:
  - {id: fryer-1, protocol: mqtt, points: [{name: oil_temp, unit: "°C", priority: critical}]}
  - id: fryer-3
    protocol: modbus
    address: tcp://%s
    unit_id: 1
    poll_interval: 200ms
    points:
      - {name: oil_temp, register: holding, address: 0, type: float32, unit: "°C", priority: critical}
      - {name: heater, register: coil, address: 0, writable: true}
`, fryer3.Addr()))
	mqttAddr := g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stops the devices before waiting for them
	device := func(id, topic string, base float64) {
		dev := mqttClient(t, mqttAddr, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(150 * time.Millisecond) // paces the readings
			defer tick.Stop()
			for i := 0; ; i++ {
				tok := dev.Publish(topic, 0, false, fmt.Sprintf("%.1f", base+float64(i%20)/2))
				tok.WaitTimeout(time.Second)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	device("fryer-1", "devices/fryer-1/oil_temp", 171)
	pub(t, mqttClient(t, mqttAddr, "pos-1"), "devices/pos-1/order", 1, "1042: 2x fries, 1x burger")

	artifacts, _ := filepath.Abs(filepath.Join("..", "data", "artifacts"))
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifacts, "status-page.png")
	shot1280 := filepath.Join(artifacts, "status-page-1280.png")
	os.Remove(shot)
	os.Remove(shot1280)
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "status_page.mjs"))
	cmd.Env = append(os.Environ(),
		"PLAYWRIGHT_CORE="+playwright, "CHROMIUM="+chromium, "DEVICE=fryer-2",
		"STATUS_URL=http://"+g.HTTPAddr().String()+"/", "SCREENSHOT="+shot, "SCREENSHOT_1280="+shot1280)
	// Its own process group, so that a timeout ends the browser it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if line == "loaded" {
			// The page is live: now a new device appears.
			device("fryer-2", "devices/fryer-2/oil_temp", 180)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser script: %v\nstdout: %s\nstderr: %s", err, strings.Join(lines, "\n"), stderr.String())
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "ok ") {
		t.Fatalf("browser script said %q", lines)
	}
	for _, f := range []string{shot, shot1280} {
		if fi, err := os.Stat(f); err != nil || fi.Size() < 10000 {
			t.Fatalf("screenshot %s: %v", f, err)
		}
	}
	t.Logf("%s; screenshot %s", lines[len(lines)-1], shot)
}

// startConfig runs a gateway from a YAML config until the test ends.
func startConfig(t *testing.T, yaml string) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g := gatewaytest.Start(t, cfg).Gateway
	return g
}
