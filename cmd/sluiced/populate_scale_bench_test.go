package main_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

const scaleSource = `SCHEMA >
    id UInt64,
    name String,
    amount Float64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "id % 64"
ENGINE_SORTING_KEY "id"
`

// BenchmarkPopulateExecutorScaling is TARGETS.md P9: Sluice in split mode (nats-server, and
// catalog, scheduler, opslog and executors as separate processes) against a clickhouse-server
// process, populating a 64-partition source (2 M rows by default; SLUICE_BENCH_SCALE_ROWS) with
// 1, then 2, then 4 executor processes of one step at a time each (-executor.concurrency 1, so
// that the processes are what scales). Reported per count: the median time of the rounds
// (SLUICE_BENCH_SCALE_ROUNDS per count, default 3, times the benchmark's iterations: each
// iteration is a sweep over the counts, which starts again from one executor) and the
// speed-up over one executor, and, as the server's own limit, one direct INSERT ... SELECT of
// the same rows (direct_s). Every populate is spread over 4 steps (parallelism 4, the same
// work for every count) and checked: done, 64 partitions, every source row once in the target. Every round's time goes to the benchmark's data file (the P9 plot).
func BenchmarkPopulateExecutorScaling(b *testing.B) {
	const scaleParallelism = 4
	rows := envInt("SLUICE_BENCH_SCALE_ROWS", 2_000_000)
	rounds := envInt("SLUICE_BENCH_SCALE_ROUNDS", 3)
	counts := []int{1, 2, 4}
	cfg := warehousetest.Server(b)
	split := sluicetest.StartSplit(b, "-clickhouse-addr", strings.Join(cfg.Addrs, ","), "-executor.concurrency", "1", "-log-level", "info")
	cat := split.Clients(b, "catalog")
	catalog := cat.Catalog
	scheduler := split.Clients(b, "scheduler").Scheduler
	ctx := context.Background()
	ws := benchWorkspace("scale")
	cat.CreateWorkspace(b, ws)
	files := map[string]string{
		"datasources/src.datasource": scaleSource,
		"datasources/dst.datasource": strings.Replace(scaleSource, `"id % 64"`, `"id % 8"`, 1),
		"pipes/to_dst.pipe":          mvPipe("mv", "SELECT id, name, amount * 2 AS amount FROM src", "dst"),
	}
	if _, err := catalog.Push(ctx, pushRequest(ws, files)); err != nil {
		b.Fatal(err)
	}
	w, err := catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws})
	if err != nil {
		b.Fatal(err)
	}
	db := warehouse.QuoteIdent(w.GetWorkspace().GetDatabase())
	conn := warehousetest.Native(b)
	exec := func(sql string) {
		b.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(table string) uint64 {
		b.Helper()
		res, err := conn.Query(ctx, "SELECT count() FROM "+db+"."+table)
		if err != nil || len(res.Rows) != 1 {
			b.Fatalf("count of %s: %v", table, err)
		}
		n, _ := strconv.ParseUint(fmt.Sprint(res.Rows[0][0]), 10, 64)
		return n
	}
	exec(fmt.Sprintf("INSERT INTO %s.src SELECT number, toString(number), number / 100 FROM numbers(%d)", db, rows))
	// The server's own limit: one INSERT ... SELECT of the same rows into a table like the target.
	exec("CREATE TABLE " + db + ".direct AS " + db + ".dst")
	var direct []float64
	times := map[int][]float64{}
	for b.Loop() {
		for range rounds {
			exec("TRUNCATE TABLE " + db + ".direct")
			start := time.Now()
			exec("INSERT INTO " + db + ".direct SELECT id, name, amount * 2 AS amount FROM " + db + ".src")
			direct = append(direct, time.Since(start).Seconds())
		}
		for _, n := range counts {
			for len(split.Executors) < n {
				split.AddExecutor(b)
			}
			for range rounds {
				exec("TRUNCATE TABLE " + db + ".dst")
				start := time.Now()
				resp, err := scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: ws, Pipe: "to_dst", Parallelism: scaleParallelism})
				if err != nil {
					b.Fatal(err)
				}
				j := waitJobFast(b, scheduler, ws, resp.GetJob().GetId())
				times[n] = append(times[n], time.Since(start).Seconds())
				if j.GetStatus() != done || j.GetProgress().GetPartitionsDone() != 64 || j.GetProgress().GetStatistics().GetWrittenRows() != uint64(rows) {
					b.Fatalf("populate with %d executors = %v", n, j)
				}
				if got := count("dst"); got != uint64(rows) {
					b.Fatalf("populate with %d executors: target has %d rows, want %d", n, got, rows)
				}
			}
		}
		// The next sweep starts again from one executor: the others drain and exit.
		for _, p := range split.Executors[1:] {
			p.Signal(syscall.SIGTERM)
			p.Wait(b, time.Minute)
		}
		split.Executors = split.Executors[:1]
	}
	b.ReportMetric(median(direct), "direct_s")
	type countData struct {
		Count   int       `json:"count"`
		Seconds []float64 `json:"seconds"`
	}
	var data []countData
	for _, n := range counts {
		t := median(times[n])
		b.ReportMetric(t, fmt.Sprintf("exec%d_s", n))
		b.ReportMetric(median(times[1])/t, fmt.Sprintf("speedup%d", n))
		data = append(data, countData{n, times[n]})
	}
	b.ReportMetric(float64(len(times[1])), "rounds")
	writeBenchData(b, map[string]any{"rows": rows, "partitions": 64, "direct_s": direct, "executors": data})
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
