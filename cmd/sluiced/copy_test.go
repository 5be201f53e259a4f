package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// The Copy Pipes project of these tests: hourly sales by country out of `events`, in the
// spec's shape (toStartOfHour(job_timestamp) windows, a String parameter with a default), a
// materialized view downstream of the copy's target (sales_daily), a pipe with a required
// parameter and one that fails in ClickHouse when it runs.
var copyProject = map[string]string{
	"datasources/events.datasource": `SCHEMA >
    ` + "`ts`" + ` DateTime,
    ` + "`country`" + ` String,
    ` + "`sales`" + ` UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "ts"
`,
	"datasources/sales_hour_copy.datasource": `SCHEMA >
    ` + "`hour`" + ` DateTime,
    ` + "`country`" + ` String,
    ` + "`total_sales`" + ` UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMMDD(hour)"
ENGINE_SORTING_KEY "hour, country"
`,
	"datasources/sales_daily.datasource": `SCHEMA >
    ` + "`day`" + ` Date,
    ` + "`country`" + ` String,
    ` + "`total`" + ` UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(day)"
ENGINE_SORTING_KEY "day, country"
`,
	// As the spec writes it: {{DateTime(x)}} renders a typed value that date functions take,
	// on chDB 26.7 and on the 18.16 server.
	"pipes/sales_hour.pipe": `NODE hourly
SQL >
    %
    SELECT toStartOfHour(ts) AS hour, country, sum(sales) AS total_sales
    FROM events
    WHERE ts >= toStartOfHour({{DateTime(job_timestamp)}}) - interval 1 hour
        AND ts < toStartOfHour({{DateTime(job_timestamp)}})
        AND country = {{String(country, 'US')}}
    GROUP BY hour, country

TYPE COPY
TARGET_DATASOURCE sales_hour_copy
COPY_SCHEDULE @on-demand
`,
	"pipes/sales_daily_mv.pipe": `NODE daily
SQL >
    SELECT toDate(hour) AS day, country, sum(total_sales) AS total
    FROM sales_hour_copy
    GROUP BY day, country

TYPE MATERIALIZED
DATASOURCE sales_daily
`,
	"pipes/backfill.pipe": `NODE range
SQL >
    %
    SELECT toStartOfHour(ts) AS hour, country, sum(sales) AS total_sales
    FROM events
    WHERE ts >= {{DateTime(since, required=True)}} AND ts < {{DateTime(until, required=True)}}
    GROUP BY hour, country

TYPE COPY
TARGET_DATASOURCE sales_hour_copy
`,
	"pipes/broken.pipe": `NODE boom
SQL >
    SELECT toStartOfHour(ts) AS hour, country, toUInt64(sales + throwIf(sales > 0, 'copy failure injected')) AS total_sales
    FROM events

TYPE COPY
TARGET_DATASOURCE sales_hour_copy
`,
}

