package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/cmd/sluiced/app"
)

// The Helm chart (deploy/helm/sluice) must reach every flag of sluiced and no flag that does
// not exist. Users set most settings in the chart's `config` value, whose keys
// values.schema.json lists; the chart sets the rest itself as flags, from other values. These
// tests read both sides — the flags from RegisterFlags, the chart from its schema and its
// reviewed golden renders — so that adding, renaming or removing a flag, or changing the
// chart, without the other side fails here with the flag's name.

var (
	chartSchema  = filepath.Join("..", "..", "..", "deploy", "helm", "sluice", "values.schema.json")
	chartGoldens = filepath.Join("..", "..", "..", "deploy", "helm", "testdata", "golden")
)

// chartManaged are the flags the chart sets itself, with the values that decide them.
var chartManaged = map[string]string{
	"target":                        "mode (allInOne: all; split: one Deployment per service)",
	"data-dir":                      "allInOne.persistence (the volume at /var/lib/sluice)",
	"grpc-addr":                     "ports.grpc",
	"http-addr":                     "ports.http",
	"catalog-addr":                  "the catalog Service (split mode)",
	"nats-url":                      "nats.cluster, nats.external.url or nats.external.urlSecret",
	"nats-replicas":                 "nats.replicas (default: the chart's NATS cluster size)",
	"clickhouse-addr":               "clickhouse.addrs",
	"clickhouse-user":               "clickhouse.username",
	"clickhouse-password":           "clickhouse.password or clickhouse.existingSecret (from a Secret)",
	"clickhouse-tls":                "clickhouse.tls",
	"clickhouse-embedded-lib":       "the image (allInOne: /usr/lib/sluice/libchdb.so)",
	"clickhouse-workspace-user":     "clickhouse.workspaceUser",
	"clickhouse-workspace-password": "clickhouse.workspacePasswordSecret (from a Secret)",
	"events-addr":                   "ports.events (ingest and allInOne)",
	"auth.service-token-file":       "auth.serviceToken (a Secret mounted as a file)",
	"auth.operator-token-file":      "auth.operatorToken (a Secret mounted as a file; default: /var/lib/sluice/token)",
	"auth.jwt-key-file":             "auth.jwt.keySecret (a Secret mounted as a file)",
	"auth.jwt-secret-file":          "auth.jwt.secretSecret (a Secret mounted as a file)",
	"tls-cert":                      "tls.server.secretName (tls.crt)",
	"tls-key":                       "tls.server.secretName (tls.key)",
	"tls-client-ca":                 "tls.server.mutual (the Secret's ca.crt)",
	"tls-ca":                        "tls.caSecret",
	"nats-user":                     "nats.external.user",
	"nats-password":                 "nats.external.passwordSecret (from a Secret)",
	"nats-creds":                    "nats.external.credsSecret (a Secret mounted as a file)",
	"nats-nkey":                     "nats.external.nkeySecret (a Secret mounted as a file)",
	"nats-tls-ca":                   "tls.caSecret, with nats.external.tls or the chart's NATS over TLS",
	"nats-tls-cert":                 "nats.external.clientCertSecret (tls.crt)",
	"nats-tls-key":                  "nats.external.clientCertSecret (tls.key)",
}

// processFlags are flags that are not settings: the chart passes -config (the settings file it
// renders), and -version only prints.
var processFlags = map[string]bool{"config": true, "version": true}

// flagSetting is one flag and the YAML key of the setting it sets.
type flagSetting struct {
	name string
	key  string // dotted YAML path; "" for flags whose field is not in the file (yaml:"-")
	kind reflect.Type
}

