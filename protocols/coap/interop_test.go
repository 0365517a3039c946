package coap

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/protocols/payload"
)

// Interop with libcoap's command-line client (Debian's libcoap3-bin, which CI
// installs): it puts values, posts objects block-wise, and observes a point, over
// UDP, TCP and DTLS with a pre-shared key. Skipped where it is not installed.

func libcoap(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install libcoap3-bin)", name)
	}
	return p
}

// runLibcoap runs coap-client and returns its output; the process is bounded by the
// test's wait and stopped by its pid when that passes.
func runLibcoap(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestInteropLibcoap(t *testing.T) {
	bin := libcoap(t, "coap-client-notls")
	e := start(t, testConfig())
	udp, tcp := e.addr(0), e.addr(1)

	// PUT a text value, confirmable, over UDP; then over TCP.
	if out, err := runLibcoap(t, bin, "-m", "put", "-t", "0", "-e", "21.5", "coap://"+udp+"/devices/lib-1/temp"); err != nil {
		t.Fatalf("coap-client put: %v\n%s", err, out)
	}
	if m := e.next(1)[0]; m.Device != "lib-1" || !m.Value.Equal(bridge.Double(21.5)) {
		t.Errorf("got %s/%s = %#v", m.Device, m.Point, m.Value)
	}
	if out, err := runLibcoap(t, bin, "-m", "put", "-t", "0", "-e", "7", "coap+tcp://"+tcp+"/devices/lib-1/count"); err != nil {
		t.Fatalf("coap-client put over TCP: %v\n%s", err, out)
	}
	if m := e.next(1)[0]; !m.Value.Equal(bridge.Int(7)) {
		t.Errorf("over TCP: got %#v", m.Value)
	}

	// POST a JSON object of points block-wise (64-byte blocks), and a CBOR value
	// from a file, non-confirmable.
	var obj strings.Builder
	obj.WriteString(`{"a": 1`)
	for _, p := range []string{"b", "c", "d", "e", "f", "g", "h", "i", "j", "k"} {
		obj.WriteString(`, "` + p + `": {"value": 2.5, "unit": "kPa"}`)
	}
	obj.WriteString("}")
	if out, err := runLibcoap(t, bin, "-m", "post", "-t", "50", "-b", "64", "-e", obj.String(), "coap://"+udp+"/devices/lib-2"); err != nil {
		t.Fatalf("coap-client block-wise post: %v\n%s", err, out)
	}
	got := e.next(11)
	if got[10].Point != "k" || got[10].Unit != "kPa" {
		t.Errorf("last point of the object: %s unit %q", got[10].Point, got[10].Unit)
	}
	cborFile := filepath.Join(t.TempDir(), "v.cbor")
	if err := os.WriteFile(cborFile, payload.AppendCBOR(nil, bridge.Double(-4.1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runLibcoap(t, bin, "-N", "-m", "post", "-t", "60", "-f", cborFile, "coap://"+udp+"/devices/lib-2/c"); err != nil {
		t.Fatalf("coap-client CBOR post: %v\n%s", err, out)
	}
	if m := e.next(1)[0]; !m.Value.Equal(bridge.Double(-4.1)) {
		t.Errorf("CBOR: got %#v", m.Value)
	}

	// A payload that does not parse is 4.00, and reaches nobody.
	out, _ := runLibcoap(t, bin, "-m", "put", "-t", "50", "-e", "{nope", "coap://"+udp+"/devices/lib-1/temp")
	if !strings.Contains(out, "4.00") {
		t.Errorf("bad JSON: coap-client printed %q, want 4.00", out)
	}
	e.none()

	// GET the latest value.
	out, err := runLibcoap(t, bin, "-m", "get", "coap://"+udp+"/devices/lib-1/temp")
	if err != nil || strings.TrimSpace(out) != "21.5" {
		t.Errorf("coap-client get: %q, %v", out, err)
	}

	// Observe a point; a write reaches coap-client as a notification.
	observeWrite(t, e, bin, nil, "coap://"+udp+"/devices/lib-1/setpoint", "lib-1")
}

// observeWrite runs coap-client observing uri, writes to the point until it
// acknowledges, and checks that it printed the value.
func observeWrite(t *testing.T, e *env, bin string, pre []string, uri, device string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// -s, -B: coap-client observes for that many seconds, then deregisters and ends.
	// Long enough for a loaded CI machine to register and write in between.
	args := append(append([]string{}, pre...), "-s", "8", "-B", "8", "-w", uri)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	before := metric(t, e.a.metrics.observations)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// It ends after -s seconds; the context stops it by its pid otherwise.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitFor(t, "coap-client's observation", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("coap-client ended (%v) before its observation was counted; it printed:\n%s", err, out.String())
		default:
		}
		return metric(t, e.a.metrics.observations) > before
	})
	if err := e.a.Write(ctx, device, "setpoint", bridge.Double(19.5)); err != nil {
		t.Errorf("write to coap-client: %v", err)
	}
	<-exited
	if !strings.Contains(out.String(), "19.5") {
		t.Errorf("coap-client printed %q, want the written 19.5", out.String())
	}
	waitFor(t, "the observation to end with coap-client", func() bool {
		return metric(t, e.a.metrics.observations) == before
	})
}

func TestInteropLibcoapDTLS(t *testing.T) {
	bin := libcoap(t, "coap-client-openssl")
	cfg := NewConfig()
	cfg.Listeners = []ListenerConfig{{Type: "dtls", Address: "127.0.0.1:0", PSK: []PSKConfig{
		{Identity: "sensor-9", KeyFile: writeKey(t, "libcoap-secret")},
	}}}
	e := start(t, cfg)
	uri := "coaps://" + e.addr(0)
	psk := []string{"-u", "sensor-9", "-k", "libcoap-secret"}

	if out, err := runLibcoap(t, bin, append(psk, "-m", "put", "-t", "0", "-e", "5", uri+"/devices/sensor-9/temp")...); err != nil {
		t.Fatalf("coap-client-openssl put: %v\n%s", err, out)
	}
	if m := e.next(1)[0]; m.Device != "sensor-9" || !m.Value.Equal(bridge.Int(5)) || m.Labels[labelPeer] != "sensor-9" {
		t.Errorf("got %s = %#v, labels %v", m.Device, m.Value, m.Labels)
	}
	out, _ := runLibcoap(t, bin, append(psk, "-m", "put", "-e", "5", uri+"/devices/sensor-8/temp")...)
	if !strings.Contains(out, "4.03") {
		t.Errorf("writing another device: coap-client printed %q, want 4.03", out)
	}
	out, _ = runLibcoap(t, bin, "-u", "sensor-9", "-k", "wrong", "-B", "3", "-m", "put", "-e", "5", uri+"/devices/sensor-9/temp")
	e.none()
	if strings.Contains(out, "2.04") {
		t.Errorf("a wrong key: coap-client printed %q", out)
	}
	observeWrite(t, e, bin, psk, uri+"/devices/sensor-9/setpoint", "sensor-9")
	waitFor(t, "the DTLS sessions to be counted", func() bool {
		return metric(t, e.a.metrics.sessionsTotal.WithLabelValues("dtls")) >= 3
	})
}

// TestInteropLibcoapDurable: against a durable hub, coap-client's confirmable PUT
// (UDP and TCP) and block-wise POST are acknowledged once on disk, and an
// observation of a device nobody knows is 4.04.
func TestInteropLibcoapDurable(t *testing.T) {
	bin := libcoap(t, "coap-client-notls")
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{Sync: journal.SyncBatch, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	e := startHub(t, testConfig(), bridge.HubConfig{Journal: j, FirstSequence: j.NextSequence()}, nil, nil)
	udp, tcp := e.addr(0), e.addr(1)
	journaled := func(what string) {
		t.Helper()
		if done, err := j.Check(e.hub.LastSequence()); !done || err != nil {
			t.Errorf("%s acknowledged before it was on disk: %v, %v", what, done, err)
		}
	}
	if out, err := runLibcoap(t, bin, "-m", "put", "-t", "0", "-e", "21.5", "coap://"+udp+"/devices/lib-d/temp"); err != nil {
		t.Fatalf("coap-client put: %v\n%s", err, out)
	}
	journaled("a PUT over UDP")
	if out, err := runLibcoap(t, bin, "-m", "put", "-t", "0", "-e", "7", "coap+tcp://"+tcp+"/devices/lib-d/count"); err != nil {
		t.Fatalf("coap-client put over TCP: %v\n%s", err, out)
	}
	journaled("a PUT over TCP")
	obj := `{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10, "k": 11}`
	if out, err := runLibcoap(t, bin, "-m", "post", "-t", "50", "-b", "16", "-e", obj, "coap://"+udp+"/devices/lib-d"); err != nil {
		t.Fatalf("coap-client block-wise post: %v\n%s", err, out)
	}
	journaled("a block-wise POST")
	e.next(13)
	out, _ := runLibcoap(t, bin, "-s", "1", "coap://"+udp+"/devices/nobody/p")
	if !strings.Contains(out, "4.04") {
		t.Errorf("observe a device nobody knows: coap-client printed %q, want 4.04", out)
	}
}
