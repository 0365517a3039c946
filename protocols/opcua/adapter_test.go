package opcua

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/opcua/opcuasim"
	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

// TestDataChanges: notifications arrive as messages with the server's source
// timestamp, unit, labels and the mapped type; a status maps onto quality.
func TestDataChanges(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{})
	e := start(t, testConfig(s.Endpoint()), protocols.Env{})
	before := time.Now()
	m := e.until("a new temperature", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.SourceTime.After(before)
	})
	if f, ok := m.Value.AsDouble(); !ok || f < 20 {
		t.Errorf("temperature %#v", m.Value)
	}
	if m.Device != "line-1" || m.Unit != "°C" || m.Quality != bridge.QualityGood || m.Protocol != bridge.ProtocolOPCUA {
		t.Errorf("message %+v", m)
	}
	if m.Labels["node"] != "ns=1;s=Line1.Temperature" || m.Labels["line"] != "1" {
		t.Errorf("labels %v", m.Labels)
	}
	if m.SourceTime.After(time.Now()) || m.SourceTime.Before(before) {
		t.Errorf("source time %v not from the server's change", m.SourceTime)
	}
	// Initial values of the other points.
	if m, ok := e.hub.Latest("line-1", "count"); !ok || m.Value.Kind() != bridge.KindInt {
		t.Errorf("count: %v", m)
	}

	// Uncertain and Bad statuses, with and without a value.
	if err := s.Set("Line1.Count", int32(7), ua.StatusUncertainLastUsableValue); err != nil {
		t.Fatal(err)
	}
	m = e.until("an uncertain count", isPoint("count", bridge.QualityUncertain))
	if i, _ := m.Value.AsInt(); i != 7 || m.Labels["status"] != "UncertainLastUsableValue" {
		t.Errorf("uncertain: %#v %v", m.Value, m.Labels)
	}
	if err := s.Set("Line1.Count", int32(8), ua.StatusBadSensorFailure); err != nil {
		t.Fatal(err)
	}
	m = e.until("a bad count", isPoint("count", bridge.QualityBad))
	if m.Labels["status"] != "BadSensorFailure" {
		t.Errorf("bad: %#v %v", m.Value, m.Labels)
	}
	if d := e.device("line-1"); d.State != bridge.StateConnected || len(d.Points) != 4 {
		t.Errorf("device %+v", d)
	}
}

// TestWriteAndRead: writes land, converted to the node's type; unknown, read-only
// and unconvertible writes are refused before anything is sent; reads go to the
// server.
func TestWriteAndRead(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{})
	e := start(t, testConfig(s.Endpoint()), protocols.Env{})
	e.until("connected", func(m *bridge.Message) bool { return m.Point == "setpoint" })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// An int to a Double node, a number to a String node.
	if err := e.hub.Write(ctx, "line-1", "setpoint", bridge.Int(42)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if v, n, _ := s.Value("Line1.Setpoint"); v != float64(42) || n != 1 {
		t.Fatalf("setpoint is %v after %d writes", v, n)
	}
	if err := e.hub.Write(ctx, "line-1", "mode", bridge.String("manual")); err != nil {
		t.Fatalf("write: %v", err)
	}
	e.until("the written setpoint", func(m *bridge.Message) bool {
		f, _ := m.Value.AsDouble()
		return m.Point == "setpoint" && f == 42
	})

	refused := []struct {
		point string
		v     bridge.Value
	}{
		{"nope", bridge.Int(1)},                     // unknown point
		{"count", bridge.Int(1)},                    // read-only
		{"temperature", bridge.Double(1)},           // read-only
		{"setpoint", bridge.String("not a number")}, // cannot convert
	}
	for _, r := range refused {
		err := e.hub.Write(ctx, "line-1", r.point, r.v)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("write %s %#v: %v, want InvalidArgument", r.point, r.v, err)
		}
	}
	if _, n, _ := s.Value("Line1.Setpoint"); n != 1 {
		t.Errorf("a refused write reached the server: %d writes", n)
	}

	if err := s.Set("Line1.Count", int32(5), good); err != nil {
		t.Fatal(err)
	}
	m, err := e.hub.ReadDevice(ctx, "line-1", "count")
	if err != nil {
		t.Fatal(err)
	}
	if i, _ := m.Value.AsInt(); i != 5 || m.SourceTime.IsZero() {
		t.Errorf("read %#v at %v", m.Value, m.SourceTime)
	}
	if _, err := e.hub.ReadDevice(ctx, "line-1", "nope"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("read of an unknown point: %v", err)
	}
}

