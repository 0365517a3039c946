package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/client"
	"github.com/edgegate/edgegate/examples/k8scheck"
	"github.com/edgegate/edgegate/examples/kitchen-display/kitchen"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog (through client-go, imported by k8scheck's Helm SDK) starts its
		// flush daemon in an init function; it is the process's.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// TestManifests decodes the Kubernetes manifests strictly and checks them the way
// examples/k8scheck checks the project's own: edgegate as a native sidecar, its
// config's files and socket on the right volumes, probes, ports and Services.
func TestManifests(t *testing.T) {
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var set k8scheck.Set
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := k8scheck.Decode(f, b)
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, objs...)
	}
	b, err := os.ReadFile("../helm/edgegate/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		t.Fatal(err)
	}
	// The MQTT certificate is a Secret made outside this set (cert-manager or kubectl).
	for _, err := range set.Check(k8scheck.Options{Image: "ghcr.io/edgegate/edgegate:" + chart.AppVersion, ExternalSecrets: true}) {
		t.Error(err)
	}
	ws := set.Workloads()
	if len(ws) != 1 {
		t.Fatalf("%d workloads", len(ws))
	}
	spec := ws[0].Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].RestartPolicy == nil ||
		*spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways || spec.InitContainers[0].Args[0] != "serve" {
		t.Error("edgegate is not a native sidecar")
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Args[0] != "display" ||
		!strings.Contains(strings.Join(spec.Containers[0].Args, " "), "--server unix:///run/edgegate/grpc.sock") {
		t.Error("the display does not dial the sidecar's socket")
	}
}

func TestBoardPage(t *testing.T) {
	d := kitchen.New(kitchen.Config{})
	now := time.Now()
	d.Apply(&client.Message{Sequence: 1, Device: "pos-1", Point: "order", Value: client.String("7: 2x fries, <b>soup</b>"), GatewayTime: now}, now)
	d.Apply(&client.Message{Sequence: 2, Device: "fryer-1", Point: "oil_temp", Value: client.Double(201), Quality: client.QualityGood}, now)
	d.Apply(&client.Message{Sequence: 3, Device: "fryer-1", Point: "heater", Value: client.Bool(false)}, now)
	srv := httptest.NewServer(boardHandler(d))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{"#7", "2x fries", "&lt;b&gt;soup&lt;/b&gt;", "fryer-1 is too hot (201.0 °C)", "heater off"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Error(resp.Status)
	}
	if s := render(d.Board()); !strings.Contains(s, "TOO HOT") || !strings.Contains(s, "#7") {
		t.Errorf("text board:\n%s", s)
	}
	srv.Client().CloseIdleConnections()
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	if err := run(ctx, nil, io.Discard); err == nil {
		t.Error("no command accepted")
	}
	if err := run(ctx, []string{"fry"}, io.Discard); err == nil {
		t.Error("unknown command accepted")
	}
	if err := run(ctx, []string{"pos", "--terminals", "0"}, io.Discard); err == nil {
		t.Error("--terminals 0 accepted")
	}
}
