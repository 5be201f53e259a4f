package main_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestSplitModeWithTLSAndNATSCredentials runs each service as its own process with TLS on
// every gRPC and HTTP listener, mutual TLS between the services (client certificates signed by
// the test's CA are required), and a nats-server that takes TLS connections with a user and
// password only. The CLI works through it all, a copy runs end to end, a token revoked at the
// catalog is refused by the scheduler's process within seconds, and every way around (plaintext,
// no client certificate, NATS without credentials) is refused.
func TestSplitModeWithTLSAndNATSCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	ch := warehousetest.Server(t) // the services share a ClickHouse server, as in a real split installation
	split := sluicetest.StartSplitWith(t, sluicetest.SplitOptions{TLS: true, NATSAuth: true,
		Extra: append([]string{"-clickhouse-addr", strings.Join(ch.Addrs, ",")}, fastJobs...)})
	env := split.CLIEnv()
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, env, "", args...)
	}
	must := func(env []string, args ...string) string {
		t.Helper()
		out, stderr, code := run(env, args...)
		if code != 0 {
			t.Fatalf("sluice %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	// Status: every service serving, every connection encrypted.
	var st struct {
		Serving  bool `json:"serving"`
		TLS      bool `json:"tls"`
		Services []struct {
			Status string `json:"status"`
			TLS    bool   `json:"tls"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(must(env, "status", "--output", "json")), &st); err != nil || !st.Serving || !st.TLS || len(st.Services) != 5 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if out := must(env, "status"); !strings.Contains(out, "TLS: on") {
		t.Fatalf("status text:\n%s", out)
	}

	// A workspace, a push and a copy through the four processes.
	secure := uniqueWS("secure")
	admin := strings.TrimSpace(must(env, "workspace", "create", secure))
	adminEnv := append(slicesWithout(env, "SLUICE_TOKEN="), "SLUICE_TOKEN="+admin)
	dir := writeProject(t, map[string]string{
		"datasources/src.datasource": "SCHEMA >\n    n UInt64\n",
		"datasources/dst.datasource": "SCHEMA >\n    n UInt64\n",
		"pipes/cp.pipe":              "NODE c\nSQL >\n    SELECT number AS n FROM numbers(100)\n\nTYPE COPY\nTARGET_DATASOURCE dst\n",
	})
	must(adminEnv, "push", dir)
	if out := must(adminEnv, "pipe", "copy", "run", "cp", "--wait"); !strings.Contains(out, "done") {
		t.Fatalf("copy:\n%s", out)
	}
	if out := must(adminEnv, "sql", "SELECT count(), sum(n) FROM dst"); !regexp.MustCompile(`100\s+4950`).MatchString(out) {
		t.Fatalf("copied rows:\n%s", out)
	}

	// A token revoked at the catalog stops working at the scheduler's process.
	reader := strings.TrimSpace(must(adminEnv, "token", "create", "jobs", "--scope", "JOBS:READ"))
	readerEnv := append(slicesWithout(env, "SLUICE_TOKEN="), "SLUICE_TOKEN="+reader)
	must(readerEnv, "job", "ls")
	must(adminEnv, "token", "rm", "jobs")
	sluicetest.Eventually(t, 10*time.Second, "the scheduler's process to refuse the revoked token", func() bool {
		_, stderr, code := run(readerEnv, "job", "ls")
		return code != 0 && strings.Contains(stderr, "invalid token")
	})

	// Ways around, each refused.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health := func(creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(split.Addrs["scheduler"], grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer func() { _ = cc.Close() }()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := health(credentials.NewTLS(split.TLS)); err != nil {
		t.Fatalf("health over mutual TLS: %v", err)
	}
	if err := health(insecure.NewCredentials()); err == nil {
		t.Error("a plaintext client reached a TLS listener")
	}
	noCert := split.TLS.Clone()
	noCert.Certificates = nil
	if err := health(credentials.NewTLS(noCert)); err == nil {
		t.Error("a client without a certificate passed mutual TLS")
	}
	pool := x509.NewCertPool()
	if err := health(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: split.TLS.Certificates, MinVersion: tls.VersionTLS12})); err == nil {
		t.Error("a client that does not trust the CA connected")
	}
	if _, stderr, code := run(slicesWithout(env, "SLUICE_TLS_CA="), "status"); code == 0 {
		t.Errorf("the CLI without the CA: exit 0\n%s", stderr)
	}
	if nc, err := nats.Connect(split.NATSURL, nats.RootCAs(split.PKI.CA), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("NATS took a client without credentials")
	}
	if nc, err := nats.Connect(strings.Replace(split.NATSURL, "tls://", "nats://", 1), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("NATS took a plaintext client")
	}
	// The HTTP port speaks TLS too; /metrics needs a token, /ready does not.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: split.TLS}, Timeout: 10 * time.Second}
	httpAddr := httpAddrOf(t, split.Procs["scheduler"])
	for _, c := range []struct {
		path, token string
		want        int
	}{{"/ready", "", 200}, {"/metrics", "", 401}, {"/metrics", split.Token, 200}} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+httpAddr+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", c.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET https://%s%s: %d, want %d", httpAddr, c.path, resp.StatusCode, c.want)
		}
	}
	// The operator's clients (TLS) see the job the copy made.
	jobs, err := split.Clients(t, "scheduler").Scheduler.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: secure})
	if err != nil || len(jobs.GetJobs()) != 1 || jobs.GetJobs()[0].GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	if _, err := split.Clients(t, "catalog").Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: secure}); err != nil {
		t.Fatal(err)
	}
}

// httpAddrOf reads the HTTP address a sluiced process logged when it became ready.
func httpAddrOf(t *testing.T, p *sluicetest.Process) string {
	t.Helper()
	m := regexp.MustCompile(`sluiced ready.* http_addr=(\S+)`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("%s logged no http_addr:\n%s", p.Name, p.Output())
	}
	return m[1]
}

// slicesWithout returns env without the entries that start with prefix.
func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// TestSplitModeWithoutTLSWarns checks that a process of a split installation says at start
// that its traffic is not encrypted.
func TestSplitModeWithoutTLSWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	split := sluicetest.StartSplit(t)
	for _, svc := range sluicetest.SplitServices {
		if out := split.Procs[svc].Output(); !strings.Contains(out, "split mode without TLS") {
			t.Errorf("%s did not warn about running without TLS", svc)
		}
	}
}

// TestJWTFromAnIdentityProvider starts Sluice with the public key of an identity provider: a
// JWT it signed works for the workspace and the scopes it names, and for nothing else.
func TestJWTFromAnIdentityProvider(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs("-auth.jwt-key-file", keyFile, "-auth.jwt-issuer", "https://idp.example"))
	ctx := context.Background()
	jwtWS, other := uniqueWS("jwt_ws"), uniqueWS("jwt_other")
	admin := sys.CreateWorkspace(t, jwtWS)
	sys.EnsureWorkspace(t, other)
	if _, err := pushProject(t, admin, map[string]string{"datasources/events.datasource": "SCHEMA >\n    n UInt64\n", "datasources/secret.datasource": "SCHEMA >\n    s String\n"}); err != nil {
		t.Fatal(err)
	}
	sign := func(claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := jwt.MapClaims{"iss": "https://idp.example", "sub": "alice", "workspace": jwtWS, "exp": time.Now().Add(time.Hour).Unix(),
		"scopes": []map[string]string{{"type": "DATASOURCES:READ", "resource": "events"}}}
	alice := sys.WithToken(t, sign(claims))
	if got := queryTextIn(t, alice.Catalog, jwtWS, "SELECT count() FROM events"); got != "0\n" {
		t.Fatalf("the JWT reads events: %q", got)
	}
	cur, err := alice.Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{})
	if err != nil || cur.GetToken().GetKind() != catalogv1.TokenKind_TOKEN_KIND_JWT || cur.GetToken().GetName() != "alice" {
		t.Fatalf("current token: %v %v", cur, err)
	}
	for _, c := range []struct {
		who *sluicetest.Clients
		ws  string
		sql string
		err codes.Code
	}{
		{alice, jwtWS, "SELECT * FROM secret", codes.PermissionDenied},
		{alice, other, "SELECT 1", codes.PermissionDenied},
		{sys.WithToken(t, sign(jwt.MapClaims{"iss": "https://idp.example", "workspace": jwtWS, "exp": time.Now().Add(-time.Minute).Unix(), "scopes": []string{"ADMIN"}})), jwtWS, "SELECT 1", codes.Unauthenticated},
		{sys.WithToken(t, sign(jwt.MapClaims{"iss": "https://evil.example", "workspace": jwtWS, "exp": time.Now().Add(time.Hour).Unix(), "scopes": []string{"ADMIN"}})), jwtWS, "SELECT 1", codes.Unauthenticated},
	} {
		if _, err := c.who.Catalog.Query(ctx, &catalogv1.QueryRequest{Workspace: c.ws, Sql: c.sql}); status.Code(err) != c.err {
			t.Errorf("%s in %s: %v, want %s", c.sql, c.ws, err, c.err)
		}
	}
	if _, err := alice.Catalog.ListWorkspaces(ctx, &catalogv1.ListWorkspacesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a JWT listing workspaces: %v", err)
	}
}
