// Package helm holds the tests of the Helm chart in sluice/: golden renders of the value sets
// in sluice/ci, every rendered manifest validated offline against the Kubernetes API (the Go
// types, strictly, and the OpenAPI documents of the Kubernetes release), and wrong values
// refused with messages that name them. `make helm-check` runs them after `helm lint`.
package helm

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden renders in testdata/golden")

const (
	chartDir    = "sluice"
	releaseName = "sluice"
	namespace   = "sluice"
)

// The value sets that must exist: every mode the chart supports, each rendered and checked.
var requiredValueSets = []string{"all-in-one", "all-in-one-external", "split-external-nats", "split-nats-cluster", "split-nats-credentials", "split-tls"}

// valueSets returns the chart's example values (sluice/ci/<name>-values.yaml) by name.
func valueSets(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]string{}
	for _, f := range files {
		sets[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	for _, name := range requiredValueSets {
		if sets[name] == "" {
			t.Fatalf("value set %s is missing: add %s", name, filepath.Join(chartDir, "ci", name+"-values.yaml"))
		}
	}
	return sets
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// helmBin is the helm the Makefile builds into .cache/bin (make tools), or one on PATH.
func helmBin(t *testing.T) string {
	t.Helper()
	local := filepath.Join("..", "..", ".cache", "bin", "helm")
	if _, err := os.Stat(local); err == nil {
		abs, _ := filepath.Abs(local)
		return abs
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Fatal("helm not found in .cache/bin or on PATH: run `make tools`")
	return ""
}

// helm runs helm with args and returns its output and error output.
func helm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// render renders the chart with the values files given.
func render(t *testing.T, valuesFiles ...string) string {
	t.Helper()
	args := []string{"template", releaseName, chartDir, "--namespace", namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	out, errOut, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// TestChartGoldenRenders compares the render of every value set with its reviewed golden file
// (go test -run TestChartGoldenRenders -update rewrites them).
func TestChartGoldenRenders(t *testing.T) {
	sets := valueSets(t)
	for _, name := range sortedNames(sets) {
		t.Run(name, func(t *testing.T) {
			got := render(t, sets[name])
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("render of %s differs from %s (review, then rewrite with -update):\n%s", sets[name], golden, diffLines(string(want), got))
			}
		})
	}
	// Golden files of value sets that no longer exist would be reviewed for nothing.
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".yaml"); sets[name] == "" {
			t.Errorf("%s has no value set %s: remove it", f, filepath.Join(chartDir, "ci", name+"-values.yaml"))
		}
	}
}

// diffLines shows the first lines where want and got differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  - " + wl + "\n  + " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

// TestChartRejectsWrongValues: wrong values are refused before anything is rendered, with a
// message naming the value.
func TestChartRejectsWrongValues(t *testing.T) {
	cases := []struct {
		name, values string
		want         []string
	}{
		{"unknown mode", "mode: splitt", []string{"/mode", "allInOne", "split"}},
		{"misspelt top-level key", "executors: {replicas: 3}", []string{"executors"}},
		{"setting the chart owns", "config: {target: [executor]}", []string{"/config", "target"}},
		{"unknown setting", "config: {executor: {concurency: 4}}", []string{"/config/executor", "concurency"}},
		{"setting below its minimum", "config: {executor: {concurrency: 0}}", []string{"/config/executor/concurrency", "minimum"}},
		{"duration that Go does not parse", "config: {scheduler: {job_retention: 2 days}}", []string{"/config/scheduler/job_retention"}},
		{"component setting of the wrong type", "executor: {config: {executor: {max_retries: many}}}", []string{"/executor/config/executor/max_retries"}},
		{"replicas of the wrong type", "catalog: {replicas: two}", []string{"/catalog/replicas"}},
		{"ClickHouse address without a port", "mode: split\nclickhouse: {addrs: [clickhouse]}", []string{"/clickhouse/addrs/0"}},
		{"NATS URL with another scheme", "nats: {external: {url: 'http://nats:4222'}}", []string{"/nats/external/url"}},
		{"storage size that is not a quantity", "nats: {cluster: {storage: {size: 10 GB}}}", []string{"/nats/cluster/storage/size"}},
		{"too many stream replicas", "nats: {replicas: 7}", []string{"/nats/replicas", "maximum"}},
		{"split mode without ClickHouse", "mode: split", []string{"clickhouse.addrs", "split mode needs ClickHouse"}},
		{"two NATS at once", "mode: split\nclickhouse: {addrs: ['ch:9000']}\nnats: {external: {url: 'nats://nats:4222'}}", []string{"nats.cluster.enabled", "nats.external"}},
		{"no NATS", "mode: split\nclickhouse: {addrs: ['ch:9000']}\nnats: {cluster: {enabled: false}}", []string{"split mode needs NATS"}},
		{"more stream replicas than servers", "mode: split\nclickhouse: {addrs: ['ch:9000']}\nnats: {replicas: 5, cluster: {replicas: 3}}", []string{"nats.replicas", "5", "3 servers"}},
		{"replicated streams on the embedded server", "nats: {replicas: 3}", []string{"nats.replicas", "allInOne"}},
		{"TLS without a server", "clickhouse: {tls: true}", []string{"clickhouse.tls", "clickhouse.addrs"}},
		{"password and existing secret", "mode: split\nclickhouse: {addrs: ['ch:9000'], password: x, existingSecret: {name: s}}", []string{"clickhouse", "password or existingSecret.name"}},
		{"autoscaler bounds reversed", "mode: split\nclickhouse: {addrs: ['ch:9000']}\nauth: {serviceToken: {existingSecret: {name: s}}}\nexecutor: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}}", []string{"executor.autoscaling", "minReplicas 5", "maxReplicas 2"}},
		{"split mode without the service credential", "mode: split\nclickhouse: {addrs: ['ch:9000']}", []string{"auth.serviceToken", "kubectl create secret"}},
		{"service credential too short", "mode: split\nclickhouse: {addrs: ['ch:9000']}\nauth: {serviceToken: {value: short}}", []string{"auth.serviceToken.value", "32 characters"}},
		{"mutual TLS without a certificate", "tls: {server: {mutual: true}}", []string{"tls.server.mutual", "secretName"}},
		{"NATS password without a user", "nats: {external: {url: 'nats://n:4222', passwordSecret: {name: p}}}", []string{"nats.external.passwordSecret", "nats.external.user"}},
		{"NATS credentials for the chart's cluster", "mode: split\nclickhouse: {addrs: ['ch:9000']}\nauth: {serviceToken: {existingSecret: {name: s}}}\nnats: {external: {credsSecret: {name: c}}}", []string{"nats.external", "nats.cluster.enabled"}},
		{"workspace user without the placeholder", "clickhouse: {addrs: ['ch:9000'], workspaceUser: sluice_ws}", []string{"/clickhouse/workspaceUser"}},
	}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(dir, "values-"+strconv.Itoa(i)+".yaml")
			if err := os.WriteFile(f, []byte(c.values+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := helm(t, "template", releaseName, chartDir, "--namespace", namespace, "--values", f)
			if err == nil {
				t.Fatalf("values %q were accepted; rendered %d bytes", c.values, len(out))
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("values %q: the error does not say %q:\n%s", c.values, w, errOut)
				}
			}
		})
	}
}

// TestChartLint runs helm lint --strict on the chart with its defaults and every value set.
func TestChartLint(t *testing.T) {
	sets := valueSets(t)
	runs := [][]string{{"lint", "--strict", chartDir}}
	for _, name := range sortedNames(sets) {
		runs = append(runs, []string{"lint", "--strict", chartDir, "--values", sets[name]})
	}
	for _, args := range runs {
		out, errOut, err := helm(t, args...)
		if err != nil {
			t.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
	}
}
