package gateway_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const reportingConfig = `
gateway: {id: rep-gw, shutdown_timeout: 5s}
grpc: {listen: 127.0.0.1:0}
http: {listen: 127.0.0.1:0}
mqtt:
  listeners: [{type: tcp, address: 127.0.0.1:0}]
  allow_anonymous: true
reporting:
  - {devices: "fryer-*", points: oil_temp, deadband: 0.5}
  - {points: vibration, sample_interval: 20ms}
  - {points: "slow_*", sample_interval: 1h}
%s`

// reportingGateway is a running gateway that the test stops itself (stop), so that
// it can watch what a stop publishes.
type reportingGateway struct {
	*running
	stop func() error
}

func startReporting(t *testing.T, extra string) (*reportingGateway, *config.Config) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(reportingConfig, extra)))
	if err != nil {
		t.Fatal(err)
	}
	rg := gatewaytest.Start(t, cfg)
	g := rg.Gateway
	r := &running{g: g, http: g.HTTPAddr().String()}
	r.mqtt = g.Adapter("mqtt").(protocols.Listening).Addrs()[0].String()
	r.cc, err = grpc.NewClient("passthrough:///"+g.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cc.Close() })
	r.client = pb.NewGatewayClient(r.cc)
	return &reportingGateway{running: r, stop: rg.Stop}, cfg
}

// metric reads one series from /metrics; 0 when it is absent.
func (r *running) metric(t *testing.T, series string) float64 {
	t.Helper()
	return metricAt(t, r.http, series)
}

// metricAt reads one series from the /metrics of an HTTP address; 0 when it is
// absent.
func metricAt(t *testing.T, httpAddr, series string) float64 {
	t.Helper()
	_, body := get(t, "http://"+httpAddr+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func number(m *pb.Message) float64 {
	if v, ok := m.GetValue().GetKind().(*pb.Value_IntValue); ok {
		return float64(v.IntValue)
	}
	return m.GetValue().GetDoubleValue()
}

// TestReportingDeadbandAndSampling: an MQTT device's readings reach a gRPC stream
// through the reporting rules. Within the deadband nothing is published; a point
// that changes faster than its sample interval is published at most once an
// interval, always the newest value, and every value is either published or
// counted as replaced. The sampler runs on the wall clock here (the bridge's tests
// check its timing on a fake one), so the test asserts only what holds however
// fast the machine is.
func TestReportingDeadbandAndSampling(t *testing.T) {
	r, _ := startReporting(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := subscribe(t, ctx, r.running, &pb.SubscribeRequest{})
	dev := mqttClient(t, r.mqtt, "fryer-1")

	// Deadband 0.5, from the last published value; then a point no rule matches, to
	// know that the stream has everything before it.
	for _, v := range []string{"180", "180.2", "180.4", "181", "180.8", "180.5"} {
		pub(t, dev, "devices/fryer-1/oil_temp", 1, v)
	}
	pub(t, dev, "devices/fryer-1/door_open", 1, "true")
	var got []float64
	for {
		m := recv(t, stream)
		if m.GetPoint() == "door_open" {
			break
		}
		got = append(got, number(m))
	}
	if fmt.Sprint(got) != "[180 181 180.5]" {
		t.Errorf("oil_temp published %v, want [180 181 180.5]", got)
	}
	if v := r.metric(t, `edgegate_reporting_suppressed_total{reason="deadband"}`); v != 3 {
		t.Errorf("suppressed{deadband} = %v, want 3", v)
	}

	// Sampling: 1 to n as fast as the device can; the newest arrives last.
	const n = 20
	for i := 1; i <= n; i++ {
		pub(t, dev, "devices/fryer-1/vibration", 1, strconv.Itoa(i))
	}
	var seen []float64
	for len(seen) == 0 || seen[len(seen)-1] != n {
		m := recv(t, stream)
		if m.GetPoint() != "vibration" {
			t.Fatalf("unexpected %v", m)
		}
		seen = append(seen, number(m))
	}
	if seen[0] != 1 {
		t.Errorf("the first value %v was not published at once", seen[0])
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("published out of order: %v", seen)
		}
	}
	replaced := r.metric(t, `edgegate_reporting_suppressed_total{reason="sample"}`)
	if float64(len(seen))+replaced != n {
		t.Errorf("%d published (%v) and %v replaced: want %d in all", len(seen), seen, replaced, n)
	}
	waitFor(t, ctx, "nothing held", func() bool { return r.metric(t, "edgegate_reporting_pending") == 0 })
	t.Logf("%d of %d vibration readings published", len(seen), n)
}

// TestReportingReloadAndStop: a value that sampling holds (for an hour) is
// published when the rules are reloaded, and when the gateway stops, before the
// stream ends.
func TestReportingReloadAndStop(t *testing.T) {
	r, cfg := startReporting(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream := subscribe(t, ctx, r.running, &pb.SubscribeRequest{Points: []string{"slow_*"}})
	dev := mqttClient(t, r.mqtt, "sensor-1")

	for _, v := range []string{"1", "2", "3"} {
		pub(t, dev, "devices/sensor-1/slow_temp", 1, v)
	}
	if m := recv(t, stream); number(m) != 1 {
		t.Fatalf("first: %v", m)
	}
	if v := r.metric(t, "edgegate_reporting_pending"); v != 1 {
		t.Fatalf("pending = %v, want 1", v)
	}

	// New rules: what the old ones held is published, and points start afresh.
	next, err := config.Parse([]byte(fmt.Sprintf(reportingConfig, "  - {points: other, deadband: 1}\n")))
	if err != nil {
		t.Fatal(err)
	}
	next.Gateway = cfg.Gateway
	res, err := r.g.Reload(ctx, next)
	if err != nil || strings.Join(res.Reconfigured, ",") != "reporting" || len(res.NeedsRestart) != 0 {
		t.Fatalf("reload = %v, %v", res, err)
	}
	if m := recv(t, stream); number(m) != 3 {
		t.Fatalf("held across the reload: %v", m)
	}
	pub(t, dev, "devices/sensor-1/slow_temp", 1, "4") // afresh: at once
	if m := recv(t, stream); number(m) != 4 {
		t.Fatalf("after the reload: %v", m)
	}
	pub(t, dev, "devices/sensor-1/slow_temp", 1, "5") // held for an hour

	// Stopping publishes it before the hub closes; then the stream ends.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || number(m) != 5 {
		t.Fatalf("at the stop: %v, %v; want 5", m, err)
	}
	if m, err := stream.Recv(); err == nil {
		t.Fatalf("after the stop: %v", m)
	}
}
