package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/santhosh-tekuri/jsonschema/v6"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// kubernetesOpenAPI is the Kubernetes release whose OpenAPI documents (in the Go module
// k8s.io/kubernetes, fetched with `go mod download`, never committed) validate the renders.
const kubernetesOpenAPI = "k8s.io/kubernetes@v1.33.0"

// manifest is one rendered document, decoded.
type manifest struct {
	source string // the template it came from
	raw    []byte // the document as rendered
	obj    runtime.Object
	meta   metav1.Object
	kind   string
}

func (m manifest) String() string {
	return fmt.Sprintf("%s %s (%s)", m.kind, m.meta.GetName(), m.source)
}

// decoder decodes strictly: an unknown or mistyped field anywhere is an error.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// splitManifests decodes every document of a render.
func splitManifests(t reporter, rendered string) []manifest {
	t.Helper()
	var out []manifest
	for _, doc := range strings.Split(rendered, "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
		var source string
		var body []string
		for _, line := range strings.Split(doc, "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				source = s
				continue
			}
			body = append(body, line)
		}
		raw := []byte(strings.TrimSpace(strings.Join(body, "\n")))
		if len(raw) == 0 {
			continue
		}
		obj, gvk, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", source, err)
			continue
		}
		meta, err := metaOf(obj)
		if err != nil {
			t.Errorf("%s: %v", source, err)
			continue
		}
		out = append(out, manifest{source: source, raw: raw, obj: obj, meta: meta, kind: gvk.Kind})
	}
	return out
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// TestChartManifestsValidate renders every value set and checks each manifest against the
// Kubernetes API: strict decoding into the API's Go types (client-go, and the Prometheus
// Operator's for the ServiceMonitor), the OpenAPI documents of a Kubernetes release (required
// fields, types, enums), the API's name and label rules, and the references between the
// manifests (selectors, ports, volumes, ConfigMaps, Secrets, scale targets).
func TestChartManifestsValidate(t *testing.T) {
	sets := valueSets(t)
	schemas := openAPISchemas(t)
	for _, name := range sortedNames(sets) {
		t.Run(name, func(t *testing.T) {
			values, err := os.ReadFile(sets[name])
			if err != nil {
				t.Fatal(err)
			}
			ms := splitManifests(t, render(t, sets[name]))
			if len(ms) == 0 {
				t.Fatal("nothing rendered")
			}
			for _, m := range ms {
				schemas.validate(t, m)
				checkNames(t, m)
			}
			checkReferences(t, ms, string(values))
		})
	}
}

