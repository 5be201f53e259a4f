package executor

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/services/executor/step"
	"google.golang.org/protobuf/proto"
)

// reportingRunner is a step runner whose jobs report their end: each step commits (or fails,
// for the step "<job id>/<step id>" named fail), and JobEnds notes what the job system held
// when it was called; its first refuse reports are not stored (they return an error, as when
// NATS refuses the events).
type reportingRunner struct {
	sys    func() *jobs.System
	fail   string
	refuse int

	mu      sync.Mutex
	reports []report
}

type report struct {
	status       schedulerv1.JobStatus // the final record given to JobEnds
	storedStatus schedulerv1.JobStatus // the record in the bucket at that moment
}

func (r *reportingRunner) RunStep(_ context.Context, c *step.Context) (step.Result, error) {
	if c.Job.GetId()+"/"+c.Step.GetId() == r.fail {
		return step.Result{}, step.Permanent(errors.New("failed as asked"))
	}
	return step.Result{Statistics: &commonv1.Statistics{WrittenRows: 10}}, nil
}

var _ step.Reporter = (*reportingRunner)(nil)

func (r *reportingRunner) JobEnds(ctx context.Context, rec *jobs.Record, _ step.Commits) error {
	stored, _, err := r.sys().Store.Get(ctx, rec.GetJob().GetWorkspace(), rec.GetJob().GetId())
	if err != nil {
		panic(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, report{status: rec.GetJob().GetStatus(), storedStatus: stored.GetJob().GetStatus()})
	if len(r.reports) <= r.refuse {
		return errors.New("the report was not stored (refused as asked)")
	}
	return nil
}

func (r *reportingRunner) taken() []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]report(nil), r.reports...)
}

// startRuntime runs an executor on a real embedded NATS with runner for NOOP steps, and
// returns the job system it uses.
func startRuntime(t *testing.T, runner step.Runner) *jobs.System {
	t.Helper()
	conn, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	s, err := New(Config{Concurrency: 2, DrainTimeout: time.Second, AckWait: time.Second, MaxRetries: 2, EventsWait: time.Second}, Deps{NATS: conn})
	if err != nil {
		t.Fatal(err)
	}
	s.runners[schedulerv1.JobKind_JOB_KIND_NOOP] = runner
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s.jobs
}

