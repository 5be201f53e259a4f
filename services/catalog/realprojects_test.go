package catalog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// pushDir pushes the files of a testdata/push folder (not dry) into a new workspace.
func pushDir(t *testing.T, s *Service, ws, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fs []*catalogv1.Datafile
	for _, e := range entries {
		if e.Name() == "want.golden" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, &catalogv1.Datafile{Path: e.Name(), Content: string(b)})
	}
	if _, err := s.Push(operatorCtx(t, s, ws), &catalogv1.PushRequest{Workspace: ws, Files: fs}); err != nil {
		t.Fatalf("push %s: %s", dir, status.Convert(err).Message())
	}
}

func queryRows(t *testing.T, s *Service, ws, sql string) string {
	t.Helper()
	resp, err := s.Query(operatorCtx(t, s), &catalogv1.QueryRequest{Workspace: ws, Sql: sql})
	if err != nil {
		t.Fatalf("%s: %s", sql, status.Convert(err).Message())
	}
	var rows []string
	for _, r := range resp.GetRows() {
		var vs []string
		for _, v := range r.GetValues() {
			vs = append(vs, fmt.Sprint(v.AsInterface()))
		}
		rows = append(rows, strings.Join(vs, ","))
	}
	return strings.Join(rows, " ")
}

// TestSQLShapesOfRealProjects runs, through `sluice sql`'s RPC and pipes, the shapes that real
// projects use and that the analysis once refused: ORDER BY ... WITH FILL FROM, WITH RECURSIVE,
// and the system tables that show nothing of other workspaces. Next to each, the hostile case
// stays refused.
func TestSQLShapesOfRealProjects(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s)
	pushDir(t, s, "rec", "testdata/push/recursive_cte")
	db := s.cfg.DatabasePrefix + "rec"
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "tree")+" VALUES (1, 0), (2, 1), (3, 1), (4, 2), (5, 9)"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sql, want string }{
		{"SELECT toDate(number) AS d, count() AS c FROM numbers(3) GROUP BY d ORDER BY d WITH FILL FROM toDate(0) TO toDate(4) STEP 1", "1970-01-01,1 1970-01-02,1 1970-01-03,1 1970-01-04,0"}, // a Date is a date,
		{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 4) SELECT sum(n) FROM r", "10"},
		{"SELECT id, depth FROM descendants", "1,0 2,1 3,1 4,2"},
		{"SELECT number FROM system.numbers LIMIT 3", "0 1 2"},
		{"SELECT count() FROM (SELECT * FROM system.numbers_mt LIMIT 5)", "5"},
		{"SELECT dummy FROM system.one", "0"},
		{"SELECT count() FROM (SELECT zero FROM system.zeros LIMIT 2)", "2"},
	} {
		if got := queryRows(t, s, "rec", tc.sql); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.sql, got, tc.want)
		}
	}
	for _, hostile := range []string{
		"SELECT name FROM system.tables",
		"SELECT * FROM system.numbers AS n JOIN system.databases AS d ON 1 LIMIT 1",
		"SELECT d FROM (SELECT 1 AS d) ORDER BY d WITH FILL FROM (SELECT count() FROM system.tables) TO 3",
		"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 2) SELECT * FROM r, system.parts",
	} {
		_, err := s.Query(ctx, &catalogv1.QueryRequest{Workspace: "rec", Sql: hostile})
		if err == nil || !strings.Contains(status.Convert(err).Message(), "system.") {
			t.Errorf("%s: want a refusal naming the system table, got %v", hostile, err)
		}
	}
}

// TestViewReadingAPipeIsTriggered: a materialized node that reads another pipe fires on inserts
// into that pipe's Data Source, as on the hosted platform: the graph has the trigger and the
// view writes rows.
func TestViewReadingAPipeIsTriggered(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s)
	pushDir(t, s, "vrp", "testdata/push/view_reads_pipe")
	g, err := s.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: "vrp"})
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for _, e := range g.GetEdges() {
		if e.GetKind() == catalogv1.GraphEdge_KIND_TRIGGERS {
			triggers = append(triggers, e.GetUpstream()+"->"+e.GetDownstream())
		}
	}
	if strings.Join(triggers, " ") != "events->by_action_mv" {
		t.Fatalf("trigger edges %v, want events->by_action_mv", triggers)
	}
	db := s.cfg.DatabasePrefix + "vrp"
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "events")+" VALUES (now(), 'Buy'), (now(), 'buy'), (now(), 'View'), (now(), '')"); err != nil {
		t.Fatal(err)
	}
	if got := queryRows(t, s, "vrp", "SELECT action, sum(n) FROM by_action GROUP BY action ORDER BY action"); got != "buy,2 view,1" {
		t.Errorf("by_action = %s, want buy,2 view,1", got)
	}
}

