// Package k8scheck checks edgegate's Kubernetes manifests and rendered Helm chart
// without a cluster. Decode turns YAML into the Kubernetes API types strictly, the
// way the API server reads them (unknown and duplicate fields are errors); Set.Check
// then checks what no schema can: that each pod runs edgegate the way its embedded
// config says (mounts, ports, probes, socket, certificates, grace period), that the
// pods meet Pod Security "restricted", and that Services, monitors, budgets and
// policies select the pods and name ports they have. It starts nothing and talks
// to no server.
package k8scheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest document.
type Object struct {
	// Source says where it came from: file and document number.
	Source     string
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	// Obj is a pointer to the typed object: *appsv1.Deployment, *cmv1.Certificate...
	Obj any
}

func (o Object) String() string {
	return fmt.Sprintf("%s: %s %s", o.Source, o.Kind, o.Name)
}

// kinds are the types edgegate's manifests and chart may use; anything else is an
// error, so that a new kind gets a type (and its checks) before it ships.
var kinds = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/PersistentVolumeClaim":                func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"apps/v1/DaemonSet":                       func() any { return &appsv1.DaemonSet{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monv1.ServiceMonitor{} },
	"cert-manager.io/v1/Certificate":          func() any { return &cmv1.Certificate{} },
	"cert-manager.io/v1/Issuer":               func() any { return &cmv1.Issuer{} },
	"cert-manager.io/v1/ClusterIssuer":        func() any { return &cmv1.ClusterIssuer{} },
}

// Decode reads every document of a YAML stream into its API type. Empty documents
// (comments only) are skipped. Every problem is returned, each naming its source.
func Decode(source string, data []byte) ([]Object, error) {
	var objs []Object
	var errs []error
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return objs, fmt.Errorf("%s: %w", source, err)
		}
		where := fmt.Sprintf("%s#%d", source, i)
		o, err := decodeOne(where, doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o != nil {
			objs = append(objs, *o)
		}
	}
	return objs, errors.Join(errs...)
}

func decodeOne(where string, doc []byte) (*Object, error) {
	// YAML to JSON first (duplicate keys are errors there), then JSON into the
	// type with the API machinery's own strict decoder: case-sensitive, unknown
	// and duplicate fields reported.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, fmt.Errorf("%s: apiVersion and kind are required", where)
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: %s %s is not a kind edgegate's manifests use (add it to k8scheck's kinds, with its checks)", where, tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", where, tm.Kind, err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %s: %w", where, tm.Kind, errors.Join(strict...))
	}
	meta := obj.(metav1.Object)
	if meta.GetName() == "" {
		return nil, fmt.Errorf("%s: %s: metadata.name is required", where, tm.Kind)
	}
	return &Object{
		Source:     where,
		APIVersion: tm.APIVersion,
		Kind:       tm.Kind,
		Name:       meta.GetName(),
		Namespace:  meta.GetNamespace(),
		Obj:        obj,
	}, nil
}
