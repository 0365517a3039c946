package config_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/protocols/coap"
	"github.com/edgegate/edgegate/protocols/modbus"
	"github.com/edgegate/edgegate/protocols/mqtt"
	"github.com/edgegate/edgegate/protocols/opcua"
)

// fryers is the example, with a third device that overrides more.
const fryers = `gateway: {id: shop-0042}
profiles:
  - name: fryer-x200
    protocol: modbus
    unit_id: 1
    poll_interval: 1s
    labels: {model: x200, vendor: acme}
    points:
      - {name: oil_temp, register: holding, address: 0, type: float32, unit: "°C", priority: critical}
      - {name: setpoint, register: holding, address: 10, type: uint16, scale: 0.1, writable: true}
devices:
  - {id: fryer-1, profile: fryer-x200, address: "tcp://10.0.0.21:502"}
  - {id: fryer-2, profile: fryer-x200, address: "tcp://10.0.0.22:502", labels: {line: b},
     points: [{name: setpoint, writable: false}]}
  - id: fryer-3
    profile: fryer-x200
    address: "tcp://10.0.0.23:502"
    unit_id: 7
    poll_interval: 2s
    labels: {model: x300}
    points:
      - {name: fan, register: coil, address: 3}
      - {name: oil_temp, address: 2}
  - {id: till-1, protocol: modbus, address: "tcp://10.0.0.30:502", unit_id: 1, points: [{name: total, register: input, address: 0}]}
`

func parseOK(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	t.Cleanup(func() { c.FunctionSet.Close() })
	return c
}

func modbusDevices(t *testing.T, c *config.Config) map[string]modbus.DeviceConfig {
	t.Helper()
	out := map[string]modbus.DeviceConfig{}
	for _, d := range c.Protocols["modbus"].(*modbus.Config).Devices {
		out[d.ID] = d
	}
	return out
}

func TestProfileMergeRules(t *testing.T) {
	devs := modbusDevices(t, parseOK(t, fryers))
	if len(devs) != 4 {
		t.Fatalf("devices = %v", devs)
	}
	f1, f2, f3 := devs["fryer-1"], devs["fryer-2"], devs["fryer-3"]

	// Every key of the profile.
	if f1.Protocol != "modbus" || *f1.UnitID != 1 || f1.PollInterval != time.Second || f1.Address != "tcp://10.0.0.21:502" {
		t.Errorf("fryer-1 = %+v", f1)
	}
	if !reflect.DeepEqual(f1.Labels, map[string]string{"model": "x200", "vendor": "acme"}) {
		t.Errorf("fryer-1 labels = %v", f1.Labels)
	}
	if len(f1.Points) != 2 || f1.Points[0].Name != "oil_temp" || f1.Points[0].Unit != "°C" || f1.Points[0].Priority != "critical" ||
		f1.Points[1].Name != "setpoint" || !f1.Points[1].Writable || *f1.Points[1].Scale != 0.1 || *f1.Points[1].Address != 10 {
		t.Errorf("fryer-1 points = %+v", f1.Points)
	}

	// Labels merge, the device's own winning per label; a point's keys override
	// that point only.
	if !reflect.DeepEqual(f2.Labels, map[string]string{"model": "x200", "vendor": "acme", "line": "b"}) {
		t.Errorf("fryer-2 labels = %v", f2.Labels)
	}
	if len(f2.Points) != 2 || f2.Points[1].Writable || *f2.Points[1].Scale != 0.1 || f2.Points[1].Type != "uint16" || f2.Points[1].Register != "holding" {
		t.Errorf("fryer-2 setpoint = %+v", f2.Points[1])
	}

	// The device's keys win; a new point name is added after the profile's.
	if *f3.UnitID != 7 || f3.PollInterval != 2*time.Second {
		t.Errorf("fryer-3 = %+v", f3)
	}
	if !reflect.DeepEqual(f3.Labels, map[string]string{"model": "x300", "vendor": "acme"}) {
		t.Errorf("fryer-3 labels = %v", f3.Labels)
	}
	var names []string
	for _, p := range f3.Points {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"oil_temp", "setpoint", "fan"}) || *f3.Points[0].Address != 2 || f3.Points[0].Type != "float32" {
		t.Errorf("fryer-3 points = %+v", f3.Points)
	}
	// A device without a profile is as it was.
	if d := devs["till-1"]; len(d.Points) != 1 || d.Labels != nil {
		t.Errorf("till-1 = %+v", d)
	}
}

