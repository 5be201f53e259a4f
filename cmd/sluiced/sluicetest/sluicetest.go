// Package sluicetest starts Sluice for tests: the whole system in-process on free ports
// (Start), or split mode as real OS processes against a real nats-server (StartSplit). Both
// return ready clients; nothing waits with sleeps, everything polls with a deadline.
package sluicetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/app"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
	"github.com/sluicehq/sluice/services/catalog/corpustest"
)

// Clients are ready gRPC clients of a running system, sending Token with every call.
type Clients struct {
	Conn      *grpc.ClientConn
	Health    healthpb.HealthClient
	Catalog   catalogv1.CatalogServiceClient
	Tokens    catalogv1.TokenServiceClient
	Scheduler schedulerv1.SchedulerServiceClient
	Executor  executorv1.ExecutorServiceClient
	OpsLog    opslogv1.OpsLogServiceClient
	// Addr is the address dialled; Token the token the clients send.
	Addr  string
	Token string

	tls    *tls.Config
	Ingest ingestv1.IngestServiceClient
}

// NewClients dials addr with token (empty: calls carry no token).
func NewClients(t testing.TB, addr, token string) *Clients {
	t.Helper()
	return newClients(t, addr, token, nil)
}

// NewTLSClients dials addr with TLS (cfg) and token.
func NewTLSClients(t testing.TB, addr, token string, cfg *tls.Config) *Clients {
	t.Helper()
	return newClients(t, addr, token, cfg)
}

