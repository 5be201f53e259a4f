package main_test

import (
	"context"
	"log/slog"
	"sort"
	"testing"
	"time"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/services/executor"
)

// startExecutor runs one more executor in the test process, on its own NATS connection.
func startExecutor(t testing.TB, natsURL string, concurrency int) *executor.Service {
	return startExecutorDrain(t, natsURL, concurrency, 2*time.Second)
}

func startExecutorDrain(t testing.TB, natsURL string, concurrency int, drain time.Duration) *executor.Service {
	t.Helper()
	ctx := context.Background()
	conn, err := natsx.Connect(ctx, natsx.Config{URL: natsURL, Name: "test executor"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := executor.New(executor.Config{Concurrency: concurrency, DrainTimeout: drain, AckWait: time.Second, MaxRetries: 8},
		executor.Deps{Log: slog.New(slog.DiscardHandler), NATS: conn})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ex.Stop(context.Background())
		conn.Close()
	})
	return ex
}

// withoutExecutor runs everything but the executor in the test's sluiced.
var withoutExecutor = append([]string{"-target", "catalog,scheduler,opslog"}, fastJobs...)

func TestJobConcurrencyLimitAcrossExecutorsFIFO(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(withoutExecutor...))
	for range 3 {
		startExecutor(t, sys.App.NATSURL(), 4)
	}
	c := sys.Scheduler
	ctx := context.Background()
	lim, err := c.GetWorkspaceLimits(ctx, &schedulerv1.GetWorkspaceLimitsRequest{Workspace: "busy"})
	if err != nil || lim.GetLimits().GetCopyConcurrency() != 2 {
		t.Fatalf("default limits = %v, %v; want copy_concurrency 2", lim, err)
	}
	if _, err := c.SetWorkspaceLimits(ctx, &schedulerv1.SetWorkspaceLimitsRequest{Workspace: "quiet", Limits: &schedulerv1.WorkspaceLimits{CopyConcurrency: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetWorkspaceLimits(ctx, &schedulerv1.SetWorkspaceLimitsRequest{Workspace: "quiet", Limits: &schedulerv1.WorkspaceLimits{CopyConcurrency: -1}}); badField(err) != "limits.copy_concurrency" {
		t.Errorf("negative limit: %v", err)
	}
	// The busy workspace queues 10 limited jobs (12 executor slots would run them all at once
	// without the limit); the quiet one queues 2 after them.
	const busyJobs = 10
	var busy, quiet []string
	for range busyJobs {
		busy = append(busy, runNoop(t, c, "busy", map[string]string{"limited": "true", "sleep": "300ms"}, 0).GetId())
	}
	for range 2 {
		quiet = append(quiet, runNoop(t, c, "quiet", map[string]string{"limited": "true", "sleep": "100ms"}, 0).GetId())
	}
	// Jobs over the limit say why they wait.
	sluicetest.Eventually(t, 10*time.Second, "a waiting reason naming the limit", func() bool {
		j := getJob(t, c, "busy", busy[busyJobs-1])
		return j.GetStatus() == waiting && j.GetWaitingReason() == "2 copy jobs working in workspace busy, limit 2"
	})
	jobsOf := func(ws string, ids []string) []*schedulerv1.Job {
		var out []*schedulerv1.Job
		for _, id := range ids {
			out = append(out, waitJob(t, c, ws, id, 60*time.Second, done))
		}
		return out
	}
	busyDone, quietDone := jobsOf("busy", busy), jobsOf("quiet", quiet)

	// At no instant were more than 2 busy jobs (1 quiet job) working: from the records' times.
	checkOverlap(t, "busy", busyDone, 2)
	checkOverlap(t, "quiet", quietDone, 1)
	// FIFO: with a limit of 2, a job starts at most one place away from its creation order.
	order := append([]*schedulerv1.Job(nil), busyDone...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].GetStartTime().AsTime().Before(order[j].GetStartTime().AsTime()) })
	for pos, j := range order {
		created := indexOf(busy, j.GetId())
		if d := pos - created; d > 1 || d < -1 {
			t.Errorf("job created %d-th started %d-th: not FIFO", created, pos)
		}
	}
	// The busy workspace did not starve the quiet one: its jobs ran before busy's queue drained.
	lastBusyStart := order[len(order)-1].GetStartTime().AsTime()
	for _, j := range quietDone {
		if !j.GetStartTime().AsTime().Before(lastBusyStart) {
			t.Errorf("quiet job started at %s, after the last busy job (%s): starved", j.GetStartTime().AsTime(), lastBusyStart)
		}
	}
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

// checkOverlap fails if more than limit of the jobs' [start, finish] intervals overlap.
func checkOverlap(t *testing.T, ws string, jobs []*schedulerv1.Job, limit int) {
	t.Helper()
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, j := range jobs {
		evs = append(evs, ev{j.GetStartTime().AsTime(), 1}, ev{j.GetFinishTime().AsTime(), -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return evs[i].delta < evs[j].delta
		}
		return evs[i].at.Before(evs[j].at)
	})
	n, peak := 0, 0
	for _, e := range evs {
		n += e.delta
		peak = max(peak, n)
	}
	if peak > limit {
		t.Errorf("workspace %s: %d jobs working at once, limit %d", ws, peak, limit)
	}
	if peak < limit {
		t.Errorf("workspace %s: at most %d jobs working at once, want the limit %d to be used", ws, peak, limit)
	}
}

// TestJobExecutorDrain stops an executor (as on SIGTERM) while it runs a short and a long step:
// the short one finishes within the drain timeout, the long one is handed back at its end and
// runs on another executor at once, without waiting for the ack wait.
func TestJobExecutorDrain(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(withoutExecutor...))
	c := sys.Scheduler
	a := startExecutorDrain(t, sys.App.NATSURL(), 4, 700*time.Millisecond)
	short := runNoop(t, c, "ws", map[string]string{"sleep": "300ms"}, 0)
	long := runNoop(t, c, "ws", map[string]string{"sleep": "60s"}, 0)
	waitJob(t, c, "ws", short.GetId(), 10*time.Second, working)
	waitJob(t, c, "ws", long.GetId(), 10*time.Second, working)

	start := time.Now()
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("drain took %s with a 700ms drain timeout", d)
	}
	if j := getJob(t, c, "ws", short.GetId()); j.GetStatus() != done {
		t.Errorf("short step after the drain: %v, want done", j)
	}
	st, _ := a.GetStatus(context.Background(), &executorv1.GetStatusRequest{})
	if !st.GetDraining() || len(st.GetRunning()) != 0 {
		t.Errorf("drained executor status = %v", st)
	}
	// The long step was handed back: another executor takes it well before the ack wait would
	// have passed for a dead executor (it is 1s here; the handover needs no timeout at all).
	b := startExecutor(t, sys.App.NATSURL(), 4)
	sluicetest.Eventually(t, 10*time.Second, "the long step on the second executor", func() bool {
		st, _ := b.GetStatus(context.Background(), &executorv1.GetStatusRequest{})
		return len(st.GetRunning()) == 1 && st.GetRunning()[0].GetJobId() == long.GetId() && st.GetRunning()[0].GetAttempt() == 2
	})
	if _, err := c.CancelJob(context.Background(), &schedulerv1.CancelJobRequest{Workspace: "ws", Id: long.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, "ws", long.GetId(), 10*time.Second, cancelled)
}
