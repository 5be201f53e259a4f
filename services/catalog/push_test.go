package catalog

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// snapshot is everything a push could change: the workspace's tables and views with their
// definitions, and the catalog's keys.
func snapshot(t *testing.T, s *Service, wh warehouse.Conn, ws string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	res, err := wh.Query(ctx, "SELECT name, create_table_query FROM system.tables WHERE database = "+warehouse.QuoteString(s.cfg.DatabasePrefix+ws)+" ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Rows {
		fmt.Fprintf(&b, "table %v: %v\n", r[0], r[1])
	}
	keys, err := s.store.keys(ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		e, err := s.store.kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "key %s rev %d\n", k, e.Revision())
	}
	return b.String()
}

func TestPushIsAllOrNothing(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s, "w")
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files("events.datasource", eventsDS)}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s, wh, "w")

	// Ten files: nine valid (new tables, a view, a change to events), one invalid.
	var fs []*catalogv1.Datafile
	for i := 0; i < 7; i++ {
		fs = append(fs, &catalogv1.Datafile{Path: fmt.Sprintf("ds%d.datasource", i), Content: "SCHEMA >\n    x Int64\n"})
	}
	fs = append(fs,
		&catalogv1.Datafile{Path: "events.datasource", Content: strings.Replace(eventsDS, "amount Int64", "amount Int64,\n    extra String", 1)},
		&catalogv1.Datafile{Path: "mv.pipe", Content: "NODE n\nSQL >\n    SELECT toInt64(amount) AS x FROM events\nTYPE materialized\nDATASOURCE ds0\n"},
		&catalogv1.Datafile{Path: "broken.pipe", Content: "NODE n\nSQL >\n    SELECT * FROM events\nTYPE materialized\n"},
	)
	_, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: fs})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "broken.pipe:") || !strings.Contains(err.Error(), "needs DATASOURCE") {
		t.Fatalf("push with an invalid file: %v", err)
	}
	if after := snapshot(t, s, wh, "w"); after != before {
		t.Fatalf("a refused push changed state:\n--- before\n%s--- after\n%s", before, after)
	}

	// A failure while applying (ClickHouse refuses the second new table's TTL only when rows
	// exist? no: use a view whose target column type makes CREATE fail at apply time) is rolled
	// back: simulate by dropping the target between plan and apply is racy, so instead check
	// the undo path directly: a plan whose last statement fails leaves nothing behind.
	pl := &plan{}
	pl.add(phaseCreateTables, catalogv1.PlanAction_KIND_CREATE, catalogv1.ResourceType_RESOURCE_TYPE_DATASOURCE, "t1", "",
		[]string{"CREATE TABLE " + warehouse.QualifiedName(s.cfg.DatabasePrefix+"w", "t1") + " (x Int64) ENGINE = MergeTree ORDER BY x"},
		[]string{"DROP TABLE IF EXISTS " + warehouse.QualifiedName(s.cfg.DatabasePrefix+"w", "t1")})
	pl.add(phaseCreateViews, catalogv1.PlanAction_KIND_CREATE, catalogv1.ResourceType_RESOURCE_TYPE_PIPE, "v", "",
		[]string{"CREATE MATERIALIZED VIEW " + warehouse.QualifiedName(s.cfg.DatabasePrefix+"w", "v") + " TO nowhere.nothing AS SELECT 1"}, nil)
	if err := applyPlan(ctx, wh, pl, s.log, nil); err == nil {
		t.Fatal("applying a failing plan: want an error")
	}
	if after := snapshot(t, s, wh, "w"); after != before {
		t.Fatalf("a failed apply left state behind:\n--- before\n%s--- after\n%s", before, after)
	}
}

func TestPushAltersAndRecreates(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s, "w")
	push := func(force bool, kv ...string) (*catalogv1.PushResponse, error) {
		return s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files(kv...), Force: force})
	}
	if _, err := push(false, "events.datasource", eventsDS); err != nil {
		t.Fatal(err)
	}
	db := warehouse.QuoteIdent(s.cfg.DatabasePrefix + "w")
	if _, err := wh.Exec(ctx, "INSERT INTO "+db+".events VALUES ('2024-01-01 00:00:00','a','buy',1)"); err != nil {
		t.Fatal(err)
	}
	// A new column is an ALTER: rows stay.
	withColumn := strings.Replace(eventsDS, "amount Int64", "amount Int64,\n    note String DEFAULT 'none'", 1)
	resp, err := push(false, "events.datasource", withColumn)
	if err != nil {
		t.Fatal(err)
	}
	if a := resp.GetActions()[0]; a.GetKind() != catalogv1.PlanAction_KIND_ALTER || !strings.Contains(strings.Join(a.GetStatements(), ";"), "ADD COLUMN `note` String DEFAULT 'none' AFTER `amount`") {
		t.Fatalf("action %v", a)
	}
	if got := count(t, wh, "SELECT count() FROM "+db+".events WHERE note = 'none'"); got != 1 {
		t.Fatalf("rows after ALTER = %d, want 1", got)
	}
	// A new sorting key needs a new table: refused without force, naming the key and the way out.
	newKey := strings.Replace(withColumn, `ENGINE_SORTING_KEY "timestamp"`, `ENGINE_SORTING_KEY "action, timestamp"`, 1)
	_, err = push(false, "events.datasource", newKey)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ENGINE_SORTING_KEY") || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "backfill") {
		t.Fatalf("sorting key change without force: %v", err)
	}
	if got := count(t, wh, "SELECT count() FROM "+db+".events"); got != 1 {
		t.Fatal("refused recreate changed the table")
	}
	resp, err = push(true, "events.datasource", newKey)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetActions()[0].GetKind() != catalogv1.PlanAction_KIND_RECREATE {
		t.Fatalf("forced push action %v", resp.GetActions()[0])
	}
	res, err := wh.Query(ctx, "SELECT sorting_key FROM system.tables WHERE database = "+warehouse.QuoteString(s.cfg.DatabasePrefix+"w")+" AND name = 'events'")
	if err != nil || fmt.Sprint(res.Rows[0][0]) != "action, timestamp" {
		t.Fatalf("sorting key after recreate: %v %v", res, err)
	}
	vs, err := s.ListFileVersions(ctx, &catalogv1.ListFileVersionsRequest{Workspace: "w", Path: "events.datasource"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.GetVersions()) != 3 || vs.GetVersions()[0].GetContent() != newKey || vs.GetVersions()[2].GetContent() != eventsDS {
		t.Fatalf("file versions: %d", len(vs.GetVersions()))
	}
}

