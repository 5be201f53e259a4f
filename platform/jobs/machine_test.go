package jobs

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

const (
	waiting   = schedulerv1.JobStatus_JOB_STATUS_WAITING
	working   = schedulerv1.JobStatus_JOB_STATUS_WORKING
	stopping  = schedulerv1.JobStatus_JOB_STATUS_CANCELLING
	done      = schedulerv1.JobStatus_JOB_STATUS_DONE
	failed    = schedulerv1.JobStatus_JOB_STATUS_ERROR
	cancelled = schedulerv1.JobStatus_JOB_STATUS_CANCELLED
)

var (
	t0  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(time.Minute)
)

// job is a record of a job with steps "0", "1", "2" in status st, with the given steps
// running (on executor "x") and done.
func job(st schedulerv1.JobStatus, running, doneSteps []string) *Record {
	rec := &Record{
		Job: &schedulerv1.Job{Id: "j1", Workspace: "ws", Status: st, CreateTime: timestamppb.New(t0),
			MaxExecutionTime: durationpb.New(time.Hour), Progress: &schedulerv1.JobProgress{StepsTotal: 3, StepsDone: int64(len(doneSteps))}},
		Steps:     []*persistencev1.StepSpec{{Id: "0"}, {Id: "1"}, {Id: "2"}},
		DoneSteps: doneSteps,
		Admitted:  true,
	}
	if st != waiting {
		rec.Job.StartTime = timestamppb.New(t0)
	}
	for _, s := range running {
		if rec.Running == nil {
			rec.Running = map[string]string{}
		}
		rec.Running[s] = "x"
	}
	return rec
}

func withError(rec *Record) *Record {
	rec.Job.Error = &schedulerv1.JobError{Message: "step 1: boom"}
	return rec
}

var (
	stepErr = &schedulerv1.JobError{Message: "step 0: failed"}
	open    = func() bool { return true }
	closed  = NoOpenCommits
	yes     = func() (bool, error) { return true, nil }
	no      = func() (bool, error) { return false, nil }
	unknown = func() (bool, error) { return false, errors.New("NATS away") }
	// never fails a test that asks a fact it should not need.
	never = func(t *testing.T) OpenCommits {
		return func() bool { t.Error("open commits asked, but they decide nothing here"); return false }
	}
)

// want is what a transition should leave.
type want struct {
	status  schedulerv1.JobStatus
	running []string
	done    []string
	effects Effects
	err     error
	// errMsg is the job error's message ("" for none).
	errMsg  string
	waiting string
}

func check(t *testing.T, rec *Record, eff Effects, err error, w want) {
	t.Helper()
	if w.err != nil {
		if !errors.Is(err, w.err) {
			t.Fatalf("error = %v, want %v", err, w.err)
		}
	} else if err != nil {
		t.Fatalf("error = %v", err)
	}
	if got := rec.GetJob().GetStatus(); got != w.status {
		t.Errorf("status = %s, want %s", got, w.status)
	}
	if got := slices.Sorted(maps.Keys(rec.GetRunning())); !slices.Equal(got, w.running) && (len(got) > 0 || len(w.running) > 0) {
		t.Errorf("running = %v, want %v", got, w.running)
	}
	if got := rec.GetDoneSteps(); !slices.Equal(got, w.done) && (len(got) > 0 || len(w.done) > 0) {
		t.Errorf("done = %v, want %v", got, w.done)
	}
	if eff != w.effects {
		t.Errorf("effects = %+v, want %+v", eff, w.effects)
	}
	if got := rec.GetJob().GetError().GetMessage(); got != w.errMsg {
		t.Errorf("job error = %q, want %q", got, w.errMsg)
	}
	if got := rec.GetJob().GetWaitingReason(); got != w.waiting {
		t.Errorf("waiting reason = %q, want %q", got, w.waiting)
	}
	if Final(rec.GetJob().GetStatus()) && w.effects.Finished && !rec.GetJob().GetFinishTime().AsTime().Equal(now) {
		t.Errorf("finish time = %v, want %v", rec.GetJob().GetFinishTime().AsTime(), now)
	}
}

