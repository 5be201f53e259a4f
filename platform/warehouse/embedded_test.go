package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestEmbeddedMissingLibrarySaysHowToFetch(t *testing.T) {
	_, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: "/nonexistent/libchdb.so", DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make chdb") || !strings.Contains(err.Error(), "npm pack @chdb/lib-linux-x64-gnu@"+warehouse.ChDBVersion) {
		t.Fatalf("error %v does not say how to fetch the library", err)
	}
}

func TestEmbeddedOneDataDirPerProcess(t *testing.T) {
	conn := warehousetest.Embedded(t) // holds the binary's shared data directory open
	other := t.TempDir()
	_, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: warehousetest.LibPath(), DataDir: other})
	if err == nil {
		t.Fatal("opened a second data directory")
	}
	if !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "already has data directory") {
		t.Errorf("error %q does not name both directories", err)
	}
	if _, err := os.Stat(filepath.Join(other, "metadata")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused directory was touched: %v", err)
	}

	// Another handle on the same directory shares the connection; closing it
	// leaves the first one working.
	db := warehousetest.NewDatabase(t, conn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE "+warehouse.QualifiedName(db, "t")+" (n UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	second := warehousetest.Embedded(t)
	if res, err := second.Query(ctx, "SELECT count() FROM system.tables WHERE database = "+warehouse.QuoteString(db)); err != nil || res.Rows[0][0] != uint64(1) {
		t.Fatalf("second handle does not see the table: %v %v", res, err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("first handle broken after closing the second: %v", err)
	}
	if _, err := second.Query(ctx, "SELECT 1"); err == nil {
		t.Error("query on a closed handle succeeded")
	}
}

// TestEmbeddedSettingsDoNotLeak checks a failed statement still resets the
// per-call settings on the shared session.
func TestEmbeddedSettingsDoNotLeak(t *testing.T) {
	conn := warehousetest.Embedded(t)
	ctx := context.Background()
	q := "SELECT value FROM system.settings WHERE name = 'max_threads'"
	before, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Query(ctx, "SELECT * FROM no_such_db.no_such_table", warehouse.WithSettings(warehouse.Settings{"max_threads": 1}))
	if warehouse.CodeOf(err) != 81 && warehouse.CodeOf(err) != 60 {
		t.Fatalf("want unknown database or table, got %v", err)
	}
	after, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if before.Rows[0][0] != after.Rows[0][0] {
		t.Errorf("max_threads leaked: %v before, %v after", before.Rows[0][0], after.Rows[0][0])
	}
}

// TestEmbeddedSettingsInOneStatement checks the settings of a call take effect whichever way
// the statement takes them (a SETTINGS clause of its own, or SET on the session), that an
// INSERT ... SELECT honours them for the insert, and that none stays on the session.
func TestEmbeddedSettingsInOneStatement(t *testing.T) {
	conn := warehousetest.Embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	threads := warehouse.WithSettings(warehouse.Settings{"max_threads": 3})
	for _, q := range []string{
		"SELECT getSetting('max_threads')",                             // clause
		"SELECT getSetting('max_threads') SETTINGS max_block_size = 7", // its own clause: SET
		"WITH 1 AS one SELECT getSetting('max_threads') * one",
	} {
		res, err := conn.Query(ctx, q, threads)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got := fmt.Sprint(res.Rows[0][0]); got != "3" {
			t.Errorf("%s = %s, want 3", q, got)
		}
	}
	db := "shape_settings"
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"DROP TABLE IF EXISTS " + db + ".a",
		"CREATE TABLE " + db + ".a (x Array(UInt64)) ENGINE = MergeTree ORDER BY tuple()",
	} {
		if _, err := conn.Exec(ctx, q, threads); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err := conn.Exec(ctx, "INSERT INTO "+db+".a SELECT groupArray(number) FROM numbers(10000000)",
		warehouse.WithSettings(warehouse.Settings{"max_memory_usage": 10 << 20}))
	if warehouse.ClassOf(err) != warehouse.ClassMemoryLimit {
		t.Errorf("INSERT ... SELECT with max_memory_usage 10 MiB: %v, want MEMORY_LIMIT_EXCEEDED", err)
	}
	res, err := conn.Query(context.Background(), "SELECT getSetting('max_threads') != 3, getSetting('max_memory_usage') != 10485760, getSetting('max_execution_time')")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Rows[0]); got != "[1 1 0]" {
		t.Errorf("session after the calls: %s, want [1 1 0] (no setting left behind)", got)
	}
}
