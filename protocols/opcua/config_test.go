package opcua

import (
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"gopkg.in/yaml.v3"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/protocols"
)

func addDevice(t *testing.T, c *Config, text string) error {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		t.Fatal(err)
	}
	return c.AddDevice(n.Content[0])
}

func TestConfigDefaults(t *testing.T) {
	c := NewConfig()
	if err := addDevice(t, c, `{id: line-1, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4840", security: {trusted_dir: /tmp/x},
  points: [{name: temperature, node: "ns=1;s=Line1.Temperature", sampling_interval: 100ms}, {name: setpoint, node: "ns=1;s=Line1.Setpoint", writable: true}]}`); err != nil {
		t.Fatal(err)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	d := c.Devices[0]
	if d.Security.policy() != "Basic256Sha256" || d.Security.mode() != "SignAndEncrypt" {
		t.Errorf("defaults %s/%s", d.Security.policy(), d.Security.mode())
	}
	if d.publishingInterval().Milliseconds() != 100 || d.Points[1].samplingInterval() != DefaultSamplingInterval {
		t.Errorf("intervals %v %v", d.publishingInterval(), d.Points[1].samplingInterval())
	}
	if _, ok := protocols.Lookup(Name); !ok {
		t.Error("not registered")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, device, want string
	}{
		{"unknown key", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", colour: red}`, "colour"},
		{"refused policy", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {policy: Basic256}, points: [{name: a, node: "i=1"}]}`, `device "d1": security: policy: Basic256 is deprecated`},
		{"refused policy 128", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {policy: Basic128Rsa15}, points: [{name: a, node: "i=1"}]}`, "Basic128Rsa15 is deprecated"},
		{"None only written out", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {policy: None}, points: [{name: a, node: "i=1"}]}`, "None must be written out for both"},
		{"None mode alone", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {mode: None}, points: [{name: a, node: "i=1"}]}`, "None must be written out for both"},
		{"bad mode", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {mode: Encrypt}, points: [{name: a, node: "i=1"}]}`, `security: mode: "Encrypt"`},
		{"endpoint scheme", `{id: d1, protocol: opcua, endpoint: "tcp://h:1", points: [{name: a, node: "i=1"}]}`, `device "d1": endpoint`},
		{"no endpoint", `{id: d1, protocol: opcua, points: [{name: a, node: "i=1"}]}`, "endpoint: required"},
		{"bad node", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: a, node: "Line1"}]}`, `device "d1": point "a": node: "Line1"`},
		{"no points", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1"}`, "points: at least one"},
		{"duplicate point", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: a, node: "i=1"}, {name: a, node: "i=2"}]}`, `point "a": name: duplicate`},
		{"sampling", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: a, node: "i=1", sampling_interval: 1ms}]}`, "sampling_interval"},
		{"deadband", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: a, node: "i=1", deadband: -1}]}`, "deadband"},
		{"queue", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: a, node: "i=1", queue_size: 100000}]}`, "queue_size"},
		{"priority", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: a, node: "i=1", priority: urgent}]}`, "priority"},
		{"password over None", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {policy: None, mode: None}, username: u, password: p, points: [{name: a, node: "i=1"}]}`, "username: a password is not sent over policy None"},
		{"cert without key", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {cert_file: c.pem}, points: [{name: a, node: "i=1"}]}`, "cert_file and key_file go together"},
		{"node label", `{id: d1, protocol: opcua, endpoint: "opc.tcp://h:1", labels: {node: x}, points: [{name: a, node: "i=1"}]}`, "is set by the adapter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			err := addDevice(t, c, tc.device)
			var all []string
			if err != nil {
				all = append(all, err.Error())
			}
			for _, e := range c.Validate() {
				all = append(all, e.Error())
			}
			if got := strings.Join(all, "\n"); !strings.Contains(got, tc.want) {
				t.Errorf("errors %q do not contain %q", got, tc.want)
			}
		})
	}
}

func TestConfigSection(t *testing.T) {
	c := NewConfig()
	c.PublishRequests = 0
	c.KeepAlive = c.RequestTimeout
	c.MaxPointsPerDevice = 1
	c.Devices = []DeviceConfig{{ID: "d1", Protocol: Name, Endpoint: "opc.tcp://h:1", Security: SecurityConfig{Policy: "None", Mode: "None"},
		Points: []PointConfig{{Name: "a", Node: "i=1"}, {Name: "b", Node: "i=2"}}}}
	got := ""
	for _, e := range c.Validate() {
		got += e.Error() + "\n"
	}
	for _, want := range []string{"opcua: publish_requests", "opcua: keepalive", `device "d1": points: 2 is more than max_points_per_device (1)`} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q do not contain %q", got, want)
		}
	}
}

func TestNewNeedsTrustedDirWithoutDataDir(t *testing.T) {
	c := NewConfig()
	c.Devices = []DeviceConfig{{ID: "d1", Protocol: Name, Endpoint: "opc.tcp://h:1", Points: []PointConfig{{Name: "a", Node: "i=1"}}}}
	_, err := c.New(protocols.Env{})
	if err == nil || !strings.Contains(err.Error(), `device "d1": security: trusted_dir: required when gateway.data_dir is not set`) {
		t.Fatalf("New: %v", err)
	}
}

// TestGatewayConfig parses a whole config file: the devices reach this package, and
// every problem names its device and key.
func TestGatewayConfig(t *testing.T) {
	good := `
