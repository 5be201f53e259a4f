package main_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/opsevents"
)

// popWS is a workspace of a populate test: its datafiles pushed, SQL run on its database.
type popWS struct {
	t   testing.TB
	sys *sluicetest.System
	ws  string
	db  string
}

func newPopWS(t testing.TB, sys *sluicetest.System, ws string, files map[string]string) *popWS {
	t.Helper()
	sys.EnsureWorkspace(t, ws)
	req := &catalogv1.PushRequest{Workspace: ws}
	for path, content := range files {
		req.Files = append(req.Files, &catalogv1.Datafile{Path: path, Content: content})
	}
	if _, err := sys.Catalog.Push(context.Background(), req); err != nil {
		t.Fatalf("push: %v", err)
	}
	return &popWS{t: t, sys: sys, ws: ws, db: sys.DatabaseOf(t, ws)}
}

// exec runs SQL with {db} replaced by the workspace database.
func (w *popWS) exec(sql string) {
	w.t.Helper()
	sql = strings.ReplaceAll(sql, "{db}", w.db)
	if _, err := w.sys.App.Warehouse().Exec(context.Background(), sql); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

// rows returns a query's rows as "a|b|c" lines.
func (w *popWS) rows(sql string) []string {
	w.t.Helper()
	sql = strings.ReplaceAll(sql, "{db}", w.db)
	res, err := w.sys.App.Warehouse().Query(context.Background(), sql)
	if err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	var out []string
	for _, r := range res.Rows {
		parts := make([]string, len(r))
		for i, v := range r {
			if tm, ok := v.(time.Time); ok {
				parts[i] = tm.UTC().Format(time.DateTime)
			} else {
				parts[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

func (w *popWS) scalar(sql string) string {
	w.t.Helper()
	r := w.rows(sql)
	if len(r) != 1 {
		w.t.Fatalf("%s: %d rows", sql, len(r))
	}
	return r[0]
}

func (w *popWS) wantRows(sql string, want ...string) {
	w.t.Helper()
	got := w.rows(sql)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		w.t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", sql, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// populate starts a populate and waits for its end.
func (w *popWS) populate(pipe string, opts *schedulerv1.PopulateOptions, want schedulerv1.JobStatus) *schedulerv1.Job {
	w.t.Helper()
	resp, err := w.sys.Scheduler.Populate(context.Background(), &schedulerv1.PopulateRequest{Workspace: w.ws, Pipe: pipe, Options: opts})
	if err != nil {
		w.t.Fatalf("populate %s: %v", pipe, err)
	}
	j := waitJob(w.t, w.sys.Scheduler, w.ws, resp.GetJob().GetId(), 120*time.Second, done, failed, cancelled)
	if j.GetStatus() != want {
		w.t.Fatalf("populate %s ended %s, want %s: %v", pipe, j.GetStatus(), want, j.GetError())
	}
	return j
}

// Data Source A of the spec: id, name, ts; partitioned by month. Rows: ids 1-9 over three
// months (three partitions).
const popA = `SCHEMA >
    id UInt64,
    name String,
    ts DateTime

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "id"
`

const popRowsA = `INSERT INTO {db}.a VALUES
  (1, 'one', '2024-01-05 00:00:00'), (2, 'two', '2024-01-06 00:00:00'), (3, 'three', '2024-01-07 00:00:00'),
  (4, 'four', '2024-02-05 00:00:00'), (5, 'five', '2024-02-06 00:00:00'), (6, 'six', '2024-02-07 00:00:00'),
  (7, 'seven', '2024-03-05 00:00:00'), (8, 'eight', '2024-03-06 00:00:00'), (9, 'nine', '2024-03-07 00:00:00')`

// dsIDName is a Data Source (id, name[, extra String]) without partitions.
func dsIDName(extra string) string {
	s := "SCHEMA >\n    id UInt64,\n    name String"
	if extra != "" {
		s += ",\n    " + extra + " String"
	}
	return s + "\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"id\"\n"
}

func mvPipe(node, sql, target string) string {
	return fmt.Sprintf("NODE %s\nSQL >\n    %s\nTYPE materialized\nDATASOURCE %s\n", node, sql, target)
}

// TestPopulateCase1JoinedDataSourceReadWhole is the spec's case 1: a Data Source (C) joined by
// the view and written by nothing in the flow is read whole by every partition's step.
func TestPopulateCase1JoinedDataSourceReadWhole(t *testing.T) {
	sys := sluicetest.Start(t)
	w := newPopWS(t, sys, "case1", map[string]string{
		"datasources/a.datasource": popA,
		"datasources/b.datasource": dsIDName("label"),
		"datasources/c.datasource": dsIDName(""),
		"pipes/pipe_a.pipe":        mvPipe("mv", "SELECT a.id AS id, a.name AS name, c.name AS label FROM a LEFT JOIN c ON c.id = a.id % 3", "b"),
	})
	w.exec(popRowsA)
	w.exec("INSERT INTO {db}.c VALUES (0, 'zero'), (1, 'one'), (2, 'two')")
	w.exec("TRUNCATE TABLE {db}.b") // what the live view wrote on the insert
	j := w.populate("pipe_a", nil, done)
	if p := j.GetProgress(); p.GetPartitionsTotal() != 3 || p.GetPartitionsDone() != 3 || p.GetStepsTotal() != 1 || p.GetStepsDone() != 1 || p.GetStatistics().GetWrittenRows() != 9 {
		t.Errorf("progress %v: want 3/3 partitions in 1/1 step (small partitions grouped), 9 rows written", p)
	}
	w.wantRows("SELECT id, name, label FROM {db}.b ORDER BY id",
		"1|one|one", "2|two|two", "3|three|zero", "4|four|one", "5|five|two", "6|six|zero", "7|seven|one", "8|eight|two", "9|nine|zero")
	// The populateview events: queued, then the result for the target with its rows.
	waitOpsEvents(t, sys, "case1", j.GetId(), "populateview-queued|b|ok|0", "populateview|b|ok|9")
}

// TestPopulateCase2DestinationJoinedShowsNoRowsOfThePartition is the spec's case 2: the view
// joins its own destination B, which holds none of the partition being processed; what B
// held before (here the row of id 4, and the partitions already committed) is read as it is.
func TestPopulateCase2DestinationJoinedShowsNoRowsOfThePartition(t *testing.T) {
	sys := sluicetest.Start(t)
	w := newPopWS(t, sys, "case2", map[string]string{
		"datasources/a.datasource": popA,
		"datasources/b.datasource": dsIDName("prev"),
		"pipes/pipe_1.pipe":        mvPipe("mv", "SELECT a.id AS id, a.name AS name, b.name AS prev FROM a LEFT JOIN b ON b.id = a.id", "b"),
	})
	w.exec("INSERT INTO {db}.b VALUES (4, 'old four', '')")
	w.exec(popRowsA)
	// The live view already wrote the 9 rows (joining B as it was at each insert); start over.
	w.populate("pipe_1", &schedulerv1.PopulateOptions{Truncate: true}, done)
	w.wantRows("SELECT id, name, prev FROM {db}.b ORDER BY id",
		"1|one|", "2|two|", "3|three|", "4|four|", "5|five|", "6|six|", "7|seven|", "8|eight|", "9|nine|")
	// Without truncate, B's rows are read as they are: each id finds its earlier row.
	w.populate("pipe_1", nil, done)
	w.wantRows("SELECT id, name, prev FROM {db}.b WHERE prev != '' ORDER BY id",
		"1|one|one", "2|two|two", "3|three|three", "4|four|four", "5|five|five", "6|six|six", "7|seven|seven", "8|eight|eight", "9|nine|nine")
	if got := w.scalar("SELECT count() FROM {db}.b"); got != "18" {
		t.Errorf("b has %s rows, want 18", got)
	}
}

// case3Files are the spec's case 3: A → pipe 1 → B; B → pipe 2 → C; B ⋈ C → pipe 3 → D.
var case3Files = map[string]string{
	"datasources/a.datasource": popA,
	"datasources/b.datasource": dsIDName(""),
	"datasources/c.datasource": dsIDName(""),
	"datasources/d.datasource": dsIDName("c_name"),
	"pipes/pipe_1.pipe":        mvPipe("mv", "SELECT id, name FROM a", "b"),
	"pipes/pipe_2.pipe":        mvPipe("mv", "SELECT id, upper(name) AS name FROM b", "c"),
	"pipes/pipe_3.pipe":        mvPipe("mv", "SELECT b.id AS id, b.name AS name, c.name AS c_name FROM b LEFT JOIN c ON c.id = b.id", "d"),
}

// TestPopulateCase3DeterministicCascade is the spec's case 3 made deterministic: populating
// pipe 1 cascades each partition's rows to C (pipe 2) and D (pipe 3) exactly once, and pipe 3,
// which comes after pipe 2 in the catalog's topological order, sees the partition's rows of C.
// It runs through the real CLI with --wait.
func TestPopulateCase3DeterministicCascade(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newPopWS(t, sys, "case3", case3Files)
	w.exec(popRowsA)
	// The live views wrote 9 rows to B, C and D on the insert: empty them to populate afresh.
	for _, tbl := range []string{"b", "c", "d"} {
		w.exec("TRUNCATE TABLE {db}." + tbl)
	}
	out, stderr, code := cli(t, bin, sys, "pipe", "populate", "pipe_1", "--wait", "--workspace", "case3")
	if code != 0 {
		t.Fatalf("sluice pipe populate: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "3/3 partitions, 9 rows written") || !strings.Contains(out, " done") {
		t.Errorf("--wait output:\n%s", out)
	}
	w.wantRows("SELECT id, name FROM {db}.b ORDER BY id",
		"1|one", "2|two", "3|three", "4|four", "5|five", "6|six", "7|seven", "8|eight", "9|nine")
	w.wantRows("SELECT id, name FROM {db}.c ORDER BY id",
		"1|ONE", "2|TWO", "3|THREE", "4|FOUR", "5|FIVE", "6|SIX", "7|SEVEN", "8|EIGHT", "9|NINE")
	w.wantRows("SELECT id, name, c_name FROM {db}.d ORDER BY id",
		"1|one|ONE", "2|two|TWO", "3|three|THREE", "4|four|FOUR", "5|five|FIVE", "6|six|SIX", "7|seven|SEVEN", "8|eight|EIGHT", "9|nine|NINE")
	// One populateview event per Data Source the job wrote: the target and the cascade's.
	jl, err := sys.Scheduler.ListJobs(context.Background(), &schedulerv1.ListJobsRequest{Workspace: "case3", Pipe: "pipe_1"})
	if err != nil || len(jl.GetJobs()) != 1 {
		t.Fatalf("jobs of pipe_1: %v %v", jl, err)
	}
	waitOpsEvents(t, sys, "case3", jl.GetJobs()[0].GetId(), "populateview-queued|b|ok|0", "populateview|b|ok|9", "populateview|c|ok|9", "populateview|d|ok|9")
	// No staging table is left behind.
	if got := w.scalar("SELECT count() FROM system.tables WHERE database = '{db}' AND startsWith(name, '__sluice_stage_')"); got != "0" {
		t.Errorf("%s staging tables left", got)
	}
	// The populate still leaves the live views working: a new insert flows once.
	w.exec("INSERT INTO {db}.a VALUES (10, 'ten', '2024-04-01 00:00:00')")
	w.wantRows("SELECT count() FROM {db}.d", "10")

	// --only-this-view writes B only.
	for _, tbl := range []string{"b", "c", "d"} {
		w.exec("TRUNCATE TABLE {db}." + tbl)
	}
	if out, stderr, code := cli(t, bin, sys, "pipe", "populate", "pipe_1", "--only-this-view", "--wait", "--workspace", "case3"); code != 0 {
		t.Fatalf("--only-this-view: exit %d\n%s\n%s", code, out, stderr)
	}
	w.wantRows("SELECT (SELECT count() FROM {db}.b), (SELECT count() FROM {db}.c), (SELECT count() FROM {db}.d)", "10|0|0")
}

// waitOpsEvents waits until the ops log has the job's events, as "type|datasource|result|rows".
func waitOpsEvents(t *testing.T, sys *sluicetest.System, ws, jobID string, want ...string) {
	t.Helper()
	var got []string
	sluicetest.Eventually(t, 30*time.Second, "ops events of job "+jobID, func() bool {
		resp, err := sys.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: ws, JobId: jobID}})
		if err != nil {
			return false
		}
		got = got[:0]
		for _, e := range resp.GetEvents() {
			got = append(got, fmt.Sprintf("%s|%s|%s|%d", opsevents.EventTypeName(e.GetEventType()), e.GetDatasourceName(), opsevents.ResultName(e.GetResult()), e.GetRows()))
		}
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				return false
			}
		}
		return true
	})
}

// TestPopulateConditionAndErrors: --sql-condition limits the rows, and bad requests get the
// hosted CLI's errors (not materialized, unknown node, a condition that does not parse or
// tries to leave its parenthesis), changing nothing.
func TestPopulateConditionAndErrors(t *testing.T) {
	sys := sluicetest.Start(t)
	w := newPopWS(t, sys, "opts", map[string]string{
		"datasources/a.datasource": popA,
		"datasources/b.datasource": dsIDName(""),
		"pipes/pipe_1.pipe":        mvPipe("mv", "SELECT id, name FROM a", "b"),
		"pipes/plain.pipe":         "NODE n\nSQL >\n    SELECT id FROM a\n",
	})
	w.exec(popRowsA)
	w.exec("TRUNCATE TABLE {db}.b")
	j := w.populate("pipe_1", &schedulerv1.PopulateOptions{SqlCondition: "id % 2 = 1 -- odd ids\n AND name != 'five' -- ) OR (1"}, done)
	w.wantRows("SELECT id FROM {db}.b ORDER BY id", "1", "3", "7", "9")
	if j.GetPopulate().GetSqlCondition() == "" || j.GetTargetDatasource() != "b" || j.GetNode() != "mv" || j.GetKind() != schedulerv1.JobKind_JOB_KIND_POPULATEVIEW {
		t.Errorf("job %v", j)
	}
	for _, tc := range []struct {
		pipe, node, cond, want string
		parallelism            int32
	}{
		{"pipe_1", "", "", "parallelism: 257 is not between 1 and 256", 257},
		{"pipe_1", "", "", "parallelism: -1 is not between 1 and 256", -1},
		{"plain", "", "", "is not materialized", 0},
		{"pipe_1", "nope", "", "has no node nope", 0},
		{"nowhere", "", "", "nowhere", 0},
		{"pipe_1", "", "id >", "not a valid condition", 0},
		{"pipe_1", "", "1) OR (1", "unbalanced", 0},
		{"pipe_1", "", "id IN (SELECT id FROM b)", "subqueries are not allowed", 0},
		{"pipe_1", "", "1 SETTINGS max_threads = 1", "SETTINGS is not part of a condition", 0},
		{"pipe_1", "", "file('/etc/passwd') != ''", "not a valid condition", 0},
	} {
		_, err := sys.Scheduler.Populate(context.Background(), &schedulerv1.PopulateRequest{
			Workspace: "opts", Pipe: tc.pipe, Node: tc.node, Options: &schedulerv1.PopulateOptions{SqlCondition: tc.cond}, Parallelism: tc.parallelism,
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("populate %s node %q condition %q: %v, want an error with %q", tc.pipe, tc.node, tc.cond, err, tc.want)
		}
	}
	w.wantRows("SELECT count() FROM {db}.b", "4")
}

// TestPopulateCancelLeavesWholePartitions cancels a populate while its steps run (steps of
// three partitions: -scheduler.populate-step-bytes 6000): the job ends cancelled, the target
// holds whole partitions only (the ones committed before the cancel), and no staging table is
// left behind.
func TestPopulateCancelLeavesWholePartitions(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs("-scheduler.populate-step-bytes", "6000"))
	w := newPopWS(t, sys, "cancel", map[string]string{
		"datasources/src.datasource": killSource,
		"datasources/dst.datasource": killTarget,
		"pipes/to_dst.pipe":          mvPipe("mv", "SELECT id, name FROM src WHERE sleepEachRow(0.002) = 0", "dst"),
	})
	for i := range 24 {
		w.exec(fmt.Sprintf("INSERT INTO {db}.src SELECT number * 24 + %d, toString(number) FROM numbers(120)", i))
	}
	resp, err := sys.Scheduler.Populate(context.Background(), &schedulerv1.PopulateRequest{Workspace: "cancel", Pipe: "to_dst", Options: &schedulerv1.PopulateOptions{Truncate: true}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetJob().GetId()
	sluicetest.Eventually(t, 60*time.Second, "two steps committed", func() bool {
		return getJob(t, sys.Scheduler, "cancel", id).GetProgress().GetStepsDone() >= 2
	})
	if _, err := sys.Scheduler.CancelJob(context.Background(), &schedulerv1.CancelJobRequest{Workspace: "cancel", Id: id}); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, sys.Scheduler, "cancel", id, 60*time.Second, done, failed, cancelled)
	if j.GetStatus() != cancelled {
		t.Fatalf("job = %v, want cancelled", j)
	}
	// Partitions of dst are id % 4; whole source partitions are id % 24 groups of 120 rows.
	w.wantRows("SELECT countIf(n != 120) FROM (SELECT id % 24 AS p, count() AS n FROM {db}.dst GROUP BY p)", "0")
	got := w.scalar("SELECT count() FROM {db}.dst")
	if n := j.GetProgress().GetStatistics().GetWrittenRows(); fmt.Sprint(n) != got {
		t.Errorf("dst has %s rows, the job reports %d written", got, n)
	}
	sluicetest.Eventually(t, 10*time.Second, "staging tables dropped", func() bool {
		return w.scalar("SELECT count() FROM system.tables WHERE database = '{db}' AND startsWith(name, '__sluice_stage_')") == "0"
	})
	if n := j.GetProgress().GetPartitionsDone(); fmt.Sprint(n*120) != got {
		t.Errorf("dst has %s rows, the job reports %d partitions of 120 rows committed", got, n)
	}
	t.Logf("cancelled after %d of 24 partitions in %d steps (%s rows)", j.GetProgress().GetPartitionsDone(), j.GetProgress().GetStepsDone(), got)
}

// TestPopulateEventsReadableWhenDone: a populate's `populateview` events are written before
// its job is reported finished, like a copy's: a client that sees the job DONE reads them at
// once, with the rows of every Data Source its cascade wrote, without polling the ops log.
func TestPopulateEventsReadableWhenDone(t *testing.T) {
	sys := sluicetest.Start(t)
	w := newPopWS(t, sys, "evdone", map[string]string{
		"datasources/a.datasource": popA,
		"datasources/b.datasource": dsIDName(""),
		"datasources/c.datasource": dsIDName(""),
		"pipes/pipe_1.pipe":        mvPipe("mv", "SELECT id, name FROM a", "b"),
		"pipes/pipe_2.pipe":        mvPipe("mv", "SELECT id, name FROM b WHERE id % 2 = 1", "c"),
	})
	w.exec(popRowsA)
	w.exec("TRUNCATE TABLE {db}.b")
	w.exec("TRUNCATE TABLE {db}.c")
	j := w.populate("pipe_1", nil, done)
	resp, err := sys.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: "evdone", JobId: j.GetId()}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range resp.GetEvents() {
		got[fmt.Sprintf("%s|%s|%s|%d", opsevents.EventTypeName(e.GetEventType()), e.GetDatasourceName(), opsevents.ResultName(e.GetResult()), e.GetRows())] = true
	}
	for _, want := range []string{"populateview|b|ok|9", "populateview|c|ok|5"} {
		if !got[want] {
			t.Errorf("the job is DONE but its events lack %s: %v", want, slices.Sorted(maps.Keys(got)))
		}
	}
	w.wantRows("SELECT (SELECT count() FROM {db}.b), (SELECT count() FROM {db}.c)", "9|5")
}
