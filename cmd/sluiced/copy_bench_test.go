package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// benchCopyProject is one target (4 partitions, no view downstream) and a copy of n rows.
func benchCopyProject(n int) map[string]string {
	return map[string]string{
		"datasources/copy_target.datasource": killProject["datasources/copy_target.datasource"],
		"pipes/big_copy.pipe": strings.ReplaceAll(killProject["pipes/big_copy.pipe"],
			"numbers("+strconv.Itoa(copyKillRows)+")", "numbers("+strconv.Itoa(n)+")"),
	}
}

// copyBench is a system with the bench project and a raw twin of the target.
type copyBench struct {
	b   *testing.B
	sys *sluicetest.System
	e   *copyEnv
	sql string
}

func newCopyBench(b *testing.B, ws string, rows int) *copyBench {
	sys := sluicetest.Start(b, sluicetest.WithArgs(append([]string{"-log-level", "warn"}, fastJobs...)...))
	e := newCopyEnv(b, sys, ws, benchCopyProject(rows))
	r, err := sys.Catalog.RenderNode(context.Background(), &catalogv1.RenderNodeRequest{Workspace: e.ws, Pipe: "big_copy", Parameters: map[string]string{"iteration": "1"}})
	if err != nil {
		b.Fatal(err)
	}
	e.exec("CREATE TABLE " + e.q("raw_target") + " AS " + e.q("copy_target"))
	return &copyBench{b: b, sys: sys, e: e, sql: r.GetSql()}
}

// raw runs the copy's SQL as one INSERT ... SELECT into the raw twin.
func (c *copyBench) raw() time.Duration {
	start := time.Now()
	if _, err := c.e.wh.Exec(context.Background(), "INSERT INTO "+c.e.q("raw_target")+" (id, iter, v)\n"+c.sql); err != nil {
		c.b.Fatal(err)
	}
	return time.Since(start)
}

// copy runs the copy through Sluice, submit to done (followed with WatchJob).
func (c *copyBench) copy(mode commonv1.CopyMode) time.Duration {
	ctx := context.Background()
	start := time.Now()
	resp, err := c.sys.Scheduler.RunCopy(ctx, &schedulerv1.RunCopyRequest{Workspace: c.e.ws, Pipe: "big_copy", Parameters: map[string]string{"iteration": "1"}, Mode: mode})
	if err != nil {
		c.b.Fatal(err)
	}
	stream, err := c.sys.Scheduler.WatchJob(ctx, &schedulerv1.WatchJobRequest{Workspace: c.e.ws, Id: resp.GetJob().GetId()})
	if err != nil {
		c.b.Fatal(err)
	}
	var last *schedulerv1.Job
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		last = m.GetJob()
	}
	d := time.Since(start)
	if last.GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE {
		c.b.Fatalf("copy job: %v", last)
	}
	return d
}

func (c *copyBench) truncate() {
	for _, t := range []string{"copy_target", "raw_target"} {
		c.e.exec("TRUNCATE TABLE " + c.e.q(t))
	}
}