func TestDeletePipeRemovesViewAndDataSourceGuard(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s, "w")
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files(
		"events.datasource", eventsDS, "daily.datasource", dailyDS, "daily_mv.pipe", dailyMV)}); err != nil {
		t.Fatal(err)
	}
	db := s.cfg.DatabasePrefix + "w"
	views := func() int64 {
		return count(t, wh, "SELECT count() FROM system.tables WHERE database = "+warehouse.QuoteString(db)+" AND engine = 'MaterializedView'")
	}
	if views() != 1 {
		t.Fatal("view not created")
	}
	_, err := s.DeleteDataSource(ctx, &catalogv1.DeleteDataSourceRequest{Workspace: "w", Name: "events"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "daily_mv") {
		t.Fatalf("deleting a Data Source a pipe reads: %v", err)
	}
	if _, err := s.DeletePipe(ctx, &catalogv1.DeletePipeRequest{Workspace: "w", Name: "daily_mv"}); err != nil {
		t.Fatal(err)
	}
	if views() != 0 {
		t.Fatal("view still there after DeletePipe")
	}
	if _, err := s.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: "w", Name: "daily_mv"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetPipe after delete: %v", err)
	}
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QuoteIdent(db)+".events VALUES ('2024-01-01 00:00:00','a','buy',1)"); err != nil {
		t.Fatal(err)
	}
	if got := count(t, wh, "SELECT count() FROM "+warehouse.QuoteIdent(db)+".daily"); got != 0 {
		t.Fatalf("rows still flow after the pipe was deleted: %d", got)
	}
	removed, err := s.DeleteDataSource(ctx, &catalogv1.DeleteDataSourceRequest{Workspace: "w", Name: "events"})
	if err != nil || len(removed.GetRemoved()) != 1 {
		t.Fatalf("delete events: %v %v", removed, err)
	}
}

func TestQueryStaysInsideWorkspace(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s, "a", "b")
	for _, ws := range []string{"a", "b"} {
		if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("events.datasource", eventsDS)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QuoteIdent(s.cfg.DatabasePrefix+"b")+".events VALUES ('2024-01-01 00:00:00','secret','buy',1)"); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Query(ctx, &catalogv1.QueryRequest{Workspace: "b", Sql: "SELECT session_id, amount FROM events"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRows()) != 1 || resp.GetRows()[0].GetValues()[0].GetStringValue() != "secret" || resp.GetRows()[0].GetValues()[1].GetStringValue() != "1" { // Int64: an exact string
		t.Fatalf("rows %v", resp.GetRows())
	}
	refused := []string{
		"SELECT * FROM " + s.cfg.DatabasePrefix + "b.events",
		"SELECT * FROM `/etc/hostname`",
		"SELECT * FROM file('/etc/passwd', 'LineAsString')",
		"SELECT * FROM system.tables",
		"INSERT INTO events SELECT * FROM events",
		"DROP TABLE events",
		"SELECT 1; DROP TABLE events",
	}
	for _, q := range refused {
		if _, err := s.Query(ctx, &catalogv1.QueryRequest{Workspace: "a", Sql: q}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%q: got %v, want InvalidArgument", q, err)
		}
	}
	if got := count(t, wh, "SELECT count() FROM "+warehouse.QuoteIdent(s.cfg.DatabasePrefix+"b")+".events"); got != 1 {
		t.Fatal("a refused query changed data")
	}
	big, err := s.Query(ctx, &catalogv1.QueryRequest{Workspace: "a", Sql: "SELECT number FROM numbers(5000)", MaxRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(big.GetRows()) != 10 || !big.GetTruncated() {
		t.Fatalf("max rows: %d rows, truncated %v", len(big.GetRows()), big.GetTruncated())
	}
}
