package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/jobs"
)

// queuedSteps counts a job's step messages on the queue.
func queuedSteps(t testing.TB, natsURL, ws, id string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), jobs.StreamSteps)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(jobs.JobSubjects(ws, id)))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func TestJobCancelWaitingAndWorking(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	c := sys.Scheduler
	ctx := context.Background()
	if _, err := c.SetWorkspaceLimits(ctx, &schedulerv1.SetWorkspaceLimitsRequest{Workspace: "ws", Limits: &schedulerv1.WorkspaceLimits{CopyConcurrency: 1}}); err != nil {
		t.Fatal(err)
	}
	// A working job holds the workspace's only slot; the second waits behind it.
	work := runNoop(t, c, "ws", map[string]string{"limited": "true", "sleep": "60s", "steps": "1"}, 0)
	waitJob(t, c, "ws", work.GetId(), 20*time.Second, working)
	wait := runNoop(t, c, "ws", map[string]string{"limited": "true"}, 0)
	sluicetest.Eventually(t, 10*time.Second, "second job waiting on the limit", func() bool {
		return strings.Contains(getJob(t, c, "ws", wait.GetId()).GetWaitingReason(), "limit 1")
	})

	// Cancelling the waiting job ends it at once; it never runs.
	resp, err := c.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: "ws", Id: wait.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetJob().GetStatus() != cancelled {
		t.Errorf("cancelled waiting job is %s", resp.GetJob().GetStatus())
	}
	// Nothing of it is left on the queue.
	if n := queuedSteps(t, sys.App.NATSURL(), "ws", wait.GetId()); n != 0 {
		t.Errorf("cancelled waiting job has %d steps queued", n)
	}

	// Cancelling the working job stops its step (it would sleep 60s) and ends it CANCELLED.
	start := time.Now()
	resp, err = c.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: "ws", Id: work.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if s := resp.GetJob().GetStatus(); s != cancelling && s != cancelled {
		t.Errorf("cancel of a working job returned %s", s)
	}
	got := waitJob(t, c, "ws", work.GetId(), 20*time.Second, cancelled, done, failed)
	if got.GetStatus() != cancelled || got.GetProgress().GetStepsDone() != 0 {
		t.Errorf("cancelled working job = %v", got)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("cancel took %s", time.Since(start))
	}
	// Only waiting and working jobs can be cancelled; the freed slot let nothing else run.
	if _, err := c.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: "ws", Id: work.GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second cancel: %v, want FailedPrecondition", err)
	}
	if j := getJob(t, c, "ws", wait.GetId()); j.GetStatus() != cancelled || j.GetStartTime() != nil {
		t.Errorf("cancelled waiting job later = %v, want cancelled and never started", j)
	}
	if _, err := c.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: "ws", Id: "nosuchjob"}); status.Code(err) != codes.NotFound {
		t.Errorf("cancel unknown: %v", err)
	}
}

func TestJobMaximumExecutionTime(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	c := sys.Scheduler
	job := runNoop(t, c, "ws", map[string]string{"sleep": "60s", "steps": "2"}, time.Second)
	got := waitJob(t, c, "ws", job.GetId(), 20*time.Second, failed, done, cancelled)
	if got.GetStatus() != failed || got.GetError().GetMessage() != "maximum execution time of 1s exceeded: the job was cancelled" {
		t.Fatalf("job past its maximum execution time = %v", got)
	}
	if d := got.GetFinishTime().AsTime().Sub(got.GetStartTime().AsTime()); d < time.Second || d > 10*time.Second {
		t.Errorf("ran %s with a 1s maximum", d)
	}
	// The server's default applies when none is given.
	j := runNoop(t, c, "ws", nil, 0)
	if j.GetMaxExecutionTime().AsDuration() != 30*time.Minute {
		t.Errorf("default max execution time = %s", j.GetMaxExecutionTime().AsDuration())
	}
}

func TestJobTransientFailuresRetryThenSucceed(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-executor.max-retries", "2"}, fastJobs...)...))
	c := sys.Scheduler
	job := runNoop(t, c, "ws", map[string]string{"fail": "transient", "transient_failures": "2", "commit": "true"}, 0)
	got := waitJob(t, c, "ws", job.GetId(), 30*time.Second, done, failed)
	if got.GetStatus() != done || got.GetProgress().GetStepsDone() != 1 {
		t.Fatalf("job with 2 transient failures = %v", got)
	}
	// More transient failures than the executor allows fail the job with the last error.
	job = runNoop(t, c, "ws", map[string]string{"fail": "transient", "transient_failures": "100"}, 0)
	got = waitJob(t, c, "ws", job.GetId(), 30*time.Second, done, failed)
	if got.GetStatus() != failed || !strings.Contains(got.GetError().GetMessage(), "fail=transient, failure 3 of 100") ||
		!strings.Contains(got.GetError().GetMessage(), "after 3 attempts") {
		t.Fatalf("job failing transiently forever = %v", got)
	}
}

// TestJobCancelFinishesARecordedCommit kills an executor after its step recorded its commit and
// before the step settled, then cancels the job before the step's redelivery: the redelivery
// still runs the step (a recorded commit is always completed, so a populate never leaves a
// partition unmoved), and since that was the job's last step, the job did all it had to: it
// ends done, with that step counted (a cancel ends a job cancelled only while it stops
// something).
func TestJobCancelFinishesARecordedCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(withoutExecutor...))
	c := sys.Scheduler
	ctx := context.Background()
	// A long ack wait leaves time to cancel between the kill and the redelivery.
	first, _ := startExecutorProcess(t, sys, "executor-0", "-executor.ack-wait", "10s")
	job := runNoop(t, c, "ws", map[string]string{"commit": "true", "sleep_after_commit": "1m"}, 0)
	nc, err := nats.Connect(sys.App.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, jobs.BucketCommits)
	if err != nil {
		t.Fatal(err)
	}
	sluicetest.Eventually(t, 30*time.Second, "the step to record its commit", func() bool {
		_, err := kv.Get(ctx, jobs.CommitKey("ws", job.GetId(), "0"))
		return err == nil
	})
	first.Kill()
	resp, err := c.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: "ws", Id: job.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetJob().GetStatus(); got != schedulerv1.JobStatus_JOB_STATUS_CANCELLING {
		t.Fatalf("cancel of a job whose step runs: %s, want cancelling", got)
	}
	startExecutorProcess(t, sys, "executor-1", "-executor.ack-wait", "10s")
	j := waitJob(t, c, "ws", job.GetId(), 60*time.Second, done, failed, cancelled)
	if j.GetStatus() != done || j.GetError() != nil || j.GetProgress().GetStepsDone() != 1 || j.GetProgress().GetStatistics().GetWrittenRows() != 1 {
		t.Errorf("job = %v, want done with its committed step counted", j)
	}
}