// queue creates a NOOP job of n steps and puts its steps on the queue, as the scheduler does.
func queue(t *testing.T, sys *jobs.System, id string, n int) {
	t.Helper()
	steps := make([]*persistencev1.StepSpec, n)
	for i := range steps {
		steps[i] = &persistencev1.StepSpec{Id: strconv.Itoa(i), Work: &persistencev1.StepSpec_Noop{Noop: &persistencev1.NoopStep{}}}
	}
	rec := jobs.Create(jobs.NewJob{Job: &schedulerv1.Job{Id: id, Workspace: "ws", Kind: schedulerv1.JobKind_JOB_KIND_NOOP}, Steps: steps}, time.Now())
	rev, err := sys.Store.Create(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Publish(context.Background(), rec, rev); err != nil {
		t.Fatal(err)
	}
}

func finalRecord(t *testing.T, sys *jobs.System, id string) *jobs.Record {
	t.Helper()
	var rec *jobs.Record
	checkfor.Eventually(t, 30*time.Second, "job "+id+" to end", func() bool {
		r, _, err := sys.Store.Get(context.Background(), "ws", id)
		rec = r
		return err == nil && jobs.Final(r.GetJob().GetStatus())
	})
	return rec
}

// TestJobEndReportedBeforeItIsFinal: the runtime runs every step, adds their statistics, and
// ends the job with the last one; the job kind's report of the end is made once the outcome is
// known and before the record says the job ended, so that a client that sees the job finished
// finds what the report wrote (the ops events). A failed step ends its job ERROR the same way.
func TestJobEndReportedBeforeItIsFinal(t *testing.T) {
	var sys *jobs.System
	runner := &reportingRunner{sys: func() *jobs.System { return sys }, fail: "failed1/1"}
	sys = startRuntime(t, runner)

	queue(t, sys, "done1", 3)
	rec := finalRecord(t, sys, "done1")
	if rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE || len(rec.GetDoneSteps()) != 3 ||
		rec.GetJob().GetProgress().GetStatistics().GetWrittenRows() != 30 || len(rec.GetRunning()) != 0 {
		t.Fatalf("job done1 = %v, want DONE with 3 steps and 30 rows written", rec)
	}
	reports := runner.taken()
	if len(reports) == 0 {
		t.Fatal("the job ended without a report")
	}
	for _, r := range reports {
		if r.status != schedulerv1.JobStatus_JOB_STATUS_DONE || jobs.Final(r.storedStatus) {
			t.Errorf("report %+v: want the DONE record reported while the stored one is not final yet", r)
		}
	}

	queue(t, sys, "failed1", 2)
	rec = finalRecord(t, sys, "failed1")
	if rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_ERROR || rec.GetJob().GetError().GetMessage() != "step 1: failed as asked" {
		t.Fatalf("job failed1 = %v, want ERROR with step 1's error", rec)
	}
	reports = runner.taken()[len(reports):]
	if len(reports) == 0 {
		t.Fatal("the failed job ended without a report")
	}
	for _, r := range reports {
		if r.status != schedulerv1.JobStatus_JOB_STATUS_ERROR || jobs.Final(r.storedStatus) {
			t.Errorf("report %+v: want the ERROR record reported while the stored one is not final yet", r)
		}
	}
}

// TestJobEndReportedAgainUntilStored: a report of the job's end that is not stored keeps the
// final record from being written; the step that ended the job is delivered again and reports
// again until the report is stored, and only then is the job finished, with every step's
// statistics counted once.
func TestJobEndReportedAgainUntilStored(t *testing.T) {
	var sys *jobs.System
	runner := &reportingRunner{sys: func() *jobs.System { return sys }, refuse: 2}
	sys = startRuntime(t, runner)

	queue(t, sys, "refused1", 2)
	rec := finalRecord(t, sys, "refused1")
	if rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE || len(rec.GetDoneSteps()) != 2 ||
		rec.GetJob().GetProgress().GetStatistics().GetWrittenRows() != 20 || len(rec.GetRunning()) != 0 {
		t.Fatalf("job refused1 = %v, want DONE with 2 steps and 20 rows written", rec)
	}
	reports := runner.taken()
	if len(reports) < 3 {
		t.Fatalf("%d reports, want the two refused ones and one stored: %+v", len(reports), reports)
	}
	for _, r := range reports[:3] {
		if r.status != schedulerv1.JobStatus_JOB_STATUS_DONE || jobs.Final(r.storedStatus) {
			t.Errorf("report %+v: want the DONE record reported while the stored one is not final yet", r)
		}
	}
}

// staleViewRunner is a step runner whose step, while it runs, makes its job's record read as
// WAITING (what a replica of the jobs bucket behind the step's claim answers) for two of the
// step's heartbeats, then writes the record back as it was; the step is cancelled if its
// context is.
type staleViewRunner struct{ sys func() *jobs.System }

func (r *staleViewRunner) RunStep(ctx context.Context, c *step.Context) (step.Result, error) {
	store := r.sys().Store
	ws, id := c.Job.GetWorkspace(), c.Job.GetId()
	var saved *jobs.Record
	if _, err := store.Apply(ctx, ws, id, func(rec *jobs.Record) (jobs.Effects, error) {
		saved = proto.Clone(rec).(*jobs.Record)
		rec.Job.Status = schedulerv1.JobStatus_JOB_STATUS_WAITING
		rec.Running = nil
		return jobs.Effects{}, nil
	}); err != nil {
		return step.Result{}, err
	}
	// Two heartbeats read the waiting record: each writes the waiting reason it carries, and
	// the second one comes after whatever the first one did about the status it read.
	for _, probe := range []string{"probe 1", "probe 2"} {
		c.Waiting(probe)
		for {
			rec, _, err := store.Get(ctx, ws, id)
			if err != nil {
				return step.Result{}, err
			}
			if rec.GetJob().GetWaitingReason() == probe {
				break
			}
			select {
			case <-ctx.Done():
				return step.Result{}, context.Cause(ctx)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err := context.Cause(ctx); err != nil {
		return step.Result{}, err
	}
	if _, err := store.Apply(ctx, ws, id, func(rec *jobs.Record) (jobs.Effects, error) {
		rec.Job.Status, rec.Running, rec.Job.WaitingReason = saved.GetJob().GetStatus(), saved.GetRunning(), ""
		return jobs.Effects{}, nil
	}); err != nil {
		return step.Result{}, err
	}
	return step.Result{Statistics: &commonv1.Statistics{WrittenRows: 7}}, nil
}

// TestStepNotStoppedByAJobRecordBehindItsClaim: a heartbeat that reads the job's record as
// WAITING while the step runs (a replica behind the step's claim) does not stop the step: the
// job ends DONE with the step's rows, not CANCELLED without a cancel asked and without an error.
func TestStepNotStoppedByAJobRecordBehindItsClaim(t *testing.T) {
	var sys *jobs.System
	sys = startRuntime(t, &staleViewRunner{sys: func() *jobs.System { return sys }})
	queue(t, sys, "behind1", 1)
	rec := finalRecord(t, sys, "behind1")
	if rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE || rec.GetJob().GetProgress().GetStatistics().GetWrittenRows() != 7 ||
		rec.GetJob().GetError() != nil {
		t.Fatalf("job behind1 = %v, want DONE with the step's 7 rows", rec)
	}
}
