package k8scheck

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// Set is what is applied together: one directory of manifests, or one rendered
// chart.
type Set []Object

// Options say what a Set must hold.
type Options struct {
	// Image is the edgegate image every edgegate container must run.
	Image string
	// ExternalIssuers lets a Certificate name an issuer that is not in the Set (a
	// chart pointed at the cluster's own issuer).
	ExternalIssuers bool
	// ExternalSecrets lets a pod mount a Secret that neither the Set nor a
	// Certificate in it provides (TLS material made by hand).
	ExternalSecrets bool
}

// Workload is a pod template and what was found in it.
type Workload struct {
	Object
	Labels  map[string]string
	Spec    *corev1.PodSpec
	Meta    *metav1.ObjectMeta
	Gateway *Gateway // the edgegate container's config
	// Container is the edgegate container; Sidecar says it is a native sidecar.
	Container *corev1.Container
	Sidecar   bool
}

// Workloads are the Set's Deployments and DaemonSets.
func (s Set) Workloads() []Workload {
	var out []Workload
	for _, o := range s {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			out = append(out, Workload{Object: o, Labels: v.Spec.Template.Labels, Spec: &v.Spec.Template.Spec, Meta: &v.Spec.Template.ObjectMeta})
		case *appsv1.DaemonSet:
			out = append(out, Workload{Object: o, Labels: v.Spec.Template.Labels, Spec: &v.Spec.Template.Spec, Meta: &v.Spec.Template.ObjectMeta})
		}
	}
	return out
}

// Find returns the object of a kind and name in a namespace, or nil.
func (s Set) Find(kind, namespace, name string) *Object {
	for i, o := range s {
		if o.Kind == kind && o.Name == name && o.Namespace == namespace {
			return &s[i]
		}
	}
	return nil
}