// TestProfilesEveryProtocol gives each protocol's devices a profile, protocol
// included, and checks that the profile's keys arrive in the protocol's config.
func TestProfilesEveryProtocol(t *testing.T) {
	c := parseOK(t, `
profiles:
  - {name: plc, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4840", publishing_interval: 500ms,
     points: [{name: speed, node: "ns=2;s=Speed", unit: rpm}]}
  - {name: sensor, protocol: mqtt, labels: {kind: env}, points: [{name: temp, unit: C}, {name: rh, unit: "%"}]}
  - {name: meter, protocol: coap, address: "coap://127.0.0.1:5683", poll_interval: 5s, points: [{name: kwh, path: /kwh}]}
devices:
  - {id: plc-1, profile: plc, points: [{name: speed, unit: "1/min"}, {name: torque, node: "ns=2;s=Torque"}]}
  - {id: env-1, profile: sensor, points: [{name: rh, priority: high}]}
  - {id: meter-1, profile: meter, address: "coap://127.0.0.2:5683"}
`)
	op := c.Protocols["opcua"].(*opcua.Config).Devices
	if len(op) != 1 || op[0].Endpoint != "opc.tcp://127.0.0.1:4840" || op[0].PublishingInterval != 500*time.Millisecond ||
		len(op[0].Points) != 2 || op[0].Points[0].Unit != "1/min" || op[0].Points[0].Node != "ns=2;s=Speed" || op[0].Points[1].Name != "torque" {
		t.Errorf("opcua = %+v", op)
	}
	mq := c.Protocols["mqtt"].(*mqtt.Config).Devices
	if len(mq) != 1 || mq[0].Labels["kind"] != "env" || len(mq[0].Points) != 2 || mq[0].Points[1].Priority != "high" || mq[0].Points[1].Unit != "%" {
		t.Errorf("mqtt = %+v", mq)
	}
	co := c.Protocols["coap"].(*coap.Config).Devices
	if len(co) != 1 || co[0].Address != "coap://127.0.0.2:5683" || co[0].PollInterval != 5*time.Second || len(co[0].Points) != 1 {
		t.Errorf("coap = %+v", co)
	}
}

