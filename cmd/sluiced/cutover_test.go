package main_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// Cut-overs with a column need ALTER TABLE ... MODIFY QUERY: these tests run on the embedded
// engine (chDB 26).

// cutoverProject: `events` (fed by history, and by the copy pipe `events_in`, which appends
// rows stamped now() with ids it is given), the materialized pipe `events_mv` into `events_mat`,
// and `events_daily` downstream of `events_mat`.
var cutoverProject = map[string]string{
	"datasources/events.datasource": "SCHEMA >\n    `id` UInt64,\n    `ts` DateTime,\n    `v` UInt64,\n    `maybe` Nullable(DateTime),\n    `tag` String\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"toYYYYMM(ts)\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/events_mat.datasource": "SCHEMA >\n    `id` UInt64,\n    `ts` DateTime,\n    `v` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"toYYYYMM(ts)\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/events_daily.datasource": "SCHEMA >\n    `day` Date,\n    `n` UInt64,\n    `s` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"day\"\n",
	"pipes/events_mv.pipe":       mvPipe("mat", "SELECT id, ts, v FROM events", "events_mat"),
	"pipes/events_daily_mv.pipe": mvPipe("daily", "SELECT toDate(ts) AS day, count() AS n, sum(v) AS s FROM events_mat GROUP BY day", "events_daily"),
	"pipes/events_in.pipe": "NODE rows\nSQL >\n    %\n    SELECT {{UInt64(first_id, 0)}} + number AS id, now() AS ts, toUInt64(number % 7) AS v, CAST(NULL, 'Nullable(DateTime)') AS maybe, 'live' AS tag\n" +
		"    FROM numbers({{UInt64(n, 100)}})\n\nTYPE COPY\nTARGET_DATASOURCE events\n",
}

var workspaceSeq atomic.Int64

// uniqueWorkspace names a workspace for one run of a test: the tests of this binary share one
// chDB, where a workspace's database is named after it.
func uniqueWorkspace(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, workspaceSeq.Add(1))
}

// checkMaterialized compares events_mat and events_daily with events: every source row once
// downstream, nothing more.
func checkMaterialized(t *testing.T, w *popWS) {
	t.Helper()
	src := w.rows("SELECT count(), uniqExact(id), sum(v) FROM {db}.events")
	if got := w.rows("SELECT count(), uniqExact(id), sum(v) FROM {db}.events_mat"); strings.Join(got, "") != strings.Join(src, "") {
		t.Errorf("events_mat (rows, distinct ids, sum v) = %v, events = %v: want every row once", got, src)
	}
	if missing := w.scalar("SELECT count() FROM {db}.events WHERE id NOT IN (SELECT id FROM {db}.events_mat)"); missing != "0" {
		t.Errorf("%s rows of events are not in events_mat", missing)
	}
	want := w.rows("SELECT toDate(ts) AS day, count(), sum(v) FROM {db}.events GROUP BY day ORDER BY day")
	if got := w.rows("SELECT day, sum(n), sum(s) FROM {db}.events_daily GROUP BY day ORDER BY day"); strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("events_daily (day, rows, sum v):\n%v\nwant\n%v", got, want)
	}
}

// TestCutoverPopulateDuringCopies populates with a cut-over column while copies keep
// appending rows to the source (each copy cascades through the view): copies after the
// cut-over cascade with the view as it is (only rows after the cut-over), so every row ends
// once in the target and in the Data Source downstream.
func TestCutoverPopulateDuringCopies(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	ws := uniqueWorkspace("cut_copies")
	if _, err := sys.Catalog.CreateWorkspace(context.Background(), &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
		t.Fatal(err)
	}
	w := newPopWS(t, sys, ws, cutoverProject)
	w.exec("INSERT INTO {db}.events (id, ts, v) SELECT 1000000000 + number, toDateTime('2024-01-01 00:00:00') + number * 600, number % 7 FROM numbers(20000)")
	var copied atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		next := uint64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := sys.Scheduler.RunCopy(context.Background(), &schedulerv1.RunCopyRequest{
				Workspace: ws, Pipe: "events_in", Parameters: map[string]string{"first_id": strconv.FormatUint(next, 10), "n": "200"},
			})
			if err != nil {
				errs <- err
				return
			}
			if j := waitJob(t, sys.Scheduler, ws, resp.GetJob().GetId(), 60*time.Second, done, failed, cancelled); j.GetStatus() != done {
				errs <- fmt.Errorf("copy %v", j)
				return
			}
			next += 200
			copied.Add(1)
		}
	}()
	sluicetest.Eventually(t, 60*time.Second, "copies to run", func() bool { return copied.Load() >= 3 })
	cut := time.Now().UTC().Add(3 * time.Second).Truncate(time.Second).Format(time.DateTime)
	j := w.populate("events_mv", &schedulerv1.PopulateOptions{CutoverColumn: "ts", CutoverValue: cut}, done)
	during := copied.Load()
	sluicetest.Eventually(t, 60*time.Second, "copies after the populate", func() bool { return copied.Load() >= during+3 })
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	checkMaterialized(t, w)
	if got := w.scalar("SELECT count() FROM {db}.events WHERE tag = 'live'"); got == "0" {
		t.Errorf("no copied rows in events")
	}
	t.Logf("populate %s with cut-over ts > %s; %d copies of 200 rows during the test", j.GetId(), cut, copied.Load())
}

