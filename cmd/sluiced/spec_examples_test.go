package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// The SQL examples of the Copy Pipes document, each as written (the document's placeholder
// names: a Data Source called `datasource` with `datetime` and `timestamp` columns), each the
// copy node of an on-demand pipe whose target has the result's columns.
var copyPipesDocProject = map[string]string{
	"datasources/datasource.datasource": `SCHEMA >
    datetime DateTime,
    timestamp DateTime,
    value UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(datetime)"
ENGINE_SORTING_KEY "datetime"
`,
	"datasources/window_copy.datasource":      windowTarget(""),
	"datasources/window_copy_now.datasource":  windowTarget(""),
	"datasources/window_copy_5m.datasource":   windowTarget(""),
	"datasources/headroom_copy.datasource":    windowTarget("snapshot DateTime,\n    "),
	"datasources/snapshot_id_copy.datasource": windowTarget("snapshot_id DateTime,\n    "),
	"datasources/on_demand_copy.datasource":   windowTarget("hour DateTime,\n    "),
	"datasources/teams.datasource": `SCHEMA >
    starting_date DateTime,
    country String,
    sales UInt64

ENGINE "MergeTree"
ENGINE_SORTING_KEY "starting_date"
`,
	"datasources/sales_hour_copy.datasource": `SCHEMA >
    day DateTime,
    country String,
    total_sales UInt64

ENGINE "MergeTree"
ENGINE_SORTING_KEY "day, country"
`,
	"pipes/last_hour_now.pipe": copyNode("window_copy_now", `SELECT *
    FROM datasource
    WHERE datetime >= now() - interval 1 hour
        AND datetime < now()`),
	"pipes/hourly_window.pipe": copyNode("window_copy", `%
    SELECT *
    FROM datasource
    WHERE datetime >= toStartOfHour({{DateTime(job_timestamp)}}) - interval 1 hour
        AND datetime < toStartOfHour({{DateTime(job_timestamp)}})`),
	"pipes/five_minutes.pipe": copyNode("window_copy_5m", `%
    SELECT *
    FROM datasource
    WHERE datetime >= toStartOfFiveMinutes({{DateTime(job_timestamp)}}) - interval 5 minute
        AND datetime < toStartOfFiveMinutes({{DateTime(job_timestamp)}})`),
	"pipes/headroom.pipe": copyNode("headroom_copy", `%
    WITH (SELECT toStartOfFiveMinutes({{DateTime(job_timestamp)}}) - interval 15 second) AS snapshot
    SELECT snapshot, *
    FROM datasource
    WHERE timestamp >= snapshot - interval 5 minute
        AND timestamp < snapshot`),
	"pipes/snapshot_id.pipe": copyNode("snapshot_id_copy", `%
    SELECT toStartOfHour({{DateTime(job_timestamp)}}) as snapshot_id, *
    FROM datasource
    WHERE timestamp >= snapshot_id - interval 1 hour
        AND timestamp < snapshot_id`),
	"pipes/on_demand.pipe": copyNode("on_demand_copy", `%
    SELECT toStartOfHour({{DateTime(job_timestamp)}}), *
    FROM datasource
    WHERE datetime >= toStartOfHour({{DateTime(job_timestamp)}}) - interval 1 hour
        AND datetime < toStartOfHour({{DateTime(job_timestamp)}})`),
	"pipes/daily_sales.pipe": `NODE daily_sales
SQL >
    %
    SELECT toStartOfDay(starting_date) day, country, sum(sales) as total_sales
    FROM teams
    WHERE
    day BETWEEN toStartOfDay({{DateTime(job_timestamp)}}) - interval 1 day AND toStartOfDay({{DateTime(job_timestamp)}})
    and country = {{ String(country, 'US')}}
    GROUP BY day, country

TYPE COPY
TARGET_DATASOURCE sales_hour_copy
COPY_SCHEDULE 0 * * * *
`,
	"pipes/copy_monitoring.pipe": `NODE processed
SQL >
    %
    SELECT toStartOfMonth(timestamp) month, sum(read_bytes + written_bytes) processed_data
    FROM tinybird.datasources_ops_log
    WHERE datasource_name = 'window_copy'
        AND event_type = 'copy'
        AND timestamp >= toStartOfMonth({{DateTime(job_timestamp)}})
    GROUP BY month
`,
}