// BenchmarkCopy10M is target P1: a 10 M-row copy job, submit → done, over the same query run
// as one raw INSERT ... SELECT on the same engine (chDB), in append and in replace mode. Each
// round runs the raw insert and the copy in turn (alternating which goes first), each into an
// empty table, and checks that both tables hold every row; reported are the medians of both
// times and the median of the rounds' ratios (the target asks for 5 rounds: -benchtime 5x).
func BenchmarkCopy10M(b *testing.B) {
	rows := 10_000_000
	if v := os.Getenv("SLUICE_BENCH_COPY_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	c := newCopyBench(b, "copy_bench_10m", rows)
	for _, mode := range []commonv1.CopyMode{commonv1.CopyMode_COPY_MODE_APPEND, commonv1.CopyMode_COPY_MODE_REPLACE} {
		name := strings.ToLower(strings.TrimPrefix(mode.String(), "COPY_MODE_"))
		b.Run(name, func(b *testing.B) {
			c.b, c.e.t = b, b
			var raw, sl []time.Duration
			for b.Loop() {
				// Alternate the order: the background merges of whichever ran first compete
				// with the second for the two cores.
				c.truncate()
				if len(raw)%2 == 0 {
					raw = append(raw, c.raw())
					sl = append(sl, c.copy(mode))
				} else {
					sl = append(sl, c.copy(mode))
					raw = append(raw, c.raw())
				}
				for _, t := range []string{"copy_target", "raw_target"} {
					if got := strings.TrimSpace(c.e.rows("SELECT count() FROM " + c.e.q(t))); got != strconv.Itoa(rows) {
						b.Fatalf("%s holds %s rows after the round, want %d", t, got, rows)
					}
				}
			}
			reportPaired(b, raw, sl, "raw-s", "copy-s")
		})
	}
}

// BenchmarkCopyOverheadTiny is target P2: a 10-row copy job's wall time (submit → done) minus
// the raw INSERT ... SELECT's, averaged over 20 copies per iteration, in both modes.
func BenchmarkCopyOverheadTiny(b *testing.B) {
	c := newCopyBench(b, "copy_bench_tiny", 10)
	for _, mode := range []commonv1.CopyMode{commonv1.CopyMode_COPY_MODE_APPEND, commonv1.CopyMode_COPY_MODE_REPLACE} {
		name := strings.ToLower(strings.TrimPrefix(mode.String(), "COPY_MODE_"))
		b.Run(name, func(b *testing.B) {
			c.b, c.e.t = b, b
			const per = 20
			var raw, sl time.Duration
			for range b.N {
				for range per {
					raw += c.raw()
					sl += c.copy(mode)
				}
			}
			n := float64(b.N * per)
			b.ReportMetric(float64((sl-raw).Microseconds())/1000/n, "overhead-ms")
			b.ReportMetric(float64(sl.Microseconds())/1000/n, "copy-ms")
			b.ReportMetric(float64(raw.Microseconds())/1000/n, "raw-ms")
		})
	}
}

// BenchmarkCopyScheduleLatency is target P4: 500 Copy Pipes scheduled every minute, all due at
// the same tick; the figure is tick → step running (the job's start time, when an executor
// claimed its step), p50 and p99 over every round's jobs, with the workspace's copy limit
// raised to 500 so that every job is within it. The clock of the scheduler and the executor is
// the real one shifted so that the tick comes 40 s after the scheduler starts, wherever the
// real minute is. Every job's latencies go to the benchmark's data file (the P4 plot).
func BenchmarkCopyScheduleLatency(b *testing.B) {
	const pipes = 500
	sys := sluicetest.Start(b, sluicetest.WithArgs(append([]string{"-target", "catalog,opslog", "-log-level", "warn"}, fastJobs...)...))
	ctx := context.Background()
	files := map[string]string{"datasources/copy_target.datasource": killProject["datasources/copy_target.datasource"]}
	for i := range pipes {
		files[fmt.Sprintf("pipes/tick_%03d.pipe", i)] = fmt.Sprintf(`NODE rows
SQL >
    SELECT number AS id, %d AS iter, number AS v FROM numbers(1)

TYPE COPY
TARGET_DATASOURCE copy_target
COPY_SCHEDULE * * * * *
`, i)
	}
	dir := writeProject(b, files)
	_, bin := sluicetest.Binaries(b)
	var lat, created []time.Duration
	// The raw latencies of every tick, for the plot of the distribution (bench/scoreboard).
	type tickData struct {
		Tick      time.Time `json:"tick"`
		StartMs   []float64 `json:"start_ms"`
		CreatedMs []float64 `json:"created_ms"`
	}
	var ticks []tickData
	for b.Loop() {
		// Every round pushes its own workspace, so that its schedules start anew, and deletes
		// it at the end, so that the next round's tick owes only its own 500 jobs.
		ws := benchWorkspace("copy_sched_bench")
		sys.EnsureWorkspace(b, ws)
		push := exec.Command(bin, "push", dir, "--addr", sys.Addr, "--workspace", ws)
		push.Env = sys.CLIEnv()
		if out, err := push.CombinedOutput(); err != nil {
			b.Fatalf("push: %v\n%s", err, out)
		}
		// The tick: the first minute boundary after the push (so the pipes owe it, and no
		// earlier one), which the shifted clock reaches 40 s of real time from now: time for
		// the scheduler to prepare the 500 jobs ahead (render them, build their records), as it
		// does for any tick; at the tick it only writes and admits them.
		tick := time.Now().Truncate(time.Minute).Add(time.Minute)
		clock := &shiftedClock{offset: time.Until(tick.Add(-40 * time.Second))}
		// Both are stopped at the end of the round: the next round's clock is shifted differently.
		stopExecutor := startClockExecutor(b, sys, clock, pipes+12)
		s, stop := startClockScheduler(b, sys, clock, "bench")
		if _, err := s.SetWorkspaceLimits(ctx, &schedulerv1.SetWorkspaceLimitsRequest{Workspace: ws, Limits: &schedulerv1.WorkspaceLimits{CopyConcurrency: pipes}}); err != nil {
			b.Fatal(err)
		}
		got, made := map[string]time.Duration{}, map[string]time.Duration{}
		// states counts the tick's jobs by status, waiting reason and error, for a failure's message.
		states := map[string]int{}
		deadline := time.Now().Add(2 * time.Minute)
		for len(got) < pipes && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			clear(states)
			for page := ""; ; {
				resp, err := s.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: ws, PageSize: 1000, PageToken: page})
				if err != nil {
					b.Fatal(err)
				}
				for _, j := range resp.GetJobs() {
					if !j.GetJobTimestamp().AsTime().Equal(tick) {
						continue
					}
					state := strings.TrimSpace(j.GetStatus().String() + " " + j.GetWaitingReason())
					if msg := j.GetError().GetMessage(); msg != "" {
						state += ": " + msg[:min(len(msg), 160)]
					}
					states[state]++
					if j.GetStartTime() != nil {
						got[j.GetId()] = j.GetStartTime().AsTime().Sub(tick)
						made[j.GetId()] = j.GetCreateTime().AsTime().Sub(tick)
					}
				}
				if page = resp.GetNextPageToken(); page == "" {
					break
				}
			}
		}
		stop()
		stopExecutor()
		if len(got) < pipes {
			b.Fatalf("%d of %d tick jobs started within 2 minutes of the tick; the tick's jobs: %v", len(got), pipes, states)
		}
		if _, err := sys.Catalog.DeleteWorkspace(ctx, &catalogv1.DeleteWorkspaceRequest{Name: ws, Force: true}); err != nil {
			b.Fatal(err)
		}
		t := tickData{Tick: tick}
		for id, d := range got {
			lat = append(lat, d)
			created = append(created, made[id])
			t.StartMs, t.CreatedMs = append(t.StartMs, millis(d)), append(t.CreatedMs, millis(made[id]))
		}
		ticks = append(ticks, t)
	}
	q := func(xs []time.Duration, p float64) float64 {
		sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
		return millis(xs[int(p*float64(len(xs)-1))])
	}
	b.ReportMetric(q(lat, 0.5), "p50-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(lat, 1), "max-ms")
	// Where the time goes: tick → job record created (the scheduler's schedules), the rest is
	// admission under the limit, queueing and the executor's claim.
	b.ReportMetric(q(created, 0.5), "created-p50-ms")
	b.ReportMetric(q(created, 0.99), "created-p99-ms")
	writeBenchData(b, map[string]any{"pipes": pipes, "ticks": ticks})
}

// shiftedClock is the real clock moved by a fixed offset.
type shiftedClock struct{ offset time.Duration }

func (c *shiftedClock) Now() time.Time { return time.Now().Add(c.offset) }