// writeProject writes datafiles into a new directory.
func writeProject(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyEnv is a running system with the copy project pushed into workspace ws and 48 hours
// of events from 2024-06-01: each hour h has 10 US rows of sales h+1 and 5 ES rows of 100.
type copyEnv struct {
	t    testing.TB
	ws   string
	sys  *sluicetest.System
	wh   warehouse.Conn
	db   string
	bin  string
	addr string
	// admin carries the workspace's admin token.
	admin *sluicetest.Clients
}

// serverCopyProject is copyProject for clickhouse-server 18.16, whose toStartOfHour returns
// DateTime('Etc/UTC') and whose throwIf takes no message.
func serverCopyProject() map[string]string {
	out := map[string]string{}
	for k, v := range copyProject {
		v = strings.ReplaceAll(v, "`hour` DateTime,", "`hour` DateTime('Etc/UTC'),")
		v = strings.ReplaceAll(v, "throwIf(sales > 0, 'copy failure injected')", "throwIf(sales > 0)")
		out[k] = v
	}
	return out
}

var copyWorkspaces atomic.Int64

// Each test (and each run of it, with -count) has its own workspace: the tests of this binary
// share one chDB, and a workspace database is named after the workspace.
func newCopyEnv(t testing.TB, sys *sluicetest.System, ws string, project map[string]string) *copyEnv {
	t.Helper()
	ws = fmt.Sprintf("%s_%d", ws, copyWorkspaces.Add(1))
	_, bin := sluicetest.Binaries(t)
	e := &copyEnv{t: t, ws: ws, sys: sys, wh: sys.App.Warehouse(), bin: bin, addr: sys.Addr}
	// The CLI works with the workspace's admin token, as a user of the workspace would.
	e.admin = sys.CreateWorkspace(t, ws)
	if out, stderr, code := e.cli("push", writeProject(t, project)); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, stderr)
	}
	w, err := sys.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: ws})
	if err != nil {
		t.Fatal(err)
	}
	e.db = w.GetWorkspace().GetDatabase()
	if _, ok := project["datasources/events.datasource"]; !ok {
		return e
	}
	e.exec("INSERT INTO " + e.q("events") + ` SELECT toDateTime('2024-06-01 00:00:00') + intDiv(number, 15) * 3600 + (number % 15) * 60 AS ts,
		if(number % 15 < 10, 'US', 'ES') AS country, if(number % 15 < 10, intDiv(number, 15) + 1, 100) AS sales FROM numbers(720)`)
	return e
}

func (e *copyEnv) q(table string) string { return warehouse.QualifiedName(e.db, table) }

