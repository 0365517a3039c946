package main

import (
	"strings"
	"testing"
)

const profilesConfig = `gateway: {id: shop-0042}
profiles:
  - name: fryer-x200
    protocol: modbus
    unit_id: 1
    poll_interval: 1s
    labels: {model: x200}
    points:
      - {name: oil_temp, register: holding, address: 0, type: float32, unit: "°C", priority: critical}
      - {name: setpoint, register: holding, address: 10, type: uint16, scale: 0.1, writable: true}
  - {name: spare, protocol: modbus}
devices:
  - {id: fryer-1, profile: fryer-x200, address: "tcp://10.0.0.21:502"}
  - {id: fryer-2, profile: fryer-x200, address: "tcp://10.0.0.22:502", labels: {line: b},
     points: [{name: setpoint, writable: false}]}
`

// TestCheckExpand: check --expand prints a config without profiles that check
// accepts as it is; check alone warns of a profile no device uses.
func TestCheckExpand(t *testing.T) {
	in := writeFile(t, profilesConfig)
	code, out, errOut := runCmd(t, "check", "--config", in)
	if code != 0 || !strings.Contains(out, `warning: profile "spare" is used by no device`) {
		t.Errorf("check = %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "check", "--expand", "--config", in)
	if code != 0 || errOut != "" {
		t.Fatalf("check --expand = %d %q", code, errOut)
	}
	for _, want := range []string{"id: fryer-2", "line: b", "model: x200", "unit_id: 1", "address: 10"} {
		if !strings.Contains(out, want) {
			t.Errorf("expanded config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "profile") {
		t.Errorf("expanded config still has profiles:\n%s", out)
	}
	expanded := writeFile(t, out)
	if code, out2, errOut := runCmd(t, "check", "--config", expanded); code != 0 || !strings.Contains(out2, "ok") {
		t.Errorf("check of the expanded config = %d %q %q", code, out2, errOut)
	}
	// A bad profile: the problems, and nothing on stdout.
	bad := writeFile(t, strings.Replace(profilesConfig, "register: holding, address: 10", "register: hold, address: 10", 1))
	code, out, errOut = runCmd(t, "check", "--expand", "--config", bad)
	if code != 1 || out != "" || !strings.Contains(errOut, `device "fryer-1" (profile "fryer-x200"): points[1] "setpoint": register: "hold"`) {
		t.Errorf("check --expand of a bad config = %d %q %q", code, out, errOut)
	}
}

func TestImport(t *testing.T) {
	good := writeFile(t, "tag_device,name,device.protocol,device.address,device.unit_id,register,address,type\n"+
		"fryer-1,oil_temp,modbus,tcp://10.0.0.21:502,1,holding,0,float32\nfryer-1,level,,,,input,3,\n")
	code, out, errOut := runCmd(t, "import", good, "--device-column", "tag_device")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "devices:\n") {
		t.Fatalf("import = %d %q %q", code, out, errOut)
	}
	if code, out2, errOut := runCmd(t, "check", "--config", writeFile(t, out)); code != 0 {
		t.Errorf("check of the import = %d %q %q\n%s", code, out2, errOut, out)
	}
	bad := writeFile(t, "device,name,device.protocol,device.address,device.unit_id,register,address\n"+
		"fryer-1,oil_temp,modbus,tcp://10.0.0.21:502,1,holding,0\nfryer-1,level,,,,input,three\nfryer-1,x,,,,holdin,4\n")
	code, out, errOut = runCmd(t, "import", bad)
	if code != 1 || out != "" {
		t.Errorf("import of bad rows = %d %q", code, out)
	}
	for _, want := range []string{"2 problem(s)", `line 3, column "address"`, `line 4, column "register"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("import output lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, _ := runCmd(t, "import"); code != 2 {
		t.Errorf("import without a file = %d, want 2", code)
	}
}
