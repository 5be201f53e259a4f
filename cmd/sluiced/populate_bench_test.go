package main_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

const benchEvents = `SCHEMA >
    id UInt64,
    ts DateTime,
    action LowCardinality(String),
    amount Float64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "id"
`

// BenchmarkPopulate is TARGETS.md P3: a populate of a 24-partition source (10 M rows by
// default; SLUICE_BENCH_POPULATE_ROWS) from submit to done, against one direct
// `INSERT ... SELECT` of the same query over the whole source into a table like the target, on
// the same engine (all-in-one, chDB) in the same run. Reported: both times and their ratio
// (target <= 1.15).
func BenchmarkPopulate(b *testing.B) {
	rows := 10_000_000
	if v := os.Getenv("SLUICE_BENCH_POPULATE_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	var opts []sluicetest.Option
	if v := os.Getenv("SLUICE_BENCH_EXECUTOR_CONCURRENCY"); v != "" {
		opts = append(opts, sluicetest.WithArgs("-executor.concurrency", v))
	}
	sys := sluicetest.Start(b, opts...)
	ctx := context.Background()
	benchSeq++
	ws := fmt.Sprintf("bench%d", benchSeq) // Go runs the function once per b.N, on the one chDB
	files := map[string]string{
		"datasources/events.datasource": benchEvents,
		"datasources/copy.datasource":   benchEvents,
		"datasources/direct.datasource": benchEvents,
	}
	pushBench(b, sys, ws, files)
	db := sys.DatabaseOf(b, ws)
	exec := func(sql string) time.Duration {
		b.Helper()
		start := time.Now()
		if _, err := sys.App.Warehouse().Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
		return time.Since(start)
	}
	exec(fmt.Sprintf("INSERT INTO %s.events SELECT number, toDateTime('2023-01-01 00:00:00') + intDiv(number * 730 * 86400, %d), ['buy', 'view', 'click'][number %% 3 + 1], number / 100 FROM numbers(%d)", db, rows, rows))
	exec("OPTIMIZE TABLE " + db + ".events FINAL")
	files["pipes/to_copy.pipe"] = mvPipe("mv", "SELECT id, ts, action, amount * 2 AS amount FROM events", "copy")
	pushBench(b, sys, ws, files)
	var direct, populate, create time.Duration
	b.ResetTimer()
	for range b.N {
		exec("TRUNCATE TABLE " + db + ".direct")
		exec("TRUNCATE TABLE " + db + ".copy")
		direct += exec(fmt.Sprintf("INSERT INTO %s.direct SELECT id, ts, action, amount * 2 AS amount FROM %s.events", db, db))
		start := time.Now()
		resp, err := sys.Scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: ws, Pipe: "to_copy"})
		if err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		j := waitJobFast(b, sys.Scheduler, ws, resp.GetJob().GetId())
		populate += time.Since(start)
		if j.GetStatus() != done || j.GetProgress().GetStepsTotal() != 24 || j.GetProgress().GetStatistics().GetWrittenRows() != uint64(rows) {
			b.Fatalf("populate = %v", j)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(direct.Seconds()/n, "direct_s")
	b.ReportMetric(populate.Seconds()/n, "populate_s")
	b.ReportMetric(create.Seconds()/n, "create_s")
	b.ReportMetric(populate.Seconds()/direct.Seconds(), "ratio")
	b.ReportMetric(float64(rows)*n/populate.Seconds(), "rows/s")
}

var benchSeq int

func pushBench(b *testing.B, sys *sluicetest.System, ws string, files map[string]string) {
	b.Helper()
	req := pushRequest(ws, files)
	if _, err := sys.Catalog.Push(context.Background(), req); err != nil {
		b.Fatal(err)
	}
}

// waitJobFast watches a job to its end (WatchJob: no polling delay in the figure).
func waitJobFast(b *testing.B, c schedulerv1.SchedulerServiceClient, ws, id string) *schedulerv1.Job {
	b.Helper()
	stream, err := c.WatchJob(context.Background(), &schedulerv1.WatchJobRequest{Workspace: ws, Id: id})
	if err != nil {
		b.Fatal(err)
	}
	var last *schedulerv1.Job
	for {
		resp, err := stream.Recv()
		if err != nil {
			break
		}
		last = resp.GetJob()
	}
	if last == nil {
		b.Fatalf("watch of %s ended without a state", id)
	}
	return last
}