// settings maps every flag to its setting, by the address of the Config field the flag writes.
func settings(t *testing.T) []flagSetting {
	t.Helper()
	var cfg app.Config
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	type field struct {
		key  string
		kind reflect.Type
	}
	byAddr := map[uintptr]field{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			fv := v.Field(i)
			key := prefix + name
			if name == "-" {
				key = ""
			}
			if fv.Kind() == reflect.Struct && name != "-" {
				walk(fv, key+".")
				continue
			}
			byAddr[fv.Addr().Pointer()] = field{key: key, kind: sf.Type}
		}
	}
	walk(reflect.ValueOf(&cfg).Elem(), "")
	var out []flagSetting
	fs.VisitAll(func(f *flag.Flag) {
		v := reflect.ValueOf(f.Value)
		if v.Kind() != reflect.Pointer {
			t.Fatalf("flag -%s: its value is not a pointer into Config", f.Name)
		}
		fd, ok := byAddr[v.Pointer()]
		if !ok {
			t.Fatalf("flag -%s does not write a field of app.Config", f.Name)
		}
		out = append(out, flagSetting{name: f.Name, key: fd.key, kind: fd.kind})
	})
	return out
}

// schemaConfigKeys returns the leaf keys of the chart's config definition with their types.
func schemaConfigKeys(t *testing.T) map[string]map[string]any {
	t.Helper()
	data, err := os.ReadFile(chartSchema)
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("%s: %v", chartSchema, err)
	}
	cfg := schema.Definitions["config"]
	if cfg == nil {
		t.Fatalf("%s has no definitions.config", chartSchema)
	}
	keys := map[string]map[string]any{}
	var walk func(s map[string]any, prefix string)
	walk = func(s map[string]any, prefix string) {
		if s["additionalProperties"] != false {
			t.Errorf("%s: definitions.config%s must set additionalProperties: false, or unknown settings pass", chartSchema, strings.TrimSuffix("."+prefix, "."))
		}
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps := p.(map[string]any)
			if ps["type"] == "object" {
				walk(ps, prefix+name+".")
				continue
			}
			keys[prefix+name] = ps
		}
	}
	walk(cfg, "")
	return keys
}

// schemaType is the JSON Schema type a setting of Go type k must have in the chart.
func schemaType(k reflect.Type) string {
	switch {
	case k == reflect.TypeOf(time.Duration(0)):
		return "string" // with the duration pattern
	case k.Kind() == reflect.Bool:
		return "boolean"
	case k.Kind() >= reflect.Int && k.Kind() <= reflect.Uint64:
		return "integer"
	case k.Kind() == reflect.Float32 || k.Kind() == reflect.Float64:
		return "number"
	case k.Kind() == reflect.Slice:
		return "array"
	default:
		return "string"
	}
}

// TestChartReachesEveryFlag: every flag of sluiced is a key of the chart's config (with the
// right type), or set by the chart from other values (and then present in a golden render),
// or not a setting at all; and the chart's config accepts no key that is not a flag's.
func TestChartReachesEveryFlag(t *testing.T) {
	keys := schemaConfigKeys(t)
	rendered := renderedFlags(t)
	byKey := map[string]flagSetting{}
	for _, s := range settings(t) {
		byKey[s.key] = s
		_, inSchema := keys[s.key]
		switch {
		case processFlags[s.name]:
			if inSchema {
				t.Errorf("flag -%s is not a setting, but %s accepts config key %s", s.name, chartSchema, s.key)
			}
		case chartManaged[s.name] != "":
			if inSchema {
				t.Errorf("flag -%s is set by the chart from %s, so config must not accept %s too: remove it from definitions.config in %s", s.name, chartManaged[s.name], s.key, chartSchema)
			}
			if !rendered[s.name] {
				t.Errorf("flag -%s is listed as set by the chart (from %s), but no golden render passes it: render it in deploy/helm/sluice/templates and update the golden files", s.name, chartManaged[s.name])
			}
		case s.key == "":
			t.Errorf("flag -%s is not in the settings file (yaml:\"-\"), so the chart cannot reach it through config: render it in the chart's templates and list it in chartManaged, or list it in processFlags if it is not a setting", s.name)
		case !inSchema:
			t.Errorf("flag -%s (config key %s) is not reachable through the chart: add %s to definitions.config in %s (users set it under config:), or set it in the chart's templates and list it in chartManaged in this test", s.name, s.key, s.key, chartSchema)
		default:
			want := schemaType(s.kind)
			got := fmt.Sprint(keys[s.key]["type"])
			if got != want {
				t.Errorf("flag -%s: config key %s has type %s in %s, but sluiced reads a %s (%s)", s.name, s.key, got, chartSchema, want, s.kind)
			}
			if s.kind == reflect.TypeOf(time.Duration(0)) && keys[s.key]["pattern"] == nil {
				t.Errorf("flag -%s: config key %s is a duration: give it the duration pattern in %s", s.name, s.key, chartSchema)
			}
		}
	}
	for key := range keys {
		s, ok := byKey[key]
		if !ok {
			t.Errorf("%s accepts config key %s, which no flag of sluiced sets: remove it", chartSchema, key)
		} else if chartManaged[s.name] != "" {
			t.Errorf("%s accepts config key %s, which the chart sets itself (-%s)", chartSchema, key, s.name)
		}
	}
	for name := range chartManaged {
		if _, ok := flagByName(name); !ok {
			t.Errorf("chartManaged lists -%s, which is not a flag of sluiced any more", name)
		}
	}
}

