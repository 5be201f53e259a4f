package jobs

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// The job state machine. Each transition is a pure function over a job record: it changes the
// record in place and returns the Effects its caller carries out once the record is written,
// or ErrNoChange (nothing to write), ErrSkip (a step not to run), or an error of its own.
// Facts a transition needs that are not in the record are given to it: the clock, and whether
// a step of the job has a commit it recorded and has not finished (OpenCommits, read from the
// commits bucket only when the answer matters).
//
//	WAITING ──Claim──▶ WORKING ──CompleteStep (last)──▶ DONE
//	   │                  │ ╲──FailStep──▶ ERROR (CANCELLING first while other steps run)
//	   │                  │
//	   └──RequestCancel───┴──▶ CANCELLING ──end──▶ CANCELLED (ERROR with an error: the
//	                                                maximum execution time, a failed step)
//
// A job whose last steps all committed ends DONE, even if a cancel came meanwhile.

// Transition changes a job record (see the list above).
type Transition func(rec *Record) (Effects, error)

// Effects are what a transition asks of its caller once the record is written.
type Effects struct {
	// Run: the step was claimed; run it.
	Run bool
	// Finished: the transition ended the job (its status is now final).
	Finished bool
	// Notify: executors running the job's other steps must stop them (a cancel notice).
	Notify bool
	// Purge: the job ended with steps not done: remove its queued steps.
	Purge bool
}

// OpenCommits reports whether a step of the job that is not done has recorded a commit (or the
// records cannot be read now): such a step always finishes its commit, so its job is neither
// ended nor its steps removed from the queue under it. A transition calls it only when the
// answer decides something.
type OpenCommits func() bool

// NoOpenCommits is OpenCommits for a job system without commit records (tests of pure logic).
func NoOpenCommits() bool { return false }

// NewJob is what Create needs.
type NewJob struct {
	Job   *schedulerv1.Job
	Steps []*persistencev1.StepSpec
	// Limited jobs count against their workspace's copy concurrency limit and wait for the
	// leader to admit them.
	Limited bool
}

// Create is a new job's record: WAITING, its steps released to the queue at once unless it is
// limited (the leader admits limited jobs in FIFO order within their workspace's limit).
func Create(nj NewJob, now time.Time) *Record {
	job := nj.Job
	job.Status = schedulerv1.JobStatus_JOB_STATUS_WAITING
	job.CreateTime, job.UpdateTime = timestamppb.New(now), timestamppb.New(now)
	job.Progress = &schedulerv1.JobProgress{StepsTotal: int64(len(nj.Steps))}
	for _, st := range nj.Steps {
		job.Progress.PartitionsTotal += int64(len(PopulatePartitions(st.GetPopulate())))
	}
	if nj.Limited {
		job.WaitingReason = "waiting for admission under the workspace's copy concurrency limit"
	}
	return &Record{Job: job, Steps: nj.Steps, Admitted: !nj.Limited, Limited: nj.Limited}
}

// Claim is an executor taking a step: the job becomes WORKING (if it was waiting) and lists
// the step as running on instance. A step of a finished job, or a step that is done, is
// skipped (ErrSkip). In a cancelling job only a step that recorded its commit in an earlier
// attempt runs (committed, asked only then: a commit, once recorded, is always finished); any
// other is not run, and its claim ends the job if nothing else of it runs or has a commit to
// finish.
func Claim(step, instance string, now time.Time, committed func() (bool, error), open OpenCommits) Transition {
	return func(rec *Record) (Effects, error) {
		job := rec.GetJob()
		if Final(job.GetStatus()) || StepDone(rec, step) {
			return Effects{}, ErrSkip
		}
		if job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING {
			c, err := committed()
			if err != nil {
				return Effects{}, err
			}
			if !c {
				stopRunning(rec, step)
				if eff := end(rec, now, open); eff.Finished {
					return eff, nil
				}
				return Effects{}, ErrSkip
			}
		}
		if job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WAITING {
			job.Status = schedulerv1.JobStatus_JOB_STATUS_WORKING
			job.StartTime = timestamppb.New(now)
			job.WaitingReason = ""
		}
		if rec.Running == nil {
			rec.Running = map[string]string{}
		}
		rec.Running[step] = instance
		return Effects{Run: true}, nil
	}
}

// Progress is a running step's heartbeat: what it did so far (not committed; nil when nothing
// new) and what it waits for (nil: no change; "" clears the waiting reason). Nothing changes
// for a finished job; progress only counts while the job is working.
func Progress(step string, stats *commonv1.Statistics, waiting *string) Transition {
	return func(rec *Record) (Effects, error) {
		job := rec.GetJob()
		if Final(job.GetStatus()) {
			return Effects{}, ErrNoChange
		}
		changed := false
		if waiting != nil && job.GetWaitingReason() != *waiting {
			job.WaitingReason = *waiting
			changed = true
		}
		if stats != nil && job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WORKING {
			if rec.RunningProgress == nil {
				rec.RunningProgress = map[string]*commonv1.Statistics{}
			}
			rec.RunningProgress[step] = stats
			changed = true
		}
		if !changed {
			return Effects{}, ErrNoChange
		}
		return Effects{}, nil
	}
}

