package chdb_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/chdb"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// These tests own chDB in their process (no shared warehousetest engine),
// so they can close it and open other data directories.

func libPath(t *testing.T) string {
	p := warehousetest.LibPath()
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("SLUICE_SKIP_CLICKHOUSE_SERVER") == "1" || os.Getenv("SLUICE_SKIP_CHDB") == "1" {
			t.Skipf("skipped: chDB library not found at %s (run `make chdb`)", p)
		}
		t.Fatalf("chDB library not found at %s: run `make chdb` or set SLUICE_CHDB_LIB", p)
	}
	return p
}

func TestQueryAndOneDirectoryPerProcess(t *testing.T) {
	if err := chdb.Load(libPath(t)); err != nil {
		t.Fatal(err)
	}
	if v := chdb.Version(); !strings.HasPrefix(v, "26.") {
		t.Errorf("version %q", v)
	}
	dir := t.TempDir()
	c, err := chdb.Connect([]string{"clickhouse", "--path=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Query("SELECT sum(number) FROM numbers(1000)", "CSV")
	if err != nil || string(r.Data) != "499500\n" || r.StorageRowsRead != 1000 {
		t.Fatalf("query: %q %+v %v", r.Data, r, err)
	}
	_, err = c.Query("SELECT * FROM no_such_table", "CSV")
	var qe *chdb.QueryError
	if !errors.As(err, &qe) || !strings.Contains(qe.Message, "UNKNOWN_TABLE") {
		t.Errorf("error %v", err)
	}
	if _, err := chdb.Connect([]string{"clickhouse", "--path=" + t.TempDir()}); err == nil {
		t.Error("a second data directory opened")
	}

	// Go keeps its signal handlers: a nil dereference is still a panic.
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	var p *int
	_ = *p
}

// TestEmbeddedPersistsAcrossReopen is what `sluiced -dev` relies on: data
// written, connection closed, reopened on the same directory, data there.
func TestEmbeddedPersistsAcrossReopen(t *testing.T) {
	lib := libPath(t)
	dir := t.TempDir()
	ctx := context.Background()
	for i := range 2 {
		conn, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: lib, DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			for _, stmt := range []string{
				"CREATE DATABASE ws",
				"CREATE TABLE ws.t (n UInt64) ENGINE = MergeTree ORDER BY n",
				"INSERT INTO ws.t SELECT number FROM numbers(123)",
			} {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					t.Fatal(err)
				}
			}
		}
		res, err := conn.Query(ctx, "SELECT count() FROM ws.t")
		if err != nil || res.Rows[0][0] != uint64(123) {
			t.Fatalf("open %d: %v %v", i, res, err)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