// Each case lists substrings that must each appear in one problem line.
func TestProfileProblems(t *testing.T) {
	const devs = "devices:\n  - {id: fryer-1, profile: fryer, address: \"tcp://10.0.0.21:502\"}\n"
	const good = "  - name: fryer\n    protocol: modbus\n    unit_id: 1\n    points: [{name: t, register: holding, address: 0}]\n"
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown profile", "profiles:\n" + good + "devices: [{id: d1, profile: frier}]\n",
			[]string{`device "d1": profile: line 6: unknown profile "frier" (known: [fryer])`}},
		{"no profiles at all", "devices: [{id: d1, profile: fryer}]\n",
			[]string{`device "d1": profile: line 1: unknown profile "fryer" (the config has no profiles)`}},
		{"profile without a name", "profiles:\n  - {protocol: modbus}\n" + devs,
			[]string{`profiles[0]: line 2: name is required`, `device "fryer-1": profile: line 4: unknown profile "fryer"`}},
		{"duplicate names", "profiles:\n" + good + good + devs,
			[]string{`profile "fryer": line 6: name also used by profiles[0]`}},
		{"profile with an id", "profiles:\n  - {name: fryer, id: x}\n" + devs,
			[]string{`profile "fryer": id: line 2: a profile has no id`}},
		{"profiles nest not", "profiles:\n  - {name: fryer, profile: other}\n" + devs,
			[]string{`profile "fryer": profile: line 2: profiles do not nest`}},
		{"profile point without a name", "profiles:\n  - {name: fryer, points: [{address: 1}]}\n" + devs,
			[]string{`profile "fryer": points[0]: line 2: name is required (points merge by name)`}},
		{"profile labels not a mapping", "profiles:\n  - {name: fryer, labels: [a]}\n" + devs,
			[]string{`profile "fryer": labels: line 2: must be a mapping`}},
		{"profiles not a list", "profiles: {name: fryer}\n", []string{`profiles: line 1: must be a list`}},
		{"profile value not a name", "profiles:\n" + good + "devices: [{id: d1, profile: [fryer]}]\n",
			[]string{`device "d1": profile: line 6: must be a profile's name`}},
		// A protocol's own problem names the device and its profile.
		{"protocol problem", "profiles:\n" + strings.Replace(good, "holding", "hold", 1) + devs,
			[]string{`device "fryer-1" (profile "fryer"): points[0] "t": register: "hold"`}},
		{"device problem", "profiles:\n" + good + "devices:\n  - {id: fryer-1, profile: fryer, address: \"udp://x\"}\n",
			[]string{`device "fryer-1" (profile "fryer"): address:`}},
		// An unknown key of a profile is refused with the profile's line.
		{"unknown key in a profile", "profiles:\n" + strings.Replace(good, "address: 0", "adress: 0", 1) + devs,
			[]string{`device "fryer-1" (profile "fryer"): line 7:`, `line 5: field adress not found in type modbus.PointConfig`}},
		{"unknown key on the device", "profiles:\n" + good + "devices:\n  - id: fryer-1\n    profile: fryer\n    colour: red\n",
			[]string{`device "fryer-1" (profile "fryer"): line 7:`, `line 9: field colour not found in type modbus.DeviceConfig`}},
		{"no protocol anywhere", "profiles:\n  - {name: fryer, points: [{name: t}]}\n" + devs,
			[]string{`device "fryer-1" (profile "fryer"): protocol: unknown protocol ""`}},
	} {
		_, err := config.Parse([]byte(c.yaml))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: problems lack %q:\n%v", c.name, w, err)
			}
		}
	}
}

// A device of a profile with problems is left out without a problem of its own.
func TestBadProfileIsReportedOnce(t *testing.T) {
	_, err := config.Parse([]byte("profiles:\n  - {name: fryer, id: x, protocol: modbus}\ndevices: [{id: f1, profile: fryer}, {id: f2, profile: fryer}]\n"))
	var probs config.Problems
	if !errors.As(err, &probs) || len(probs) != 1 || !strings.Contains(probs[0].Error(), `profile "fryer": id:`) {
		t.Errorf("problems = %v", err)
	}
}

// TestExpandRoundTrip: the expanded config has no profiles, passes Parse, and
// gives every protocol the same config as the original.
func TestExpandRoundTrip(t *testing.T) {
	out, err := config.Expand([]byte(fryers))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "profile") {
		t.Errorf("expanded config mentions profiles:\n%s", out)
	}
	before, after := parseOK(t, fryers), parseOK(t, string(out))
	if !reflect.DeepEqual(before.Protocols["modbus"], after.Protocols["modbus"]) {
		t.Errorf("modbus config differs after expansion:\n%+v\n%+v\n%s", before.Protocols["modbus"], after.Protocols["modbus"], out)
	}
	if before.ProtocolSource("modbus") != after.ProtocolSource("modbus") {
		t.Errorf("source differs:\n%s\n---\n%s", before.ProtocolSource("modbus"), after.ProtocolSource("modbus"))
	}
	if after.Gateway.ID != "shop-0042" {
		t.Errorf("gateway section lost: %+v", after.Gateway)
	}
	if _, err := config.Expand([]byte("profiles: [{protocol: modbus}]\n")); err == nil {
		t.Error("Expand took a profile without a name")
	}
}