// TestCutoverRefusedChangesNothing: a cut-over that cannot work is refused before anything
// changes (the value behind the data, a Nullable or unknown column, a value that is not of
// the column's type or that nothing can come after), at the request and when the job starts:
// the target keeps every row and the view its query.
func TestCutoverRefusedChangesNothing(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	ctx := context.Background()
	ws := uniqueWorkspace("cut_refused")
	if _, err := sys.Catalog.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
		t.Fatal(err)
	}
	w := newPopWS(t, sys, ws, cutoverProject)
	w.exec("INSERT INTO {db}.events (id, ts, v) SELECT number, toDateTime('2024-01-01 00:00:00') + number * 60, number % 7 FROM numbers(100320)")
	view := func() string {
		return w.scalar("SELECT as_select FROM system.tables WHERE database = '" + strings.Trim(w.db, "`") + "' AND name = '__sluice_mv_events_mv'")
	}
	rendered := func() string {
		r, err := sys.Catalog.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: ws, Pipe: "events_mv"})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetSql()
	}
	before, renderedBefore := view(), rendered()
	unchanged := func(what string) {
		t.Helper()
		if got := w.scalar("SELECT count() FROM {db}.events_mat"); got != "100320" {
			t.Errorf("%s: events_mat has %s rows, want its 100320 untouched", what, got)
		}
		if got := view(); got != before {
			t.Errorf("%s: the view changed:\n%s\nwas\n%s", what, got, before)
		}
		if got := rendered(); got != renderedBefore {
			t.Errorf("%s: the catalog's view query changed:\n%s", what, got)
		}
	}
	for _, tc := range []struct {
		name, column, value string
		want                codes.Code
		msg                 string
	}{
		{"value behind the data", "ts", "2024-01-30 00:00:00", codes.InvalidArgument, "behind the data"},
		{"unknown column", "nope", "2030-01-01 00:00:00", codes.InvalidArgument, "does not apply"},
	} {
		_, err := sys.Scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: ws, Pipe: "events_mv",
			Options: &schedulerv1.PopulateOptions{CutoverColumn: tc.column, CutoverValue: tc.value}})
		if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: populate request: %v, want %s saying %q", tc.name, err, tc.want, tc.msg)
		}
		unchanged(tc.name)
	}
	// When the job starts (the request passed; the data moved on meanwhile, or the request
	// is made to the catalog directly), the catalog refuses before changing anything.
	for _, tc := range []struct {
		name, column, value string
		want                codes.Code
		msg                 string
	}{
		{"value behind the data", "ts", "2024-01-30 00:00:00", codes.FailedPrecondition, "is behind the data: 58559 rows of events are after it already"},
		{"Nullable column", "maybe", "2030-01-01 00:00:00", codes.InvalidArgument, "Nullable"},
		{"unordered column", "tag", "x", codes.InvalidArgument, "orders the rows"},
		{"unknown column", "nope", "2030-01-01 00:00:00", codes.InvalidArgument, "has no column"},
		{"not a DateTime", "ts", "next tuesday", codes.InvalidArgument, "is not a value of column ts"},
		{"no later value", "id", "18446744073709551615", codes.InvalidArgument, "no row can come after it"},
	} {
		_, err := sys.Catalog.CutOverView(ctx, &catalogv1.CutOverViewRequest{Workspace: ws, Pipe: "events_mv",
			Column: tc.column, Value: tc.value, JobId: "job-" + strings.ReplaceAll(tc.name, " ", "-"), Tables: []string{"events_mat", "events_daily"}})
		if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: CutOverView: %v, want %s saying %q", tc.name, err, tc.want, tc.msg)
		}
		unchanged(tc.name)
	}
	// A cut-over ahead of the data goes through, and the catalog renders the view with it.
	ahead := time.Now().UTC().Add(time.Hour).Truncate(time.Second).Format(time.DateTime)
	resp, err := sys.Catalog.CutOverView(ctx, &catalogv1.CutOverViewRequest{Workspace: ws, Pipe: "events_mv",
		Column: "ts", Value: ahead, JobId: "job-ahead", Tables: []string{"events_mat"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rendered(), "`ts` > '"+ahead+"'") || !strings.Contains(view(), ahead) || resp.GetBlocks()["events_mat"] == 0 {
		t.Errorf("after a cut-over at %s: catalog query %s; view %s; blocks %v", ahead, rendered(), view(), resp.GetBlocks())
	}
	without, err := sys.Catalog.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: ws, Pipe: "events_mv", WithoutCutover: true})
	if err != nil || without.GetSql() != renderedBefore {
		t.Errorf("rendered without the cut-over: %s, %v; want the node's own query", without.GetSql(), err)
	}
	again, err := sys.Catalog.CutOverView(ctx, &catalogv1.CutOverViewRequest{Workspace: ws, Pipe: "events_mv",
		Column: "ts", Value: ahead, JobId: "job-ahead", Tables: []string{"events_mat"}})
	if err != nil || again.GetBlocks()["events_mat"] != resp.GetBlocks()["events_mat"] {
		t.Errorf("the same job asking again: %v, %v; want the recorded blocks %v", again.GetBlocks(), err, resp.GetBlocks())
	}
	w.exec("SYSTEM START MERGES {db}.events_mat")
}