func flagByName(name string) (*flag.Flag, bool) {
	var cfg app.Config
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	f := fs.Lookup(name)
	return f, f != nil
}

// renderedFlags returns the flags passed in any golden render (and checks that each exists).
func renderedFlags(t *testing.T) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, pod := range goldenPods(t) {
		for _, arg := range pod.args {
			name := flagName(arg)
			if _, ok := flagByName(name); !ok {
				t.Errorf("%s: the chart passes %s, but sluiced has no flag -%s", pod, arg, name)
			}
			seen[name] = true
		}
	}
	return seen
}

func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name
}

// renderedPod is a sluiced container of a golden render: its args and its settings file.
type renderedPod struct {
	golden, workload string
	args             []string
	configFile       string // the rendered settings file the container mounts
	env              map[string]bool
}

func (p renderedPod) String() string { return p.golden + ": " + p.workload }

// goldenPods reads the sluiced containers of every golden render.
func goldenPods(t *testing.T) []renderedPod {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartGoldens, "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("golden renders in %s: %v (found %d; make helm-check writes them)", chartGoldens, err, len(files))
	}
	var pods []renderedPod
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var docs []map[string]any
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		for {
			var d map[string]any
			if err := dec.Decode(&d); err != nil {
				break
			}
			if d != nil {
				docs = append(docs, d)
			}
		}
		configMaps := map[string]map[string]any{}
		for _, d := range docs {
			if d["kind"] == "ConfigMap" {
				configMaps[dig(d, "metadata", "name").(string)], _ = d["data"].(map[string]any)
			}
		}
		for _, d := range docs {
			if d["kind"] != "Deployment" && d["kind"] != "StatefulSet" {
				continue
			}
			spec, _ := dig(d, "spec", "template", "spec").(map[string]any)
			volumes := map[string]string{}
			for _, v := range list(spec["volumes"]) {
				vm := v.(map[string]any)
				if cm, ok := vm["configMap"].(map[string]any); ok {
					volumes[vm["name"].(string)] = cm["name"].(string)
				}
			}
			for _, c := range list(spec["containers"]) {
				cm := c.(map[string]any)
				if cm["name"] != "sluiced" {
					continue
				}
				pod := renderedPod{golden: filepath.Base(f), workload: fmt.Sprintf("%s %s", d["kind"], dig(d, "metadata", "name")), env: map[string]bool{}}
				for _, a := range list(cm["args"]) {
					pod.args = append(pod.args, a.(string))
				}
				for _, e := range list(cm["env"]) {
					pod.env[e.(map[string]any)["name"].(string)] = true
				}
				for _, m := range list(cm["volumeMounts"]) {
					mm := m.(map[string]any)
					if mm["mountPath"] == "/etc/sluice/sluiced.yaml" {
						data := configMaps[volumes[mm["name"].(string)]]
						content, ok := data[fmt.Sprint(mm["subPath"])].(string)
						if !ok {
							t.Errorf("%s: mounts %s from ConfigMap %s, which has no key %v", pod, mm["mountPath"], volumes[mm["name"].(string)], mm["subPath"])
						}
						pod.configFile = content
					}
				}
				pods = append(pods, pod)
			}
		}
	}
	if len(pods) == 0 {
		t.Fatalf("no sluiced container in %s", chartGoldens)
	}
	return pods
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// secretFiles makes, in dir, the files the chart mounts from Secrets (certificates, keys,
// credentials), by mount directory, and returns where a mounted path's stand-in is.
func secretFiles(t *testing.T, dir string) func(path string) (string, bool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sluice"}, DNSNames: []string{"sluice-catalog"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemOf := func(kind string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}) }
	ca := write("ca.pem", pemOf("CERTIFICATE", caDER))
	cert := write("cert.pem", pemOf("CERTIFICATE", leafDER))
	privKey := write("key.pem", pemOf("EC PRIVATE KEY", keyDER))
	secret := write("secret", []byte(strings.Repeat("s3cr3t-", 8)))
	pub := write("public.pem", pemOf("PUBLIC KEY", pubDER))
	return func(path string) (string, bool) {
		switch {
		case strings.HasPrefix(path, "/etc/sluice/tls/") || strings.HasPrefix(path, "/etc/sluice/nats/client/"):
			switch filepath.Base(path) {
			case "tls.crt":
				return cert, true
			case "tls.key":
				return privKey, true
			case "ca.crt":
				return ca, true
			}
			return "", false
		case strings.HasPrefix(path, "/etc/sluice/ca/"):
			return ca, true
		case strings.HasPrefix(path, "/etc/sluice/auth/jwt-key/"):
			return pub, true
		case strings.HasPrefix(path, "/etc/sluice/auth/service-token/"), strings.HasPrefix(path, "/etc/sluice/auth/jwt-secret/"),
			strings.HasPrefix(path, "/etc/sluice/auth/operator-token/"), strings.HasPrefix(path, "/etc/sluice/nats/creds/"),
			strings.HasPrefix(path, "/etc/sluice/nats/nkey/"):
			return secret, true
		}
		return "", false
	}
}

