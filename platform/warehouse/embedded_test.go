package warehouse_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