func TestClaim(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rec       *Record
		step      string
		committed func() (bool, error)
		open      OpenCommits
		want      want
	}{
		{"a waiting job starts working", job(waiting, nil, nil), "0", no, closed,
			want{status: working, running: []string{"0"}, effects: Effects{Run: true}}},
		{"a working job lists one more step", job(working, []string{"1"}, nil), "0", no, closed,
			want{status: working, running: []string{"0", "1"}, effects: Effects{Run: true}}},
		{"a done step is skipped", job(working, nil, []string{"0"}), "0", no, closed,
			want{status: working, done: []string{"0"}, err: ErrSkip}},
		{"a step of a finished job is skipped", job(cancelled, nil, nil), "0", no, closed,
			want{status: cancelled, err: ErrSkip}},
		{"a cancelling job runs a step that recorded its commit", job(stopping, nil, nil), "0", yes, closed,
			want{status: stopping, running: []string{"0"}, effects: Effects{Run: true}}},
		{"a cancelling job with nothing else running ends", job(stopping, nil, nil), "0", no, closed,
			want{status: cancelled, effects: Effects{Finished: true, Purge: true}}},
		{"a cancelling job with an error ends ERROR", withError(job(stopping, nil, nil)), "0", no, closed,
			want{status: failed, effects: Effects{Finished: true, Purge: true}, errMsg: "step 1: boom"}},
		{"a cancelling job waits for its other running steps", job(stopping, []string{"1"}, nil), "0", no, closed,
			want{status: stopping, running: []string{"1"}, err: ErrSkip}},
		{"a cancelling job waits for another step's recorded commit", job(stopping, nil, nil), "0", no, open,
			want{status: stopping, err: ErrSkip}},
		{"a commit record that cannot be read keeps the message", job(stopping, nil, nil), "0", unknown, closed,
			want{status: stopping, err: errors.New("")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eff, err := Claim(tc.step, "x", now, tc.committed, tc.open)(tc.rec)
			if tc.want.err != nil && tc.want.err.Error() == "" {
				if err == nil {
					t.Fatal("want the read error")
				}
				return
			}
			check(t, tc.rec, eff, err, tc.want)
			if tc.want.effects.Run && !tc.rec.GetJob().GetStartTime().IsValid() {
				t.Error("a working job has no start time")
			}
		})
	}
}

func TestCompleteStep(t *testing.T) {
	stats := &commonv1.Statistics{ReadRows: 5, WrittenRows: 4}
	for _, tc := range []struct {
		name string
		rec  *Record
		open func(*testing.T) OpenCommits
		want want
	}{
		{"a step is done, the job goes on", job(working, []string{"0", "1"}, nil), never,
			want{status: working, running: []string{"1"}, done: []string{"0"}}},
		{"the last step makes the job done", job(working, []string{"0"}, []string{"1", "2"}), never,
			want{status: done, done: []string{"1", "2", "0"}, effects: Effects{Finished: true}}},
		{"the last commit ends a cancelling job done, its error dropped", withError(job(stopping, []string{"0"}, []string{"1", "2"})), never,
			want{status: done, done: []string{"1", "2", "0"}, effects: Effects{Finished: true}}},
		{"a cancelling job ends with its last running step", job(stopping, []string{"0"}, nil),
			func(*testing.T) OpenCommits { return closed },
			want{status: cancelled, done: []string{"0"}, effects: Effects{Finished: true, Purge: true}}},
		{"a cancelling job waits for another step's recorded commit", job(stopping, []string{"0"}, nil),
			func(*testing.T) OpenCommits { return open },
			want{status: stopping, done: []string{"0"}}},
		{"a finished job is not written", job(cancelled, nil, nil), never,
			want{status: cancelled, err: ErrNoChange}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eff, err := CompleteStep("0", stats, now, tc.open(t))(tc.rec)
			check(t, tc.rec, eff, err, tc.want)
			if tc.want.err == nil && tc.rec.GetJob().GetProgress().GetStatistics().GetWrittenRows() != 4 {
				t.Errorf("progress = %v, want the step's statistics", tc.rec.GetJob().GetProgress())
			}
		})
	}
	// A repeated completion (a redelivery that found the step done meanwhile) counts it once.
	rec := job(working, nil, []string{"0"})
	if _, err := CompleteStep("0", stats, now, closed)(rec); err != nil || len(rec.GetDoneSteps()) != 1 || rec.GetJob().GetProgress().GetStatistics() != nil {
		t.Errorf("second completion: %v, %v, %v", err, rec.GetDoneSteps(), rec.GetJob().GetProgress())
	}
	// The waiting reason of a commit that waited is cleared; another is kept.
	rec = job(working, []string{"0", "1"}, nil)
	rec.Job.WaitingReason = CommitWaitingPrefix + "ClickHouse: connection refused"
	if _, err := CompleteStep("0", stats, now, closed)(rec); err != nil || rec.GetJob().GetWaitingReason() != "" {
		t.Errorf("waiting reason after the commit = %q, %v", rec.GetJob().GetWaitingReason(), err)
	}
}

func TestFailStopRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  *Record
		tr   func(OpenCommits) Transition
		open OpenCommits
		want want
	}{
		{"a failed step alone fails the job", job(working, []string{"0"}, nil),
			func(o OpenCommits) Transition { return FailStep("0", stepErr, now, o) }, closed,
			want{status: failed, effects: Effects{Finished: true, Purge: true}, errMsg: "step 0: failed"}},
		{"a failed step stops the others first", job(working, []string{"0", "1"}, nil),
			func(o OpenCommits) Transition { return FailStep("0", stepErr, now, o) }, closed,
			want{status: stopping, running: []string{"1"}, effects: Effects{Notify: true}, errMsg: "step 0: failed"}},
		{"a failed step waits for another step's recorded commit", job(working, []string{"0"}, nil),
			func(o OpenCommits) Transition { return FailStep("0", stepErr, now, o) }, open,
			want{status: stopping, errMsg: "step 0: failed"}},
		{"the first error stays", withError(job(stopping, []string{"0"}, nil)),
			func(o OpenCommits) Transition { return FailStep("0", stepErr, now, o) }, closed,
			want{status: failed, effects: Effects{Finished: true, Purge: true}, errMsg: "step 1: boom"}},
		{"a cancelled step ends a cancelling job", job(stopping, []string{"0"}, nil),
			func(o OpenCommits) Transition { return StopStep("0", false, now, o) }, closed,
			want{status: cancelled, effects: Effects{Finished: true, Purge: true}}},
		{"a step stopped by the maximum execution time ends the job ERROR", job(working, []string{"0"}, nil),
			func(o OpenCommits) Transition { return StopStep("0", true, now, o) }, closed,
			want{status: failed, effects: Effects{Finished: true, Purge: true}, errMsg: "maximum execution time of 1h0m0s exceeded: the job was cancelled"}},
		{"a step stopped by the maximum execution time stops the others", job(working, []string{"0", "2"}, nil),
			func(o OpenCommits) Transition { return StopStep("0", true, now, o) }, closed,
			want{status: stopping, running: []string{"2"}, effects: Effects{Notify: true}, errMsg: "maximum execution time of 1h0m0s exceeded: the job was cancelled"}},
		{"a stopped step of a finished job writes nothing", job(done, nil, []string{"0", "1", "2"}),
			func(o OpenCommits) Transition { return StopStep("0", false, now, o) }, closed,
			want{status: done, done: []string{"0", "1", "2"}, err: ErrNoChange}},
		{"a transient failure hands the step back", job(working, []string{"0", "1"}, nil),
			func(OpenCommits) Transition { return RetryStep("0") }, closed,
			want{status: working, running: []string{"1"}}},
		{"a transient failure of a finished job's step is skipped", job(failed, nil, nil),
			func(OpenCommits) Transition { return RetryStep("0") }, closed,
			want{status: failed, err: ErrSkip}},
		{"a draining executor hands its step over", job(working, []string{"0", "1"}, nil),
			func(OpenCommits) Transition { return HandOver("0", "x") }, closed,
			want{status: working, running: []string{"1"}}},
		{"another executor's step is not handed over", job(working, []string{"0"}, nil),
			func(OpenCommits) Transition { return HandOver("0", "y") }, closed,
			want{status: working, running: []string{"0"}, err: ErrNoChange}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eff, err := tc.tr(tc.open)(tc.rec)
			check(t, tc.rec, eff, err, tc.want)
		})
	}
	rec := job(working, []string{"0"}, nil)
	for range 3 {
		if _, err := RetryStep("0")(rec); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.GetStepFailures()["0"]; got != 3 {
		t.Errorf("failures = %d, want 3", got)
	}
}