// TestChartValidationCatchesMistakes: the checks above fail on manifests with the mistakes
// they exist for, so that a passing run means something.
func TestChartValidationCatchesMistakes(t *testing.T) {
	schemas := openAPISchemas(t)
	good := render(t, filepath.Join(chartDir, "ci", "split-nats-cluster-values.yaml"))
	mistakes := []struct {
		name, old, new, want string
	}{
		{"unknown field", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSecond: 45", `unknown field "spec.template.spec.terminationGracePeriodSecond"`},
		{"wrong type", "replicas: 2\n  selector:", "replicas: two\n  selector:", "replicas"},
		{"missing required field", "        - name: sluiced\n          image:", "        - image:", "missing property 'name'"},
		{"probe on a port the container does not have", "port: http\n", "port: metrics\n", "port metrics"},
		{"volume mounted but not declared", "- name: tmp\n              mountPath: /tmp", "- name: scratch\n              mountPath: /tmp", "volume scratch"},
		{"selector that matches no pod", "app.kubernetes.io/component: opslog\n---", "app.kubernetes.io/component: opslogs\n---", "matches no pod"},
	}
	for _, mk := range mistakes {
		t.Run(mk.name, func(t *testing.T) {
			if !strings.Contains(good, mk.old) {
				t.Fatalf("the render no longer contains %q: update this case", mk.old)
			}
			bad := strings.Replace(good, mk.old, mk.new, 1)
			rec := &collector{}
			for _, m := range splitManifests(rec, bad) {
				schemas.validate(rec, m)
			}
			checkReferences(rec, splitManifests(&collector{}, bad), "")
			if got := strings.Join(rec.msgs, "\n"); !strings.Contains(got, mk.want) {
				t.Errorf("the mistake was not reported as %q; reported:\n%s", mk.want, got)
			}
		})
	}
}

// reporter is where the checks report problems: the test, or a collector.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// collector keeps what the checks report, for the tests of the checks themselves.
type collector struct{ msgs []string }

func (c *collector) Helper() {}
func (c *collector) Errorf(format string, args ...any) {
	c.msgs = append(c.msgs, fmt.Sprintf(format, args...))
}

// openAPI validates objects against the Kubernetes OpenAPI v3 documents.
type openAPI struct {
	byGVK map[string]*jsonschema.Schema
}

var (
	openAPIOnce sync.Once
	openAPIDocs *openAPI
	openAPIErr  error
)

// openAPISchemas compiles the schema of every kind the chart renders from the OpenAPI v3
// documents of kubernetesOpenAPI (downloaded into the Go module cache on first use).
func openAPISchemas(t *testing.T) *openAPI {
	t.Helper()
	openAPIOnce.Do(func() { openAPIDocs, openAPIErr = loadOpenAPI() })
	if openAPIErr != nil {
		t.Fatalf("Kubernetes OpenAPI documents: %v", openAPIErr)
	}
	return openAPIDocs
}

func loadOpenAPI() (*openAPI, error) {
	cmd := exec.Command("go", "mod", "download", "-json", kubernetesOpenAPI)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", kubernetesOpenAPI, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Error != "" || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download %s: %s %w", kubernetesOpenAPI, mod.Error, err)
	}
	dir := filepath.Join(mod.Dir, "api", "openapi-spec", "v3")
	docs := map[string]string{ // group/version → document
		"v1":                           "api__v1_openapi.json",
		"apps/v1":                      "apis__apps__v1_openapi.json",
		"policy/v1":                    "apis__policy__v1_openapi.json",
		"autoscaling/v2":               "apis__autoscaling__v2_openapi.json",
		"networking.k8s.io/v1":         "apis__networking.k8s.io__v1_openapi.json",
		"rbac.authorization.k8s.io/v1": "apis__rbac.authorization.k8s.io__v1_openapi.json",
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	o := &openAPI{byGVK: map[string]*jsonschema.Schema{}}
	for gv, file := range docs {
		path := filepath.Join(dir, file)
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		url := "file://" + filepath.ToSlash(path)
		if err := c.AddResource(url, doc); err != nil {
			return nil, err
		}
		comps, _ := doc.(map[string]any)["components"].(map[string]any)
		schemas, _ := comps["schemas"].(map[string]any)
		for name, s := range schemas {
			sm, _ := s.(map[string]any)
			gvks, _ := sm["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				gm, _ := g.(map[string]any)
				key := fmt.Sprintf("%s/%s/%s", gm["group"], gm["version"], gm["kind"])
				if groupVersion(gm) != gv {
					continue
				}
				sch, err := c.Compile(url + "#/components/schemas/" + strings.ReplaceAll(name, "/", "~1"))
				if err != nil {
					return nil, fmt.Errorf("compile %s: %w", name, err)
				}
				o.byGVK[key] = sch
			}
		}
	}
	return o, nil
}

func groupVersion(gvk map[string]any) string {
	if g, _ := gvk["group"].(string); g != "" {
		return g + "/" + fmt.Sprint(gvk["version"])
	}
	return fmt.Sprint(gvk["version"])
}

// validate checks one manifest against its kind's OpenAPI schema. Kinds the Kubernetes
// documents do not define (the ServiceMonitor CRD) are checked by strict decoding only.
func (o *openAPI) validate(t reporter, m manifest) {
	t.Helper()
	gvk := m.obj.GetObjectKind().GroupVersionKind()
	key := fmt.Sprintf("%s/%s/%s", gvk.Group, gvk.Version, gvk.Kind)
	sch, ok := o.byGVK[key]
	if !ok {
		if gvk.Group == monitoringv1.SchemeGroupVersion.Group {
			return
		}
		t.Errorf("%s: no OpenAPI schema for %s", m, key)
		return
	}
	js, err := yaml.YAMLToJSON(m.raw)
	if err != nil {
		t.Errorf("%s: %v", m, err)
		return
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Errorf("%s: %v", m, err)
		return
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s: %v", m, err)
	}
}