// Of returns every object of a kind.
func (s Set) Of(kind string) []Object {
	var out []Object
	for _, o := range s {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// Check runs every check and returns every problem, each naming its object.
func (s Set) Check(opt Options) []error {
	var errs []error
	add := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	seen := map[string]string{}
	for _, o := range s {
		k := o.Kind + "/" + o.Namespace + "/" + o.Name
		if prev, dup := seen[k]; dup {
			add(o, "also defined in %s", prev)
		}
		seen[k] = o.Source
	}
	ws := s.Workloads()
	if len(ws) == 0 {
		errs = append(errs, errors.New("no Deployment or DaemonSet"))
	}
	for i := range ws {
		errs = append(errs, s.checkWorkload(&ws[i], opt)...)
	}
	for _, o := range s {
		switch v := o.Obj.(type) {
		case *corev1.Service:
			s.checkService(o, v, ws, add)
		case *monv1.ServiceMonitor:
			s.checkServiceMonitor(o, v, add)
		case *policyv1.PodDisruptionBudget:
			if v.Spec.MinAvailable != nil && v.Spec.MaxUnavailable != nil {
				add(o, "minAvailable and maxUnavailable are both set")
			}
			if len(selected(v.Spec.Selector, o.Namespace, ws)) == 0 {
				add(o, "selects no pod of this set")
			}
		case *networkingv1.NetworkPolicy:
			sel := selected(&v.Spec.PodSelector, o.Namespace, ws)
			if len(sel) == 0 {
				add(o, "selects no pod of this set")
			}
			// Network policies do not apply to pods on the host's network.
			sel = slices.DeleteFunc(sel, func(w Workload) bool { return w.Spec.HostNetwork })
			if len(sel) == 0 {
				continue
			}
			for _, r := range v.Spec.Ingress {
				for _, p := range r.Ports {
					if p.Port != nil && !anyHasPort(sel, *p.Port, protocolOr(p.Protocol)) {
						add(o, "ingress port %s/%s is no container port of the pods it selects", p.Port.String(), protocolOr(p.Protocol))
					}
				}
			}
		case *cmv1.Certificate:
			ref := v.Spec.IssuerRef
			kind := ref.Kind
			if kind == "" {
				kind = "Issuer"
			}
			ns := o.Namespace
			if kind == "ClusterIssuer" {
				ns = ""
			}
			if s.Find(kind, ns, ref.Name) == nil && !opt.ExternalIssuers {
				add(o, "issuerRef %s %q is not in this set", kind, ref.Name)
			}
			if v.Spec.SecretName == "" {
				add(o, "secretName is required")
			}
		}
	}
	return errs
}

// checkWorkload checks one pod template against its edgegate config.
func (s Set) checkWorkload(w *Workload, opt Options) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", w.Object, fmt.Sprintf(format, args...)))
	}
	switch v := w.Obj.(type) {
	case *appsv1.Deployment:
		checkSelector(v.Spec.Selector, w.Labels, add)
	case *appsv1.DaemonSet:
		checkSelector(v.Spec.Selector, w.Labels, add)
	}
	spec := w.Spec
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" && s.Find("ServiceAccount", w.Namespace, sa) == nil {
		add("serviceAccountName %q is not in this set", sa)
	}

	// Pod Security: "restricted" as the API server's admission plugin evaluates it.
	// A pod on the node's network may break only the rules that hostNetwork and
	// hostPath volumes break.
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		add("pod security evaluator: %v", err)
	} else {
		hostOK := map[string]bool{"host namespaces": true, "hostPath volumes": true, "restricted volume types": true}
		for _, r := range ev.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, w.Meta, spec) {
			if r.Allowed || (spec.HostNetwork && hostOK[r.ForbiddenReason]) {
				continue
			}
			add("Pod Security restricted: %s (%s)", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}

	for _, c := range allContainers(spec) {
		checkContainerBasics(c, add)
		if isEdgegate(c) {
			checkMemoryLimit(c, add)
		}
	}

	// The edgegate container: `edgegate serve --config FILE`.
	for i := range spec.InitContainers {
		if isEdgegate(&spec.InitContainers[i]) {
			w.Container, w.Sidecar = &spec.InitContainers[i], true
		}
	}
	for i := range spec.Containers {
		if isEdgegate(&spec.Containers[i]) {
			if w.Container != nil {
				add("more than one edgegate container")
			}
			w.Container = &spec.Containers[i]
		}
	}
	c := w.Container
	if c == nil {
		add("no edgegate container (image *edgegate*, args serve --config FILE)")
		return errs
	}
	if opt.Image != "" && c.Image != opt.Image {
		add("container %s: image %q, want %q", c.Name, c.Image, opt.Image)
	}
	if w.Sidecar && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
		add("init container %s: restartPolicy must be Always (a native sidecar); as a plain init container it would block the pod", c.Name)
	}
	cfgFile := flagValue(c.Args, "--config")
	if cfgFile == "" || !path.IsAbs(cfgFile) {
		add("container %s: args must give --config with an absolute path", c.Name)
		return errs
	}
	m := mountFor(c, cfgFile)
	if m == nil {
		add("container %s: --config %s is on no volume", c.Name, cfgFile)
		return errs
	}
	if m.SubPath != "" || m.SubPathExpr != "" {
		add("container %s: the config volume %s is mounted with subPath, which never sees a ConfigMap update", c.Name, m.Name)
	}
	if m.MountPath != path.Dir(cfgFile) {
		add("container %s: mount the config's volume at %s (the file's directory), not %s", c.Name, path.Dir(cfgFile), m.MountPath)
	}
	vol := volume(spec, m.Name)
	if vol == nil || vol.ConfigMap == nil {
		add("container %s: the config's volume %s is not a ConfigMap", c.Name, m.Name)
		return errs
	}
	key := path.Base(cfgFile)
	for _, it := range vol.ConfigMap.Items {
		if it.Path == key {
			key = it.Key
		}
	}
	cmObj := s.Find("ConfigMap", w.Namespace, vol.ConfigMap.Name)
	if cmObj == nil {
		add("ConfigMap %q is not in this set", vol.ConfigMap.Name)
		return errs
	}
	data, ok := cmObj.Obj.(*corev1.ConfigMap).Data[key]
	if !ok {
		add("ConfigMap %q has no key %q", vol.ConfigMap.Name, key)
		return errs
	}
	g, err := ParseGateway([]byte(data))
	if err != nil {
		add("ConfigMap %q key %q: edgegate config:\n%v", vol.ConfigMap.Name, key, err)
		return errs
	}
	w.Gateway = g
	s.checkGateway(w, opt, add)
	return errs
}