// TestSecurity: Basic256Sha256 SignAndEncrypt with a generated client
// certificate kept in the data dir; an untrusted server certificate is refused
// with the file to trust, and trusting it is enough.
func TestSecurity(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{Security: opcuasim.AllSecurity})
	dir := t.TempDir()
	cfg := testConfig(s.Endpoint())
	cfg.Devices[0].Security = SecurityConfig{} // the defaults
	e := start(t, cfg, protocols.Env{DataDir: dir})

	trusted := filepath.Join(dir, "opcua", "pki", "trusted")
	var cause string
	waitFor(t, "the untrusted certificate refused", func() bool {
		cause = e.device("line-1").LastError
		return strings.Contains(cause, "not trusted")
	})
	want := filepath.Join(dir, "opcua", "pki", "rejected", "line-1-"+uacert.Thumbprint(s.CertDER())+".der")
	if !strings.Contains(cause, "copy "+want+" into "+trusted) {
		t.Fatalf("error %q does not say to copy %s into %s", cause, want, trusted)
	}
	if _, err := os.Stat(filepath.Join(dir, "opcua", "pki", "own", "cert.der")); err != nil {
		t.Errorf("client certificate not kept: %v", err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trusted, "server.der"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	e.until("data over SignAndEncrypt", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(before)
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := e.hub.Write(ctx, "line-1", "setpoint", bridge.Double(1.5)); err != nil {
		t.Fatalf("write over SignAndEncrypt: %v", err)
	}
	if got := counterValue(t, e.a.metrics.connects.WithLabelValues("line-1", "untrusted")); got < 1 {
		t.Errorf("untrusted connects %v", got)
	}
}

// TestSecurityPolicies connects with each other policy and mode, with a user name.
func TestSecurityPolicies(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{Security: opcuasim.AllSecurity})
	trusted := t.TempDir()
	if err := os.WriteFile(filepath.Join(trusted, "sim.pem"), uacert.EncodeCert(s.CertDER()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sec := range []SecurityConfig{
		{Policy: "Basic256Sha256", Mode: "Sign"},
		{Policy: "Aes128_Sha256_RsaOaep", Mode: "SignAndEncrypt"},
		{Policy: "Aes256_Sha256_RsaPss", Mode: "SignAndEncrypt"},
	} {
		t.Run(sec.Policy+"/"+sec.Mode, func(t *testing.T) {
			cfg := testConfig(s.Endpoint())
			sec.TrustedDir = trusted
			cfg.Devices[0].Security = sec
			cfg.Devices[0].Username, cfg.Devices[0].Password = "operator", "secret"
			e := start(t, cfg, protocols.Env{})
			e.until("a value", isPoint("temperature", bridge.QualityGood))
		})
	}
}

// TestRestart: the server restarts in the middle; every point goes BAD, and the
// stream comes back by itself.
func TestRestart(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{})
	e := start(t, testConfig(s.Endpoint()), protocols.Env{})
	e.until("a value", isPoint("temperature", bridge.QualityGood))
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	m := e.until("BAD after the restart", isPoint("temperature", bridge.QualityBad))
	if m.Labels["status"] != "BadNotConnected" {
		t.Errorf("status %q", m.Labels["status"])
	}
	back := time.Now()
	e.until("values again", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(back)
	})
	if took := time.Since(back); took > 10*time.Second {
		t.Errorf("the stream took %v to come back", took)
	}
	if d := e.device("line-1"); d.State != bridge.StateConnected {
		t.Errorf("state %v", d.State)
	}
	if got := counterValue(t, e.a.metrics.sessionsLost.WithLabelValues("line-1")); got < 1 {
		t.Errorf("sessions lost %v", got)
	}
}

// TestDroppedConnection: the network cuts the connection; the server keeps
// running and the adapter reconnects.
func TestDroppedConnection(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{})
	e := start(t, testConfig(s.Endpoint()), protocols.Env{})
	e.until("a value", isPoint("temperature", bridge.QualityGood))
	s.DropConnections()
	e.until("BAD after the cut", isPoint("temperature", bridge.QualityBad))
	back := time.Now()
	e.until("values again", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(back)
	})
}