// TestUnknownParameterIsRefused: a parameter the node never reads is a typo, refused with the
// node's parameters, instead of a run with the default.
func TestUnknownParameterIsRefused(t *testing.T) {
	s, _ := newTestService(t)
	ctx := operatorCtx(t, s)
	pushDir(t, s, "prm", "testdata/push/recursive_cte")
	_, err := s.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: "prm", Pipe: "descendants", Parameters: map[string]string{"rot": "2"}})
	msg := status.Convert(err).Message()
	if err == nil || !strings.Contains(msg, "no parameter rot") || !strings.Contains(msg, "job_timestamp, root") {
		t.Fatalf("render with a misspelt parameter: %v", err)
	}
	if info := apierr.Info(err); status.Code(err) != codes.InvalidArgument || info.GetReason() != "UNKNOWN_PARAMETER" || info.GetMetadata()["valid"] != "job_timestamp,root" {
		t.Errorf("render with a misspelt parameter: %s %v, want INVALID_ARGUMENT, UNKNOWN_PARAMETER listing job_timestamp,root", status.Code(err), info)
	}
	resp, err := s.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: "prm", Pipe: "descendants", Parameters: map[string]string{"root": "2"}})
	if err != nil || !strings.Contains(resp.GetSql(), "toUInt64('2')") {
		t.Fatalf("render with the right parameter: %v %s", err, resp.GetSql())
	}
}

// TestTruncateDataSource empties a Data Source, and with cascade the Data Sources its views
// write, recording a truncate event with the rows each held; tables and views stay.
func TestTruncateDataSource(t *testing.T) {
	s, wh := newTestService(t)
	rec := &recorder{}
	s.deps.Events = rec
	ctx := operatorCtx(t, s)
	pushDir(t, s, "trc", "testdata/push/view_reads_pipe")
	db := s.cfg.DatabasePrefix + "trc"
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "events")+" VALUES (now(), 'a'), (now(), 'b'), (now(), 'a')"); err != nil {
		t.Fatal(err)
	}
	rec.take()
	resp, err := s.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "events"})
	if err != nil || len(resp.GetTruncated()) != 1 || resp.GetTruncated()[0].GetRows() != 3 {
		t.Fatalf("truncate events: %v %v", resp, err)
	}
	if got := queryRows(t, s, "trc", "SELECT (SELECT count() FROM events), (SELECT count() FROM by_action)"); got != "0,2" {
		t.Fatalf("after truncating events alone: %s, want 0,2", got)
	}
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "events")+" VALUES (now(), 'c')"); err != nil {
		t.Fatal(err)
	}
	// A token that may drop events but not by_action cannot cascade into it: refused before
	// anything is emptied.
	dropEvents := auth.WithPrincipal(context.Background(), &auth.Principal{Kind: auth.KindScoped, Name: "drop_events", Workspace: "trc",
		Scopes: []auth.Scope{{Type: auth.DataSourcesDrop, Resource: "events"}}})
	if _, err := s.TruncateDataSource(dropEvents, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "events", Cascade: true}); status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "DATASOURCES:DROP:by_action") {
		t.Fatalf("a cascade past the token's scopes: %v", err)
	}
	if got := queryRows(t, s, "trc", "SELECT (SELECT count() FROM events), (SELECT count() FROM by_action)"); got != "1,3" {
		t.Fatalf("after the refused cascade: %s, want 1,3", got)
	}
	resp, err = s.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "events", Cascade: true})
	if err != nil || len(resp.GetTruncated()) != 2 || resp.GetTruncated()[1].GetName() != "by_action" {
		t.Fatalf("truncate --cascade: %v %v", resp, err)
	}
	if got := queryRows(t, s, "trc", "SELECT (SELECT count() FROM events), (SELECT count() FROM by_action)"); got != "0,0" {
		t.Fatalf("after the cascade: %s, want 0,0", got)
	}
	if got := strings.Join(rec.take(), "; "); got != "truncate by_action ok rows=3; truncate events ok rows=1; truncate events ok rows=3" {
		t.Fatalf("events: %s", got)
	}
	if _, err := s.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "nope"}); status.Code(err).String() != "NotFound" {
		t.Fatalf("truncate of a missing Data Source: %v", err)
	}
	// A quarantine table is emptied like a Data Source, once its rows are recovered.
	if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "events_quarantine")+" (ts, action, c__error_column, c__error, insertion_date) VALUES ('yesterday', 'a', ['ts'], ['bad'], now())"); err != nil {
		t.Fatal(err)
	}
	resp, err = s.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "events_quarantine"})
	if err != nil || len(resp.GetTruncated()) != 1 || resp.GetTruncated()[0].GetRows() != 1 {
		t.Fatalf("truncate events_quarantine: %v %v", resp, err)
	}
	if got := queryRows(t, s, "trc", "SELECT (SELECT count() FROM events_quarantine), (SELECT count() FROM events)"); got != "0,0" {
		t.Fatalf("after truncating the quarantine table: %s, want 0,0", got)
	}
	if got := strings.Join(rec.take(), "; "); got != "truncate events_quarantine ok rows=1" {
		t.Fatalf("events: %s", got)
	}
	if _, err := s.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "nope_quarantine"}); status.Code(err) != codes.NotFound {
		t.Fatalf("truncate of the quarantine table of a missing Data Source: %v", err)
	}
	// A Data Source deployed before quarantine tables existed has none: said so, in its words.
	if _, err := wh.Exec(ctx, "DROP TABLE "+warehouse.QualifiedName(db, "events_quarantine")); err != nil {
		t.Fatal(err)
	}
	_, err = s.TruncateDataSource(ctx, &catalogv1.TruncateDataSourceRequest{Workspace: "trc", Name: "events_quarantine"})
	if msg := status.Convert(err).Message(); status.Code(err) != codes.NotFound || !strings.Contains(msg, "Data Source events has no quarantine table") || strings.Contains(msg, db) {
		t.Fatalf("truncate of a quarantine table that is not there: %v", err)
	}
}