// checkGateway checks the pod against what its edgegate config needs.
func (s Set) checkGateway(w *Workload, opt Options, add func(string, ...any)) {
	c, g, spec := w.Container, w.Gateway, w.Spec

	// Every file and directory the config names is on a volume; what the
	// gateway writes is on a writable one (the root filesystem is read-only).
	for _, p := range g.Paths {
		if !path.IsAbs(p.Path) {
			add("config %s: %q: use absolute paths in a container", p.Key, p.Path)
			continue
		}
		m := mountFor(c, p.Path)
		if m == nil {
			add("config %s: %s is on no volume of container %s", p.Key, p.Path, c.Name)
			continue
		}
		if p.Write && m.ReadOnly {
			add("config %s: %s is on the read-only volume %s", p.Key, p.Path, m.Name)
		}
		v := volume(spec, m.Name)
		if v != nil && v.Secret != nil {
			s.checkSecretKey(v.Secret.SecretName, w.Namespace, strings.TrimPrefix(strings.TrimPrefix(p.Path, m.MountPath), "/"), opt, func(msg string) {
				add("config %s: %s", p.Key, msg)
			})
		}
	}

	// The gRPC Unix socket: on an emptyDir that another container shares.
	if dir := g.UnixSocket(); dir != "" {
		m := mountFor(c, dir+"/grpc.sock")
		switch {
		case m == nil:
			add("config grpc.listen: %s is on no volume", dir)
		case volume(spec, m.Name) == nil || volume(spec, m.Name).EmptyDir == nil:
			add("config grpc.listen: the socket's volume %s must be an emptyDir", m.Name)
		default:
			shared := false
			for _, o := range allContainers(spec) {
				if o.Name == c.Name {
					continue
				}
				for _, om := range o.VolumeMounts {
					shared = shared || om.Name == m.Name
				}
			}
			if !shared {
				add("config grpc.listen: no other container mounts the socket's volume %s", m.Name)
			}
		}
	}

	// Every listener other pods or devices must reach is a container port.
	for _, l := range g.Listeners {
		if l.Local() {
			continue
		}
		if !hasPort(c, intstr.FromInt32(l.Port()), l.Protocol) {
			add("config %s: %s/%s is not a container port of %s", l.Key, l.Address, l.Protocol, c.Name)
		}
	}

	// Probes: readiness and liveness always; startup for a sidecar, since it is
	// what holds the workload back until the socket exists.
	var http, grpcL *Listener
	for i, l := range g.Listeners {
		switch l.Key {
		case "http.listen":
			http = &g.Listeners[i]
		case "grpc.listen":
			grpcL = &g.Listeners[i]
		}
	}
	probes := map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe}
	for _, name := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		p := probes[name]
		if p == nil {
			if name != "startupProbe" || w.Sidecar {
				add("container %s: no %s", c.Name, name)
			}
			continue
		}
		want := "/readyz"
		if name == "livenessProbe" {
			want = "/healthz"
		}
		switch {
		case p.HTTPGet != nil:
			switch {
			case http == nil:
				add("%s: an HTTP probe, but http.listen is off", name)
			case http.Local():
				add("%s: http.listen %s is loopback, which the kubelet cannot reach (it probes the pod IP)", name, http.Address)
			case !portIs(c, p.HTTPGet.Port, http.Port()):
				add("%s: port %s is not http.listen's %d", name, p.HTTPGet.Port.String(), http.Port())
			}
			if http != nil && http.TLS != (p.HTTPGet.Scheme == corev1.URISchemeHTTPS) {
				add("%s: scheme %q does not match http.listen (TLS: %v)", name, p.HTTPGet.Scheme, http.TLS)
			}
			if http != nil && http.TLS && g.Config.HTTP.TLS.ClientCAFile != "" {
				add("%s: http.tls.client_ca_file asks for client certificates, which the kubelet does not present", name)
			}
			if p.HTTPGet.Path != want {
				add("%s: path %q, want %q", name, p.HTTPGet.Path, want)
			}
		case p.GRPC != nil:
			switch {
			case grpcL.Local() || grpcL.Port() == 0:
				add("%s: a gRPC probe needs grpc.listen on the pod IP, not %s", name, grpcL.Address)
			case p.GRPC.Port != grpcL.Port():
				add("%s: port %d is not grpc.listen's %d", name, p.GRPC.Port, grpcL.Port())
			}
			if svc := p.GRPC.Service; name != "livenessProbe" && (svc == nil || *svc != "edgegate.v1.Gateway") {
				add("%s: service must be edgegate.v1.Gateway (SERVING once ready)", name)
			}
			if grpcL.TLS {
				if g.Config.GRPC.TLS.ClientCAFile != "" {
					add("%s: grpc.tls.client_ca_file asks for client certificates, which the kubelet's gRPC probe does not present", name)
				} else if p.GRPC.Mode == nil || *p.GRPC.Mode != corev1.GRPCProbeModeTLS {
					add("%s: grpc.listen has TLS: the probe needs mode: TLS", name)
				}
			}
		default:
			add("container %s: %s is neither httpGet nor grpc", c.Name, name)
		}
	}

	// Graceful stop: the grace period covers the preStop pause and the three
	// stages of a stop, each bounded by shutdown_timeout.
	grace := int64(30)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	var pause int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pause = c.Lifecycle.PreStop.Sleep.Seconds
	}
	need := pause + int64(3*g.Config.Gateway.ShutdownTimeout/time.Second)
	if grace < need {
		add("terminationGracePeriodSeconds %d is less than preStop %ds + 3 x gateway.shutdown_timeout (%s) = %ds", grace, pause, g.Config.Gateway.ShutdownTimeout, need)
	}
}

