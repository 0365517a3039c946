package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/internal/mosquittotest"
	"github.com/edgegate/edgegate/internal/testwait"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestNorthboundWired: what a device publishes reaches the external broker as
// JSON on the templated topic, a command on {topic}/set reaches the device
// through the gateway's write path, and /status and /metrics show the link.
func TestNorthboundWired(t *testing.T) {
	b := mosquittotest.Start(t)
	yaml := fmt.Sprintf(`
gateway: {id: site-7, data_dir: %s, shutdown_timeout: 5s}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
northbound:
  - name: uns
    mqtt: {url: %s, reconnect_min: 20ms, reconnect_max: 200ms}
    match: {devices: ["pump"]}
    topic: "sites/{gateway}/{device}/{point}"
    accept_commands: true
`, t.TempDir(), b.URL())
	g := gatewaytest.StartYAML(t, yaml).Gateway

	var mu sync.Mutex
	var up, down []string
	central := mqttClient(t, b.Addr(), "central")
	if tok := central.Subscribe("sites/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		up = append(up, m.Topic()+" "+string(m.Payload()))
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	dev := mqttClient(t, g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String(), "pump")
	if tok := dev.Subscribe("devices/pump/+/set", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		down = append(down, m.Topic()+" "+string(m.Payload()))
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub(t, dev, "devices/pump/flow", 1, "21.5")
	pub(t, dev, "devices/other/flow", 1, "1") // not matched
	testwait.For(t, 10*time.Second, "the reading on the external broker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(up) > 0
	})
	mu.Lock()
	var m pb.Message
	if topic, payload, _ := strings.Cut(up[0], " "); len(up) != 1 || topic != "sites/site-7/pump/flow" ||
		protojson.Unmarshal([]byte(payload), &m) != nil || m.GetDevice() != "pump" || m.GetValue().GetDoubleValue() != 21.5 || m.GetSequence() == 0 {
		t.Errorf("the broker got %q", up)
	}
	mu.Unlock()

	pub(t, central, "sites/site-7/pump/flow/set", 1, "12")
	testwait.For(t, 10*time.Second, "the command to reach the device", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(down) > 0
	})
	mu.Lock()
	if len(down) != 1 || down[0] != "devices/pump/flow/set 12" {
		t.Errorf("the device got %q", down)
	}
	mu.Unlock()

	base := "http://" + g.HTTPAddr().String()
	get := func(path string) []byte {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	var st struct {
		LastSequence uint64 `json:"last_sequence"`
		Northbound   []struct {
			Name          string `json:"name"`
			Connected     bool   `json:"connected"`
			AckedSequence uint64 `json:"acked_sequence"`
			Accepted      uint64 `json:"commands_accepted"`
		} `json:"northbound"`
	}
	testwait.For(t, 10*time.Second, "/status to show the link caught up", func() bool {
		if err := json.Unmarshal(get("/status"), &st); err != nil {
			t.Fatal(err)
		}
		return len(st.Northbound) == 1 && st.Northbound[0].AckedSequence == st.LastSequence
	})
	if n := st.Northbound[0]; n.Name != "uns" || !n.Connected || n.Accepted != 1 {
		t.Errorf("/status northbound: %+v", n)
	}
	metrics := string(get("/metrics"))
	for _, want := range []string{
		`edgegate_northbound_connected{name="uns"} 1`, `edgegate_northbound_published_total{name="uns"} 1`,
		`edgegate_northbound_backlog_messages{name="uns"} 0`, `edgegate_northbound_commands_total{name="uns",outcome="accepted"} 1`,
		`edgegate_northbound_reconnects_total{name="uns"} 0`, `edgegate_consumer_lag{consumer="northbound-uns"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A reload of the same file changes nothing; a changed link needs a restart.
	if res, err := g.Reload(t.Context(), gatewaytest.Parse(t, yaml)); err != nil || len(res.NeedsRestart) != 0 {
		t.Errorf("reload of the same config: %+v, %v", res, err)
	}
	changed := strings.Replace(yaml, "sites/{gateway}", "uns/{gateway}", 1)
	if res, err := g.Reload(t.Context(), gatewaytest.Parse(t, changed)); err != nil || strings.Join(res.NeedsRestart, ",") != "northbound" {
		t.Errorf("reload with another topic: %+v, %v", res, err)
	}
}