func TestUnusedProfiles(t *testing.T) {
	got := config.UnusedProfiles([]byte(fryers + "profiles2: x\n"))
	if len(got) != 0 {
		t.Errorf("unused = %v", got)
	}
	y := strings.Replace(fryers, "devices:", "  - {name: spare, protocol: modbus}\n  - {name: old, protocol: modbus}\ndevices:", 1)
	if got := config.UnusedProfiles([]byte(y)); !reflect.DeepEqual(got, []string{"old", "spare"}) {
		t.Errorf("unused = %v", got)
	}
}

// TestProfileChangeChangesItsDevices: the reload difference compares each
// protocol's source; a profile's change must show in the protocols of the
// devices using it, and nowhere else.
func TestProfileChangeChangesItsDevices(t *testing.T) {
	base := fryers + "  - {id: env-1, protocol: mqtt}\n"
	changed := strings.Replace(base, "poll_interval: 1s", "poll_interval: 3s", 1)
	a, b := parseOK(t, base), parseOK(t, changed)
	if a.ProtocolSource("modbus") == b.ProtocolSource("modbus") {
		t.Error("a changed profile left its protocol's source as it was")
	}
	if a.ProtocolSource("mqtt") != b.ProtocolSource("mqtt") {
		t.Error("a changed modbus profile changed mqtt's source")
	}
	da, db := modbusDevices(t, a), modbusDevices(t, b)
	for id, want := range map[string]bool{"fryer-1": true, "fryer-2": true, "fryer-3": false, "till-1": false} {
		if got := !reflect.DeepEqual(da[id], db[id]); got != want {
			t.Errorf("%s changed = %v, want %v", id, got, want)
		}
	}
}

// Anchors and aliases work as in any other part of the file.
func TestProfileWithAliases(t *testing.T) {
	devs := modbusDevices(t, parseOK(t, `
profiles:
  - name: fryer
    protocol: modbus
    unit_id: 1
    points: &pts [{name: t, register: holding, address: 0}]
devices:
  - {id: f1, profile: fryer, address: "tcp://10.0.0.1:502", points: *pts}
`))
	if len(devs["f1"].Points) != 1 {
		t.Errorf("f1 = %+v", devs["f1"])
	}
}

// FuzzProfiles: any config either fails with problems or, expanded, gives a
// config that Parse accepts with the same protocols.
func FuzzProfiles(f *testing.F) {
	f.Add(fryers)
	f.Add("profiles: [{name: a, protocol: mqtt, points: [{name: t}]}]\ndevices: [{id: d, profile: a, points: [{name: u}]}]\n")
	f.Add("profiles: [{name: a, points: &p [{name: t}]}]\ndevices: [{id: d, profile: a, protocol: mqtt, points: *p}]\n")
	f.Add("profiles: [{name: a, labels: {x: y}}]\ndevices: [{id: d, profile: a, protocol: mqtt, labels: [1]}]\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := config.Parse([]byte(in))
		if err != nil {
			return
		}
		c.FunctionSet.Close()
		out, err := config.Expand([]byte(in))
		if err != nil {
			t.Fatalf("Parse took %q, Expand did not: %v", in, err)
		}
		c2, err := config.Parse(out)
		if err != nil {
			t.Fatalf("the expansion of %q does not parse: %v\n%s", in, err, out)
		}
		c2.FunctionSet.Close()
		for name, pc := range c.Protocols {
			if !reflect.DeepEqual(pc, c2.Protocols[name]) {
				t.Fatalf("%s differs after expansion of %q:\n%s", name, in, out)
			}
		}
	})
}
