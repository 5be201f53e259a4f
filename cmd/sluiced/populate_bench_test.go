package main_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// benchEvents is the source of the populate benchmark; {key} is its partition key.
const benchEvents = `SCHEMA >
    id UInt64,
    ts DateTime,
    action LowCardinality(String),
    amount Float64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "{key}"
ENGINE_SORTING_KEY "id"
`

// populateCase is one configuration of TARGETS.md P3.
type populateCase struct {
	name       string
	partitions int    // of the source
	key        string // the source's (and the targets') partition key
	days       int    // the rows' timestamps spread evenly over this many days from 2023-01-01
	server     bool   // a clickhouse-server process (the native protocol) instead of chDB
}

var populateCases = []populateCase{
	{name: "chdb_24", partitions: 24, key: "toYYYYMM(ts)", days: 730},
	{name: "chdb_1000", partitions: 1000, key: "toYYYYMMDD(ts)", days: 1000},
	{name: "server_24", partitions: 24, key: "toYYYYMM(ts)", days: 730, server: true},
}

// BenchmarkPopulate is TARGETS.md P3: a populate of a 10 M-row source (SLUICE_BENCH_POPULATE_ROWS)
// from submit to done, against one direct `INSERT ... SELECT` of the same query over the whole
// source into a table like the target, on the same engine in the same run, all-in-one with one
// executor (SLUICE_BENCH_EXECUTOR_CONCURRENCY sets its concurrency, SLUICE_BENCH_POPULATE_PARALLELISM
// the populate's parallelism, default the server's): over 24 monthly partitions
// and over 1,000 daily partitions on chDB (target <= 1.15), and over 24 partitions on a
// clickhouse-server process (target <= 1.10). Each round times the direct insert and then the
// populate and checks that the target holds every row; reported are the medians of both and
// the median of the rounds' ratios.
func BenchmarkPopulate(b *testing.B) {
	rows := envInt("SLUICE_BENCH_POPULATE_ROWS", 10_000_000)
	for _, c := range populateCases {
		b.Run(c.name, func(b *testing.B) { benchPopulate(b, c, rows) })
	}
}

func benchPopulate(b *testing.B, c populateCase, rows int) {
	var args []string
	if v := os.Getenv("SLUICE_BENCH_EXECUTOR_CONCURRENCY"); v != "" {
		args = append(args, "-executor.concurrency", v)
	}
	if c.server {
		args = append(args, "-clickhouse-addr", strings.Join(warehousetest.Server(b).Addrs, ","))
	}
	sys := sluicetest.Start(b, sluicetest.WithArgs(args...))
	ctx := context.Background()
	ws := benchWorkspace("bench")
	source := strings.ReplaceAll(benchEvents, "{key}", c.key)
	files := map[string]string{
		"datasources/events.datasource": source,
		"datasources/copy.datasource":   source,
		"datasources/direct.datasource": source,
	}
	pushBench(b, sys, ws, files)
	db := sys.DatabaseOf(b, ws)
	// One insert over more than 100 partitions needs the limit lifted, the direct one too: a
	// user loading 1,000 days at once would lift it.
	var opts []warehouse.Option
	if c.partitions > 100 {
		opts = append(opts, warehouse.WithSettings(warehouse.Settings{"max_partitions_per_insert_block": 0}))
	}
	exec := func(sql string) time.Duration {
		b.Helper()
		start := time.Now()
		if _, err := sys.App.Warehouse().Exec(ctx, sql, opts...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
		return time.Since(start)
	}
	count := func(table string) string {
		b.Helper()
		res, err := sys.App.Warehouse().Query(ctx, "SELECT count() FROM "+db+"."+table)
		if err != nil || len(res.Rows) != 1 {
			b.Fatalf("count of %s: %v", table, err)
		}
		return fmt.Sprint(res.Rows[0][0])
	}
	exec(fmt.Sprintf("INSERT INTO %s.events SELECT number, toDateTime('2023-01-01 00:00:00') + intDiv(number * %d * 86400, %d), ['buy', 'view', 'click'][number %% 3 + 1], number / 100 FROM numbers(%d)", db, c.days, rows, rows))
	exec("OPTIMIZE TABLE " + db + ".events FINAL")
	files["pipes/to_copy.pipe"] = mvPipe("mv", "SELECT id, ts, action, amount * 2 AS amount FROM events", "copy")
	pushBench(b, sys, ws, files)
	var direct, populate, create []time.Duration
	for b.Loop() {
		exec("TRUNCATE TABLE " + db + ".direct")
		exec("TRUNCATE TABLE " + db + ".copy")
		direct = append(direct, exec(fmt.Sprintf("INSERT INTO %s.direct SELECT id, ts, action, amount * 2 AS amount FROM %s.events", db, db)))
		start := time.Now()
		resp, err := sys.Scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: ws, Pipe: "to_copy", Parallelism: int32(envInt("SLUICE_BENCH_POPULATE_PARALLELISM", 0))})
		if err != nil {
			b.Fatal(err)
		}
		create = append(create, time.Since(start))
		j := waitJobFast(b, sys.Scheduler, ws, resp.GetJob().GetId())
		populate = append(populate, time.Since(start))
		if j.GetStatus() != done || j.GetProgress().GetPartitionsDone() != int64(c.partitions) || j.GetProgress().GetStatistics().GetWrittenRows() != uint64(rows) {
			b.Fatalf("populate = %v", j)
		}
		for _, t := range []string{"copy", "direct"} {
			if got := count(t); got != strconv.Itoa(rows) {
				b.Fatalf("%s holds %s rows after the round, want %d", t, got, rows)
			}
		}
	}
	reportPaired(b, direct, populate, "direct_s", "populate_s")
	var creates, pops []float64
	for i := range create {
		creates, pops = append(creates, create[i].Seconds()), append(pops, populate[i].Seconds())
	}
	b.ReportMetric(median(creates), "create_s")
	b.ReportMetric(float64(rows)/median(pops), "rows/s")
}

// reportPaired reports a job's time against its baseline measured in the same round, round by
// round: the medians of both (in the units named) and the median of the rounds' ratios
// (ratio), which cancels a shared machine's load drifting between rounds.
func reportPaired(b *testing.B, baseline, job []time.Duration, baselineUnit, jobUnit string) {
	b.Helper()
	var d, j, ratios []float64
	for i := range job {
		d, j = append(d, baseline[i].Seconds()), append(j, job[i].Seconds())
		ratios = append(ratios, job[i].Seconds()/baseline[i].Seconds())
	}
	b.ReportMetric(median(d), baselineUnit)
	b.ReportMetric(median(j), jobUnit)
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
