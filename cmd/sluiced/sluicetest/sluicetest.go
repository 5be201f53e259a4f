// Package sluicetest starts Sluice for tests: the whole system in-process on free ports
// (Start), or split mode as real OS processes against a real nats-server (StartSplit). Both
// return ready clients; nothing waits with sleeps, everything polls with a deadline.
package sluicetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/app"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// Clients are ready gRPC clients of a running system.
type Clients struct {
	Conn      *grpc.ClientConn
	Health    healthpb.HealthClient
	Catalog   catalogv1.CatalogServiceClient
	Scheduler schedulerv1.SchedulerServiceClient
	Executor  executorv1.ExecutorServiceClient
	OpsLog    opslogv1.OpsLogServiceClient
}

// NewClients dials addr.
func NewClients(t testing.TB, addr string) *Clients {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &Clients{
		Conn:      cc,
		Health:    healthpb.NewHealthClient(cc),
		Catalog:   catalogv1.NewCatalogServiceClient(cc),
		Scheduler: schedulerv1.NewSchedulerServiceClient(cc),
		Executor:  executorv1.NewExecutorServiceClient(cc),
		OpsLog:    opslogv1.NewOpsLogServiceClient(cc),
	}
}

// System is an all-in-one Sluice running inside the test process.
type System struct {
	*Clients
	App     *app.App
	Addr    string
	DataDir string
	Config  app.Config
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
		"-grpc-addr", "127.0.0.1:0",
		"-http-addr", "127.0.0.1:0",
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

// Main runs the tests of a package that uses this harness and cleans up after them.
func Main(m *testing.M) int {
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
	return &System{Clients: NewClients(t, a.GRPCAddr()), App: a, Addr: a.GRPCAddr(), DataDir: dir, Config: cfg}
}

// Eventually polls cond every 20ms until it returns true or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.work) not found above the test's directory")
		}
		dir = parent
	}
}

// DatabaseOf returns the quoted ClickHouse database of a workspace.
func (s *System) DatabaseOf(t testing.TB, workspace string) string {
	t.Helper()
	resp, err := s.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: workspace})
	if err != nil {
		t.Fatalf("workspace %s: %v", workspace, err)
	}
	return warehouse.QuoteIdent(resp.GetWorkspace().GetDatabase())
}