// checkNames applies the API server's rules for names and labels.
func checkNames(t reporter, m manifest) {
	t.Helper()
	name := m.meta.GetName()
	rule := validation.IsDNS1123Subdomain
	if m.kind == "Service" {
		rule = validation.IsDNS1035Label
	}
	for _, msg := range rule(name) {
		t.Errorf("%s: name: %s", m, msg)
	}
	if m.meta.GetNamespace() != "" {
		t.Errorf("%s: sets its namespace (%s); the release's is used", m, m.meta.GetNamespace())
	}
	checkLabels(t, m.String(), m.meta.GetLabels())
	if pt := podTemplate(m.obj); pt != nil {
		checkLabels(t, m.String()+" pod template", pt.Labels)
		for _, c := range pt.Spec.Containers {
			for _, e := range c.Env {
				for _, msg := range validation.IsEnvVarName(e.Name) {
					t.Errorf("%s: env %s: %s", m, e.Name, msg)
				}
			}
		}
	}
}

func checkLabels(t reporter, what string, ls map[string]string) {
	t.Helper()
	for k, v := range ls {
		for _, msg := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label %s: %s", what, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s=%s: %s", what, k, v, msg)
		}
	}
}

func podTemplate(obj runtime.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	}
	return nil
}

// checkReferences checks what the manifests say about each other: workload selectors select
// their pods; probes, Services and NetworkPolicies name ports the pods have; volumes mounted
// are declared; ConfigMaps are rendered; Secrets are rendered or named in the values (the
// user provides those); Services, PDBs and NetworkPolicies select pods; the autoscaler and the
// ServiceMonitor point at what exists.
func checkReferences(t reporter, ms []manifest, values string) {
	t.Helper()
	byKind := map[string]map[string]manifest{}
	for _, m := range ms {
		if byKind[m.kind] == nil {
			byKind[m.kind] = map[string]manifest{}
		}
		if _, dup := byKind[m.kind][m.meta.GetName()]; dup {
			t.Errorf("%s: rendered twice", m)
		}
		byKind[m.kind][m.meta.GetName()] = m
	}
	type pods struct {
		owner manifest
		tmpl  *corev1.PodTemplateSpec
	}
	var all []pods
	for _, m := range ms {
		if pt := podTemplate(m.obj); pt != nil {
			all = append(all, pods{m, pt})
		}
	}
	selects := func(sel map[string]string) []pods {
		var out []pods
		if len(sel) == 0 {
			return nil
		}
		for _, p := range all {
			if labels.SelectorFromSet(sel).Matches(labels.Set(p.tmpl.Labels)) {
				out = append(out, p)
			}
		}
		return out
	}
	selectsLS := func(what string, sel *metav1.LabelSelector) []pods {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Errorf("%s: selector: %v", what, err)
			return nil
		}
		var out []pods
		for _, p := range all {
			if !s.Empty() && s.Matches(labels.Set(p.tmpl.Labels)) {
				out = append(out, p)
			}
		}
		return out
	}
	hasPort := func(p pods, port string) bool {
		for _, c := range p.tmpl.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == port || fmt.Sprint(cp.ContainerPort) == port {
					return true
				}
			}
		}
		return false
	}
	secretKnown := func(name string) bool {
		_, rendered := byKind["Secret"][name]
		return rendered || strings.Contains(values, name)
	}
	for _, p := range all {
		m := p.owner
		var sel *metav1.LabelSelector
		var claims []string
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			sel = o.Spec.Selector
		case *appsv1.StatefulSet:
			sel = o.Spec.Selector
			for _, c := range o.Spec.VolumeClaimTemplates {
				claims = append(claims, c.Name)
			}
			if _, ok := byKind["Service"][o.Spec.ServiceName]; !ok {
				t.Errorf("%s: serviceName %s is not a rendered Service", m, o.Spec.ServiceName)
			}
		}
		if s, err := metav1.LabelSelectorAsSelector(sel); err != nil || s.Empty() || !s.Matches(labels.Set(p.tmpl.Labels)) {
			t.Errorf("%s: its selector does not select its own pods", m)
		}
		volumes := map[string]bool{}
		for _, c := range claims {
			volumes[c] = true
		}
		for _, v := range p.tmpl.Spec.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil {
				if _, ok := byKind["ConfigMap"][v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s is not rendered", m, v.Name, v.ConfigMap.Name)
				}
			}
			if v.Secret != nil && !secretKnown(v.Secret.SecretName) {
				t.Errorf("%s: volume %s: Secret %s is neither rendered nor named in the values", m, v.Name, v.Secret.SecretName)
			}
		}
		if sa := p.tmpl.Spec.ServiceAccountName; sa != "" && sa != "default" {
			if _, ok := byKind["ServiceAccount"][sa]; !ok {
				t.Errorf("%s: ServiceAccount %s is not rendered", m, sa)
			}
		}
		for _, c := range p.tmpl.Spec.Containers {
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s: container %s mounts volume %s, which the pod does not declare", m, c.Name, vm.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !secretKnown(e.ValueFrom.SecretKeyRef.Name) {
					t.Errorf("%s: env %s: Secret %s is neither rendered nor named in the values", m, e.Name, e.ValueFrom.SecretKeyRef.Name)
				}
			}
			for what, pr := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
				if pr == nil {
					continue
				}
				var port string
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port.String()
				case pr.GRPC != nil:
					port = fmt.Sprint(pr.GRPC.Port)
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port.String()
				}
				if port != "" && !hasPort(p, port) {
					t.Errorf("%s: container %s: %s on port %s, which the container does not have", m, c.Name, what, port)
				}
			}
		}
	}
	for _, m := range byKind["Service"] {
		svc := m.obj.(*corev1.Service)
		matched := selects(svc.Spec.Selector)
		if len(matched) == 0 {
			t.Errorf("%s: its selector matches no pod", m)
		}
		for _, sp := range svc.Spec.Ports {
			for _, p := range matched {
				if !hasPort(p, sp.TargetPort.String()) {
					t.Errorf("%s: port %s targets %s, which %s does not have", m, sp.Name, sp.TargetPort.String(), p.owner)
				}
			}
		}
	}
	for _, m := range byKind["PodDisruptionBudget"] {
		if len(selectsLS(m.String(), m.obj.(*policyv1.PodDisruptionBudget).Spec.Selector)) == 0 {
			t.Errorf("%s: its selector matches no pod", m)
		}
	}
	for _, m := range byKind["NetworkPolicy"] {
		np := m.obj.(*networkingv1.NetworkPolicy)
		matched := selectsLS(m.String(), &np.Spec.PodSelector)
		if len(matched) == 0 {
			t.Errorf("%s: its pod selector matches no pod", m)
		}
		for _, rule := range np.Spec.Ingress {
			for _, port := range rule.Ports {
				for _, p := range matched {
					if port.Port != nil && !hasPort(p, port.Port.String()) {
						t.Errorf("%s: allows port %s, which %s does not have", m, port.Port.String(), p.owner)
					}
				}
			}
		}
	}
	for _, m := range byKind["HorizontalPodAutoscaler"] {
		ref := m.obj.(*autoscalingv2.HorizontalPodAutoscaler).Spec.ScaleTargetRef
		if _, ok := byKind[ref.Kind][ref.Name]; !ok {
			t.Errorf("%s: scale target %s %s is not rendered", m, ref.Kind, ref.Name)
		}
		if d, ok := byKind["Deployment"][ref.Name]; ok && d.obj.(*appsv1.Deployment).Spec.Replicas != nil {
			t.Errorf("%s: %s sets replicas, which the autoscaler would fight", m, d)
		}
	}
	for _, m := range byKind["ServiceMonitor"] {
		sm := m.obj.(*monitoringv1.ServiceMonitor)
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Errorf("%s: %v", m, err)
			continue
		}
		scraped := 0
		for _, s := range byKind["Service"] {
			if !sel.Matches(labels.Set(s.meta.GetLabels())) {
				continue
			}
			for _, ep := range sm.Spec.Endpoints {
				ok := false
				for _, sp := range s.obj.(*corev1.Service).Spec.Ports {
					ok = ok || sp.Name == ep.Port
				}
				if !ok {
					t.Errorf("%s: selects %s, which has no port %s", m, s, ep.Port)
				}
			}
			scraped++
		}
		if scraped == 0 {
			t.Errorf("%s: selects no Service", m)
		}
	}
}