func (e *copyEnv) exec(sql string) {
	e.t.Helper()
	if _, err := e.wh.Exec(context.Background(), sql); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// rows returns a query's rows as text, one line per row.
func (e *copyEnv) rows(sql string) string {
	e.t.Helper()
	res, err := e.wh.Query(context.Background(), sql)
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	var b strings.Builder
	for _, r := range res.Rows {
		for i, v := range r {
			if i > 0 {
				b.WriteByte(' ')
			}
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC().Format("2006-01-02T15:04")
			}
			fmt.Fprint(&b, v)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// target is the copy target's content, ordered.
func (e *copyEnv) target() string {
	return e.rows("SELECT hour, country, total_sales FROM " + e.q("sales_hour_copy") + " ORDER BY hour, country, total_sales")
}

func (e *copyEnv) daily() string {
	return e.rows("SELECT toString(day), country, sum(total) FROM " + e.q("sales_daily") + " GROUP BY day, country ORDER BY day, country")
}

func (e *copyEnv) stagingLeft() string {
	return e.rows("SELECT name FROM system.tables WHERE database = " + warehouse.QuoteString(e.db) + " AND startsWith(name, '__sluice_stage_')")
}

// cli runs the real sluice binary in the env's workspace.
func (e *copyEnv) cli(args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, append(args, "--addr", e.addr, "--workspace", e.ws)...)
	cmd.Env = e.admin.CLIEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		e.t.Fatalf("sluice %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// TestCopyOnDemandThroughCLI reproduces the spec's on-demand examples with the real CLI on
// chDB: a backfill with --param and an explicit job_timestamp, the default parameter, the
// rows flowing on to the materialized view downstream, --mode replace, the error naming every
// missing required parameter, and a copy failing in ClickHouse leaving the target untouched.
func TestCopyOnDemandThroughCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	e := newCopyEnv(t, sluicetest.Start(t, sluicetest.WithArgs(fastJobs...)), "copy_cli", copyProject)
	runCopyScenario(t, e, true)
}

// TestCopyOnDemandOnServer runs the append part of the same scenario against a
// clickhouse-server process (18.16: no MOVE PARTITION TO TABLE, so the append commits by
// ATTACH PARTITION FROM + DROP PARTITION; no EXCHANGE TABLES and no table UUIDs, so replace is
// refused there with a clear error, which the test checks).
func TestCopyOnDemandOnServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	cfg := warehousetest.Server(t)
	e := newCopyEnv(t, sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-clickhouse-addr", strings.Join(cfg.Addrs, ",")}, fastJobs...)...)), "copy_server", serverCopyProject())
	runCopyScenario(t, e, false)
}

func runCopyScenario(t *testing.T, e *copyEnv, modern bool) {
	// Backfill: ES for the hour before 05:30 on June 1st.
	out, stderr, code := e.cli("pipe", "copy", "run", "sales_hour", "--param", "country=ES", "--job-timestamp", "2024-06-01 05:30:00", "--wait")
	if code != 0 || !strings.Contains(out, "done: 1/1 steps, 1 rows written") {
		t.Fatalf("copy run --wait: exit %d\n%s%s", code, out, stderr)
	}
	if got, want := e.target(), "2024-06-01T04:00 ES 500\n"; got != want {
		t.Fatalf("target after the backfill:\n%swant\n%s", got, want)
	}
	if got, want := e.daily(), "2024-06-01 ES 500\n"; got != want {
		t.Fatalf("sales_daily (downstream view) after the backfill:\n%swant\n%s", got, want)
	}
	// Default parameter (US), without --wait: the job id, then the job's record.
	out, stderr, code = e.cli("pipe", "copy", "run", "sales_hour", "--job-timestamp", "2024-06-01T06:00:00Z")
	id := strings.TrimSpace(out)
	if code != 0 || id == "" || strings.Contains(id, " ") {
		t.Fatalf("copy run: exit %d %q %s", code, out, stderr)
	}
	job := waitJob(t, e.sys.Scheduler, e.ws, id, 60*time.Second, schedulerv1.JobStatus_JOB_STATUS_DONE)
	if job.GetKind() != schedulerv1.JobKind_JOB_KIND_COPY || job.GetMode() != commonv1.CopyMode_COPY_MODE_APPEND ||
		job.GetExecutionType() != schedulerv1.ExecutionType_EXECUTION_TYPE_MANUAL || job.GetTargetDatasource() != "sales_hour_copy" ||
		!job.GetJobTimestamp().AsTime().Equal(time.Date(2024, 6, 1, 6, 0, 0, 0, time.UTC)) || job.GetProgress().GetStatistics().GetWrittenRows() != 1 {
		t.Errorf("copy job = %v", job)
	}
	if got, want := e.target(), "2024-06-01T04:00 ES 500\n2024-06-01T05:00 US 60\n"; got != want {
		t.Fatalf("target after the second copy:\n%swant\n%s", got, want)
	}
	// Missing required parameters are all named, and nothing runs.
	_, stderr, code = e.cli("pipe", "copy", "run", "backfill", "--wait")
	if code != 1 || !strings.Contains(stderr, "since") || !strings.Contains(stderr, "until") {
		t.Errorf("copy run without required parameters: exit %d %q", code, stderr)
	}
	out, stderr, code = e.cli("pipe", "copy", "run", "backfill", "--param", "since=2024-06-02 00:00:00", "--param", "until=2024-06-02 02:00:00", "--wait")
	if code != 0 {
		t.Fatalf("backfill with --param: exit %d\n%s%s", code, out, stderr)
	}
	want := "2024-06-01T04:00 ES 500\n2024-06-01T05:00 US 60\n2024-06-02T00:00 ES 500\n2024-06-02T00:00 US 250\n2024-06-02T01:00 ES 500\n2024-06-02T01:00 US 260\n"
	if got := e.target(); got != want {
		t.Fatalf("target after the backfill pipe:\n%swant\n%s", got, want)
	}
	if got, want := e.daily(), "2024-06-01 ES 500\n2024-06-01 US 60\n2024-06-02 ES 1000\n2024-06-02 US 510\n"; got != want {
		t.Fatalf("sales_daily after the backfill pipe:\n%swant\n%s", got, want)
	}
	// A copy failing in ClickHouse: the job ends error with ClickHouse's message, the target
	// and the view downstream are as they were, no staging table is left.
	_, stderr, code = e.cli("pipe", "copy", "run", "broken", "--wait")
	if code != 1 || !(strings.Contains(stderr, "copy failure injected") || !modern && strings.Contains(stderr, "throwIf")) {
		t.Errorf("failing copy: exit %d %q", code, stderr)
	}
	if got := e.target(); got != want {
		t.Fatalf("target after a failed copy:\n%swant\n%s", got, want)
	}
	if left := e.stagingLeft(); left != "" {
		t.Errorf("staging tables left after a failed copy:\n%s", left)
	}
	checkCopyEvents(t, e, id, 6)
	if !modern {
		_, stderr, code = e.cli("pipe", "copy", "run", "sales_hour", "--mode", "replace", "--job-timestamp", "2024-06-01 10:00:00", "--wait")
		t.Logf("replace on clickhouse-server 18.16 is refused (no EXCHANGE TABLES, no table UUIDs): exit %d %s", code, strings.TrimSpace(stderr))
		if code != 1 || !strings.Contains(stderr, "EXCHANGE") {
			t.Errorf("replace on 18.16: exit %d %q", code, stderr)
		}
		if got := e.target(); got != want {
			t.Fatalf("target after a refused replace:\n%swant\n%s", got, want)
		}
		return
	}
	// Replace: the whole content becomes the job's rows, and the view downstream is recomputed
	// from them.
	out, stderr, code = e.cli("pipe", "copy", "run", "sales_hour", "--mode", "replace", "--job-timestamp", "2024-06-01 10:00:00", "--wait")
	if code != 0 {
		t.Fatalf("copy run --mode replace: exit %d\n%s%s", code, out, stderr)
	}
	if got, want := e.target(), "2024-06-01T09:00 US 100\n"; got != want {
		t.Fatalf("target after replace:\n%swant\n%s", got, want)
	}
	if got, want := e.daily(), "2024-06-01 US 100\n"; got != want {
		t.Fatalf("sales_daily after replace:\n%swant\n%s", got, want)
	}
	if left := e.stagingLeft(); left != "" {
		t.Errorf("staging tables left after replace:\n%s", left)
	}
	checkCopyEvents(t, e, id, 8)
}

// checkCopyEvents waits for the workspace's copy events: ok ones (one per Data Source written
// by each successful copy: the target and sales_daily downstream) and the failed copy's error;
// the event of job id on the target says what the copy did.
func checkCopyEvents(t *testing.T, e *copyEnv, id string, wantOK int) {
	t.Helper()
	var events []*opslogv1.OpsEvent
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := e.sys.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{
			Filter: &opslogv1.EventFilter{Workspace: e.ws, EventTypes: []opslogv1.EventType{opslogv1.EventType_EVENT_TYPE_COPY}}, PageSize: 1000})
		ok, failed := 0, 0
		if err == nil {
			events = resp.GetEvents()
			for _, ev := range events {
				switch ev.GetResult() {
				case opslogv1.Result_RESULT_OK:
					ok++
				case opslogv1.Result_RESULT_ERROR:
					if strings.Contains(ev.GetError(), "throwIf") || strings.Contains(ev.GetError(), "copy failure injected") {
						failed++
					}
				}
			}
		}
		if ok == wantOK && failed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy events: %d ok (want %d), %d error (want 1): %v", ok, wantOK, failed, events)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ev := range events {
		if ev.GetJobId() != id || ev.GetDatasourceName() != "sales_hour_copy" {
			continue
		}
		if ev.GetRows() != 1 || ev.GetPipeName() != "sales_hour" || ev.GetOptions()["execution_type"] != "manual" || ev.GetOptions()["mode"] == "" || ev.GetElapsedTime().AsDuration() <= 0 {
			t.Errorf("copy event of job %s on the target: %v", id, ev)
		}
		return
	}
	t.Errorf("no copy event of job %s on the target", id)
}