// CompleteStep records a step's committed result: the step is done, its statistics join the
// job's progress, and a waiting reason of its commit is cleared. The last step makes the job
// DONE; a cancelling job whose steps have all stopped ends.
func CompleteStep(step string, stats *commonv1.Statistics, now time.Time, open OpenCommits) Transition {
	return func(rec *Record) (Effects, error) {
		if Final(rec.GetJob().GetStatus()) {
			return Effects{}, ErrNoChange
		}
		stopRunning(rec, step)
		job := rec.GetJob()
		if strings.HasPrefix(job.GetWaitingReason(), CommitWaitingPrefix) {
			// A commit that waited is done (a step still waiting says so again).
			job.WaitingReason = ""
		}
		if !StepDone(rec, step) {
			rec.DoneSteps = append(rec.DoneSteps, step)
			if job.Progress == nil {
				job.Progress = &schedulerv1.JobProgress{}
			}
			job.Progress.StepsDone = int64(len(rec.GetDoneSteps()))
			for _, st := range rec.GetSteps() {
				if st.GetId() == step {
					job.Progress.PartitionsDone += int64(len(PopulatePartitions(st.GetPopulate())))
				}
			}
			job.Progress.Statistics = AddStats(job.GetProgress().GetStatistics(), stats)
		}
		return end(rec, now, open), nil
	}
}

// RetryStep records a transient failure of a step, which is then handed back to the queue with
// a backoff: its failure count (Record.StepFailures) grows by one. A step of a finished job is
// skipped.
func RetryStep(step string) Transition {
	return func(rec *Record) (Effects, error) {
		if Final(rec.GetJob().GetStatus()) {
			return Effects{}, ErrSkip
		}
		if rec.StepFailures == nil {
			rec.StepFailures = map[string]int32{}
		}
		rec.StepFailures[step]++
		stopRunning(rec, step)
		return Effects{}, nil
	}
}

// FailStep fails the job with a step's error: ERROR at once when nothing else of it runs (or
// has a commit to finish), else CANCELLING (its other steps stop) and ERROR once they have.
func FailStep(step string, jobErr *schedulerv1.JobError, now time.Time, open OpenCommits) Transition {
	return func(rec *Record) (Effects, error) {
		if Final(rec.GetJob().GetStatus()) {
			return Effects{}, ErrNoChange
		}
		stopRunning(rec, step)
		if rec.GetJob().GetError() == nil {
			rec.Job.Error = jobErr
		}
		return cancelling(rec, now, open), nil
	}
}

// StopStep records a step stopped by a cancel or, with maxExec, by the job's maximum execution
// time (the job then ends ERROR with that error).
func StopStep(step string, maxExec bool, now time.Time, open OpenCommits) Transition {
	return func(rec *Record) (Effects, error) {
		job := rec.GetJob()
		if Final(job.GetStatus()) {
			return Effects{}, ErrNoChange
		}
		stopRunning(rec, step)
		if maxExec && job.GetError() == nil {
			job.Error = MaxExecutionTimeError(job.GetMaxExecutionTime().AsDuration())
		}
		return cancelling(rec, now, open), nil
	}
}

// NotCancellableError is returned when cancelling a job that is not waiting or working.
type NotCancellableError struct{ Status schedulerv1.JobStatus }

func (e *NotCancellableError) Error() string {
	return fmt.Sprintf("job is %s: only waiting and working jobs can be cancelled", StatusWord(e.Status))
}

// StatusWord is a status as users write it: waiting, working, done, ...
func StatusWord(s schedulerv1.JobStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATUS_"))
}

// RequestCancel moves a job towards CANCELLED, or towards ERROR with jobErr (the maximum
// execution time). A job with nothing running and no commit to finish ends at once; otherwise
// it becomes CANCELLING and the executors running its steps are told to stop them (they also
// notice at their next heartbeat), and the last one to stop ends it. strict (a user's cancel)
// refuses jobs that are not waiting or working; the leader's sweep (not strict) also finishes a
// cancelling job whose steps have all stopped.
func RequestCancel(jobErr *schedulerv1.JobError, strict bool, now time.Time, open OpenCommits) Transition {
	return func(rec *Record) (Effects, error) {
		job := rec.GetJob()
		switch job.GetStatus() {
		case schedulerv1.JobStatus_JOB_STATUS_WAITING, schedulerv1.JobStatus_JOB_STATUS_WORKING:
		case schedulerv1.JobStatus_JOB_STATUS_CANCELLING:
			if strict {
				return Effects{}, &NotCancellableError{Status: job.GetStatus()}
			}
			if len(rec.GetRunning()) > 0 {
				return Effects{}, ErrNoChange
			}
		default:
			if strict {
				return Effects{}, &NotCancellableError{Status: job.GetStatus()}
			}
			return Effects{}, ErrNoChange
		}
		if jobErr != nil && job.GetError() == nil {
			job.Error = jobErr
		}
		return cancelling(rec, now, open), nil
	}
}

