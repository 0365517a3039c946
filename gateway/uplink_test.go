package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/protocols"
	"github.com/nats-io/nats-server/v2/server"
)

// TestUplinkWired: a gateway with an uplink section forwards what its devices
// publish to the hub, and shows the uplink on /status and /metrics.
func TestUplinkWired(t *testing.T) {
	hub, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() {
		hub.Shutdown()
		hub.WaitForShutdown()
	})
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: site-7, data_dir: %s, shutdown_timeout: 5s}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt: {listeners: [{type: tcp, address: 127.0.0.1:0}], allow_anonymous: true}
uplink: {nats: {url: %s, create_streams: true}}
`, t.TempDir(), hub.ClientURL())))
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, cfg).Gateway
	c := mqttClient(t, g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String(), "dev")
	for i := range 5 {
		pub(t, c, "devices/pump/flow", 1, fmt.Sprint(i))
	}
	type status struct {
		LastSequence uint64 `json:"last_sequence"`
		Uplink       *struct {
			Connected     bool   `json:"connected"`
			AckedSequence uint64 `json:"acked_sequence"`
			Backlog       uint64 `json:"backlog"`
		} `json:"uplink"`
	}
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
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var st status
		if err := json.Unmarshal(get("/status"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uplink == nil {
			t.Fatal("/status has no uplink")
		}
		if st.Uplink.Connected && st.Uplink.AckedSequence == st.LastSequence && st.Uplink.Backlog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uplink did not catch up: %+v last %d", *st.Uplink, st.LastSequence)
		}
		<-tick.C
	}
	metrics := string(get("/metrics"))
	for _, want := range []string{"edgegate_uplink_connected 1", "edgegate_uplink_backlog_messages 0", `edgegate_consumer_lag{consumer="uplink"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
