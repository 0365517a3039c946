package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/protocols"
)

const limitsBase = `gateway: {id: limits, max_devices: 3}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt:
  listeners: [{type: tcp, address: 127.0.0.1:0}]
  allow_anonymous: true
`

func reloads(t *testing.T, g *gateway.Gateway, result string) float64 {
	t.Helper()
	return metricAt(t, g.HTTPAddr().String(), `edgegate_config_reloads_total{result="`+result+`"}`)
}

func deviceIDs(g *gateway.Gateway) string {
	var ids []string
	for _, d := range g.Hub().Devices(nil) {
		ids = append(ids, d.ID)
	}
	return strings.Join(ids, ",")
}

// The registry keeps the devices it has seen; a reload that would take it past
// max_devices used to declare devices until the registry was full and log "no
// change". It is refused whole now: no device declared, the running config kept.
func TestReloadPastMaxDevicesIsRefusedWhole(t *testing.T) {
	g := gatewaytest.StartYAML(t, limitsBase+"devices:\n  - {id: a, protocol: mqtt}\n  - {id: b, protocol: mqtt}\n").Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mqtt := g.Adapter("mqtt")
	// Two devices, within max_devices 3 on their own, but a and b stay known.
	next := gatewaytest.Parse(t, limitsBase+"devices:\n  - {id: c, protocol: mqtt}\n  - {id: d, protocol: mqtt}\n")
	res, err := g.Reload(ctx, next)
	if !errors.Is(err, gateway.ErrReloadRefused) || !strings.Contains(err.Error(), "gateway: max_devices: the running gateway knows 2 devices (removed ones stay until a restart) and the config adds 2, more than the limit of 3") {
		t.Fatalf("reload = %v, %v; want refused naming max_devices", res, err)
	}
	if res.String() != "no change" {
		t.Errorf("a refused reload reports %q", res)
	}
	if got := deviceIDs(g); got != "a,b" {
		t.Errorf("devices after a refused reload = %s, want a,b", got)
	}
	if g.Adapter("mqtt") != mqtt {
		t.Error("the MQTT adapter was replaced by a refused reload")
	}
	if n := reloads(t, g, "refused"); n != 1 {
		t.Errorf("edgegate_config_reloads_total{result=refused} = %v, want 1", n)
	}
	// One more device fits.
	fits := gatewaytest.Parse(t, limitsBase+"devices:\n  - {id: a, protocol: mqtt}\n  - {id: c, protocol: mqtt}\n")
	if _, err := g.Reload(ctx, fits); err != nil {
		t.Fatal(err)
	}
	if got := deviceIDs(g); got != "a,b,c" {
		t.Errorf("devices = %s, want a,b,c", got)
	}
}

func TestReloadMovingADeviceToAnotherProtocolIsRefused(t *testing.T) {
	g := gatewaytest.StartYAML(t, limitsBase+"devices:\n  - {id: a, protocol: mqtt}\n").Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := gatewaytest.Parse(t, limitsBase+"coap: {listeners: [{type: udp, address: 127.0.0.1:0}]}\ndevices:\n  - {id: a, protocol: coap}\n")
	_, err := g.Reload(ctx, next)
	if !errors.Is(err, gateway.ErrReloadRefused) || !strings.Contains(err.Error(), `device "a": protocol: the running gateway has it as a mqtt device`) {
		t.Fatalf("reload: %v; want refused naming the device", err)
	}
	if g.Adapter("coap") != nil {
		t.Error("coap started by a refused reload")
	}
}

// A reload that fails while applying is undone: here CoAP starts, then MQTT needs
// a restart for its new TLS listener, whose certificate is missing. CoAP stops
// again and MQTT runs as before, on the old config.
func TestReloadThatFailsHalfWayIsUndone(t *testing.T) {
	g := gatewaytest.StartYAML(t, limitsBase).Gateway
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	missing := filepath.Join(t.TempDir(), "missing")
	next := gatewaytest.Parse(t, strings.Replace(limitsBase,
		"listeners: [{type: tcp, address: 127.0.0.1:0}]",
		fmt.Sprintf("listeners: [{type: tcp, address: 127.0.0.1:0}, {type: tls, address: 127.0.0.1:0, tls: {cert_file: %s.crt, key_file: %s.key}}]", missing, missing), 1)+
		"coap: {listeners: [{type: udp, address: 127.0.0.1:0}]}\n")
	res, err := g.Reload(ctx, next)
	if err == nil || !strings.Contains(err.Error(), "mqtt stopped and could not start again") || !strings.Contains(err.Error(), "undone") {
		t.Fatalf("reload = %v, %v; want failed and undone", res, err)
	}
	if g.Adapter("coap") != nil {
		t.Error("coap still runs after the reload was undone")
	}
	a := g.Adapter("mqtt")
	if a == nil {
		t.Fatal("mqtt does not run after the reload was undone")
	}
	select {
	case <-a.(protocols.Readier).Ready():
	case <-ctx.Done():
		t.Fatal("mqtt never ready again")
	}
	addrs := a.(protocols.Listening).Addrs()
	if len(addrs) != 1 {
		t.Fatalf("mqtt listens on %v, want the old config's one listener", addrs)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addrs[0].String()))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect after the undo: %v", tok.Error())
	}
	c.Disconnect(100)
	if n := reloads(t, g, "failed"); n != 1 {
		t.Errorf("edgegate_config_reloads_total{result=failed} = %v, want 1", n)
	}
}
