package main_test

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/platform/jobs"
	"google.golang.org/grpc"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natsx"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
	"github.com/sluicehq/sluice/services/executor"
	"github.com/sluicehq/sluice/services/scheduler"
)

// fakeClock is the injected clock of the schedule tests' schedulers and executor.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// startClockScheduler runs a scheduler replica in the test process on the system's NATS and
// catalog, with the injected clock. stop ends it (idempotent).
func startClockScheduler(t testing.TB, sys *sluicetest.System, clock interface{ Now() time.Time }, name string) (s *scheduler.Service, stop func()) {
	t.Helper()
	return startClockSchedulerOn(t, sys, sys.Conn, clock, name)
}

// startClockSchedulerOn is startClockScheduler calling the catalog through cc (which carries
// the credential the scheduler uses).
func startClockSchedulerOn(t testing.TB, sys *sluicetest.System, cc grpc.ClientConnInterface, clock interface{ Now() time.Time }, name string) (s *scheduler.Service, stop func()) {
	t.Helper()
	s, _, stop = startClockSchedulerConn(t, sys, cc, clock, name)
	return s, stop
}

// startClockSchedulerConn is startClockSchedulerOn that also returns the replica's NATS
// connection: closing it before stop leaves the replica's lease to expire, as a killed
// process does.
func startClockSchedulerConn(t testing.TB, sys *sluicetest.System, cc grpc.ClientConnInterface, clock interface{ Now() time.Time }, name string) (s *scheduler.Service, conn *natsx.Conn, stop func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := natsx.Connect(ctx, natsx.Config{URL: sys.App.NATSURL(), Name: name}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The replica's own copy of the token store, as a scheduler process has.
	verifier, err := auth.NewVerifier(auth.Config{MaxStaleness: time.Minute}, conn, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = scheduler.New(scheduler.Config{JobRetention: 48 * time.Hour, CopyConcurrency: 2, CatchUpWindow: time.Hour, MaxExecutionTime: 30 * time.Minute},
		scheduler.Deps{Log: testLog(name), NATS: conn, Catalog: catalogclient.New(cc), CopyTokens: verifier, Now: clock.Now, Instance: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = s.Stop(context.Background())
			verifier.Stop()
			conn.Close()
		})
	}
	t.Cleanup(stop)
	return s, conn, stop
}

// startClockExecutor runs an executor with the copy runner and the injected clock. stop ends
// it (idempotent; the test's end calls it too).
func startClockExecutor(t testing.TB, sys *sluicetest.System, clock interface{ Now() time.Time }, concurrency int) (stop func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := natsx.Connect(ctx, natsx.Config{URL: sys.App.NATSURL(), Name: "test executor"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cat := catalogclient.New(sys.Conn)
	ex, err := executor.New(executor.Config{Concurrency: concurrency, DrainTimeout: 2 * time.Second, AckWait: time.Second, MaxRetries: 8},
		executor.Deps{Log: slog.New(slog.DiscardHandler), NATS: conn, Catalog: cat, Now: clock.Now, Warehouse: sys.App.Warehouse()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = ex.Stop(context.Background())
			conn.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

var scheduledProject = map[string]string{
	"datasources/events.datasource": copyProject["datasources/events.datasource"],
	"datasources/sales_sched.datasource": strings.ReplaceAll(copyProject["datasources/sales_hour_copy.datasource"],
		`ENGINE_PARTITION_KEY "toYYYYMMDD(hour)"`, `ENGINE_PARTITION_KEY "toYYYYMMDD(hour)"`),
	"pipes/sales_hourly.pipe": `NODE hourly
SQL >
    %
    SELECT toStartOfHour(ts) AS hour, country, sum(sales) AS total_sales
    FROM events
    WHERE ts >= toStartOfHour(toDateTime({{DateTime(job_timestamp)}})) - interval 1 hour
        AND ts < toStartOfHour(toDateTime({{DateTime(job_timestamp)}}))
    GROUP BY hour, country

TYPE COPY
TARGET_DATASOURCE sales_sched
COPY_SCHEDULE 0 * * * *
`,
}

// TestCopyScheduleSimulatedDay runs an hourly Copy Pipe with toStartOfHour(job_timestamp)
// windows over a simulated day (injected clock, moved in 7-minute steps so every tick runs
// late by a different amount), with two scheduler replicas; both are stopped for 20 minutes
// across a tick and restarted, and later the leader is stopped while the other replica goes on.
// Every hour's rows must be in the target exactly once, each tick's job must exist once with
// job_timestamp = the tick, and the pause must hold across a restart.
func TestCopyScheduleSimulatedDay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-target", "catalog,opslog"}, fastJobs...)...))
	ctx := context.Background()
	day0 := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour) // after the push
	clock := &fakeClock{t: day0.Add(-5 * time.Minute)}
	startClockExecutor(t, sys, clock, 2)
	a, stopA := startClockScheduler(t, sys, clock, "replica-a")
	b, stopB := startClockScheduler(t, sys, clock, "replica-b")

	// The Data Sources first, then the events, then the pipe: the tick owed since the push runs
	// as soon as the replicas learn the schedule, and must find the events there.
	tables := map[string]string{}
	for k, v := range scheduledProject {
		if strings.HasPrefix(k, "datasources/") {
			tables[k] = v
		}
	}
	e := newCopyEnv(t, sys, "copy_sched", tables)
	ws := e.ws
	// Events: 10 US rows per hour from day0-2h to day0+26h; hour i has sales i+1 each.
	first := day0.Add(-2 * time.Hour)
	e.exec(fmt.Sprintf("INSERT INTO %s SELECT toDateTime(%d) + intDiv(number, 10) * 3600 + (number %% 10) * 60, 'US', intDiv(number, 10) + 1 FROM numbers(280)", e.q("events"), first.Unix()))
	if out, stderr, code := e.cli("push", writeProject(t, scheduledProject)); code != 0 {
		t.Fatalf("push the pipe: exit %d\n%s%s", code, out, stderr)
	}

	live := []*scheduler.Service{a, b}
	anyLive := func() *scheduler.Service {
		for _, s := range live {
			if s != nil {
				return s
			}
		}
		return nil
	}
	waitTick := func(tick time.Time) {
		t.Helper()
		id := jobs.TickID(ws, "sales_hourly", tick, 0)
		var job *schedulerv1.Job
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := anyLive().GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: ws, Id: id})
			if err == nil {
				job = resp.GetJob()
				if jobsFinal(job.GetStatus()) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the job of tick %s is not done after 30s: %v (%v)", tick.Format(time.RFC3339), job, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if job.GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE || !job.GetJobTimestamp().AsTime().Equal(tick) ||
			job.GetExecutionType() != schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED || job.GetMaxExecutionTime().AsDuration() != 30*time.Minute {
			t.Fatalf("job of tick %s = %v", tick, job)
		}
	}
	// Wait until the replicas know the schedule (the push announcement).
	sluicetest.Eventually(t, 20*time.Second, "the schedule to be known", func() bool {
		resp, err := a.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: ws})
		return err == nil && len(resp.GetSchedules()) == 1 && resp.GetSchedules()[0].GetCron() == "0 * * * *"
	})

	const step = 7 * time.Minute
	end := day0.Add(24*time.Hour + time.Minute)
	outageStart, outageEnd := day0.Add(9*time.Hour+50*time.Minute), day0.Add(10*time.Hour+10*time.Minute)
	leaderStop := day0.Add(17*time.Hour + 35*time.Minute)
	down, leaderStopped := false, false
	pending := []time.Time{day0.Add(-time.Hour)}
	next := day0
	for now := clock.Now(); now.Before(end); {
		now = now.Add(step)
		if !down && !now.Before(outageStart) && now.Before(outageEnd) {
			stopA()
			stopB()
			live = []*scheduler.Service{nil, nil}
			down = true
			now = outageEnd // 20 minutes without any scheduler, across the 10:00 tick
		}
		clock.Set(now)
		if down && !now.Before(outageEnd) {
			a, stopA = startClockScheduler(t, sys, clock, "replica-a2")
			b, stopB = startClockScheduler(t, sys, clock, "replica-b2")
			live = []*scheduler.Service{a, b}
			down = false
		}
		if !leaderStopped && !now.Before(leaderStop) {
			sluicetest.Eventually(t, 20*time.Second, "a leader", func() bool { return a.IsLeader() || b.IsLeader() })
			if a.IsLeader() {
				stopA()
				live[0] = nil
			} else {
				stopB()
				live[1] = nil
			}
			leaderStopped = true
		}
		for !next.After(now) {
			pending = append(pending, next)
			next = next.Add(time.Hour)
		}
		if down {
			continue
		}
		for _, tick := range pending {
			waitTick(tick)
		}
		pending = pending[:0]
	}

	// Every hour from day0-2h to day0+23h exactly once, with its own sum: the first tick is
	// day0-1h, owed since the push (older ones were beyond the catch-up window and skipped).
	var want strings.Builder
	for i := 0; i <= 25; i++ {
		h := day0.Add(time.Duration(i-2) * time.Hour)
		fmt.Fprintf(&want, "%s 1 %d\n", h.Format("2006-01-02T15:04"), 10*(i+1))
	}
	got := e.rows("SELECT hour, count(), sum(total_sales) FROM " + e.q("sales_sched") + " GROUP BY hour ORDER BY hour")
	if got != want.String() {
		t.Fatalf("target hours (hour, rows, sum):\n%swant\n%s", got, want.String())
	}
	resp, err := anyLive().ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: ws, Pipe: "sales_hourly", PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Time]int{}
	for _, j := range resp.GetJobs() {
		seen[j.GetJobTimestamp().AsTime()]++
	}
	if len(resp.GetJobs()) != 26 || len(seen) != 26 {
		t.Fatalf("%d jobs for %d distinct ticks, want 26 and 26", len(resp.GetJobs()), len(seen))
	}

	// Pause survives a restart of the replicas: no tick while paused, and resume starts from
	// the next tick (the paused ticks are not owed).
	s := anyLive()
	if _, err := s.PauseCopySchedule(ctx, &schedulerv1.PauseCopyScheduleRequest{Workspace: ws, Pipe: "sales_hourly"}); err != nil {
		t.Fatal(err)
	}
	stopA()
	stopB()
	a, _ = startClockScheduler(t, sys, clock, "replica-a3")
	live = []*scheduler.Service{a, nil}
	clock.Set(day0.Add(26*time.Hour + 30*time.Minute))
	sluicetest.Eventually(t, 20*time.Second, "a leader", a.IsLeader)
	list, err := a.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: ws})
	if err != nil || len(list.GetSchedules()) != 1 || !list.GetSchedules()[0].GetPaused() {
		t.Fatalf("schedules after a restart: %v %v", list, err)
	}
	if _, err := a.ResumeCopySchedule(ctx, &schedulerv1.ResumeCopyScheduleRequest{Workspace: ws, Pipe: "sales_hourly"}); err != nil {
		t.Fatal(err)
	}
	clock.Set(day0.Add(27*time.Hour + time.Minute))
	waitTick(day0.Add(27 * time.Hour))
	for _, tick := range []time.Time{day0.Add(25 * time.Hour), day0.Add(26 * time.Hour)} {
		if _, err := a.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: ws, Id: jobs.TickID(ws, "sales_hourly", tick, 0)}); err == nil {
			t.Errorf("a job ran for tick %s, during the pause", tick)
		}
	}
}

func testLog(name string) *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", name)
}

func jobsFinal(s schedulerv1.JobStatus) bool {
	return s == schedulerv1.JobStatus_JOB_STATUS_DONE || s == schedulerv1.JobStatus_JOB_STATUS_ERROR || s == schedulerv1.JobStatus_JOB_STATUS_CANCELLED
}