func TestRequestCancel(t *testing.T) {
	timeout := MaxExecutionTimeError(time.Hour)
	for _, tc := range []struct {
		name   string
		rec    *Record
		jobErr *schedulerv1.JobError
		strict bool
		open   OpenCommits
		want   want
	}{
		{"a waiting job ends at once", job(waiting, nil, nil), nil, true, closed,
			want{status: cancelled, effects: Effects{Finished: true, Purge: true}}},
		{"a working job with nothing running ends at once", job(working, nil, []string{"1"}), nil, true, closed,
			want{status: cancelled, done: []string{"1"}, effects: Effects{Finished: true, Purge: true}}},
		{"a working job tells its executors", job(working, []string{"0"}, nil), nil, true, closed,
			want{status: stopping, running: []string{"0"}, effects: Effects{Notify: true}}},
		{"a job with a recorded commit waits for it", job(working, nil, nil), nil, true, open,
			want{status: stopping}},
		{"the maximum execution time ends the job ERROR", job(working, nil, nil), timeout, false, closed,
			want{status: failed, effects: Effects{Finished: true, Purge: true}, errMsg: timeout.GetMessage()}},
		{"a user cannot cancel a cancelling job", job(stopping, []string{"0"}, nil), nil, true, closed,
			want{status: stopping, running: []string{"0"}, err: &NotCancellableError{}}},
		{"a user cannot cancel a finished job", job(done, nil, []string{"0", "1", "2"}), nil, true, closed,
			want{status: done, done: []string{"0", "1", "2"}, err: &NotCancellableError{}}},
		{"the sweep finishes a cancelling job whose steps stopped", job(stopping, nil, nil), timeout, false, closed,
			want{status: failed, effects: Effects{Finished: true, Purge: true}, errMsg: timeout.GetMessage()}},
		{"the sweep leaves a cancelling job with running steps", job(stopping, []string{"0"}, nil), timeout, false, closed,
			want{status: stopping, running: []string{"0"}, err: ErrNoChange}},
		{"the sweep leaves a finished job", job(cancelled, nil, nil), timeout, false, closed,
			want{status: cancelled, err: ErrNoChange}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eff, err := RequestCancel(tc.jobErr, tc.strict, now, tc.open)(tc.rec)
			var nc *NotCancellableError
			if errors.As(tc.want.err, &nc) {
				if !errors.As(err, &nc) {
					t.Fatalf("error = %v, want NotCancellableError", err)
				}
				tc.want.err, err = nil, nil
			}
			check(t, tc.rec, eff, err, tc.want)
		})
	}
}

func TestAdmitAndForceFinish(t *testing.T) {
	limited := func() *Record {
		rec := Create(NewJob{Job: &schedulerv1.Job{Id: "j", Workspace: "ws"}, Steps: []*persistencev1.StepSpec{{Id: "copy"}}, Limited: true}, t0)
		return rec
	}
	rec := limited()
	if rec.GetAdmitted() || rec.GetJob().GetStatus() != waiting || rec.GetJob().GetProgress().GetStepsTotal() != 1 ||
		rec.GetJob().GetWaitingReason() != "waiting for admission under the workspace's copy concurrency limit" {
		t.Fatalf("created = %v", rec)
	}
	if eff, err := Admit("ws", 2, 2)(rec); err != nil || rec.GetAdmitted() || eff != (Effects{}) ||
		rec.GetJob().GetWaitingReason() != "2 copy jobs working in workspace ws, limit 2" {
		t.Errorf("admission at the limit: %v %v %v", rec, eff, err)
	}
	if _, err := Admit("ws", 2, 2)(rec); !errors.Is(err, ErrNoChange) {
		t.Errorf("same reason again: %v, want no change", err)
	}
	if _, err := Admit("ws", 1, 2)(rec); err != nil || !rec.GetAdmitted() || rec.GetJob().GetWaitingReason() != "" {
		t.Errorf("admission under the limit: %v %v", rec, err)
	}
	if _, err := Admit("ws", 0, 2)(rec); !errors.Is(err, ErrNoChange) {
		t.Errorf("admitting an admitted job: %v", err)
	}
	if open := Create(NewJob{Job: &schedulerv1.Job{Id: "n"}, Steps: []*persistencev1.StepSpec{{Id: "0"}}}, t0); !open.GetAdmitted() || open.GetJob().GetWaitingReason() != "" {
		t.Errorf("an unlimited job is admitted at once: %v", open)
	}

	for _, tc := range []struct {
		name string
		rec  *Record
		open OpenCommits
		want want
	}{
		{"a job stuck cancelling ends", job(stopping, []string{"0"}, nil), closed,
			want{status: cancelled, effects: Effects{Finished: true, Purge: true}}},
		{"a job with a recorded commit is left to it", job(stopping, nil, nil), open,
			want{status: stopping, err: ErrNoChange}},
		{"only a cancelling job", job(working, []string{"0"}, nil), closed,
			want{status: working, running: []string{"0"}, err: ErrNoChange}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eff, err := ForceFinish(now, tc.open)(tc.rec)
			check(t, tc.rec, eff, err, tc.want)
		})
	}
}

