package test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// kubeVersion is the Kubernetes version the chart is rendered for.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}

// codecs decode strictly: an unknown field, a duplicate field or a wrong type is an error.
var codecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(monitoringv1.AddToScheme(s))
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// object is one rendered manifest, decoded.
type object struct {
	obj    runtime.Object
	kind   string
	name   string
	source string // the manifest text
	hook   bool
}

// rendered is a release rendered client-side, as `helm install --dry-run` / `helm template` do.
type rendered struct {
	release, namespace string
	values             map[string]any
	objects            []object
	notes              string
	lastArgs           []string // of the last runCheck
	// secretFiles are the contents of existing Secrets' keys mounted as files (name -> key ->
	// data); other keys get a stand-in.
	secretFiles map[string]map[string]string
}

// renderOpts names a values set: files (relative to the chart) and --set style overrides.
type renderOpts struct {
	release   string // default "cascade"
	namespace string // default "media"
	files     []string
	set       []string
}

// renderChart renders the chart; it returns Helm's error (template failures, schema violations).
func renderChart(o renderOpts) (*rendered, error) {
	if o.release == "" {
		o.release = "cascade"
	}
	if o.namespace == "" {
		o.namespace = "media"
	}
	var files []string
	for _, f := range o.files {
		files = append(files, chartDir+"/"+f)
	}
	vals, err := (&values.Options{ValueFiles: files, Values: o.set}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = o.release
	inst.Namespace = o.namespace
	inst.KubeVersion = kubeVersion
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	effective, err := chartutil.CoalesceValues(ch, vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{release: o.release, namespace: o.namespace, values: effective, notes: rel.Info.Notes}
	docs := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var sources []struct {
		text string
		hook bool
	}
	for _, k := range keys {
		sources = append(sources, struct {
			text string
			hook bool
		}{docs[k], false})
	}
	for _, h := range rel.Hooks {
		sources = append(sources, struct {
			text string
			hook bool
		}{h.Manifest, true})
	}
	deser := codecs.UniversalDeserializer()
	for _, src := range sources {
		if strings.TrimSpace(stripComments(src.text)) == "" {
			continue
		}
		obj, gvk, err := deser.Decode([]byte(src.text), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("strict decoding of\n%s\n: %w", src.text, err)
		}
		acc, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		r.objects = append(r.objects, object{obj: obj, kind: gvk.Kind, name: acc.GetName(), source: src.text, hook: src.hook})
	}
	return r, nil
}

// stripComments drops YAML comment lines (a document may be only a "# Source:" comment).
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// render renders the chart and fails the test on an error; it also checks what every manifest
// must satisfy.
func render(t *testing.T, o renderOpts) *rendered {
	t.Helper()
	r, err := renderChart(o)
	if err != nil {
		t.Fatalf("render %+v: %v", o, err)
	}
	r.checkCommon(t)
	return r
}

// checkCommon: namespace set, names valid, labels valid, no duplicate objects.
func (r *rendered) checkCommon(t *testing.T) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range r.objects {
		key := o.kind + "/" + o.name
		if seen[key] {
			t.Errorf("%s rendered twice", key)
		}
		seen[key] = true
		acc, _ := meta.Accessor(o.obj)
		if acc.GetNamespace() != r.namespace {
			t.Errorf("%s: namespace %q, want %q", key, acc.GetNamespace(), r.namespace)
		}
		if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
			t.Errorf("%s: name: %v", key, errs)
		}
		if o.kind == "Service" || o.kind == "StatefulSet" {
			// Service names and StatefulSet pod names are DNS labels.
			if errs := validation.IsDNS1035Label(o.name); len(errs) > 0 {
				t.Errorf("%s: name: %v", key, errs)
			}
		}
		checkLabels(t, key, acc.GetLabels())
		if tpl := podTemplate(o.obj); tpl != nil {
			checkLabels(t, key+" pod template", tpl.Labels)
		}
	}
}

func checkLabels(t *testing.T, where string, labels map[string]string) {
	t.Helper()
	for k, v := range labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("%s: label key %q: %v", where, k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("%s: label %s=%q: %v", where, k, v, errs)
		}
	}
}

// get returns the object of kind and name, or fails.
func (r *rendered) get(t *testing.T, kind, name string) runtime.Object {
	t.Helper()
	for _, o := range r.objects {
		if o.kind == kind && o.name == name {
			return o.obj
		}
	}
	t.Fatalf("no %s/%s rendered; have %v", kind, name, r.names())
	return nil
}

// find returns the object of kind and name, or nil.
func (r *rendered) find(kind, name string) runtime.Object {
	for _, o := range r.objects {
		if o.kind == kind && o.name == name {
			return o.obj
		}
	}
	return nil
}

// ofKind returns every object of a kind.
func (r *rendered) ofKind(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r *rendered) names() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.kind+"/"+o.name)
	}
	slices.Sort(out)
	return out
}

// workload returns the node workload (the one StatefulSet, Deployment or DaemonSet).
func (r *rendered) workload(t *testing.T) (kind, name string, tpl *corev1.PodTemplateSpec) {
	t.Helper()
	var found []object
	for _, o := range r.objects {
		if podTemplate(o.obj) != nil && o.kind != "Job" {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one node workload, have %d: %v", len(found), r.names())
	}
	return found[0].kind, found[0].name, podTemplate(found[0].obj)
}

// podTemplate is the pod template of a workload, or nil.
func podTemplate(obj runtime.Object) *corev1.PodTemplateSpec {
	switch w := obj.(type) {
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	case *batchv1.Job:
		return &w.Spec.Template
	}
	return nil
}

// container returns the named container of a pod spec, or fails.
func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// env returns the container's variable, or nil.
func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// port returns the container's named port, or nil.
func port(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// value reads a dotted path from the effective values (chart defaults and the values set).
func (r *rendered) value(path string) any {
	var cur any = r.values
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}
