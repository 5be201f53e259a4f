package catalog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	warehousetest.Shutdown()
	os.Exit(code)
}

var prefixSeq atomic.Int64

// newTestService runs the catalog on a real embedded NATS server and the test binary's chDB,
// with a database prefix of its own.
func newTestService(t testing.TB) (*Service, warehouse.Conn) {
	t.Helper()
	return newTestServiceOn(t, warehousetest.Embedded(t))
}

// newTestServiceOn is newTestService on a given ClickHouse connection.
func newTestServiceOn(t testing.TB, wh warehouse.Conn) (*Service, warehouse.Conn) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := natsx.Connect(ctx, natsx.Config{StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	prefix := fmt.Sprintf("t%d_%d_", os.Getpid(), prefixSeq.Add(1))
	s, err := New(Config{DatabasePrefix: prefix, QueryMaxRows: 1000, QueryTimeout: 30e9}, Deps{Log: log, NATS: nc, Warehouse: wh,
		OperatorTokenFile: filepath.Join(t.TempDir(), "token")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		res, _ := wh.Query(context.Background(), "SELECT name FROM system.databases WHERE startsWith(name, "+warehouse.QuoteString(prefix)+")")
		if res != nil {
			for _, r := range res.Rows {
				_, _ = wh.Exec(context.Background(), "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(fmt.Sprint(r[0])))
			}
		}
	})
	return s, wh
}

// operatorCtx is the context of calls made with the operator token (the tests call the
// handlers directly, without the interceptor that puts the caller there), after creating the
// workspaces named.
func operatorCtx(t testing.TB, s *Service, workspaces ...string) context.Context {
	t.Helper()
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{Kind: auth.KindOperator, Name: auth.OperatorTokenName})
	for _, ws := range workspaces {
		if _, _, _, err := s.createWorkspace(ctx, ws); err != nil {
			t.Fatalf("create workspace %s: %v", ws, err)
		}
	}
	return ctx
}

func files(kv ...string) []*catalogv1.Datafile {
	var out []*catalogv1.Datafile
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &catalogv1.Datafile{Path: kv[i], Content: kv[i+1]})
	}
	return out
}

const eventsDS = `SCHEMA >
    timestamp DateTime,
    session_id String,
    action LowCardinality(String),
    amount Int64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp"
`

const dailyDS = `SCHEMA >
    day Date,
    action LowCardinality(String),
    total Int64

ENGINE "SummingMergeTree"
ENGINE_SORTING_KEY "day, action"
`

const dailyMV = `NODE agg
SQL >
    SELECT toDate(timestamp) AS day, action, sum(amount) AS total
    FROM events
    GROUP BY day, action

TYPE materialized
DATASOURCE daily
`

const copyPipe = `NODE pick
SQL >
    %
    SELECT toDate(timestamp) AS day, action, sum(amount) AS total
    FROM events
    WHERE timestamp < {{DateTime(job_timestamp)}} AND action = {{String(act, 'buy')}}
    GROUP BY day, action

TYPE COPY
TARGET_DATASOURCE daily_copy
COPY_SCHEDULE 0 * * * *
`

func count(t *testing.T, wh warehouse.Conn, q string) int64 {
	t.Helper()
	res, err := wh.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	switch v := res.Rows[0][0].(type) {
	case uint64:
		return int64(v)
	case int64:
		return v
	}
	t.Fatalf("%s: unexpected %T", q, res.Rows[0][0])
	return 0
}

func TestPushDeploysTablesAndViews(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s, "shop")
	resp, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "shop", Files: files(
		"datasources/events.datasource", eventsDS,
		"datasources/daily.datasource", dailyDS,
		"datasources/daily_copy.datasource", dailyDS,
		"pipes/daily_mv.pipe", dailyMV,
		"pipes/daily_copy_pipe.pipe", copyPipe,
	)})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetApplied() {
		t.Fatal("push not applied")
	}
	ws, _ := s.store.workspace(ctx, "shop")
	db := warehouse.QuoteIdent(ws.Database)
	if _, err := wh.Exec(ctx, "INSERT INTO "+db+".events VALUES ('2024-01-01 10:00:00','s1','buy',5), ('2024-01-01 11:00:00','s2','buy',7), ('2024-02-03 10:00:00','s3','view',1)"); err != nil {
		t.Fatal(err)
	}
	// The materialized view is live: rows flowed into daily.
	if got := count(t, wh, "SELECT sum(total) FROM "+db+".daily WHERE action = 'buy'"); got != 12 {
		t.Fatalf("daily buy total = %d, want 12", got)
	}
	// Re-pushing the same files is a no-op.
	again, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "shop", Files: files(
		"datasources/events.datasource", eventsDS,
		"datasources/daily.datasource", dailyDS,
		"datasources/daily_copy.datasource", dailyDS,
		"pipes/daily_mv.pipe", dailyMV,
		"pipes/daily_copy_pipe.pipe", copyPipe,
	)})
	if err != nil {
		t.Fatal(err)
	}
	if again.GetApplied() {
		t.Fatal("identical re-push was applied")
	}
	for _, a := range again.GetActions() {
		if a.GetKind() != catalogv1.PlanAction_KIND_NONE {
			t.Errorf("re-push action %v on %s", a.GetKind(), a.GetName())
		}
	}
	// RenderNode of the copy: parameters typed, job_timestamp given, tables qualified.
	r, err := s.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: "shop", Pipe: "daily_copy_pipe", Parameters: map[string]string{"act": "it's"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.GetSql(), db+".`events`") || !strings.Contains(r.GetSql(), `'it\'s'`) {
		t.Fatalf("rendered SQL:\n%s", r.GetSql())
	}
	if len(r.GetColumns()) != 3 || r.GetColumns()[2].GetName() != "total" {
		t.Fatalf("columns %v", r.GetColumns())
	}
	g, err := s.GetGraph(ctx, &catalogv1.GetGraphRequest{Workspace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(g.GetTopologicalOrder(), " "); got != "events daily_copy_pipe daily_copy daily_mv daily" {
		t.Fatalf("topological order %q", got)
	}
}