func TestProgress(t *testing.T) {
	st := &commonv1.Statistics{ReadRows: 7}
	reason := CommitWaitingPrefix + "NATS: timeout"
	rec := job(working, []string{"0"}, nil)
	if _, err := Progress("0", st, &reason)(rec); err != nil || !proto.Equal(rec.GetRunningProgress()["0"], st) || rec.GetJob().GetWaitingReason() != reason {
		t.Errorf("progress: %v, %v", rec, err)
	}
	if _, err := Progress("0", nil, &reason)(rec); !errors.Is(err, ErrNoChange) {
		t.Errorf("the same reason again: %v, want no change", err)
	}
	if got := Public(rec).GetProgress().GetStatistics().GetReadRows(); got != 7 {
		t.Errorf("the API shows %d read rows, want the running step's 7", got)
	}
	clear := ""
	if _, err := Progress("0", nil, &clear)(rec); err != nil || rec.GetJob().GetWaitingReason() != "" {
		t.Errorf("cleared reason: %q, %v", rec.GetJob().GetWaitingReason(), err)
	}
	// Progress counts only while the job works; a finished job is not written.
	c := job(stopping, []string{"0"}, nil)
	if _, err := Progress("0", st, nil)(c); !errors.Is(err, ErrNoChange) {
		t.Errorf("progress of a cancelling job: %v, want no change", err)
	}
	if _, err := Progress("0", st, &reason)(job(done, nil, nil)); !errors.Is(err, ErrNoChange) {
		t.Errorf("progress of a finished job: %v, want no change", err)
	}
}

func TestIDs(t *testing.T) {
	a, b := NewID(t0), NewID(t0.Add(time.Millisecond))
	if len(a) != 20 || !ValidName(a) || a >= b {
		t.Errorf("ids %s, %s: want 20 characters sorting by time", a, b)
	}
	first, retry := RequestID(t0, "ws", "r1"), RequestID(t0, "ws", "r1")
	if first != retry || first == RequestID(t0, "other", "r1") {
		t.Error("request ids: want the same id for the same workspace and request, another for another workspace")
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", string(make([]byte, 129))} {
		if ValidName(bad) {
			t.Errorf("ValidName(%q) = true", bad)
		}
	}
}

func TestTickIDIsDeterministicAndSorts(t *testing.T) {
	t1 := time.Date(2024, 6, 1, 16, 0, 0, 0, time.UTC)
	a, b := TickID("ws", "p", t1, 0), TickID("ws", "p", t1, 0)
	if a != b || len(a) != 20 {
		t.Fatalf("ids %q %q", a, b)
	}
	if TickID("ws", "q", t1, 0) == a || TickID("ws2", "p", t1, 0) == a || TickID("ws", "p", t1, 1) == a {
		t.Error("different pipes, workspaces or salts share an id")
	}
	if later := TickID("ws", "p", t1.Add(time.Hour), 0); later <= a {
		t.Errorf("ids do not sort by tick: %s then %s", a, later)
	}
}
