package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/internal/fulldisk"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/protocols"
)

// A gateway whose durable log cannot write (a real full disk: a tmpfs filled by
// another file) is not ready, and is ready again once a write succeeds after space
// is freed. Needs the right to mount (root in CI).
func TestReadyzFollowsTheDurableLog(t *testing.T) {
	dir := fulldisk.Mount(t, "4m") // unmounted after the gateway stops
	r := gatewaytest.StartYAML(t, `
gateway: {id: test-gw, data_dir: `+filepath.Join(dir, "data")+`}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt:
  listeners: [{type: tcp, address: 127.0.0.1:0}]
  allow_anonymous: true
`)
	httpAddr := "http://" + r.Gateway.HTTPAddr().String()
	mqttAddr := r.Gateway.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, body := get(t, httpAddr+"/readyz"); code != 200 {
		t.Fatalf("/readyz on a healthy log = %d %q", code, body)
	}

	filler := fulldisk.Fill(t, dir)

	// QoS 0 readings never wait for the disk, so the device is not held up while
	// the log fills; the first write the disk refuses makes the log unavailable.
	// The gateway closes a connection whose publish the log could not take; paho
	// may not have noticed yet when the next Publish waits for room to send, so a
	// short write timeout keeps the loop from waiting paho's default 30 s there.
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("sensor-1").
		SetAutoReconnect(false).SetWriteTimeout(100 * time.Millisecond))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer dev.Disconnect(100)
	payload := `"` + strings.Repeat("x", 4000) + `"`
	waitFor(t, ctx, "/readyz 503 on a full disk", func() bool {
		for range 16 {
			dev.Publish("devices/sensor-1/blob", 0, false, payload)
		}
		code, body := get(t, httpAddr+"/readyz")
		if code == 503 && !strings.Contains(body, "durable log unavailable") {
			t.Fatalf("/readyz 503 says %q, not why", body)
		}
		return code == 503
	})
	_, metrics := get(t, httpAddr+"/metrics")
	if !strings.Contains(metrics, "edgegate_journal_unavailable 1") {
		t.Errorf("/metrics lacks edgegate_journal_unavailable 1 while /readyz is 503")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The journal retries with backoff (at most 5 s apart, with jitter): a deadline
	// of its own, whatever the filling took on a loaded machine.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	waitFor(t, ctx, "/readyz 200 once space is freed", func() bool {
		code, _ := get(t, httpAddr+"/readyz")
		return code == 200
	})
	t.Logf("ready again %v after space was freed", time.Since(start).Round(time.Millisecond))
}