gateway: {id: g1}
opcua: {publish_requests: 4}
devices:
  - id: line-1
    protocol: opcua
    endpoint: opc.tcp://10.0.0.8:4840
    security: {policy: Basic256Sha256, mode: SignAndEncrypt, trusted_dir: /etc/edgegate/opcua/trusted}
    points:
      - {name: temperature, node: "ns=1;s=Line1.Temperature", sampling_interval: 100ms}
      - {name: setpoint, node: "ns=1;s=Line1.Setpoint", writable: true}
`
	c, err := config.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	oc := c.Protocols[Name].(*Config)
	if oc.PublishRequests != 4 || len(oc.Devices) != 1 || len(oc.Devices[0].Points) != 2 {
		t.Fatalf("config %+v", oc)
	}
	bad := `
devices:
  - {id: line-1, protocol: opcua, endpoint: "opc.tcp://h:1", security: {policy: Basic128Rsa15}, points: [{name: t, node: "ns=1;s=T"}]}
  - {id: line-2, protocol: opcua, endpoint: "opc.tcp://h:1", points: [{name: t, node: "ns=1;s=T", sampling_intervall: 1s}]}
`
	_, err = config.Parse([]byte(bad))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`device "line-1": security: policy: Basic128Rsa15`, `device "line-2"`, "sampling_intervall"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not contain %q", err, want)
		}
	}
}

func TestCreateRequest(t *testing.T) {
	p := &point{cfg: PointConfig{Node: "ns=1;s=X", Deadband: 0.5, QueueSize: 4, SamplingInterval: 250 * time.Millisecond}, index: 2, nodeID: ua.MustParseNodeID("ns=1;s=X")}
	r := p.createRequest()
	f, ok := r.RequestedParameters.Filter.Value.(*ua.DataChangeFilter)
	if !ok || f.DeadbandType != uint32(ua.DeadbandTypeAbsolute) || f.DeadbandValue != 0.5 {
		t.Errorf("filter %+v", r.RequestedParameters.Filter)
	}
	if r.RequestedParameters.ClientHandle != 3 || r.RequestedParameters.QueueSize != 4 || r.RequestedParameters.SamplingInterval != 250 {
		t.Errorf("parameters %+v", r.RequestedParameters)
	}
	p.cfg.Deadband = 0
	if r := p.createRequest(); r.RequestedParameters.Filter.Value != nil {
		t.Errorf("no deadband, filter %+v", r.RequestedParameters.Filter)
	}
}
