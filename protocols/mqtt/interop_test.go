package mqtt

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// TestMosquittoPub publishes with Debian's mosquitto_pub, a client written
// independently of the Go libraries the other tests use, in MQTT 3.1.1 and 5.
func TestMosquittoPub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub is not installed (Debian package mosquitto-clients)")
	}
	cfg := testConfig()
	cfg.AllowAnonymous = false
	cfg.Users = []UserConfig{{Username: "site", PasswordHash: hash(t, "pw"), Publish: []string{"devices/#"}}}
	e := start(t, cfg)
	host, port, _ := net.SplitHostPort(e.addr())
	for _, c := range []struct {
		version, topic, payload string
		qos                     string
		want                    bridge.Value
	}{
		{"mqttv311", "devices/mosq-3/temp", "21.5", "1", bridge.Double(21.5)},
		{"mqttv5", "devices/mosq-5/temp", `{"value": 7, "unit": "bar"}`, "2", bridge.Int(7)},
		{"mqttv5", "devices/mosq-5", `{"a": true, "b": "x"}`, "1", bridge.Bool(true)},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-V", c.version, "-q", c.qos,
			"-u", "site", "-P", "pw", "-t", c.topic, "-m", c.payload).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("mosquitto_pub -V %s: %v: %s", c.version, err, out)
		}
		m := e.next(1)[0]
		if m.Labels[labelTopic] != c.topic || !m.Value.Equal(c.want) {
			t.Errorf("mosquitto_pub -V %s %s: got %s = %#v", c.version, c.topic, m.Labels[labelTopic], m.Value)
		}
		if c.topic == "devices/mosq-5" {
			e.next(1) // the object's second point
		}
	}
	// Refused with the wrong password: mosquitto_pub exits non-zero.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-V", "mqttv5", "-u", "site", "-P", "bad",
		"-t", "devices/x/y", "-m", "1").CombinedOutput(); err == nil {
		t.Errorf("mosquitto_pub with a bad password succeeded: %s", out)
	}
}

// TestMosquittoClientIDTakeover: mosquitto_pub logged in as pos-1 with the client id
// of pos-2's kept session is refused, in 3.1.1 and 5 (issue 19.2), and says why.
func TestMosquittoClientIDTakeover(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub is not installed (Debian package mosquitto-clients)")
	}
	e := start(t, sessionConfig(t))
	awaySession(t, e, 4, dialTCP(e.addr()), "pos-2", "pos-2", "pw2", "devices/pos-2/+/set")
	host, port, _ := net.SplitHostPort(e.addr())
	for _, version := range []string{"mqttv311", "mqttv5"} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-V", version, "-i", "pos-2", "-c",
			"-u", "pos-1", "-P", "s3cret", "-t", "devices/pos-1/temp", "-m", "1").CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "identifier") {
			t.Errorf("mosquitto_pub -V %s as pos-1 with client id pos-2: %v: %s", version, err, out)
		}
	}
	if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedClientIDTaken)); n != 2 {
		t.Errorf("refused for a taken client id: %v, want 2", n)
	}
}