// checkSecretKey checks that a file read from a Secret volume is a key the Secret
// will have.
func (s Set) checkSecretKey(secret, namespace, key string, opt Options, fail func(string)) {
	if o := s.Find("Secret", namespace, secret); o != nil {
		sec := o.Obj.(*corev1.Secret)
		_, a := sec.Data[key]
		_, b := sec.StringData[key]
		if !a && !b {
			fail(fmt.Sprintf("Secret %q has no key %q", secret, key))
		}
		return
	}
	for _, o := range s.Of("Certificate") {
		crt := o.Obj.(*cmv1.Certificate)
		if o.Namespace == namespace && crt.Spec.SecretName == secret {
			// cert-manager writes tls.crt and tls.key, and ca.crt where the
			// issuer knows its CA (CA and self-signed issuers do).
			if !slices.Contains([]string{"tls.crt", "tls.key", "ca.crt"}, key) {
				fail(fmt.Sprintf("Secret %q (Certificate %s) has no key %q", secret, o.Name, key))
			}
			for _, u := range crt.Spec.Usages {
				if u == cmv1.UsageClientAuth && !slices.Contains(crt.Spec.Usages, cmv1.UsageServerAuth) {
					fail(fmt.Sprintf("Certificate %s is a client certificate", o.Name))
				}
			}
			return
		}
	}
	if !opt.ExternalSecrets {
		fail(fmt.Sprintf("Secret %q is neither in this set nor made by a Certificate in it", secret))
	}
}

func (s Set) checkService(o Object, svc *corev1.Service, ws []Workload, add func(Object, string, ...any)) {
	var sel []Workload
	for _, w := range ws {
		if w.Namespace == o.Namespace && len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.Labels)) {
			sel = append(sel, w)
		}
	}
	if len(sel) == 0 {
		add(o, "selector %v matches no pod of this set", svc.Spec.Selector)
		return
	}
	for _, p := range svc.Spec.Ports {
		target := p.TargetPort
		if target.IntVal == 0 && target.StrVal == "" {
			target = intstr.FromInt32(p.Port)
		}
		if !anyHasPort(sel, target, protocolOr(&p.Protocol)) {
			add(o, "port %s: targetPort %s/%s is no container port of the pods it selects", p.Name, target.String(), protocolOr(&p.Protocol))
		}
	}
}

