package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMQTTConnectEncoding(t *testing.T) {
	b := mqttConnect("fryer-1-0-7")
	// Fixed header: CONNECT, remaining length; then the 3.1.1 variable header,
	// clean session, no user name or password; then the client id.
	if b[0] != 0x10 || int(b[1]) != len(b)-2 {
		t.Fatalf("fixed header % x, length %d", b[:2], len(b))
	}
	if string(b[4:8]) != "MQTT" || b[8] != 4 || b[9] != 0x02 {
		t.Errorf("variable header % x", b[2:12])
	}
	if id := string(b[14:]); id != "fryer-1-0-7" || int(b[12])<<8|int(b[13]) != len(id) {
		t.Errorf("client id %q", id)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 3}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestTLSSection runs the section against this test binary as the gateway.
func TestTLSSection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway and mosquitto for seconds")
	}
	t.Setenv(asGateway, "1")
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	o, err := parseOptions([]string{"--quick", "--only", "tls", "--duration", "300ms", "--gateway", os.Args[0]}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := bench(ctx, o, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"| MQTT TLS logins/s", "| TLS tunnel throughput", "| TLS tunnel round trips/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
}
