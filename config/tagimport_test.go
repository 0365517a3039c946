package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/protocols/opcua"
)

const goodTags = `device,name,device.protocol,device.address,device.unit_id,device.labels.line,register,address,type,unit,scale,writable,priority
fryer-1,oil_temp,modbus,tcp://10.0.0.21:502,1,a,holding,0,float32,°C,,,critical
fryer-1,setpoint,,,,,holding,10,uint16,,0.1,true,
fryer-1,123,,,,,coil,0x10,,,,,
"fryer-2",oil_temp,modbus,"tcp://10.0.0.22:502",2,, holding ,0,float32,°C,,,
`

func TestImportTags(t *testing.T) {
	out, err := config.ImportTags(strings.NewReader(goodTags), "")
	if err != nil {
		t.Fatal(err)
	}
	devs := modbusDevices(t, parseOK(t, string(out)))
	f1, f2 := devs["fryer-1"], devs["fryer-2"]
	if len(devs) != 2 || *f1.UnitID != 1 || f1.Address != "tcp://10.0.0.21:502" || f1.Labels["line"] != "a" || len(f1.Points) != 3 {
		t.Fatalf("fryer-1 = %+v\n%s", f1, out)
	}
	p := f1.Points
	if p[0].Unit != "°C" || p[0].Priority != "critical" || p[0].Type != "float32" ||
		!p[1].Writable || *p[1].Scale != 0.1 || *p[1].Address != 10 ||
		p[2].Name != "123" || *p[2].Address != 16 || p[2].Register != "coil" {
		t.Errorf("fryer-1 points = %+v\n%s", p, out)
	}
	if *f2.UnitID != 2 || f2.Points[0].Register != "holding" || f2.Labels != nil {
		t.Errorf("fryer-2 = %+v", f2)
	}
	// A spreadsheet's byte order mark is not part of the first column's name.
	if _, err := config.ImportTags(strings.NewReader("\ufeff"+goodTags), ""); err != nil {
		t.Errorf("with a byte order mark: %v", err)
	}
	// Another device column, and an OPC UA list with point labels absent.
	out, err = config.ImportTags(strings.NewReader("plc,name,node,device.protocol,device.endpoint,unit\nline-1,speed,ns=2;s=Speed,opcua,opc.tcp://127.0.0.1:4840,rpm\n"), "plc")
	if err != nil {
		t.Fatal(err)
	}
	op := parseOK(t, string(out)).Protocols["opcua"].(*opcua.Config).Devices
	if len(op) != 1 || op[0].ID != "line-1" || op[0].Points[0].Node != "ns=2;s=Speed" || op[0].Points[0].Unit != "rpm" {
		t.Errorf("opcua = %+v\n%s", op, out)
	}
}

// TestImportBadRows: every bad row, with its line and column, in line order, and
// no document.
func TestImportBadRows(t *testing.T) {
	in := `device,name,device.protocol,device.address,device.unit_id,register,address,type,writable
fryer-1,oil_temp,modbus,tcp://10.0.0.21:502,1,holding,0,float32,
fryer-1,level,,,,holding,zero,,
fryer-1,fan,,,,coil,1,,maybe
fryer-1,oil_temp,,,,holding,4,,
fryer-2,oil_temp,modbus,tcp://10.0.0.22:502,2,holdin,0,float32,
,orphan,modbus,,,,,,
fryer-3,t,modbus,tcp://10.0.0.23:502,1,holding,0
fryer-4,t,bacnet,x,,,,,
fryer-5,t,,,,holding,0,,
"fryer-6,t
`
	out, err := config.ImportTags(strings.NewReader(in), "device")
	if err == nil || out != nil {
		t.Fatalf("out = %q, err = %v", out, err)
	}
	var probs config.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("%T %v", err, err)
	}
	want := []string{
		`line 3, column "address": device "fryer-1": cannot unmarshal !!str ` + "`zero`" + ` into int`,
		`line 4, column "writable": device "fryer-1": cannot unmarshal !!str ` + "`maybe`" + ` into bool`,
		`line 5, column "name": device "fryer-1" has a point "oil_temp" on line 2 already`,
		`line 6, column "register": device "fryer-2": points[0] "oil_temp": register: "holdin"`,
		`line 7, column "device": required`,
		`line 8: 7 cells, the header has 9`,
		`line 9, column "device.protocol": device "fryer-4": unknown protocol "bacnet"`,
		`line 10, column "device.protocol": device "fryer-5": required (or device.profile)`,
		`line 11`,
	}
	t.Logf("%v", err)
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(probs), len(want), err)
	}
	for i, w := range want {
		if i < len(probs) && !strings.HasPrefix(probs[i].Error(), w) {
			t.Errorf("problem %d = %q, want it to begin %q", i, probs[i], w)
		}
	}
}

