package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

var serviceNames = []string{
	"sluice.catalog.v1.CatalogService",
	"sluice.scheduler.v1.SchedulerService",
	"sluice.executor.v1.ExecutorService",
	"sluice.opslog.v1.OpsLogService",
}

func TestHealthAndReflectionOverSocket(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	for _, svc := range append([]string{""}, serviceNames...) {
		resp, err := sys.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %s, want SERVING", svc, resp.GetStatus())
		}
	}
	if _, err := sys.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); err == nil {
		t.Error("health of an unknown service: want NotFound, got nil")
	}

	stream, err := reflectionpb.NewServerReflectionClient(sys.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		listed = append(listed, s.GetName())
	}
	for _, want := range append(slices.Clone(serviceNames), "grpc.health.v1.Health") {
		if !slices.Contains(listed, want) {
			t.Errorf("reflection lists %v, missing %s", listed, want)
		}
	}
	// A real call through the API, not only health.
	st, err := sys.Executor.GetStatus(ctx, &executorv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetInstance() == "" || st.GetDraining() {
		t.Errorf("executor status = %+v, want an instance id and not draining", st)
	}
}

type statusOutput struct {
	Serving  bool `json:"serving"`
	TLS      bool `json:"tls"`
	Services []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"services"`
}

func runStatus(t *testing.T, cli, addr string) (statusOutput, int, string) {
	t.Helper()
	cmd := exec.Command(cli, "status", "--addr", addr, "--output", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice status: %v", err)
	}
	var st statusOutput
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		t.Fatalf("sluice status output %q: %v (stderr %s)", out, jerr, stderr.String())
	}
	return st, code, stderr.String()
}

func assertAllServing(t *testing.T, st statusOutput, code int) {
	t.Helper()
	if code != 0 || !st.Serving || len(st.Services) != 5 {
		t.Fatalf("status exit %d, %+v; want exit 0 and five services serving", code, st)
	}
	for _, s := range st.Services {
		if s.Status != "SERVING" {
			t.Errorf("service %s is %s", s.Name, s.Status)
		}
	}
}

func TestAllInOneProcessStatusAndCleanStop(t *testing.T) {
	sluiced, cli := sluicetest.Binaries(t)
	addr := sluicetest.FreeAddr(t)
	dataDir := t.TempDir()
	p := sluicetest.StartProcess(t, "sluiced", sluiced, append([]string{"-dev", "-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0"}, sluicetest.EmbeddedLibArgs()...)...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	st, code, _ := runStatus(t, cli, addr)
	assertAllServing(t, st, code)
	if st.TLS {
		t.Errorf("status says TLS on for a plaintext loopback process")
	}
	// The operator token is in <data-dir>/token, readable by its owner only, and with -dev the
	// CLI on this machine finds it without flags.
	sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	if fi, err := os.Stat(filepath.Join(dataDir, "token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("operator token file: %v %v", fi, err)
	}
	out, stderr, code := runCLI(t, []string{"SLUICE_ADDR=" + addr}, "", "workspace", "create", "devws")
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "sluice_") {
		t.Fatalf("workspace create without a token against sluiced -dev: exit %d\n%s%s", code, out, stderr)
	}

	// Ctrl-C stops it cleanly: exit code 0, well within the shutdown bound.
	p.Signal(syscall.SIGINT)
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("sluiced exit code after SIGINT = %d, want 0\n%s", code, p.Output())
	}
	// With the process gone, status says so and fails.
	st, code, stderr = runStatus(t, cli, addr)
	if code == 0 || st.Serving {
		t.Fatalf("status after stop: exit %d serving %v, want a failure", code, st.Serving)
	}
	if !strings.Contains(stderr, "not every service is serving") {
		t.Errorf("status stderr = %q", stderr)
	}
}

func TestSplitModeStatus(t *testing.T) {
	split := sluicetest.StartSplit(t)
	st, code, _ := runStatus(t, split.CLI, split.AddrList())
	assertAllServing(t, st, code)

	// Each process serves only its own service.
	st, code, _ = runStatus(t, split.CLI, split.Addrs["executor"])
	if code == 0 {
		t.Fatal("status against the executor process alone: want non-zero (catalog is elsewhere)")
	}
	for _, s := range st.Services {
		if want := s.Name == "executor"; (s.Status == "SERVING") != want {
			t.Errorf("executor process reports %s as %s", s.Name, s.Status)
		}
	}

	// A stopped service turns status red.
	split.Procs["opslog"].Signal(syscall.SIGTERM)
	if code := split.Procs["opslog"].Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("opslog exit code %d", code)
	}
	st, code, _ = runStatus(t, split.CLI, split.AddrList())
	if code == 0 || st.Serving {
		t.Fatalf("status with opslog stopped: exit %d, %+v", code, st)
	}
}

func TestServiceStartFailureNamesTheService(t *testing.T) {
	sluiced, _ := sluicetest.Binaries(t)
	url := sluicetest.NATSServer(t, false)
	// Another stream already owns the scheduler's subjects, so the scheduler cannot create its
	// step stream.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"sluice.steps.>"}}); err != nil {
		t.Fatal(err)
	}
	p := sluicetest.StartProcess(t, "sluiced", sluiced, append([]string{"-nats-url", url, "-data-dir", t.TempDir(),
		"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0"}, sluicetest.EmbeddedLibArgs()...)...)
	if code := p.Wait(t, 60*time.Second); code == 0 {
		t.Fatal("sluiced started although the scheduler cannot; want a non-zero exit")
	}
	// The scheduler and the executor both ensure the step stream; whichever starts first fails.
	if out := p.Output(); !regexp.MustCompile(`module (scheduler|executor): start: .*SLUICE_STEPS`).MatchString(out) {
		t.Fatalf("error does not name the failing service and its stream:\n%s", out)
	}

	// NATS without JetStream: the nats module fails and says what to do.
	plain := sluicetest.NATSServer(t, true)
	p = sluicetest.StartProcess(t, "sluiced-nojs", sluiced, "-nats-url", plain, "-data-dir", t.TempDir(),
		"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0")
	if code := p.Wait(t, 60*time.Second); code == 0 {
		t.Fatal("sluiced started against NATS without JetStream")
	}
	if out := p.Output(); !strings.Contains(out, "module nats: init:") || !strings.Contains(out, "-js") {
		t.Fatalf("error does not name the nats module and the fix:\n%s", out)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	sluiced, _ := sluicetest.Binaries(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		yaml string
		args []string
		want []string
	}{
		{"unknown top-level key", "grpc_adr: 127.0.0.1:1\n", nil, []string{"grpc_adr", "line 1"}},
		{"unknown nested key", "scheduler:\n  copy_concurency: 3\n", nil, []string{"copy_concurency", "line 2"}},
		{"bad value in file", "scheduler:\n  copy_concurrency: 0\n", nil, []string{"scheduler.copy_concurrency"}},
		{"bad flag value", "", []string{"-executor.concurrency", "0"}, []string{"executor.concurrency"}},
		{"unknown target", "", []string{"-target", "catalog,planner"}, []string{"target", `"planner"`}},
		{"unknown flag", "", []string{"-grpc-adr", "x"}, []string{"grpc-adr"}},
		{"embedded NATS beyond loopback", "", []string{"-nats-listen", "0.0.0.0:4222"}, []string{"nats.listen", "loopback"}},
		{"TLS certificate without its key", "", []string{"-tls-cert", "server.pem"}, []string{"-tls-cert and -tls-key"}},
		{"scheduler without the service credential", "", []string{"-target", "scheduler", "-catalog-addr", "127.0.0.1:1"}, []string{"auth.service_token_file"}},
		{"service credential too short", "", []string{"-auth.service-token-file", "/dev/null"}, []string{"auth.service_token_file", "32"}},
		{"JWT key that is not a public key", "", []string{"-auth.jwt-key-file", "/etc/hostname"}, []string{"auth.jwt_key_file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-data-dir", dir}, tc.args...)
			if tc.yaml != "" {
				path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
				if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-config", path)
			}
			out, err := exec.Command(sluiced, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("sluiced accepted a bad configuration:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("error %q does not contain %q", out, w)
				}
			}
		})
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	sluiced, _ := sluicetest.Binaries(t)
	dataDir := t.TempDir()
	natsAddr := sluicetest.FreeAddr(t)
	start := func(name string) (*sluicetest.Process, string) {
		addr := sluicetest.FreeAddr(t)
		p := sluicetest.StartProcess(t, name, sluiced, append([]string{"-data-dir", dataDir, "-grpc-addr", addr,
			"-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0", "-nats-listen", natsAddr}, sluicetest.EmbeddedLibArgs()...)...)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
		return p, addr
	}
	p, addr := start("sluiced-1")
	ctx := context.Background()
	// The CLI uses the admin token of workspace default, which decides the workspace.
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	admin := sluicetest.NewClients(t, addr, token).CreateWorkspace(t, "default")
	// A pushed Data Source lives in the catalog (NATS KV) and in embedded ClickHouse (chDB).
	_, cliBin := sluicetest.Binaries(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kept.datasource"), []byte("SCHEMA >\n    x Int64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := cli(t, cliBin, admin, "push", dir); code != 0 {
		t.Fatalf("push: %s %s", out, stderr)
	}
	nc, err := nats.Connect(sluicetest.EmbeddedNATSURL(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	// The ops-event stream keeps messages after they are consumed (limits retention).
	if _, err := js.Publish(ctx, "sluice.ops.restart_test", []byte("event-1")); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "sluice_jobs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "job-1", []byte(`{"status":"waiting"}`)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}

	_, addr = start("sluiced-2")
	// The admin token survives the restart (the token store is in NATS).
	if out, stderr, code := cli(t, cliBin, sluicetest.NewClients(t, addr, admin.Token), "sql", "SELECT count() AS n FROM kept", "--output", "json"); code != 0 || !strings.Contains(out, `"n": "0"`) { // UInt64: an exact string
		t.Fatalf("the Data Source's table after restart: exit %d %s %s", code, out, stderr)
	}
	nc, err = nats.Connect(sluicetest.EmbeddedNATSURL(t, dataDir))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	st, err := js.Stream(ctx, "SLUICE_OPS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "sluice.ops.restart_test")
	if err != nil || string(msg.Data) != "event-1" {
		t.Fatalf("ops message after restart: %v %q", err, msgData(msg))
	}
	if _, err := js.Stream(ctx, "SLUICE_STEPS"); err != nil {
		t.Fatalf("step stream after restart: %v", err)
	}
	kv, err = js.KeyValue(ctx, "sluice_jobs")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "job-1")
	if err != nil || string(e.Value()) != `{"status":"waiting"}` {
		t.Fatalf("job record after restart: %v", err)
	}
}

func msgData(m *jetstream.RawStreamMsg) string {
	if m == nil {
		return ""
	}
	return string(m.Data)
}
