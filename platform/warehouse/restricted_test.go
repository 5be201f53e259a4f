package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestNativeRestrictedUser proves that the native driver works with the restricted ClickHouse
// users docs/security.md describes (users.xml allow_databases and a readonly profile, as
// ClickHouse 18.16 has no SQL RBAC): what Sluice does in its databases works, other databases
// are refused by ClickHouse itself.
func TestNativeRestrictedUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := warehousetest.Native(t)
	own, ws := warehousetest.RestrictedDatabases[0], warehousetest.RestrictedDatabases[1]
	other := "sluice_other_ws"
	for _, db := range []string{own, ws, other} {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(db)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, db := range []string{own, ws, other} {
			_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(db))
		}
	})
	mustExec(t, admin, "CREATE DATABASE "+other)
	mustExec(t, admin, "CREATE TABLE "+other+".secrets (s String) ENGINE = MergeTree ORDER BY s")
	mustExec(t, admin, "INSERT INTO "+other+".secrets SELECT 'other-secret'")

	app := open(t, warehousetest.ServerAs(t, warehousetest.RestrictedUser, warehousetest.RestrictedPassword))
	if err := app.Ping(ctx); err != nil {
		t.Fatalf("ping as %s: %v", warehousetest.RestrictedUser, err)
	}
	// What the catalog, the executor and the ops log do in their own databases.
	for _, db := range []string{own, ws} {
		mustExec(t, app, "CREATE DATABASE IF NOT EXISTS "+db)
	}
	mustExec(t, app, "CREATE TABLE "+ws+".events (d Date, action String, n UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(d) ORDER BY action")
	mustExec(t, app, "CREATE TABLE "+ws+".totals (action String, n UInt64) ENGINE = SummingMergeTree ORDER BY action")
	mustExec(t, app, "CREATE MATERIALIZED VIEW "+ws+".totals_mv TO "+ws+".totals AS SELECT action, n FROM "+ws+".events")
	mustExec(t, app, "INSERT INTO "+ws+".events SELECT toDate('2026-01-01'), 'buy', 3")
	if _, err := app.InsertRows(ctx, ws+".events", []string{"d", "action", "n"}, [][]any{{time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), "buy", uint64(4)}}); err != nil {
		t.Fatalf("insert rows: %v", err)
	}
	mustExec(t, app, "CREATE TABLE "+ws+".events_copy AS "+ws+".events")
	mustExec(t, app, "ALTER TABLE "+ws+".events_copy REPLACE PARTITION 202601 FROM "+ws+".events")
	mustExec(t, app, "CREATE TABLE "+own+".datasources_ops_log (t DateTime, ws String) ENGINE = MergeTree ORDER BY t")
	mustExec(t, app, "INSERT INTO "+own+".datasources_ops_log SELECT now(), 'ws'")
	if got := queryOne(t, app, "SELECT sum(n) FROM "+ws+".totals"); got != "7" {
		t.Errorf("totals through the view: %s, want 7", got)
	}
	if got := queryOne(t, app, "SELECT count() FROM system.parts WHERE database = '"+ws+"' AND table = 'events' AND active"); got != "2" {
		t.Errorf("system.parts: %s parts, want 2", got)
	}
	// ClickHouse itself refuses every other database.
	for _, sql := range []string{
		"SELECT * FROM " + other + ".secrets",
		"INSERT INTO " + other + ".secrets SELECT 'x'",
		"CREATE DATABASE sluice_not_allowed",
		"DROP TABLE " + other + ".secrets",
	} {
		if _, err := app.Exec(ctx, sql); err == nil {
			t.Errorf("%s: ran as %s", sql, warehousetest.RestrictedUser)
		} else if code := codeOf(err); code != 291 {
			t.Errorf("%s: %v, want code 291 (DATABASE_ACCESS_DENIED)", sql, err)
		}
	}

	reader := open(t, warehousetest.ServerAs(t, warehousetest.ReaderUser, warehousetest.ReaderPassword))
	if got := queryOne(t, reader, "SELECT sum(n) FROM "+ws+".events"); got != "7" {
		t.Errorf("reader: sum %s, want 7", got)
	}
	if _, err := reader.Exec(ctx, "INSERT INTO "+ws+".events SELECT toDate('2026-01-01'), 'x', 1"); codeOf(err) != 164 {
		t.Errorf("reader insert: %v, want code 164 (READONLY)", err)
	}
	if _, err := reader.Query(ctx, "SELECT * FROM "+other+".secrets"); codeOf(err) != 291 {
		t.Errorf("reader reading another database: %v, want code 291", err)
	}
	if got := queryOne(t, admin, "SELECT groupArray(s) FROM "+other+".secrets"); got != "[other-secret]" {
		t.Errorf("the other database changed: %s", got)
	}
}

func open(t *testing.T, cfg warehouse.NativeConfig) warehouse.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := warehouse.OpenNative(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", cfg.Username, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func mustExec(t *testing.T, conn warehouse.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryOne(t *testing.T, conn warehouse.Conn, sql string) string {
	t.Helper()
	res, err := conn.Query(t.Context(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		t.Fatalf("%s: %v", sql, res.Rows)
	}
	return fmt.Sprint(res.Rows[0][0])
}

func codeOf(err error) int32 {
	var we *warehouse.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}
