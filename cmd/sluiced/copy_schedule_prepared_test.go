package main_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/services/scheduler"
)

// The tests of ticks prepared ahead: a daily schedule (its tick is the next midnight, so no
// earlier tick is owed since the push), the injected clock 30 s before the tick (within the
// preparation window), and the prepared job read from the schedule's state in NATS.

// preparedProject is a target and daily Copy Pipes writing one row per tick: id = the tick's
// Unix time, iter = the pipe's version.
func preparedProject(version int, pipes ...string) map[string]string {
	files := map[string]string{"datasources/copy_target.datasource": killProject["datasources/copy_target.datasource"]}
	for _, p := range pipes {
		files["pipes/"+p+".pipe"] = fmt.Sprintf(`NODE tick
SQL >
    %%
    SELECT toUInt64(toUnixTimestamp(toDateTime({{DateTime(job_timestamp)}}))) AS id, %d AS iter, toUInt64(1) AS v

TYPE COPY
TARGET_DATASOURCE copy_target
COPY_SCHEDULE 0 0 * * *
`, version)
	}
	return files
}

// scheduleStates opens the schedules' bucket.
func scheduleStates(t *testing.T, sys *sluicetest.System) jetstream.KeyValue {
	t.Helper()
	ctx := context.Background()
	conn, err := natsx.Connect(ctx, natsx.Config{URL: sys.App.NATSURL(), Name: "test states"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	kv, err := conn.JS.KeyValue(ctx, scheduler.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func readScheduleState(t *testing.T, kv jetstream.KeyValue, ws, pipe string) *persistencev1.ScheduleState {
	t.Helper()
	e, err := kv.Get(context.Background(), ws+"."+pipe)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &persistencev1.ScheduleState{}
	}
	if err != nil {
		t.Fatal(err)
	}
	st := &persistencev1.ScheduleState{}
	if err := proto.Unmarshal(e.Value(), st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitPrepared waits until the pipe's state holds the job of tick prepared from the pipe's
// version (its SQL writes iter = version), and returns it.
func waitPrepared(t *testing.T, kv jetstream.KeyValue, ws, pipe string, tick time.Time, version int) *persistencev1.PreparedTick {
	t.Helper()
	var p *persistencev1.PreparedTick
	sluicetest.Eventually(t, 30*time.Second, fmt.Sprintf("the job of %s's tick %s prepared from version %d", pipe, tick.Format(time.RFC3339), version), func() bool {
		p = readScheduleState(t, kv, ws, pipe).GetPrepared()
		steps := p.GetRecord().GetSteps()
		return p.GetTick().AsTime().Equal(tick) && len(steps) == 1 && strings.Contains(steps[0].GetCopy().GetSql(), fmt.Sprintf("%d AS iter", version))
	})
	if id := p.GetRecord().GetJob().GetId(); id != jobs.TickID(ws, pipe, tick, 0) {
		t.Fatalf("prepared job id %s, want the tick's %s", id, jobs.TickID(ws, pipe, tick, 0))
	}
	return p
}

// waitTickDone waits for the job of a pipe's tick to be DONE.
func waitTickDone(t *testing.T, s *scheduler.Service, ws, pipe string, tick time.Time) *schedulerv1.Job {
	t.Helper()
	var job *schedulerv1.Job
	var err error
	sluicetest.Eventually(t, 60*time.Second, fmt.Sprintf("the job of %s's tick %s done", pipe, tick.Format(time.RFC3339)), func() bool {
		var resp *schedulerv1.GetJobResponse
		resp, err = s.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: ws, Id: jobs.TickID(ws, pipe, tick, 0)})
		job = resp.GetJob()
		return err == nil && jobsFinal(job.GetStatus())
	})
	if job.GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE || !job.GetJobTimestamp().AsTime().Equal(tick) ||
		job.GetExecutionType() != schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED {
		t.Fatalf("job of tick %s = %v", tick, job)
	}
	if job.GetCreateTime().AsTime().Before(tick) {
		t.Errorf("job of tick %s created at %s, before its tick: a prepared job is not a job until its tick", tick, job.GetCreateTime().AsTime())
	}
	return job
}

// tickJobs counts a pipe's jobs by tick.
func tickJobs(t *testing.T, s *scheduler.Service, ws, pipe string) map[time.Time]int {
	t.Helper()
	resp, err := s.ListJobs(context.Background(), &schedulerv1.ListJobsRequest{Workspace: ws, Pipe: pipe, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := map[time.Time]int{}
	for _, j := range resp.GetJobs() {
		n[j.GetJobTimestamp().AsTime()]++
	}
	return n
}

func nextMidnight() time.Time {
	return time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
}

// TestPreparedTickFollowsPipeChangeAndPause: a pipe changed between its tick's preparation and
// the tick runs the new SQL at the tick (the prepared job of the old version is not used), and
// a pipe paused in between does not run (the pause drops its prepared job). Exactly one job for
// the tick, and none for the paused pipe.
func TestPreparedTickFollowsPipeChangeAndPause(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-target", "catalog,opslog"}, fastJobs...)...))
	ctx := context.Background()
	tick := nextMidnight()
	clock := &fakeClock{t: tick.Add(-30 * time.Second)}
	startClockExecutor(t, sys, clock, 2)
	s, _ := startClockScheduler(t, sys, clock, "replica-a")
	sluicetest.Eventually(t, 20*time.Second, "a leader", s.IsLeader)
	e := newCopyEnv(t, sys, "prepared_change", preparedProject(1, "changed", "paused"))
	kv := scheduleStates(t, sys)
	waitPrepared(t, kv, e.ws, "changed", tick, 1)
	waitPrepared(t, kv, e.ws, "paused", tick, 1)

	if out, stderr, code := e.cli("push", writeProject(t, preparedProject(2, "changed", "paused"))); code != 0 {
		t.Fatalf("push version 2: exit %d\n%s%s", code, out, stderr)
	}
	// The leader reads the workspace's pipes now (the push's announcement does it too, later or
	// sooner): from here on it knows version 2.
	if _, err := s.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: e.ws}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PauseCopySchedule(ctx, &schedulerv1.PauseCopyScheduleRequest{Workspace: e.ws, Pipe: "paused"}); err != nil {
		t.Fatal(err)
	}
	if p := readScheduleState(t, kv, e.ws, "paused").GetPrepared(); p != nil {
		t.Fatalf("a paused schedule keeps its prepared job for %s", p.GetTick().AsTime())
	}
	clock.Set(tick.Add(time.Second))
	waitTickDone(t, s, e.ws, "changed", tick)
	if got, want := e.rows("SELECT id, iter, v FROM "+e.q("copy_target")+" ORDER BY id, iter"), fmt.Sprintf("%d 2 1\n", tick.Unix()); got != want {
		t.Fatalf("target after the tick (id, iter, v):\n%swant (version 2's row, once)\n%s", got, want)
	}
	if n := tickJobs(t, s, e.ws, "changed"); len(n) != 1 || n[tick] != 1 {
		t.Fatalf("jobs of the changed pipe by tick: %v, want one for %s", n, tick)
	}
	// The tick's pass released every due schedule's job at once: the paused pipe has none.
	if n := tickJobs(t, s, e.ws, "paused"); len(n) != 0 {
		t.Fatalf("jobs of the paused pipe by tick: %v, want none", n)
	}
}

// TestPreparedTickSurvivesLeaderKilledBeforeIt: the leader prepares a tick's job and dies
// (its NATS connection cut, its lease left to expire) before the tick; the other replica
// takes over, releases the prepared job at the tick and prepares the next one: each tick's
// job exists once, and each tick's row is in the target once.
func TestPreparedTickSurvivesLeaderKilledBeforeIt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-target", "catalog,opslog"}, fastJobs...)...))
	tick := nextMidnight()
	clock := &fakeClock{t: tick.Add(-30 * time.Second)}
	startClockExecutor(t, sys, clock, 2)
	a, connA, stopA := startClockSchedulerConn(t, sys, sys.Conn, clock, "replica-a")
	sluicetest.Eventually(t, 20*time.Second, "a leader", a.IsLeader)
	b, _ := startClockScheduler(t, sys, clock, "replica-b")
	e := newCopyEnv(t, sys, "prepared_failover", preparedProject(1, "daily"))
	kv := scheduleStates(t, sys)
	before := waitPrepared(t, kv, e.ws, "daily", tick, 1)
	if b.IsLeader() {
		t.Fatal("two leaders")
	}

	connA.Close() // killed: nothing more from it reaches NATS, its lease is not released
	stopA()
	sluicetest.Eventually(t, 3*scheduler.LeaseTTL, "replica-b to lead", b.IsLeader)
	// The new leader uses the job prepared by the dead one.
	if p := readScheduleState(t, kv, e.ws, "daily").GetPrepared(); !proto.Equal(p, before) {
		t.Fatalf("prepared job after the failover:\n%v\nbefore:\n%v", p, before)
	}
	clock.Set(tick.Add(time.Second))
	waitTickDone(t, b, e.ws, "daily", tick)

	next := tick.Add(24 * time.Hour)
	clock.Set(next.Add(-30 * time.Second))
	waitPrepared(t, kv, e.ws, "daily", next, 1)
	clock.Set(next.Add(time.Second))
	waitTickDone(t, b, e.ws, "daily", next)

	want := fmt.Sprintf("%d 1 1\n%d 1 1\n", tick.Unix(), next.Unix())
	if got := e.rows("SELECT id, iter, v FROM " + e.q("copy_target") + " ORDER BY id"); got != want {
		t.Fatalf("target (id, iter, v):\n%swant each tick's row once:\n%s", got, want)
	}
	if n := tickJobs(t, b, e.ws, "daily"); len(n) != 2 || n[tick] != 1 || n[next] != 1 {
		t.Fatalf("jobs by tick: %v, want one for %s and one for %s", n, tick, next)
	}
}
