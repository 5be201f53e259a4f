package main_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// Job tests run with a short ack wait so that redeliveries after a kill take about a second.
var fastJobs = []string{"-executor.ack-wait", "1s", "-executor.drain-timeout", "2s"}

func runNoop(t testing.TB, c schedulerv1.SchedulerServiceClient, ws string, params map[string]string, maxExec time.Duration) *schedulerv1.Job {
	t.Helper()
	req := &schedulerv1.RunNoopJobRequest{Workspace: ws, Parameters: params}
	if maxExec > 0 {
		req.MaxExecutionTime = durationpb.New(maxExec)
	}
	resp, err := c.RunNoopJob(context.Background(), req)
	if err != nil {
		t.Fatalf("RunNoopJob(%v): %v", params, err)
	}
	return resp.GetJob()
}

func getJob(t testing.TB, c schedulerv1.SchedulerServiceClient, ws, id string) *schedulerv1.Job {
	t.Helper()
	resp, err := c.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: ws, Id: id})
	if err != nil {
		t.Fatalf("GetJob %s: %v", id, err)
	}
	return resp.GetJob()
}

// waitJob polls a job until it has one of the statuses.
func waitJob(t testing.TB, c schedulerv1.SchedulerServiceClient, ws, id string, timeout time.Duration, want ...schedulerv1.JobStatus) *schedulerv1.Job {
	t.Helper()
	var job *schedulerv1.Job
	sluicetest.Eventually(t, timeout, "job "+id+" to be "+statusList(want), func() bool {
		resp, err := c.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: ws, Id: id})
		if err != nil {
			return false
		}
		job = resp.GetJob()
		for _, w := range want {
			if job.GetStatus() == w {
				return true
			}
		}
		return false
	})
	return job
}

func statusList(s []schedulerv1.JobStatus) string {
	var out []string
	for _, x := range s {
		out = append(out, x.String())
	}
	return strings.Join(out, "|")
}

const (
	waiting    = schedulerv1.JobStatus_JOB_STATUS_WAITING
	working    = schedulerv1.JobStatus_JOB_STATUS_WORKING
	done       = schedulerv1.JobStatus_JOB_STATUS_DONE
	failed     = schedulerv1.JobStatus_JOB_STATUS_ERROR
	cancelling = schedulerv1.JobStatus_JOB_STATUS_CANCELLING
	cancelled  = schedulerv1.JobStatus_JOB_STATUS_CANCELLED
)

func TestJobNoopRunsToDoneAndIsListed(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	c := sys.Scheduler
	ctx := context.Background()

	job := runNoop(t, c, "ws1", map[string]string{"steps": "3", "sleep": "50ms"}, 0)
	if job.GetStatus() != waiting || job.GetProgress().GetStepsTotal() != 3 || job.GetKind() != schedulerv1.JobKind_JOB_KIND_NOOP {
		t.Fatalf("new job = %v", job)
	}
	// WatchJob streams states until the final one, starting with the current state.
	stream, err := c.WatchJob(ctx, &schedulerv1.WatchJobRequest{Workspace: "ws1", Id: job.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	var seen []*schedulerv1.Job
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		seen = append(seen, resp.GetJob())
	}
	last := seen[len(seen)-1]
	if last.GetStatus() != done {
		t.Fatalf("watch ended with %v", last)
	}
	var prevDone int64
	for _, j := range seen {
		if j.GetProgress().GetStepsDone() < prevDone {
			t.Errorf("progress went back: %v", seen)
		}
		prevDone = j.GetProgress().GetStepsDone()
	}
	got := getJob(t, c, "ws1", job.GetId())
	if got.GetProgress().GetStepsDone() != 3 || got.GetProgress().GetStatistics().GetWrittenRows() != 3 {
		t.Errorf("progress = %v, want 3 steps and 3 rows", got.GetProgress())
	}
	if got.GetStartTime() == nil || got.GetFinishTime() == nil || got.GetFinishTime().AsTime().Before(got.GetStartTime().AsTime()) {
		t.Errorf("times: start %v finish %v", got.GetStartTime(), got.GetFinishTime())
	}

	// A failing job, a job in another workspace; then filters.
	bad := runNoop(t, c, "ws1", map[string]string{"fail": "permanent"}, 0)
	bad = waitJob(t, c, "ws1", bad.GetId(), 20*time.Second, failed)
	if !strings.Contains(bad.GetError().GetMessage(), "fail=permanent") {
		t.Errorf("error = %v", bad.GetError())
	}
	runNoop(t, c, "ws2", nil, 0)
	list := func(req *schedulerv1.ListJobsRequest) []string {
		resp, err := c.ListJobs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range resp.GetJobs() {
			ids = append(ids, j.GetId())
		}
		return ids
	}
	if ids := list(&schedulerv1.ListJobsRequest{Workspace: "ws1"}); len(ids) != 2 || ids[0] != bad.GetId() || ids[1] != job.GetId() {
		t.Errorf("ListJobs ws1 = %v, want [%s %s] (newest first)", ids, bad.GetId(), job.GetId())
	}
	if ids := list(&schedulerv1.ListJobsRequest{Workspace: "ws1", Statuses: []schedulerv1.JobStatus{done}}); len(ids) != 1 || ids[0] != job.GetId() {
		t.Errorf("ListJobs ws1 done = %v", ids)
	}
	if ids := list(&schedulerv1.ListJobsRequest{Workspace: "ws1", Kinds: []schedulerv1.JobKind{schedulerv1.JobKind_JOB_KIND_COPY}}); len(ids) != 0 {
		t.Errorf("ListJobs ws1 copies = %v", ids)
	}
	if ids := list(&schedulerv1.ListJobsRequest{Workspace: "ws1", PageSize: 1}); len(ids) != 1 {
		t.Errorf("ListJobs page 1 = %v", ids)
	}

	// Errors: unknown job, bad workspace, bad parameter (the field is named).
	if _, err := c.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: "ws1", Id: "nosuchjob"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetJob unknown: %v, want NotFound", err)
	}
	if _, err := c.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: "ws1", Id: job.GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("CancelJob of a done job: %v, want FailedPrecondition", err)
	}
	_, err = c.RunNoopJob(ctx, &schedulerv1.RunNoopJobRequest{Workspace: "ws1", Parameters: map[string]string{"steps": "zero"}})
	if field := badField(err); field != "parameters.steps" {
		t.Errorf("RunNoopJob steps=zero: %v (field %q), want InvalidArgument on parameters.steps", err, field)
	}
	_, err = c.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: "a.b"})
	if field := badField(err); field != "workspace" {
		t.Errorf("ListJobs bad workspace: %v, want InvalidArgument on workspace", err)
	}
}

func badField(err error) string {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return ""
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}