// TestLostSubscription: the server forgets the subscription; it is made again on
// the same session.
func TestLostSubscription(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{})
	e := start(t, testConfig(s.Endpoint()), protocols.Env{})
	e.until("a value", isPoint("temperature", bridge.QualityGood))
	s.DropSubscriptions()
	waitFor(t, "the subscription made again", func() bool {
		return counterValue(t, e.a.metrics.subsRecreated.WithLabelValues("line-1")) >= 1
	})
	back := time.Now()
	e.until("values again", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(back)
	})
	if got := counterValue(t, e.a.metrics.sessionsLost.WithLabelValues("line-1")); got != 0 {
		t.Errorf("the session was made again (%v) for a lost subscription", got)
	}
}

// TestFailedItemOnRecreation: after a restart one node is gone; it is marked BAD
// with BadNodeIdUnknown, named in the last error, the others keep flowing, and it
// comes back when the node does.
func TestFailedItemOnRecreation(t *testing.T) {
	t.Parallel()
	s := sim(t, opcuasim.Options{})
	e := start(t, testConfig(s.Endpoint()), protocols.Env{})
	e.until("a count", isPoint("count", bridge.QualityGood))
	s.Stop()
	s.Remove("Line1.Count")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	m := e.until("count BAD: its node is gone", func(m *bridge.Message) bool {
		return m.Point == "count" && m.Quality == bridge.QualityBad && m.Labels["status"] == "BadNodeIdUnknown"
	})
	if i, ok := m.Value.AsInt(); !ok || i != 0 {
		t.Errorf("a BAD message carries the last value, got %#v", m.Value)
	}
	back := time.Now()
	e.until("temperature still flowing", func(m *bridge.Message) bool {
		return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(back)
	})
	d := e.device("line-1")
	if d.State != bridge.StateConnected || !strings.Contains(d.LastError, `point "count"`) || !strings.Contains(d.LastError, "BadNodeIdUnknown") {
		t.Errorf("device %v, last error %q", d.State, d.LastError)
	}
	if got := gaugeValue(t, e.a.metrics.items.WithLabelValues("line-1", "failed")); got != 1 {
		t.Errorf("failed items gauge %v", got)
	}
	// The node comes back: the item is retried (every backoff_max).
	if err := s.Add(opcuasim.Var{Name: "Line1.Count", Value: int32(9)}); err != nil {
		t.Fatal(err)
	}
	e.until("count again", func(m *bridge.Message) bool {
		i, _ := m.Value.AsInt()
		return m.Point == "count" && m.Quality == bridge.QualityGood && i == 9
	})
}

// TestBatches: items are created in batches within the server's
// MaxMonitoredItemsPerCall.
func TestBatches(t *testing.T) {
	t.Parallel()
	const n = 250
	vars := make([]opcuasim.Var, n)
	points := make([]PointConfig, n)
	for i := range vars {
		name := "v" + itoa(i)
		vars[i] = opcuasim.Var{Name: name, Value: int32(i)}
		points[i] = PointConfig{Name: name, Node: opcuasim.NodeID(name)}
	}
	s := sim(t, opcuasim.Options{Vars: vars, MaxMonitoredItemsPerCall: 100})
	e := start(t, testConfig(s.Endpoint(), points...), protocols.Env{})
	seen := map[string]bool{}
	e.until("every item's first value", func(m *bridge.Message) bool {
		seen[m.Point] = true
		return len(seen) == n
	})
	if _, items, _ := s.Stats(); items != n {
		t.Errorf("%d items at the server", items)
	}
}

// TestServerDown: the device shows its error, the adapter is ready anyway, and it
// connects once the server is up.
func TestServerDown(t *testing.T) {
	t.Parallel()
	s, err := opcuasim.New(opcuasim.Options{Vars: []opcuasim.Var{{Name: "Line1.Temperature", Value: float64(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	endpoint := s.Endpoint()
	s.Stop()
	cfg := testConfig(endpoint, PointConfig{Name: "temperature", Node: opcuasim.NodeID("Line1.Temperature")})
	e := start(t, cfg, protocols.Env{})
	select {
	case <-e.a.Ready():
	case <-time.After(waitTimeout):
		t.Fatal("not ready while the server is down")
	}
	waitFor(t, "the error shown", func() bool {
		d := e.device("line-1")
		return d.State == bridge.StateError && d.LastError != ""
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	e.until("a value", isPoint("temperature", bridge.QualityGood))
}

func itoa(i int) string { return strconv.Itoa(i) }