func windowTarget(extra string) string {
	return "SCHEMA >\n    " + extra + "datetime DateTime,\n    timestamp DateTime,\n    value UInt64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"datetime\"\n"
}

func copyNode(target, sql string) string {
	return "NODE copy_node\nSQL >\n    " + sql + "\n\nTYPE COPY\nTARGET_DATASOURCE " + target + "\nCOPY_SCHEDULE @on-demand\n"
}

// specEnv is a workspace of the system, created explicitly, driven through the real CLI.
type specEnv struct {
	*copyEnv
}

func newSpecEnv(t *testing.T, sys *sluicetest.System, ws string) *specEnv {
	t.Helper()
	ws = fmt.Sprintf("%s_%d", ws, copyWorkspaces.Add(1))
	// The CLI works with the workspace's admin token, as a user of the workspace would.
	admin := sys.CreateWorkspace(t, ws)
	w, err := sys.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: ws})
	if err != nil {
		t.Fatal(err)
	}
	_, bin := sluicetest.Binaries(t)
	return &specEnv{&copyEnv{t: t, ws: ws, sys: sys, wh: sys.App.Warehouse(), bin: bin, addr: sys.Addr, db: w.GetWorkspace().GetDatabase(), admin: admin}}
}

// ok runs the CLI and fails the test on a non-zero exit.
func (e *specEnv) ok(args ...string) string {
	e.t.Helper()
	out, stderr, code := e.cli(args...)
	if code != 0 {
		e.t.Fatalf("sluice %s: exit %d\n%s%s", strings.Join(args, " "), code, out, stderr)
	}
	return out
}