func (s Set) checkServiceMonitor(o Object, sm *monv1.ServiceMonitor, add func(Object, string, ...any)) {
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		add(o, "selector: %v", err)
		return
	}
	var svcs []*corev1.Service
	for _, so := range s.Of("Service") {
		svc := so.Obj.(*corev1.Service)
		if so.Namespace == o.Namespace && sel.Matches(labels.Set(svc.Labels)) {
			svcs = append(svcs, svc)
		}
	}
	if len(svcs) == 0 {
		add(o, "selects no Service of this set")
	}
	for _, ep := range sm.Spec.Endpoints {
		for _, svc := range svcs {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				add(o, "endpoint port %q is not a port of Service %s", ep.Port, svc.Name)
			}
		}
		if ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil {
			continue
		}
		ca := ep.TLSConfig.CA.Secret
		for _, co := range s.Of("Certificate") {
			crt := co.Obj.(*cmv1.Certificate)
			if co.Namespace != o.Namespace || crt.Spec.SecretName != ca.Name {
				continue
			}
			if ca.Key != "ca.crt" {
				add(o, "tlsConfig.ca: key %q of a cert-manager Secret; the CA is ca.crt", ca.Key)
			}
			if sn := ep.TLSConfig.ServerName; sn != nil && !slices.Contains(crt.Spec.DNSNames, *sn) {
				add(o, "tlsConfig.serverName %q is not among Certificate %s's dnsNames", *sn, co.Name)
			}
		}
	}
}

func checkSelector(sel *metav1.LabelSelector, tmpl map[string]string, add func(string, ...any)) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(tmpl)) {
		add("spec.selector does not match the pod template's labels")
	}
}

// checkContainerBasics: non-root, read-only root, no privilege escalation, no
// capabilities, requests and limits.
func checkContainerBasics(c *corev1.Container, add func(string, ...any)) {
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		add("container %s: readOnlyRootFilesystem must be true", c.Name)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		add("container %s: allowPrivilegeEscalation must be false", c.Name)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		add("container %s: capabilities must drop ALL and add none", c.Name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			add("container %s: no %s request", c.Name, r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			add("container %s: no %s limit", c.Name, r)
		}
	}
}

// checkMemoryLimit: the gateway's Go runtime knows the container's memory limit
// (GOMEMLIMIT from limits.memory), so that it collects harder before the kernel
// kills it.
func checkMemoryLimit(c *corev1.Container, add func(string, ...any)) {
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
			add("container %s: GOMEMLIMIT must come from resourceFieldRef limits.memory", c.Name)
		}
		return
	}
	add("container %s: no GOMEMLIMIT (valueFrom resourceFieldRef limits.memory)", c.Name)
}

func isEdgegate(c *corev1.Container) bool {
	return strings.Contains(c.Image, "edgegate") && len(c.Args) > 0 && c.Args[0] == "serve"
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// mountFor is the container's mount that holds p (the deepest one).
func mountFor(c *corev1.Container, p string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if p == mp || strings.HasPrefix(p, mp+"/") {
			if best == nil || len(mp) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	return best
}

func volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i, v := range spec.Volumes {
		if v.Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func protocolOr(p *corev1.Protocol) corev1.Protocol {
	if p == nil || *p == "" {
		return corev1.ProtocolTCP
	}
	return *p
}

func hasPort(c *corev1.Container, port intstr.IntOrString, proto corev1.Protocol) bool {
	for _, p := range c.Ports {
		if protocolOr(&p.Protocol) != proto {
			continue
		}
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

func anyHasPort(ws []Workload, port intstr.IntOrString, proto corev1.Protocol) bool {
	for _, w := range ws {
		for _, c := range allContainers(w.Spec) {
			if hasPort(c, port, proto) {
				return true
			}
		}
	}
	return false
}

// portIs reports whether a probe's port (a name or a number) is number n.
func portIs(c *corev1.Container, port intstr.IntOrString, n int32) bool {
	if port.Type == intstr.Int {
		return port.IntVal == n
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort == n
		}
	}
	return false
}

func selected(sel *metav1.LabelSelector, namespace string, ws []Workload) []Workload {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil
	}
	var out []Workload
	for _, w := range ws {
		if w.Namespace == namespace && s.Matches(labels.Set(w.Labels)) {
			out = append(out, w)
		}
	}
	return out
}
