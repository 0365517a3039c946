package k8scheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog (through client-go, imported by the Helm SDK) starts its flush
		// daemon in an init function; it is the process's, not a test's.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

const (
	kube     = "../kubernetes"
	chartDir = "../helm/edgegate"
)

// image is the image the manifests must run: the chart's appVersion.
func image(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml: appVersion: %v", err)
	}
	return "ghcr.io/edgegate/edgegate:" + c.AppVersion
}

// load decodes the named files (or every *.yaml of a directory).
func load(t *testing.T, paths ...string) Set {
	t.Helper()
	var files []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
			continue
		}
		m, err := filepath.Glob(filepath.Join(p, "*.yaml"))
		if err != nil || len(m) == 0 {
			t.Fatalf("%s: no manifests", p)
		}
		files = append(files, m...)
	}
	var set Set
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Decode(f, b)
		if err != nil {
			t.Error(err)
		}
		set = append(set, objs...)
	}
	return set
}

func checkSet(t *testing.T, set Set, opt Options) {
	t.Helper()
	for _, err := range set.Check(opt) {
		t.Error(err)
	}
}

func TestSidecarManifests(t *testing.T) {
	set := load(t, kube+"/sidecar")
	checkSet(t, set, Options{Image: image(t)})
	ws := set.Workloads()
	if len(ws) != 1 {
		t.Fatalf("%d workloads, want 1", len(ws))
	}
	w := &ws[0]
	set.checkWorkload(w, Options{}) // finds the edgegate container and its config
	if !w.Sidecar {
		t.Error("edgegate is not a native sidecar (an init container)")
	}
	if w.Gateway == nil || w.Gateway.UnixSocket() != "/run/edgegate" {
		t.Error("the sidecar's gRPC does not listen on unix:///run/edgegate/grpc.sock")
	}
	if len(w.Spec.Containers) == 0 || w.Spec.Containers[0].Name == w.Container.Name {
		t.Error("no workload container beside the sidecar")
	}
}

func TestStandaloneManifests(t *testing.T) {
	set := load(t, kube+"/standalone")
	checkSet(t, set, Options{Image: image(t)})
	for _, kind := range []string{"Namespace", "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "Certificate", "Issuer", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} {
		if len(set.Of(kind)) == 0 {
			t.Errorf("no %s", kind)
		}
	}
	// The Services carry every port of the contract, TCP and UDP.
	want := []string{"50051/TCP", "8080/TCP", "1883/TCP", "8883/TCP", "5683/UDP", "5683/TCP", "5684/UDP", "5684/TCP", "802/TCP"}
	var have []string
	for _, o := range set.Of("Service") {
		for _, p := range o.Obj.(*corev1.Service).Spec.Ports {
			have = append(have, portString(p.Port, p.Protocol))
		}
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			t.Errorf("no Service port %s", w)
		}
	}
}

func TestDaemonSetManifests(t *testing.T) {
	// The DaemonSet replaces the Deployment; everything else of standalone/ applies.
	common, err := filepath.Glob(kube + "/standalone/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	common = slices.DeleteFunc(common, func(f string) bool {
		return strings.HasSuffix(f, "/deployment.yaml") || strings.HasSuffix(f, "/configmap.yaml")
	})
	set := load(t, append(common, kube+"/standalone/daemonset")...)
	checkSet(t, set, Options{Image: image(t)})
	ds := set.Of("DaemonSet")
	if len(ds) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(ds))
	}
	spec := ds[0].Obj.(*appsv1.DaemonSet).Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Error("the DaemonSet is not on the host network with ClusterFirstWithHostNet")
	}
	serial := false
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathCharDev {
			serial = true
		}
	}
	if !serial {
		t.Error("no serial device (hostPath CharDevice) mounted")
	}
}

func portString(port int32, proto corev1.Protocol) string {
	return fmt.Sprintf("%d/%s", port, protocolOr(&proto))
}

// TestChecksBite breaks the sidecar example in the ways the checks exist for, one
// at a time, and expects each to be reported.
func TestChecksBite(t *testing.T) {
	cm, err := os.ReadFile(kube + "/sidecar/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dep, err := os.ReadFile(kube + "/sidecar/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		file      string // "cm" or "dep"
		old, new  string
		wantError string
	}{
		{"plain init container", "dep", "          restartPolicy: Always", "", "restartPolicy must be Always"},
		{"misspelt field", "dep", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", `unknown field "spec.template.spec.initContainers[0].securityContext.readOnlyRootFileSystem"`},
		{"duplicate key", "dep", "  replicas: 1\n", "  replicas: 1\n  replicas: 2\n", "already set in map"},
		{"subPath mount", "dep", "{name: config, mountPath: /etc/edgegate, readOnly: true}", "{name: config, mountPath: /etc/edgegate/edgegate.yaml, subPath: edgegate.yaml, readOnly: true}", "subPath"},
		{"plaintext gRPC on the network", "cm", "listen: unix:///run/edgegate/grpc.sock", "listen: 0.0.0.0:50051", "plaintext listener"},
		{"probe on loopback", "cm", "listen: 0.0.0.0:8080", "listen: 127.0.0.1:8080", "the kubelet cannot reach"},
		{"short grace period", "dep", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 10", "terminationGracePeriodSeconds 10"},
		{"root user", "dep", "runAsUser: 65532", "runAsUser: 0", "Pod Security restricted"},
		{"writable root", "dep", "readOnlyRootFilesystem: true\n            capabilities: {drop: [ALL]}\n          volumeMounts:\n            - {name: config", "readOnlyRootFilesystem: false\n            capabilities: {drop: [ALL]}\n          volumeMounts:\n            - {name: config", "readOnlyRootFilesystem must be true"},
		{"no GOMEMLIMIT", "dep", "            - name: GOMEMLIMIT", "            - name: GOMAXPROCS", "no GOMEMLIMIT"},
		{"no memory limit", "dep", "limits: {cpu: 500m, memory: 256Mi}", "limits: {cpu: 500m}", "no memory limit"},
		{"socket not shared", "dep", "            - {name: socket, mountPath: /run/edgegate}\n      volumes:", "      volumes:", "no other container mounts the socket's volume"},
		{"data on no volume", "cm", "data_dir: /var/lib/edgegate", "data_dir: /srv/edgegate", "is on no volume"},
		{"bad edgegate config", "cm", "register: coil", "register: coils", "edgegate config"},
		{"unknown kind", "dep", "kind: Deployment", "kind: Deploymnet", "not a kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, d := string(cm), string(dep)
			target := &d
			if tc.file == "cm" {
				target = &c
			}
			if !strings.Contains(*target, tc.old) {
				t.Fatalf("the example no longer contains %q", tc.old)
			}
			*target = strings.Replace(*target, tc.old, tc.new, 1)
			var all []string
			objs, err := Decode("configmap.yaml", []byte(c))
			set := Set(objs)
			if err != nil {
				all = append(all, err.Error())
			}
			more, err := Decode("deployment.yaml", []byte(d))
			if err != nil {
				all = append(all, err.Error())
			}
			set = append(set, more...)
			for _, err := range set.Check(Options{}) {
				all = append(all, err.Error())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.wantError) {
				t.Errorf("want an error containing %q; got:\n%s", tc.wantError, strings.Join(all, "\n"))
			}
		})
	}
}