// TestChartRendersValidConfigurations starts every rendered sluiced container's configuration
// through sluiced's own parsing: its args with the settings file the chart renders for it
// (environment references such as $(SLUICE_CLICKHOUSE_PASSWORD) filled in, as Kubernetes
// does) must make a valid configuration for the target it runs.
func TestChartRendersValidConfigurations(t *testing.T) {
	dir := t.TempDir()
	files := secretFiles(t, dir)
	for i, pod := range goldenPods(t) {
		file := filepath.Join(dir, fmt.Sprintf("sluiced-%d.yaml", i))
		if err := os.WriteFile(file, []byte(pod.configFile), 0o644); err != nil {
			t.Fatal(err)
		}
		var args []string
		sawConfig := false
		for _, a := range pod.args {
			name := flagName(a)
			if name == "config" {
				a, sawConfig = "-config="+file, true
			} else if _, path, ok := strings.Cut(a, "="); ok && strings.HasPrefix(path, "/etc/sluice/") {
				// A Secret mounted as a file: what sluiced reads at start, made for the test.
				local, ok := files(path)
				if !ok {
					t.Errorf("%s: %s points to %s, which no value of the chart mounts", pod, a, path)
					continue
				}
				a = "-" + name + "=" + local
			}
			if start := strings.Index(a, "$("); start >= 0 {
				end := strings.Index(a[start:], ")") + start
				ref := a[start+2 : end]
				if !pod.env[ref] {
					t.Errorf("%s: %s refers to $(%s), which the container's env does not define (Kubernetes would pass it literally)", pod, a, ref)
				}
				value := "from-a-secret"
				if name == "nats-url" {
					value = "nats://user:password@nats-0:4222"
				}
				a = a[:start] + value + a[end+1:]
			}
			args = append(args, a)
		}
		if !sawConfig {
			t.Errorf("%s: no -config: the chart's settings would not be read", pod)
		}
		cfg, err := app.ParseConfig(args)
		if err != nil {
			t.Errorf("%s: sluiced %s: %v", pod, strings.Join(pod.args, " "), err)
			continue
		}
		if len(cfg.Target) != 1 {
			t.Errorf("%s: runs %v; the chart runs one target per container", pod, cfg.Target)
		}
	}
}
