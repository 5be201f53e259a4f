package catalog

import (
	"context"
	"fmt"
	"strings"
	"testing"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// TestDeployedDefinitionRefusedByNewChecks: a workspace deployed before the checks of
// definitions may hold a Data Source whose stored file is now refused (here an ALIAS reading
// a file). Other pushes are refused naming it; pushing its file again is refused
// without --force (its table cannot be compared), and with --force recreates the table from
// the new definition.
func TestDeployedDefinitionRefusedByNewChecks(t *testing.T) {
	s, wh := newTestService(t)
	const ws = "legacy"
	ctx := operatorCtx(t, s, ws)
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("events.datasource", eventsDS)}); err != nil {
		t.Fatal(err)
	}
	w, err := s.store.workspace(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	// What an older version stored and created: a table whose ALIAS reads a file.
	hostile := "SCHEMA >\n    `x` String,\n    `y` String ALIAS file('/etc/hostname')\n"
	tbl := tableName(w, "old")
	if _, err := wh.Exec(ctx, "CREATE TABLE "+tbl+" (`x` String, `y` String ALIAS file('/etc/hostname')) ENGINE = MergeTree() ORDER BY tuple()"); err != nil {
		t.Fatal(err)
	}
	if _, err := wh.Exec(ctx, "INSERT INTO "+tbl+" (x) SELECT 'kept-until-forced'"); err != nil {
		t.Fatal(err)
	}
	rec := resourceRecord{Kind: kindDataSource, Name: "old", Path: "old.datasource", Content: hostile, ID: "t_legacy"}
	rec.Fingerprint = fingerprint(rec)
	if err := s.store.putJSON(ctx, resKey(ws, kindDataSource, "old"), rec); err != nil {
		t.Fatal(err)
	}

	// Its table is not readable through Sluice: a definition that no longer parses is no Data
	// Source of the workspace.
	if resp, err := s.Query(ctx, &catalogv1.QueryRequest{Workspace: ws, Sql: "SELECT y FROM old"}); err == nil || !strings.Contains(err.Error(), `unknown Data Source or Pipe "old"`) {
		t.Fatalf("query of the refused definition's table: %v %v", resp, err)
	}
	// Another change is refused while the stored definition is not replaced.
	_, err = s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("events.datasource", strings.Replace(eventsDS, "amount Int64", "amount Int64,\n    note String", 1))})
	if err == nil || !strings.Contains(err.Error(), "deployed Data Source old no longer parses") || !strings.Contains(err.Error(), "file() reads a file") {
		t.Fatalf("push beside a refused deployed definition: %v", err)
	}
	fixed := "SCHEMA >\n    `x` String,\n    `y` UInt64 DEFAULT length(x)\n"
	_, err = s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("old.datasource", fixed)})
	if err == nil || !strings.Contains(err.Error(), "push with --force to drop and recreate its table") {
		t.Fatalf("replacing it without force: %v", err)
	}
	if got := queryOne(t, wh, "SELECT groupArray(x) FROM "+tbl); got != "[kept-until-forced]" {
		t.Fatalf("the refused push changed the table: %s", got)
	}
	resp, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("old.datasource", fixed), Force: true})
	if err != nil || !resp.GetApplied() {
		t.Fatalf("forced push: %v", err)
	}
	if _, err := wh.Exec(ctx, "INSERT INTO "+tbl+" (x) SELECT 'abcd'"); err != nil {
		t.Fatal(err)
	}
	if got := queryOne(t, wh, "SELECT groupArray((x, y)) FROM "+tbl); got != "[[abcd 4]]" {
		t.Errorf("recreated table holds %s, want [[abcd 4]]", got)
	}
	// The workspace is healthy again: the earlier change now goes through.
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("events.datasource", strings.Replace(eventsDS, "amount Int64", "amount Int64,\n    note String", 1))}); err != nil {
		t.Fatalf("push after the fix: %v", err)
	}
}

func queryOne(t *testing.T, wh warehouse.Conn, sql string) string {
	t.Helper()
	res, err := wh.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		t.Fatalf("%s: %v", sql, res.Rows)
	}
	return fmt.Sprint(res.Rows[0][0])
}

// TestVerifyCreateAST: the engine's own reading of a CREATE TABLE (EXPLAIN AST on chDB)
// refuses what Sluice's parser would never build, should the two ever read a statement
// differently.
func TestVerifyCreateAST(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	const db, tbl = "ws_x", "t"
	ok := "CREATE TABLE `ws_x`.`t` (`a` String DEFAULT 'x' CODEC(ZSTD(1)), `b` UInt8 MATERIALIZED a IN ('x', 'y'), INDEX `i` a TYPE bloom_filter(0.01) GRANULARITY 1) " +
		"ENGINE = ReplacingMergeTree() PARTITION BY (length(a)) ORDER BY (a) TTL now() + INTERVAL 1 DAY SETTINGS index_granularity = 8192"
	if err := s.verifyCreateAST(ctx, ok, db, tbl); err != nil {
		t.Fatalf("legitimate statement refused: %v", err)
	}
	for stmt, want := range map[string]string{
		"CREATE TABLE `ws_x`.`t` (`a` String ALIAS file('/etc/hostname')) ENGINE = MergeTree() ORDER BY tuple()":                           "file(): refused",
		"CREATE TABLE `ws_x`.`t` (`a` UInt64 DEFAULT (SELECT count() FROM ws_victim.secrets)) ENGINE = MergeTree() ORDER BY tuple()":       "reads a query or a table",
		"CREATE TABLE `ws_x`.`t` (`a` String) ENGINE = MergeTree() ORDER BY tuple() SETTINGS index_granularity = 8192 AS SELECT 'x' AS a":  "reads a query or a table",
		"CREATE TABLE `ws_x`.`t` (`a` UInt8 ALIAS 'x' IN ws_victim.secrets) ENGINE = MergeTree() ORDER BY tuple()":                         "reads a table as a set",
		"CREATE TABLE `ws_x`.`t` (`a` UInt8 ALIAS 1 IN url('http://127.0.0.1:9/', CSV, 'a UInt8')) ENGINE = MergeTree() ORDER BY tuple()":  "url()",
		"CREATE TABLE `ws_x`.`t` (`a` String ALIAS joinGet('ws_victim.j', 's', 1)) ENGINE = MergeTree() ORDER BY tuple()":                  "joinGet() reads another table",
		"CREATE TABLE `ws_x`.`other` (`a` String) ENGINE = MergeTree() ORDER BY tuple()":                                                   "not as CREATE TABLE ws_x.t",
		"CREATE TABLE `ws_x`.`t` (`a` String) ENGINE = MergeTree() ORDER BY (a) SAMPLE BY (hasColumnInTable('ws_victim', 'secrets', 's'))": "hasColumnInTable()",
	} {
		err := s.verifyCreateAST(ctx, stmt, db, tbl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n%v, want a refusal saying %q", stmt, err, want)
		}
	}
}
