package warehouse_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestEmbeddedInsertFormatted inserts rows held in a ClickHouse input format: with a column
// list (the others take their DEFAULT), with settings in the INSERT's own clause (a
// deduplication token: the same token twice writes once), with data holding a semicolon and
// SQL, and refuses a table or format that is not a name.
func TestEmbeddedInsertFormatted(t *testing.T) {
	conn := warehousetest.Embedded(t)
	fi, ok := conn.(warehouse.FormattedInserter)
	if !ok {
		t.Fatal("the embedded engine does not implement FormattedInserter")
	}
	db := warehousetest.NewDatabase(t, conn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE "+db+".t (id UInt32, s String, d UInt8 DEFAULT 42) ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 10"); err != nil {
		t.Fatal(err)
	}
	table := db + ".t"
	rows := []byte("[1,\"a; DROP TABLE t\"]\n[2,\"b\\\\'\"]\n")
	tok := warehouse.WithSettings(warehouse.Settings{"insert_deduplication_token": "tok-1"})
	for range 2 {
		if _, err := fi.InsertFormatted(ctx, table, []string{"id", "s"}, "JSONCompactEachRow", rows, tok); err != nil {
			t.Fatal(err)
		}
	}
	res, err := conn.Query(ctx, "SELECT id, s, d FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, r := range res.Rows {
		got += fmt.Sprintf("%v|%v|%v\n", r[0], r[1], r[2])
	}
	if want := "1|a; DROP TABLE t|42\n2|b\\'|42\n"; got != want {
		t.Errorf("rows:\n%swant\n%s", got, want)
	}
	for _, bad := range [][2]string{{"t; DROP TABLE x", "JSONEachRow"}, {table, "JSONEachRow SETTINGS x=1"}} {
		if _, err := fi.InsertFormatted(ctx, bad[0], nil, bad[1], rows); err == nil || warehouse.ClassOf(err) != warehouse.ClassPermanent {
			t.Errorf("table %q format %q: %v; want a permanent error", bad[0], bad[1], err)
		}
	}
}