func TestImportConflictsAndHeader(t *testing.T) {
	for _, c := range []struct {
		name, csv string
		want      []string
	}{
		{"conflicting device keys", "device,name,device.protocol,device.address,device.unit_id,register,address\n" +
			"f1,a,modbus,tcp://10.0.0.1:502,1,holding,0\nf1,b,modbus,tcp://10.0.0.2:502,1,holding,1\nf1,c,,,2,holding,2\n",
			[]string{`line 3, column "device.address": device "f1": "tcp://10.0.0.2:502" here, "tcp://10.0.0.1:502" on line 2`,
				`line 4, column "device.unit_id": device "f1": "2" here, "1" on line 2`}},
		{"no name column", "device,register\nf1,holding\n", []string{`line 1: the column "name" is required`}},
		{"no device column", "dev,name\nf1,a\n", []string{`line 1: the column "device" is required`}},
		{"duplicate column", "device,name,address,address\n", []string{`line 1, column "address": a second column of this name`}},
		{"device.id", "device,name,device.id\n", []string{`line 1, column "device.id": the device's id is the "device" column`}},
		{"dotted point key", "device,name,a.b\n", []string{`line 1, column "a.b": only labels.KEY`}},
		{"unknown point key", "device,name,device.protocol,colour\nf1,a,modbus,red\n", []string{`line 2, column "colour": device "f1": "colour" is not a key of modbus.PointConfig`}},
		{"point labels modbus lacks", "device,name,device.protocol,labels.area\nf1,a,modbus,x\n", []string{`line 2, column "labels.area": device "f1": "labels" is not a key of modbus.PointConfig`}},
		{"empty file", "", []string{"line 1: the header row is missing"}},
		{"header only", "device,name\n", []string{"line 1: no rows"}},
	} {
		out, err := config.ImportTags(strings.NewReader(c.csv), "device")
		if err == nil || out != nil {
			t.Errorf("%s: accepted:\n%s", c.name, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: lacks %q:\n%v", c.name, w, err)
			}
		}
	}
}

func TestImportDeviceColumnIsNoKey(t *testing.T) {
	for _, col := range []string{"name", "device.address", "labels.x"} {
		if _, err := config.ImportTags(strings.NewReader(col+",name\nx,y\n"), col); err == nil || !strings.Contains(err.Error(), "is a point's or a device's key") {
			t.Errorf("--device-column %s: %v", col, err)
		}
	}
}

// A device that takes a profile is passed through: its protocol and points are
// the profile's, known where the document joins the config that has it.
func TestImportWithProfile(t *testing.T) {
	out, err := config.ImportTags(strings.NewReader("device,name,device.profile,device.address,writable\nfryer-9,setpoint,fryer-x200,tcp://10.0.0.29:502,false\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Replace(fryers, "devices:\n", "devices:\n"+string(out[len("devices:\n"):]), 1)
	devs := modbusDevices(t, parseOK(t, joined))
	if d := devs["fryer-9"]; len(d.Points) != 2 || d.Points[1].Writable || *d.UnitID != 1 {
		t.Errorf("fryer-9 = %+v\n%s", d, joined)
	}
}

// FuzzImport: any input either fails with problems or yields a document that
// Parse accepts.
func FuzzImport(f *testing.F) {
	f.Add(goodTags)
	f.Add("device,name,device.protocol,register,address\nf1,a,modbus,holding,0\n")
	f.Add("device,name,device.protocol,device.address,device.unit_id,register,address\nf1,a,modbus,tcp://10.0.0.1:502,1,holding,0\n")
	f.Add("device,name,device.protocol\ne1,t,mqtt\ne1,u,mqtt\n")
	f.Add("device,name,device.protocol,device.endpoint,node\np,s,opcua,opc.tcp://127.0.0.1:4840,i=1\n")
	f.Add("device,name,device.protocol,device.address,path\nm,k,coap,coap://127.0.0.1,/k\n")
	f.Add("\"a\nb\",name\n")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := config.ImportTags(strings.NewReader(in), "device")
		if err != nil {
			if out != nil {
				t.Fatalf("output with an error: %q", out)
			}
			return
		}
		c, err := config.Parse(out)
		if err != nil {
			t.Fatalf("the import of %q does not parse: %v\n%s", in, err, out)
		}
		c.FunctionSet.Close()
	})
}
