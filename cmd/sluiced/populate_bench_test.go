package main_test

import (
	"context"
	"fmt"
	"os"
	"slices"
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
// the same engine (all-in-one, chDB) in the same run. Each round times the direct insert and
// then the populate; reported are the medians of both and the median of the rounds' ratios
// (target <= 1.15).
func BenchmarkPopulate(b *testing.B) {
	rows := envInt("SLUICE_BENCH_POPULATE_ROWS", 10_000_000)
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
	var direct, populate, create []time.Duration
	b.ResetTimer()
	for range b.N {
		exec("TRUNCATE TABLE " + db + ".direct")
		exec("TRUNCATE TABLE " + db + ".copy")
		direct = append(direct, exec(fmt.Sprintf("INSERT INTO %s.direct SELECT id, ts, action, amount * 2 AS amount FROM %s.events", db, db)))
		start := time.Now()
		resp, err := sys.Scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: ws, Pipe: "to_copy"})
		if err != nil {
			b.Fatal(err)
		}
		create = append(create, time.Since(start))
		j := waitJobFast(b, sys.Scheduler, ws, resp.GetJob().GetId())
		populate = append(populate, time.Since(start))
		if j.GetStatus() != done || j.GetProgress().GetStepsTotal() != 24 || j.GetProgress().GetStatistics().GetWrittenRows() != uint64(rows) {
			b.Fatalf("populate = %v", j)
		}
	}
	b.StopTimer()
	reportPaired(b, direct, populate)
	var creates, pops []float64
	for i := range create {
		creates, pops = append(creates, create[i].Seconds()), append(pops, populate[i].Seconds())
	}
	b.ReportMetric(median(creates), "create_s")
	b.ReportMetric(float64(rows)/median(pops), "rows/s")
}

// reportPaired reports a job's time against its baseline measured just before it, round by
// round: the medians of both (direct_s, populate_s) and the median of the rounds' ratios
// (ratio), which cancels a shared machine's load drifting between rounds.
func reportPaired(b *testing.B, direct, job []time.Duration) {
	b.Helper()
	var d, j, ratios []float64
	for i := range job {
		d, j = append(d, direct[i].Seconds()), append(j, job[i].Seconds())
		ratios = append(ratios, job[i].Seconds()/direct[i].Seconds())
	}
	b.ReportMetric(median(d), "direct_s")
	b.ReportMetric(median(j), "populate_s")
	b.ReportMetric(median(ratios), "ratio")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var benchSeq int

func pushBench(b *testing.B, sys *sluicetest.System, ws string, files map[string]string) {
	b.Helper()
	sys.EnsureWorkspace(b, ws)
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
