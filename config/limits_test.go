package config_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
)

// mqttDevices is a config of n MQTT devices of one point each.
func mqttDevices(head string, n int) string {
	var b strings.Builder
	b.WriteString(head + "devices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {id: pos-%d, protocol: mqtt, points: [{name: total}]}\n", i)
	}
	return b.String()
}

func parseProblems(t *testing.T, src string) string {
	t.Helper()
	_, err := config.Parse([]byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	var probs config.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("error %T is not Problems: %v", err, err)
	}
	return err.Error()
}

// The registry refuses a device past max_devices at start-up, so Parse (and with it
// `check` and a reload) must refuse the config first.
func TestMoreDevicesThanMaxDevicesIsRefused(t *testing.T) {
	msg := parseProblems(t, mqttDevices("gateway: {max_devices: 3}\n", 4))
	if !strings.Contains(msg, "gateway: max_devices: the config declares 4 devices, more than the limit of 3") {
		t.Errorf("problems: %s", msg)
	}
	if _, err := config.Parse([]byte(mqttDevices("gateway: {max_devices: 4}\n", 4))); err != nil {
		t.Errorf("4 devices under max_devices 4: %v", err)
	}
}

func TestTheDefaultMaxDevicesApplies(t *testing.T) {
	msg := parseProblems(t, mqttDevices("", config.DefaultMaxDevices+1))
	if !strings.Contains(msg, fmt.Sprintf("more than the limit of %d", config.DefaultMaxDevices)) {
		t.Errorf("problems: %s", msg)
	}
}

func TestMorePointsThanMaxPointsPerDeviceIsRefused(t *testing.T) {
	msg := parseProblems(t, "gateway: {max_points_per_device: 1}\ndevices:\n  - {id: pos-1, protocol: mqtt, points: [{name: a}, {name: b}]}\n")
	if !strings.Contains(msg, `device "pos-1": line 3: points: 2 is more than gateway.max_points_per_device (1)`) {
		t.Errorf("problems: %s", msg)
	}
}

func TestNegativeLimitsAreRefusedNotDefaulted(t *testing.T) {
	msg := parseProblems(t, "gateway: {max_devices: -1}\n")
	if !strings.Contains(msg, "gateway: retain, subscriber_queue, max_devices and max_points_per_device must not be negative") {
		t.Errorf("problems: %s", msg)
	}
}

// A device id or point name with space at an end, or a control character, would be
// a second device that looks like the first in every listing.
func TestNamesWithSpaceAtAnEndOrControlCharactersAreRefused(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"trailing space in an id", "devices:\n  - {id: \"boiler-1 \", protocol: mqtt}\n",
			`device "boiler-1 ": line 2: id: "boiler-1 ": leading or trailing white space`},
		{"leading tab in an id", "devices:\n  - {id: \"\\tboiler-1\", protocol: mqtt}\n", "line 2: id:"},
		{"control character in an id", "devices:\n  - {id: \"boiler\\u0007\", protocol: mqtt}\n", `line 2: id: name holds '\a'`},
		{"trailing space in a point name", "devices:\n  - id: boiler-1\n    protocol: mqtt\n    points:\n      - {name: \"temp \"}\n",
			`device "boiler-1": points[0]: line 5: name: "temp ": leading or trailing white space`},
		{"control character in a point name", "devices:\n  - {id: boiler-1, protocol: mqtt, points: [{name: \"t\\x00\"}]}\n", `name holds '\x00'`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if msg := parseProblems(t, c.yaml); !strings.Contains(msg, c.want) {
				t.Errorf("problems %q do not mention %q", msg, c.want)
			}
		})
	}
}

func TestDevicesAreListedForTheRegistry(t *testing.T) {
	c, err := config.Parse([]byte("devices:\n  - {id: a, protocol: mqtt, points: [{name: x}, {name: y}]}\n  - {id: b, protocol: mqtt}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(c.Devices())
	if want := "[{a mqtt [x y] 2} {b mqtt [] 3}]"; got != want {
		t.Errorf("devices = %s, want %s", got, want)
	}
}

// `check` stops on SIGTERM through the context, even in a large file.
func TestParseStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := config.ParseContext(ctx, manyModbusDevices(1000))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var probs config.Problems
	if errors.As(err, &probs) {
		t.Errorf("a cancelled parse is not a list of the config's problems: %v", err)
	}
}

// A reload restarts or reconfigures a protocol when its source changed: values and
// tags count, comments and quoting do not.
func TestProtocolSource(t *testing.T) {
	src := func(y string) string {
		t.Helper()
		c, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return c.ProtocolSource("mqtt")
	}
	base := src("devices:\n  - {id: a, protocol: mqtt, labels: {line: x}}\n")
	if got := src("devices:\n  # the fryer\n  - {id: 'a', protocol: mqtt, labels: {line: \"x\"}}\n"); got != base {
		t.Errorf("a comment and quotes changed the source:\n%s\n%s", got, base)
	}
	for _, y := range []string{
		"devices:\n  - {id: a, protocol: mqtt, labels: {line: y}}\n",
		"devices:\n  - {id: a, protocol: mqtt, labels: {line: x}}\n  - {id: b, protocol: mqtt}\n",
	} {
		if src(y) == base {
			t.Errorf("%q has the same source as the base", y)
		}
	}
	if src("devices:\n  - {id: a, protocol: mqtt, labels: {line: \"1\"}}\n") == src("devices:\n  - {id: a, protocol: mqtt, labels: {line: 1}}\n") {
		t.Error(`"1" and 1 have the same source`)
	}
}
