package k8scheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"sigs.k8s.io/yaml"
)

// render is `helm template` (client-only install) of the chart with vals, exactly
// as `helm install` renders it: values coalesced with the chart's defaults,
// validated against values.schema.json, templates executed.
func render(t *testing.T, name string, vals map[string]any) (string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(action.NewConfiguration())
	in.DryRunStrategy = action.DryRunClient
	in.ReleaseName = name
	in.Namespace = "edgegate"
	in.Replace = true
	kv, err := common.ParseKubeVersion("v1.34.0")
	if err != nil {
		t.Fatal(err)
	}
	in.KubeVersion = kv
	rel, err := in.Run(ch, vals)
	if err != nil {
		return "", err
	}
	return rel.(*release.Release).Manifest, nil
}

func values(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	v, err := common.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestChartRenders renders the chart with its defaults and with each example values
// file, decodes every object strictly and runs every check on the result.
func TestChartRenders(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml: %v", err)
	}
	for _, f := range append([]string{""}, files...) {
		name := "default"
		if f != "" {
			name = strings.TrimSuffix(filepath.Base(f), "-values.yaml")
		}
		t.Run(name, func(t *testing.T) {
			vals := values(t, f)
			manifest, err := render(t, "edgegate", vals)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			// EDGEGATE_RENDER_DIR=/tmp/x keeps what was rendered, to read it.
			if dir := os.Getenv("EDGEGATE_RENDER_DIR"); dir != "" {
				if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(manifest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := Decode(name, []byte(manifest))
			if err != nil {
				t.Error(err)
			}
			set := Set(objs)
			opt := Options{Image: image(t)}
			// A values file that names its own issuer points at the cluster's.
			if tls, _ := vals["tls"].(map[string]any); tls != nil {
				if cm, _ := tls["certManager"].(map[string]any); cm != nil && cm["issuerRef"] != nil {
					opt.ExternalIssuers = true
				}
			}
			for _, err := range set.Check(opt) {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("rendered:\n%s", manifest)
			}
		})
	}
}

// TestChartRendersExamples: the chart in each mode renders what the plain
// manifests in examples/kubernetes have, so the two do not drift apart.
func TestChartRendersEachMode(t *testing.T) {
	want := map[string][]string{
		"sidecar":    {"ConfigMap", "Deployment", "ServiceAccount"},
		"standalone": {"ConfigMap", "Deployment", "Service", "Certificate", "Issuer", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "PersistentVolumeClaim", "ServiceAccount"},
		"daemonset":  {"ConfigMap", "DaemonSet", "Service", "Certificate", "PodDisruptionBudget", "ServiceAccount"},
	}
	for name, kinds := range want {
		manifest, err := render(t, "edgegate", values(t, filepath.Join(chartDir, "ci", name+"-values.yaml")))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs, err := Decode(name, []byte(manifest))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kinds {
			if len(Set(objs).Of(k)) == 0 {
				t.Errorf("%s: renders no %s", name, k)
			}
		}
	}
}

// TestChartRefusesBadValues: a wrong value fails at install time, with a message
// that names it, from the schema or from the chart's own checks.
func TestChartRefusesBadValues(t *testing.T) {
	cases := []struct {
		name, values, want string
	}{
		{"unknown mode", "mode: sidecars", "mode"},
		{"misspelt key", "replica: 2", "replica"},
		{"port as text", "grpc: {port: fifty}", "port"},
		{"port out of range", "http: {port: 70000}", "port"},
		{"no memory limit", "resources: {limits: {memory: null}}", "memory"},
		{"bad duration", "gateway: {shutdownTimeout: ten}", "shutdownTimeout"},
		{"config section the chart writes", "config: {grpc: {listen: 0.0.0.0:1}}", "config"},
		{"plaintext without insecure", "tls: {enabled: false}", "insecure: true"},
		{"grpc probe with mutual TLS", "probes: {type: grpc}", "cannot present"},
		{"grpc probe in sidecar mode", "mode: sidecar\nprobes: {type: grpc}", "Unix socket"},
		{"hostNetwork Deployment", "hostNetwork: true", "DaemonSet"},
		{"udp typo", "devicePorts: [{name: coap, port: 5683, protocol: udp}]", "protocol"},
		{"sidecar named edgegate", "mode: sidecar\nsidecar: {containers: [{name: edgegate, image: x}]}", "name"},
		{"bad serial path", "kind: DaemonSet\nserialDevices: [ttyUSB0]", "serialDevices"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tc.values), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, "edgegate", vals)
			if err == nil {
				t.Fatalf("values %q rendered", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q: %v", tc.want, err)
			}
		})
	}
}

// The chart's README documents every top-level value.
func TestChartValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(b, &vals); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range vals {
		if !strings.Contains(string(readme), "`"+k) {
			t.Errorf("README.md does not document the value %s", k)
		}
	}
}

// TestChartRollsOnlyForRestarts: a change of devices reaches the running gateway
// through the file (no roll); a change of the grpc section needs a restart (a roll).
func TestChartRollsOnlyForRestarts(t *testing.T) {
	annotation := func(vals string) string {
		t.Helper()
		var v map[string]any
		if err := yaml.Unmarshal([]byte(vals), &v); err != nil {
			t.Fatal(err)
		}
		manifest, err := render(t, "edgegate", v)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Decode("chart", []byte(manifest))
		if err != nil {
			t.Fatal(err)
		}
		ws := Set(objs).Workloads()
		if len(ws) != 1 {
			t.Fatalf("%d workloads", len(ws))
		}
		return ws[0].Meta.Annotations["edgegate.io/restart-config"]
	}
	base := annotation("config: {modbus: {poll_interval: 1s}}")
	if base == "" {
		t.Fatal("no edgegate.io/restart-config annotation")
	}
	if a := annotation("config: {modbus: {poll_interval: 2s}}"); a != base {
		t.Error("a change of a protocol section rolls the pods")
	}
	if a := annotation("config: {modbus: {poll_interval: 1s}}\ngrpc: {settings: {max_subscribers: 64}}"); a == base {
		t.Error("a change of the grpc section does not roll the pods")
	}
}