func newClients(t testing.TB, addr, token string, tlsCfg *tls.Config) *Clients {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer(token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &Clients{
		Conn:      cc,
		Health:    healthpb.NewHealthClient(cc),
		Catalog:   catalogv1.NewCatalogServiceClient(cc),
		Tokens:    catalogv1.NewTokenServiceClient(cc),
		Scheduler: schedulerv1.NewSchedulerServiceClient(cc),
		Executor:  executorv1.NewExecutorServiceClient(cc),
		OpsLog:    opslogv1.NewOpsLogServiceClient(cc),
		Addr:      addr,
		Token:     token,
		tls:       tlsCfg,
		Ingest:    ingestv1.NewIngestServiceClient(cc),
	}
}

// WithToken returns clients of the same address that send token instead.
func (c *Clients) WithToken(t testing.TB, token string) *Clients {
	t.Helper()
	return newClients(t, c.Addr, token, c.tls)
}

// CreateWorkspace creates a workspace (the clients must carry the operator token) and returns
// clients that carry its admin token.
func (c *Clients) CreateWorkspace(t testing.TB, name string) *Clients {
	t.Helper()
	resp, err := c.Catalog.CreateWorkspace(context.Background(), &catalogv1.CreateWorkspaceRequest{Name: name})
	if err != nil {
		t.Fatalf("create workspace %s: %v", name, err)
	}
	if !resp.GetCreated() || resp.GetAdminToken() == "" {
		t.Fatalf("create workspace %s: it existed already", name)
	}
	return c.WithToken(t, resp.GetAdminToken())
}

// EnsureWorkspace creates a workspace unless it exists (the clients must carry the operator
// token).
func (c *Clients) EnsureWorkspace(t testing.TB, name string) {
	t.Helper()
	if _, err := c.Catalog.CreateWorkspace(context.Background(), &catalogv1.CreateWorkspaceRequest{Name: name}); err != nil {
		t.Fatalf("create workspace %s: %v", name, err)
	}
}

// CreateToken creates a token with scopes in workspace ws (empty: the instance) and returns
// its secret.
func (c *Clients) CreateToken(t testing.TB, ws, name string, scopes ...string) string {
	t.Helper()
	resp, err := c.Tokens.CreateToken(context.Background(), &catalogv1.CreateTokenRequest{Workspace: ws, Name: name, Scopes: scopes})
	if err != nil {
		t.Fatalf("create token %s: %v", name, err)
	}
	return resp.GetIssued().GetSecret()
}

// CLIEnv is the environment for running the sluice CLI against these clients' address with
// their token.
func (c *Clients) CLIEnv() []string {
	return append(os.Environ(), "SLUICE_TOKEN="+c.Token, "SLUICE_ADDR="+c.Addr)
}

// EmbeddedNATSURL reads the URL (with its password) of the embedded NATS server of a sluiced
// process started on dataDir.
func EmbeddedNATSURL(t testing.TB, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "nats-url"))
	if err != nil {
		t.Fatalf("embedded NATS URL: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// ReadOperatorToken waits for the operator token file a catalog writes on first start and
// returns the token.
func ReadOperatorToken(t testing.TB, path string, p *Process) string {
	t.Helper()
	var tok string
	Eventually(t, 60*time.Second, "the operator token in "+path, func() bool {
		if p != nil && p.Exited() {
			t.Fatalf("%s exited: %v\n%s", p.Name, p.err, tail(p.Output(), 50))
		}
		b, err := os.ReadFile(path)
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return tok
}

// System is an all-in-one Sluice running inside the test process. Its clients carry the
// operator token.
type System struct {
	*Clients
	App     *app.App
	Addr    string
	DataDir string
	Config  app.Config
	// ServiceTokenFile holds the system's service credential: processes a test starts beside
	// it (an executor, a scheduler) read it to call the system's services.
	ServiceTokenFile string
	// EventsURL is the Events API's base URL (http://host:port).
	EventsURL string
}

// Option changes the configuration before the system starts.
type Option func(*app.Config)

// WithArgs applies sluiced command-line flags (on top of the test defaults).
func WithArgs(args ...string) Option {
	return func(c *app.Config) {
		base := append(baseArgs(c.DataDir), "-clickhouse-embedded-path", c.ClickHouse.EmbeddedPath, "-clickhouse-database", c.ClickHouse.Database)
		parsed, err := app.ParseConfig(append(base, args...))
		if err == nil {
			*c = parsed
		} else {
			panic("sluicetest.WithArgs: " + err.Error())
		}
	}
}

func baseArgs(dataDir string) []string {
	return []string{
		"-data-dir", dataDir,
		"-auth.service-token-file", filepath.Join(dataDir, "service-token"),
		"-grpc-addr", "127.0.0.1:0",
		"-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0",
		"-log-level", "debug",
		"-shutdown-timeout", "10s",
		"-clickhouse-embedded-lib", warehousetest.LibPath(),
	}
}

var systemSeq atomic.Int64

// uniqueArgs give each in-process system its own ClickHouse databases on the test binary's
// shared chDB (one data directory per process).
func uniqueArgs(t testing.TB) []string {
	n := systemSeq.Add(1)
	return []string{
		"-clickhouse-embedded-path", warehousetest.EmbeddedDataDir(t),
		"-clickhouse-database", fmt.Sprintf("sluice_t%d_%d", os.Getpid(), n),
	}
}

// EmbeddedLibArgs are the flags that point a sluiced process at the chDB library tests use.
func EmbeddedLibArgs() []string {
	return []string{"-clickhouse-embedded-lib", warehousetest.LibPath()}
}

// Main runs the tests of a package that uses this harness and cleans up after them. The
// package's processes (and the CLI) get a configuration directory of their own, so that
// `sluice auth` and `sluiced -dev` never touch the user's.
func Main(m *testing.M) int {
	cfgDir, err := os.MkdirTemp("", "sluicetest-config-")
	if err == nil {
		_ = os.Setenv("XDG_CONFIG_HOME", cfgDir)
		defer func() { _ = os.RemoveAll(cfgDir) }()
	}
	code := m.Run()
	CleanupBinaries()
	warehousetest.Shutdown()
	return code
}

// Start runs the whole system in-process with its data in a fresh temporary directory and
// stops it when the test ends. The process log is printed if the test fails.
func Start(t testing.TB, opts ...Option) *System {
	t.Helper()
	dir := t.TempDir()
	serviceToken := filepath.Join(dir, "service-token")
	if err := os.WriteFile(serviceToken, []byte(randomText(t)+randomText(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := app.ParseConfig(append(baseArgs(dir), uniqueArgs(t)...))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, logs)
	if err != nil {
		t.Fatalf("sluiced: %v", err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatalf("sluiced start: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("sluiced stop: %v", err)
		}
		if t.Failed() {
			t.Logf("sluiced log:\n%s", tail(logs.String(), 200))
		}
	})
	token := ""
	if cfg.Runs("catalog") {
		token = ReadOperatorToken(t, a.OperatorTokenFile(), nil)
	}
	var clientTLS *tls.Config
	if cfg.TLS.Enabled() {
		if clientTLS, err = cfg.TLS.Loopback(); err != nil {
			t.Fatalf("tls: %v", err)
		}
	}
	return &System{Clients: newClients(t, a.GRPCAddr(), token, clientTLS), App: a, Addr: a.GRPCAddr(), DataDir: dir, Config: cfg, ServiceTokenFile: serviceToken, EventsURL: eventsURL(a.EventsAddr(), cfg.TLS.Enabled())}
}

// eventsURL is the Events API's base URL on addr.
func eventsURL(addr string, tls bool) string {
	if tls {
		return "https://" + addr
	}
	return "http://" + addr
}

// Eventually polls cond until it returns true, failing the test when the timeout passes
// first (checkfor.Eventually).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	checkfor.Eventually(t, timeout, what, cond)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return s[i+1:]
			}
		}
	}
	return s
}

// RepoRoot finds the repository root (the directory holding go.work).
func RepoRoot(t testing.TB) string {
	t.Helper()
	return corpustest.RepoRoot(t)
}

// DatabaseOf returns the quoted ClickHouse database of a workspace.
func (s *Clients) DatabaseOf(t testing.TB, workspace string) string {
	t.Helper()
	resp, err := s.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: workspace})
	if err != nil {
		t.Fatalf("workspace %s: %v", workspace, err)
	}
	return warehouse.QuoteIdent(resp.GetWorkspace().GetDatabase())
}