// refused runs the CLI, wants a non-zero exit and returns stderr.
func (e *specEnv) refused(args ...string) string {
	e.t.Helper()
	out, stderr, code := e.cli(args...)
	if code == 0 {
		e.t.Fatalf("sluice %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return stderr
}

func (e *specEnv) push(files map[string]string, extra ...string) {
	e.t.Helper()
	e.ok(append([]string{"push", "--push-deps", "--yes"}, append(extra, writeProject(e.t, files))...)...)
}

func (e *specEnv) want(what, sql, want string) {
	e.t.Helper()
	if got := e.rows(sql); got != want {
		e.t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// TestCopyPipesDocExamples pushes every SQL example of the Copy Pipes document as written,
// runs each copy with the real CLI at a job_timestamp between ticks, and checks the rows each
// window holds: toStartOfHour / toStartOfFiveMinutes of {{DateTime(job_timestamp)}}, the
// headroom snapshot, the snapshot timestamp column, the unnamed column of the on-demand example,
// the scheduled daily_sales pipe run by hand with and without its parameter, and the ops-log
// monitoring query.
func TestCopyPipesDocExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	e := newSpecEnv(t, sys, "copy_doc")
	e.push(copyPipesDocProject)
	// 300 rows, one a minute from 2024-06-01 00:00 (value = minute), 3 rows in the last hour
	// before now, and teams: one row an hour over two days, alternately US and ES.
	e.exec("INSERT INTO " + e.q("datasource") + " SELECT toDateTime('2024-06-01 00:00:00') + number * 60 AS datetime, datetime AS timestamp, number AS value FROM numbers(300)")
	e.exec("INSERT INTO " + e.q("datasource") + " SELECT now() - 600 - number AS datetime, datetime AS timestamp, 1000 + number AS value FROM numbers(3)")
	e.exec("INSERT INTO " + e.q("teams") + " SELECT toDateTime('2024-06-01 00:00:00') + number * 3600, if(number % 2 = 0, 'US', 'ES'), 1 FROM numbers(48)")

	run := func(pipe string, args ...string) {
		t.Helper()
		e.ok(append([]string{"pipe", "copy", "run", pipe, "--job-timestamp", "2024-06-01 03:02:10", "--wait", "--yes"}, args...)...)
	}
	run("hourly_window", "--node", "copy_node")
	e.want("hourly window", "SELECT count(), sum(value), min(datetime), max(datetime) FROM "+e.q("window_copy"), "60 8970 2024-06-01T02:00 2024-06-01T02:59\n")
	// The job is done: its event is readable now, with the fields the document lists; chDB
	// reports no CPU time or memory, so those are NULL, not 0.
	e.want("the copy's event, as soon as the job is done",
		"SELECT startsWith(datasource_id, 't_'), startsWith(pipe_id, 'p_'), pipe_name, written_rows, cpu_time IS NULL, memory_usage IS NULL FROM "+e.q("datasources_ops_log")+" WHERE event_type = 'copy' AND datasource_name = 'window_copy'",
		"1 1 hourly_window 60 1 1\n")
	run("five_minutes")
	e.want("five-minute window", "SELECT count(), sum(value) FROM "+e.q("window_copy_5m"), "5 885\n")
	run("headroom")
	e.want("headroom snapshot", "SELECT count(), sum(value), toString(any(snapshot)) FROM "+e.q("headroom_copy"), "5 885 2024-06-01 02:59:45\n")
	run("snapshot_id")
	e.want("snapshot id", "SELECT count(), sum(value), toString(any(snapshot_id)) FROM "+e.q("snapshot_id_copy"), "60 8970 2024-06-01 03:00:00\n")
	run("on_demand")
	e.want("unnamed column by position", "SELECT count(), sum(value), toString(any(hour)) FROM "+e.q("on_demand_copy"), "60 8970 2024-06-01 03:00:00\n")
	e.ok("pipe", "copy", "run", "last_hour_now", "--wait")
	e.want("now() window", "SELECT count(), sum(value) FROM "+e.q("window_copy_now"), "3 3003\n")

	// The scheduled pipe, run by hand: defaults, then a parameter and another job_timestamp.
	e.ok("pipe", "copy", "run", "daily_sales", "--job-timestamp", "2024-06-02 05:00:00", "--wait")
	e.ok("pipe", "copy", "run", "daily_sales", "--param", "country=ES", "--job-timestamp", "2024-06-01 00:30:00", "--wait", "--yes")
	e.want("daily sales", "SELECT toString(day), country, total_sales FROM "+e.q("sales_hour_copy")+" ORDER BY day, country",
		"2024-06-01 00:00:00 ES 12\n2024-06-01 00:00:00 US 12\n2024-06-02 00:00:00 US 12\n")

	// A misspelt parameter and a wrong node are refused before anything runs.
	stderr := e.refused("pipe", "copy", "run", "daily_sales", "--param", "contry=ES", "--wait")
	if !strings.Contains(stderr, "no parameter contry") || !strings.Contains(stderr, "country, job_timestamp") {
		t.Errorf("misspelt parameter: %s", stderr)
	}
	if stderr := e.refused("pipe", "copy", "run", "daily_sales", "--node", "other", "--wait"); !strings.Contains(stderr, "the copy node of pipe daily_sales is daily_sales") {
		t.Errorf("wrong --node: %s", stderr)
	}
	e.want("nothing ran for the refused runs", "SELECT count() FROM "+e.q("sales_hour_copy"), "3\n")

	// The monitoring query, as written, reads the copies' ops-log events once they are written.
	if got := e.sqlCell("SELECT count() FROM copy_monitoring WHERE month = toStartOfMonth(today()) AND processed_data > 0"); got != "1" {
		t.Errorf("the monitoring query found %s month(s) of copies, want 1", got)
	}

	// tinybird.jobs_log has every copy job once, in its final state, from the job records.
	sluicetest.Eventually(t, 30*time.Second, "the copy jobs in tinybird.jobs_log", func() bool {
		return e.sqlCell("SELECT count() FROM tinybird.jobs_log WHERE job_type = 'copy' AND status = 'done' AND started_at IS NOT NULL AND updated_at >= created_at") == "8"
	})
	if got := e.sqlCell("SELECT countIf(pipe_name = 'daily_sales' AND JSONExtractString(job_metadata, 'execution_type') = 'manual' AND position(job_metadata, 'country') > 0) FROM tinybird.jobs_log"); got != "1" {
		t.Errorf("jobs_log rows of daily_sales with its parameter: %s, want 1", got)
	}
	if stderr := e.refused("sql", "SELECT * FROM tinybird.pipe_stats_rt"); !strings.Contains(stderr, "does not provide") {
		t.Errorf("an unprovided service Data Source: %s", stderr)
	}
}

// sqlCell runs `sluice sql` (text output) and returns the first cell of the first row.
func (e *specEnv) sqlCell(sql string) string {
	e.t.Helper()
	out := e.ok("sql", sql)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return ""
	}
	return strings.Fields(lines[1])[0]
}

// The backfill document's Data Sources and pipes, as written.
const (
	analyticsEvents = `SCHEMA >
    ` + "`timestamp`" + ` DateTime ` + "`json:$.timestamp`" + `,
    ` + "`session_id`" + ` String ` + "`json:$.session_id`" + `,
    ` + "`action`" + ` LowCardinality(String) ` + "`json:$.action`" + `,
    ` + "`version`" + ` LowCardinality(String) ` + "`json:$.version`" + `,
    ` + "`payload`" + ` String ` + "`json:$.payload`" + `

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp"
`
	backfillCopy = `NODE node
SQL > 
   %
   SELECT * 
   FROM analytics_events
   WHERE timestamp BETWEEN {{DateTime(start_backfill_timestamp)}} AND {{DateTime(end_backfill_timestamp)}}

TYPE COPY
TARGET_DATASOURCE analytics_events_1
`
	syncData = `NODE node
SQL >
   SELECT * 
   FROM analytics_events
   WHERE timestamp > '2024-02-02 13:30:00'

TYPE materialized
DATASOURCE analytics_events_1
`
	migrationNode = `NODE migration_node
SQL > 
    SELECT * 
    FROM analytics_events

TYPE materialized
DATASOURCE analytics_events_1
`
	migratingNode = `NODE migrating_node
SQL > 
   SELECT * 
   FROM analytics_events

TYPE materialized
DATASOURCE analytics_events_1
`
	migrateData = `NODE migrate_data
SQL > 
   SELECT * 
   FROM analytics_events

TYPE COPY
TARGET_DATASOURCE analytics_events_1
`
)

// analyticsEvents1 is the new version: sorting key action, timestamp.
var analyticsEvents1 = strings.Replace(analyticsEvents, `ENGINE_SORTING_KEY "timestamp"`, `ENGINE_SORTING_KEY "action, timestamp"`, 1)

// TestBackfillDocExamples runs the backfill document's scenarios with its datafiles and
// commands as written (tb becomes sluice): scenario 2 (a materialized pipe from the old Data
// Source to the new one), scenario 3 (a materialized pipe with a future cut-over plus a copy
// of the range up to it), and scenario 4 (a populate of a materialized node, and a copy of the
// whole Data Source by --node). Each ends with the document's comparison of counts, and the
// copy refusal and truncate the populate spec tells users to run.
func TestBackfillDocExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	// 181 events, one a minute from 2024-02-02 12:00 to 15:00, in two months' partitions
	// (plus 31 in January) so that the populate has more than one step.
	insert := func(e *specEnv) {
		e.exec("INSERT INTO " + e.q("analytics_events") + ` SELECT toDateTime('2024-02-02 12:00:00') + number * 60, toString(number), if(number % 3 = 0, 'view', 'click'), '1', '{}' FROM numbers(181)`)
		e.exec("INSERT INTO " + e.q("analytics_events") + ` SELECT toDateTime('2024-01-01 00:00:00') + number * 86400, 'old', 'view', '1', '{}' FROM numbers(31)`)
	}
	counts := func(e *specEnv, want string) {
		t.Helper()
		old, next := e.sqlCell("SELECT count() FROM analytics_events"), e.sqlCell("SELECT count() FROM analytics_events_1")
		if old != want || next != want {
			t.Errorf("%s: count() of analytics_events %s, of analytics_events_1 %s; want %s both", e.ws, old, next, want)
		}
		e.want("every row once", "SELECT count() FROM (SELECT timestamp, session_id FROM "+e.q("analytics_events_1")+" GROUP BY timestamp, session_id HAVING count() > 1)", "0\n")
	}

	t.Run("scenario 2: full replacement", func(t *testing.T) {
		e := newSpecEnv(t, sys, "backfill2")
		e.push(map[string]string{"datasources/analytics_events.datasource": analyticsEvents, "datasources/analytics_events_1.datasource": analyticsEvents1, "pipes/migrate.pipe": migrationNode})
		insert(e)
		counts(e, "212")
	})

	t.Run("scenario 3: incremental timestamp", func(t *testing.T) {
		e := newSpecEnv(t, sys, "backfill3")
		e.push(map[string]string{"datasources/analytics_events.datasource": analyticsEvents, "datasources/analytics_events_1.datasource": analyticsEvents1,
			"pipes/sync_data.pipe": syncData, "pipes/backfill_data.pipe": backfillCopy})
		insert(e)
		e.want("the view wrote the rows after the cut-over", "SELECT count() FROM "+e.q("analytics_events_1"), "90\n")
		if stderr := e.refused("pipe", "copy", "run", "backfill_data", "--param", "start_backfill_timestamp=1970-01-01 00:00:00", "--wait", "--yes"); !strings.Contains(stderr, "end_backfill_timestamp") {
			t.Errorf("a missing parameter is named: %s", stderr)
		}
		e.ok("pipe", "copy", "run", "backfill_data", "--param", "start_backfill_timestamp=1970-01-01 00:00:00", "--param", "end_backfill_timestamp=2024-02-02 13:30:00", "--wait", "--yes")
		counts(e, "212")
	})

	t.Run("scenario 4: populate", func(t *testing.T) {
		e := newSpecEnv(t, sys, "backfill4p")
		e.push(map[string]string{"datasources/analytics_events.datasource": analyticsEvents})
		insert(e)
		e.push(map[string]string{"datasources/analytics_events.datasource": analyticsEvents, "datasources/analytics_events_1.datasource": analyticsEvents1, "pipes/backfill_data.pipe": migratingNode})
		e.ok("pipe", "populate", "backfill_data", "--node", "migrating_node", "--wait")
		counts(e, "212")
		// The populate spec's advice before a second populate: truncate the target.
		if out := e.ok("datasource", "truncate", "analytics_events_1", "--yes"); !strings.Contains(out, "212 rows") {
			t.Errorf("truncate output: %s", out)
		}
		e.ok("pipe", "populate", "backfill_data", "--node", "migrating_node", "--wait", "--yes")
		counts(e, "212")
		sluicetest.Eventually(t, 30*time.Second, "the truncate event", func() bool {
			return e.sqlCell("SELECT count() FROM tinybird.datasources_ops_log WHERE event_type = 'truncate' AND datasource_name = 'analytics_events_1' AND rows = 212 AND datasource_id != ''") == "1"
		})
	})

	t.Run("scenario 4: move ingestion, copy by node", func(t *testing.T) {
		e := newSpecEnv(t, sys, "backfill4c")
		e.push(map[string]string{"datasources/analytics_events.datasource": analyticsEvents, "datasources/analytics_events_1.datasource": analyticsEvents1, "pipes/backfill_data.pipe": migrateData})
		insert(e)
		e.ok("pipe", "copy", "run", "backfill_data", "--node", "migrate_data", "--wait", "--yes")
		counts(e, "212")
		if stderr := e.refused("push", "--populate", writeProject(t, map[string]string{"pipes/backfill_data.pipe": migrateData})); !strings.Contains(stderr, "sluice pipe populate") {
			t.Errorf("--populate: %s", stderr)
		}
	})
}

// TestPopulateViewThatReadsAPipe: a materialized node that reads another pipe (FROM an endpoint
// pipe) fires on inserts into that pipe's Data Source and can be populated, as on the hosted
// platform.
func TestPopulateViewThatReadsAPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	e := newSpecEnv(t, sys, "view_pipe")
	events := map[string]string{"datasources/events.datasource": `SCHEMA >
    ts DateTime,
    action String

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "ts"
`}
	e.push(events)
	e.exec("INSERT INTO " + e.q("events") + " SELECT toDateTime('2024-01-01 00:00:00') + number * 86400 * 10, if(number % 3 = 0, 'Buy', 'view') FROM numbers(9)")
	project := map[string]string{
		"datasources/events.datasource": events["datasources/events.datasource"],
		"datasources/by_action.datasource": `SCHEMA >
    action String,
    n UInt64

ENGINE "SummingMergeTree"
ENGINE_SORTING_KEY "action"
`,
		"pipes/clean_events.pipe": `NODE clean
SQL >
    SELECT ts, lower(action) AS action FROM events

TYPE endpoint
`,
		"pipes/by_action_mv.pipe": `NODE count_actions
SQL >
    SELECT action, count() AS n FROM clean_events GROUP BY action

TYPE materialized
DATASOURCE by_action
`,
	}
	e.push(project)
	e.ok("pipe", "populate", "by_action_mv", "--node", "count_actions", "--wait")
	e.want("populated through the pipe", "SELECT action, sum(n) FROM "+e.q("by_action")+" GROUP BY action ORDER BY action", "buy 3\nview 6\n")
	e.exec("INSERT INTO " + e.q("events") + " VALUES (now(), 'BUY')")
	e.want("new rows fire the view", "SELECT action, sum(n) FROM "+e.q("by_action")+" GROUP BY action ORDER BY action", "buy 4\nview 6\n")
}
