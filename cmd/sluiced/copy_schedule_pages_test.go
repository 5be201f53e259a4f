package main_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// TestCopySchedulesBeyondOnePage: a workspace with more scheduled pipes than one page of the
// catalog's list (100 by default) has every one of them scheduled: the tick after the push
// gets exactly one job per pipe, and the schedules' list names them all.
func TestCopySchedulesBeyondOnePage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	const pipes = 150
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-target", "catalog,opslog", "-log-level", "warn"}, fastJobs...)...))
	ctx := context.Background()
	ws := "copy_sched_pages"
	sys.EnsureWorkspace(t, ws)
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
	_, bin := sluicetest.Binaries(t)
	pushed := time.Now().UTC()
	push := exec.Command(bin, "push", writeProject(t, files), "--addr", sys.Addr, "--workspace", ws)
	push.Env = sys.CLIEnv()
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	// The clock stands half a minute after the first minute boundary after the push: each pipe
	// owes that tick and no other. No executor runs: the jobs wait, which is enough to count them.
	tick := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	clock := &fakeClock{t: tick.Add(30 * time.Second)}
	s, _ := startClockScheduler(t, sys, clock, "pages")

	// A push across a minute boundary also owes the boundary it crossed, to the pipes written
	// before it: those jobs are counted, not required. Every (pipe, tick) must have one job.
	type pipeTick struct {
		pipe string
		tick time.Time
	}
	jobsOf := map[pipeTick]int{}
	deadline := time.Now().Add(time.Minute)
	for {
		clear(jobsOf)
		for page := ""; ; {
			resp, err := s.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: ws, PageSize: 1000, PageToken: page})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range resp.GetJobs() {
				jobsOf[pipeTick{j.GetPipe(), j.GetJobTimestamp().AsTime().UTC()}]++
			}
			if page = resp.GetNextPageToken(); page == "" {
				break
			}
		}
		n := 0
		for k := range jobsOf {
			if k.tick.Equal(tick) {
				n++
			}
		}
		if n == pipes || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range pipes {
		if n := jobsOf[pipeTick{fmt.Sprintf("tick_%03d", i), tick}]; n != 1 {
			t.Errorf("pipe tick_%03d has %d jobs for the tick %s, want 1", i, n, tick)
		}
	}
	for k, n := range jobsOf {
		if k.tick.After(tick) || !k.tick.After(pushed.Truncate(time.Minute)) || n != 1 {
			t.Errorf("pipe %s has %d jobs for the tick %s; only %s (and a boundary the push crossed) is owed", k.pipe, n, k.tick, tick)
		}
	}
	resp, err := s.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: ws, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetSchedules()); n != pipes {
		t.Errorf("the schedules' list names %d pipes, want %d", n, pipes)
	}
}