// Admit is the leader's admission of a waiting limited job in a workspace where active limited
// jobs are admitted and unfinished: below the limit the job is admitted (its steps are then
// queued), otherwise it is told why it waits (ErrNoChange when it says so already).
func Admit(workspace string, active, limit int) Transition {
	return func(rec *Record) (Effects, error) {
		if rec.GetAdmitted() || rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_WAITING {
			return Effects{}, ErrNoChange
		}
		if active < limit {
			rec.Admitted = true
			rec.Job.WaitingReason = ""
			return Effects{}, nil
		}
		reason := fmt.Sprintf("%d copy jobs working in workspace %s, limit %d", active, workspace, limit)
		if rec.GetJob().GetWaitingReason() == reason {
			return Effects{}, ErrNoChange
		}
		rec.Job.WaitingReason = reason
		return Effects{}, nil
	}
}

// HandOver removes a draining executor's step from the running steps (so that a cancel
// meanwhile does not wait for it); the next executor to claim the step lists it again.
func HandOver(step, instance string) Transition {
	return func(rec *Record) (Effects, error) {
		if rec.GetRunning()[step] != instance {
			return Effects{}, ErrNoChange
		}
		stopRunning(rec, step)
		return Effects{}, nil
	}
}

// ForceFinish is the leader ending a job stuck cancelling: its executors never reported (a
// cancelled step's executor writes within a heartbeat, a dead one's step is redelivered within
// the ack wait, so its steps are stopped by then). A job with a commit to finish is left to
// the step that finishes it.
func ForceFinish(now time.Time, open OpenCommits) Transition {
	return func(rec *Record) (Effects, error) {
		if rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_CANCELLING || open() {
			return Effects{}, ErrNoChange
		}
		return finish(rec, schedulerv1.JobStatus_JOB_STATUS_CANCELLED, now), nil
	}
}

func stopRunning(rec *Record, step string) {
	delete(rec.Running, step)
	delete(rec.RunningProgress, step)
}

// cancelling makes a job CANCELLING (telling the executors of its running steps) and ends it
// if its steps have all stopped.
func cancelling(rec *Record, now time.Time, open OpenCommits) Effects {
	var eff Effects
	if rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_CANCELLING {
		rec.Job.Status = schedulerv1.JobStatus_JOB_STATUS_CANCELLING
		eff.Notify = len(rec.GetRunning()) > 0
	}
	if e := end(rec, now, open); e.Finished {
		return e
	}
	return eff
}

// end is the one place where a job ends once its steps have stopped: DONE when every step is
// done (also when a cancel or the maximum execution time came while the last commits were
// being finished: the job did all it had to); CANCELLED (ERROR when it has an error) when it is
// cancelling, no step runs and no step has a commit to finish.
func end(rec *Record, now time.Time, open OpenCommits) Effects {
	switch {
	case AllDone(rec):
		rec.Job.Error = nil
		return finish(rec, schedulerv1.JobStatus_JOB_STATUS_DONE, now)
	case rec.GetJob().GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING && len(rec.GetRunning()) == 0 && !open():
		return finish(rec, schedulerv1.JobStatus_JOB_STATUS_CANCELLED, now)
	}
	return Effects{}
}

// finish moves rec to a final status at now: a job with an error ends ERROR rather than
// CANCELLED. Running-step bookkeeping is cleared.
func finish(rec *Record, status schedulerv1.JobStatus, now time.Time) Effects {
	job := rec.GetJob()
	if status == schedulerv1.JobStatus_JOB_STATUS_CANCELLED && job.GetError() != nil {
		status = schedulerv1.JobStatus_JOB_STATUS_ERROR
	}
	job.Status = status
	job.FinishTime = timestamppb.New(now)
	job.WaitingReason = ""
	rec.Running = nil
	rec.RunningProgress = nil
	return Effects{Finished: true, Purge: !AllDone(rec)}
}

// PopulatePartitions are the source partitions a populate step reads: the group it was given,
// else its one partition; none for a step that reads the whole source (an empty source when
// the job was planned) or for a step of another kind.
func PopulatePartitions(p *persistencev1.PopulateStep) []string {
	if len(p.GetPartitions()) > 0 {
		return p.GetPartitions()
	}
	if p.GetPartition() != "" {
		return []string{p.GetPartition()}
	}
	return nil
}
