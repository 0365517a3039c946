package mqtt

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// tahuEvent is a line edge.js prints.
type tahuEvent struct {
	Event   string `json:"event"`
	Device  string `json:"device"`
	Metrics []struct {
		Name, Type, Value string
	} `json:"metrics"`
}

// TestTahuEdgeNode: Eclipse Tahu's JavaScript sparkplug-client 3.2.4 as an edge node
// (protocols/sparkplug/testdata/tahu/edge.js), written independently of this
// package's encoder, publishes NBIRTH, DBIRTH (every scalar type) and DDATA into the
// gateway; the hub gets typed values; a gateway write reaches Tahu as a DCMD; Tahu's
// NDEATH on stop disconnects the devices.
func TestTahuEdgeNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (Debian package nodejs)")
	}
	dir, _ := filepath.Abs("../sparkplug/testdata/tahu")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "sparkplug-client")); err != nil {
		t.Skip("sparkplug-client is not installed (npm ci --prefix protocols/sparkplug/testdata/tahu)")
	}
	cfg := testConfig()
	cfg.AllowAnonymous = false
	cfg.Users = []UserConfig{{Username: "tahu", PasswordHash: hash(t, "pw"),
		Publish:   []string{"spBv1.0/tahu/+/tahu-node", "spBv1.0/tahu/+/tahu-node/#"},
		Subscribe: []string{"spBv1.0/tahu/NCMD/tahu-node/#", "spBv1.0/tahu/DCMD/tahu-node/#"}}}
	cfg.Sparkplug.Enabled = true
	e := start(t, cfg)

	cmd := exec.Command(node, filepath.Join(dir, "edge.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EDGEGATE_MQTT_URL=mqtt://"+e.addr(), "EDGEGATE_MQTT_USER=tahu", "EDGEGATE_MQTT_PASSWORD=pw")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	events := make(chan tahuEvent, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev tahuEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err == nil {
				events <- ev
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	next := func(what string) tahuEvent {
		t.Helper()
		select {
		case ev := <-events:
			if ev.Event == "error" {
				t.Fatalf("edge.js: %+v", ev)
			}
			return ev
		case err := <-exited:
			t.Fatalf("edge.js exited waiting for %s: %v", what, err)
		case <-time.After(waitTimeout):
			t.Fatalf("edge.js: no %s", what)
		}
		return tahuEvent{}
	}
	if ev := next("births"); ev.Event != "births" {
		t.Fatalf("edge.js: %+v", ev)
	}

	// NBIRTH: Node Control/Rebirth, Temp, bdSeq (Tahu adds it); DBIRTH: 15; DDATA: 2.
	got := map[string]*bridge.Message{}
	var ddata []*bridge.Message
	for i, m := range e.next(3 + 15 + 2) {
		if i >= 18 {
			ddata = append(ddata, m)
			continue
		}
		got[m.Device+"/"+m.Point] = m
		if m.Quality != bridge.QualityGood || m.Labels[labelSparkplugGroup] != "tahu" {
			t.Errorf("%s/%s: quality %v labels %v", m.Device, m.Point, m.Quality, m.Labels)
		}
	}
	want := map[string]bridge.Value{
		"tahu-node/Node Control.Rebirth": bridge.Bool(false),
		"tahu-node/Temp":                 bridge.Double(21.5),
		"tahu-node/bdSeq":                bridge.Uint(0),
		"tahu-node.pump/Motor.Speed":     bridge.Int(-300),
		"tahu-node.pump/i8":              bridge.Int(-5),
		"tahu-node.pump/i32":             bridge.Int(-70000),
		"tahu-node.pump/i64":             bridge.Int(-1099511627776),
		"tahu-node.pump/u8":              bridge.Uint(200),
		"tahu-node.pump/u16":             bridge.Uint(60000),
		"tahu-node.pump/u32":             bridge.Uint(4000000000),
		"tahu-node.pump/u64":             bridge.Uint(9007199254740991),
		"tahu-node.pump/d":               bridge.Double(2.25),
		"tahu-node.pump/b":               bridge.Bool(true),
		"tahu-node.pump/s":               bridge.String("run"),
		"tahu-node.pump/text":            bridge.String("long text"),
		"tahu-node.pump/id":              bridge.String("6f1c1b1e-6a0e-4d5e-9c1f-2b7e0f3a9d10"),
		"tahu-node.pump/when":            bridge.Int(1600000000000),
		"tahu-node.pump/raw":             bridge.Bytes([]byte{0, 1, 255}),
	}
	for k, v := range want {
		m := got[k]
		if m == nil {
			t.Errorf("no message for %s", k)
			continue
		}
		if !m.Value.Equal(v) {
			t.Errorf("%s = %#v, want %#v", k, m.Value, v)
		}
	}
	if len(ddata) != 2 || ddata[0].Point != "Motor.Speed" || !ddata[0].Value.Equal(bridge.Int(1500)) ||
		ddata[1].Point != "s" || !ddata[1].Value.Equal(bridge.String("stop")) {
		for _, m := range ddata {
			t.Errorf("DDATA: %s/%s = %#v", m.Device, m.Point, m.Value)
		}
	}
	if n := e.counter(e.a.sp.m.rebirths.WithLabelValues(rebirthSeqGap)) + e.counter(e.a.sp.m.rebirths.WithLabelValues(rebirthNoBirth)); n != 0 {
		t.Errorf("%v rebirth requests for Tahu's in-order messages", n)
	}

	// A gateway write reaches Tahu as a DCMD with the BIRTH's name and type.
	if err := e.hub.Write(context.Background(), "tahu-node.pump", "Motor.Speed", bridge.Int(1200)); err != nil {
		t.Fatalf("write: %v", err)
	}
	ev := next("dcmd")
	if ev.Event != "dcmd" || ev.Device != "pump" || len(ev.Metrics) != 1 || ev.Metrics[0].Name != "Motor/Speed" ||
		!strings.EqualFold(ev.Metrics[0].Type, "Int16") || ev.Metrics[0].Value != "1200" {
		t.Errorf("Tahu received %+v", ev)
	}

	// Tahu stops, publishing its NDEATH: the node and its device are disconnected.
	_ = stdin.Close()
	e.waitFor("tahu-node and tahu-node.pump disconnected", func() bool {
		return e.device("tahu-node").State == bridge.StateDisconnected && e.device("tahu-node.pump").State == bridge.StateDisconnected
	})
	if n := e.counter(e.a.sp.m.deathsIgnored); n != 0 {
		t.Errorf("%v deaths ignored", n)
	}
}