// TestCopyTargetCheckOnBothEngines: the copy target check is ClickHouse's own insert, so what
// one engine inserts passes there and what it refuses is refused, on chDB and on the 18.16
// server alike.
func TestCopyTargetCheckOnBothEngines(t *testing.T) {
	target := "SCHEMA >\n    arr Array(String),\n    ok UInt8,\n    big Nullable(UInt64),\n    n UInt32\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"n\"\n"
	copyOf := func(sql string) string {
		return "NODE c\nSQL >\n    " + sql + "\n\nTYPE copy\nTARGET_DATASOURCE t\n"
	}
	for _, e := range []struct {
		name string
		open func(testing.TB) warehouse.Conn
	}{{"chdb", warehousetest.Embedded}, {"native", warehousetest.Native}} {
		t.Run(e.name, func(t *testing.T) {
			s, _ := newTestServiceOn(t, e.open(t))
			ctx := operatorCtx(t, s, "w_"+e.name)
			push := func(sql string) (*catalogv1.PushResponse, error) {
				return s.Push(ctx, &catalogv1.PushRequest{Workspace: "w_" + e.name, DryRun: true,
					Files: files("t.datasource", target, "c.pipe", copyOf(sql))})
			}
			resp, err := push("SELECT [] AS arr, toUInt8(1) AS ok, CAST(NULL AS Nullable(UInt32)) AS big, toUInt64(7) AS n")
			if err != nil {
				t.Fatalf("a copy ClickHouse inserts is refused: %s", status.Convert(err).Message())
			}
			var warned bool
			for _, w := range resp.GetWarnings() {
				warned = warned || strings.Contains(w.GetMessage(), "column n is UInt64 in the result and UInt32")
			}
			if !warned {
				t.Errorf("no warning for the narrowing of n: %v", resp.GetWarnings())
			}
			_, err = push("SELECT 1 AS arr, toUInt8(1) AS ok, toUInt64(1) AS big, toUInt32(1) AS n")
			if msg := status.Convert(err).Message(); err == nil || !strings.Contains(msg, "ClickHouse would not insert its result into TARGET_DATASOURCE t") || strings.Contains(msg, scratchPrefix) {
				t.Errorf("a number into Array(String): %v", err)
			}
		})
	}
}

// TestDataSourceErrorPos: a ClickHouse refusal of a table points at the column it names, else
// at the ENGINE line; lists of the table's columns in the message point nowhere.
func TestDataSourceErrorPos(t *testing.T) {
	f, err := datafile.Parse("d.datasource", []byte("SCHEMA >\n    ts DateTime,\n    amount Nullable(Int64),\n    a String\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"ts\"\n"), datafile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ds := f.DataSource
	for _, c := range []struct {
		msg  string
		line int
	}{
		{"Illegal type Nullable(Int64) of column `amount` in the sorting key", 3},
		{"Cannot parse default of column 'a'", 4},
		{"Missing columns: 'x' while processing: '(x)', required columns: 'x', available columns: 'a' 'ts'", 6},
		{"column amountx is bad", 6},
	} {
		if got := dataSourceErrorPos(ds, c.msg); got.Line != c.line {
			t.Errorf("%q: line %d, want %d", c.msg, got.Line, c.line)
		}
	}
}
