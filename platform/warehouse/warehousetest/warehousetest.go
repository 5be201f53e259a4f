// Package warehousetest gives tests real ClickHouse engines: the embedded
// chDB (one per test binary, as chDB allows one data directory per process)
// and a private clickhouse-server process on free loopback ports (one per
// test binary). Tests isolate themselves with NewDatabase.
//
// A missing engine fails the test with the command that installs it. Set
// SLUICE_SKIP_CLICKHOUSE_SERVER=1 to skip instead (the reason is printed);
// SLUICE_SKIP_CHDB=1 does the same for chDB alone.
//
// Shared engines are stopped and their temporary directories removed by
// Main (or Shutdown); without it, the server still dies with the test binary
// and stale directories are removed by the next run.
package warehousetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// Main runs the tests of a package and then stops the shared engines:
//
//	func TestMain(m *testing.M) { warehousetest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops the shared clickhouse-server, closes the shared chDB and
// removes their temporary directories. Later helper calls fail.
func Shutdown() {
	stopServer()
	closeEmbedded()
}

// skipOrFail fails t because an engine is missing, or skips it when the
// environment asks for that.
func skipOrFail(t testing.TB, envVars []string, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	for _, env := range envVars {
		if os.Getenv(env) == "1" {
			t.Skipf("skipped (%s=1): %s", env, msg)
		}
	}
	t.Fatalf("%s (set %s=1 to skip these tests instead)", msg, envVars[0])
}

var (
	embeddedOnce sync.Once
	embeddedBase warehouse.Conn // keeps chDB open between tests
	embeddedDir  string
	embeddedErr  error
	embeddedGone atomic.Bool
)

// LibPath is the libchdb.so tests use: $SLUICE_CHDB_LIB, else the default
// cache path that `make chdb` fills.
func LibPath() string {
	if p := os.Getenv("SLUICE_CHDB_LIB"); p != "" {
		return p
	}
	return warehouse.DefaultEmbeddedLibPath()
}

// Embedded returns a handle on the test binary's chDB, closed when the test
// ends. All tests of the binary share one data directory: create your
// tables in NewDatabase(t, conn).
func Embedded(t testing.TB) warehouse.Conn {
	t.Helper()
	dir := EmbeddedDataDir(t)
	conn, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: LibPath(), DataDir: dir})
	if err != nil {
		t.Fatalf("warehousetest: open chDB: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// EmbeddedDataDir opens the test binary's chDB if needed and returns its
// data directory, for code under test that opens the embedded engine itself
// (warehouse.OpenEmbedded on this directory and LibPath() shares the
// connection; chDB serves one data directory per process).
func EmbeddedDataDir(t testing.TB) string {
	t.Helper()
	lib := LibPath()
	if _, err := os.Stat(lib); err != nil {
		skipOrFail(t, []string{"SLUICE_SKIP_CLICKHOUSE_SERVER", "SLUICE_SKIP_CHDB"},
			"chDB library not found at %s: run `make chdb` (npm pack @chdb/lib-linux-x64-gnu@%s into that cache) or set SLUICE_CHDB_LIB",
			lib, warehouse.ChDBVersion)
	}
	if embeddedGone.Load() {
		t.Fatal("warehousetest: chDB used after Shutdown")
	}
	embeddedOnce.Do(func() {
		embeddedDir, embeddedErr = newTempDir("chdb")
		if embeddedErr != nil {
			return
		}
		embeddedBase, embeddedErr = warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: lib, DataDir: filepath.Join(embeddedDir, "data")})
	})
	if embeddedErr != nil {
		t.Fatalf("warehousetest: open chDB: %v", embeddedErr)
	}
	return filepath.Join(embeddedDir, "data")
}

func closeEmbedded() {
	embeddedGone.Store(true)
	if embeddedBase != nil {
		_ = embeddedBase.Close()
	}
	if embeddedDir != "" {
		_ = os.RemoveAll(embeddedDir)
	}
}

var dbSeq atomic.Int64

// NewDatabase creates a database with a name unique in the process and
// drops it when the test ends.
func NewDatabase(t testing.TB, conn warehouse.Conn) string {
	t.Helper()
	name := fmt.Sprintf("t_%s_%d_%d", sanitize(t.Name()), os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+warehouse.QuoteIdent(name)); err != nil {
		t.Fatalf("warehousetest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(name)); err != nil {
			t.Errorf("warehousetest: drop database %s: %v", name, err)
		}
	})
	return name
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

const tempPrefix = "sluice-warehousetest-"

// newTempDir makes a directory for a shared engine and records the pid
// that owns it, so that a later run can remove it if this one could not.
func newTempDir(kind string) (string, error) {
	removeStaleDirs()
	dir, err := os.MkdirTemp("", tempPrefix+kind+"-")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(dir)
		}
	}
}
