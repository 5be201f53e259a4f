package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/services/scheduler/client/jobs"
)

// Causes of a step's context ending early.
var (
	errJobCancelled = errors.New("job cancelled")
	errMaxExecution = errors.New("maximum execution time exceeded")
	errDrain        = errors.New("executor draining")
)

// errSkip: the step is not to run (job finished or gone, step done); acknowledge it.
var errSkip = errors.New("skip step")

// pull fetches steps while there are free slots and runs each in its own goroutine.
func (s *Service) pull(ctx context.Context) {
	slots := make(chan struct{}, s.cfg.Concurrency)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
		for n < s.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		batch, err := s.consumer.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			for range n {
				<-slots
			}
			if ctx.Err() == nil {
				s.log.Warn("fetching steps", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if s.draining.Load() {
				_ = msg.Nak()
				<-slots
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-slots }()
				s.handle(msg)
			}()
		}
		for range n - got {
			<-slots
		}
	}
}

// hasCommit tells whether a step's commit record exists (an earlier attempt committed, or was
// committing).
func (s *Service) hasCommit(ctx context.Context, key string) (bool, error) {
	_, err := s.commits.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read commit record %s: %w", key, err)
	}
	return true, nil
}

// backoff is the delay before retry number n (1-based) of a step that failed transiently.
func backoff(n int32) time.Duration {
	d := 250 * time.Millisecond << min(n-1, 7)
	return min(d, 30*time.Second)
}

// handle runs one delivered step to its end: skipped, committed, retried later, handed back,
// or failing its job. The message is acknowledged only after the job record says what happened.
func (s *Service) handle(msg jetstream.Msg) {
	ctx := context.Background()
	sm := &schedulerv1.StepMessage{}
	if err := proto.Unmarshal(msg.Data(), sm); err != nil {
		s.log.Error("unreadable step message dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	var tries int64 = 1
	if meta, err := msg.Metadata(); err == nil {
		tries = int64(meta.NumDelivered)
	}
	if tries > 1 {
		s.metrics.redelivered.Inc()
	}
	ws, id, step := sm.GetWorkspace(), sm.GetJobId(), sm.GetStepId()
	log := s.log.With("job", id, "step", step, "workspace", ws, "attempt", tries)
	now := s.now()

	// Claim the step: the job becomes WORKING (if it was waiting) and lists the step as running
	// here. A cancelling job is finished instead if nothing else of it runs, unless this step
	// recorded its commit in an earlier attempt: a commit, once recorded, is always completed
	// (a populate step killed while moving partitions would otherwise leave some unmoved).
	var finishedHere, final bool
	var checked, committed bool // whether the step has a commit record, read once if needed
	rec, rev, err := s.store.UpdateFrom(ctx, ws, id, sm.GetRecord(), sm.GetRecordRevision(), func(rec *schedulerv1.JobRecord) error {
		finishedHere, final = false, false
		job := rec.GetJob()
		cancelling := job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING
		if cancelling && !checked {
			var err error
			if committed, err = s.hasCommit(ctx, jobs.CommitKey(ws, id, step)); err != nil {
				return err
			}
			checked = true
		}
		switch {
		case jobs.Final(job.GetStatus()):
			final = true
			return errSkip
		case jobs.StepDone(rec, step):
			return errSkip
		case cancelling && committed:
			log.Info("finishing a step that recorded its commit, although its job is cancelling")
		case cancelling:
			delete(rec.Running, step)
			if len(rec.GetRunning()) > 0 {
				return errSkip
			}
			jobs.Finish(rec, schedulerv1.JobStatus_JOB_STATUS_CANCELLED, now)
			finishedHere = true
			return nil
		}
		if job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WAITING {
			job.Status = schedulerv1.JobStatus_JOB_STATUS_WORKING
			job.StartTime = timestamppb.New(now)
			job.WaitingReason = ""
		}
		if rec.Running == nil {
			rec.Running = map[string]string{}
		}
		rec.Running[step] = s.instance
		return nil
	})
	switch {
	case errors.Is(err, errSkip), errors.Is(err, jobs.ErrNotFound):
		if final && tries > 1 && rec != nil {
			// The executor that finished the job may have died before reporting its end (the
			// step is acknowledged only after the report): report again; reports are
			// idempotent by event id.
			if err := s.jobFinished(rec); err != nil {
				log.Warn("the job's ops events are not recorded yet; the step is delivered again to record them", "err", err)
				_ = msg.NakWithDelay(jobReportRetry)
				return
			}
		}
		s.metrics.steps.WithLabelValues("skipped").Inc()
		_ = msg.Ack()
		return
	case err != nil:
		log.Warn("claiming a step failed; retrying", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	case finishedHere:
		s.metrics.steps.WithLabelValues("cancelled").Inc()
		_ = msg.Ack()
		return
	}
	runner := s.runnerFor(sm.GetKind())
	if runner == nil {
		s.fail(ctx, msg, sm, fmt.Errorf("no step runner for %s in this executor", sm.GetKind()), 0, log)
		return
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	job := rec.GetJob()
	if d := job.GetMaxExecutionTime().AsDuration(); d > 0 && job.GetStartTime() != nil {
		var stop context.CancelFunc
		sctx, stop = context.WithDeadlineCause(sctx, job.GetStartTime().AsTime().Add(d), errMaxExecution)
		defer stop()
	}
	key := jobs.CommitKey(ws, id, step)
	s.mu.Lock()
	s.running[key] = &runningStep{msg: sm, start: now, tries: tries, cancel: cancel}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, key)
		s.mu.Unlock()
	}()
	sc := &StepContext{
		Job: job, StepID: step, Payload: sm.GetPayload(), Attempt: tries,
		Failures: rec.GetStepFailures()[step], IdempotencyKey: key, Log: log,
		commits: s.commits, beat: func() { _ = msg.InProgress() }, faults: s.faults, fence: s.fence,
	}
	// The heartbeat lives as long as the runner, not as long as the step's context: a step
	// that finishes its commit after a cancel must keep its message from being redelivered.
	hbCtx, hbStop := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go s.heartbeat(hbCtx, sctx, msg, sc, cancel, hbDone)
	runStart := time.Now()
	res, runErr := runner.RunStep(sctx, sc)
	s.metrics.stepSeconds.Observe(time.Since(runStart).Seconds())
	cause := context.Cause(sctx)
	cancel(nil)
	hbStop()
	<-hbDone

	result := "committed"
	switch {
	case runErr == nil:
		s.commit(ctx, msg, sm, res, rec, rev, log)
	case errors.Is(cause, errDrain):
		result = "handed_back"
		log.Info("step handed back for the drain")
		s.handOver(ctx, sm)
		_ = msg.Nak()
	case errors.Is(cause, errJobCancelled), errors.Is(cause, errMaxExecution):
		result = "cancelled"
		s.stopped(ctx, msg, sm, errors.Is(cause, errMaxExecution), log)
	default:
		retry, code := classify(runErr)
		if retry {
			result = "retried"
			s.retry(ctx, msg, sm, runErr, code, log)
		} else {
			result = "failed"
			s.fail(ctx, msg, sm, runErr, code, log)
		}
	}
	s.metrics.steps.WithLabelValues(result).Inc()
}

// heartbeat keeps the message from being redelivered while the runner runs, watches the job
// record for a cancel (in case the notice was lost: the step's context, stepCtx, is then
// cancelled) and writes the step's progress and waiting reason.
func (s *Service) heartbeat(ctx, stepCtx context.Context, msg jetstream.Msg, sc *StepContext, cancel context.CancelCauseFunc, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.AckWait / 4)
	defer t.Stop()
	ws, id := sc.Job.GetWorkspace(), sc.Job.GetId()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = msg.InProgress()
		p, w := sc.takeProgress(), sc.takeWaiting()
		uctx, ucancel := context.WithTimeout(ctx, kvCallTimeout)
		rec, _, err := s.store.Update(uctx, ws, id, func(rec *schedulerv1.JobRecord) error {
			job := rec.GetJob()
			if jobs.Final(job.GetStatus()) || (p == nil && w == nil) {
				return jobs.ErrNoChange
			}
			if w != nil {
				if job.GetWaitingReason() == *w {
					w = nil
				} else {
					job.WaitingReason = *w
				}
			}
			if p != nil && job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WORKING {
				if rec.RunningProgress == nil {
					rec.RunningProgress = map[string]*commonv1.Statistics{}
				}
				rec.RunningProgress[sc.StepID] = p
			} else if w == nil {
				return jobs.ErrNoChange
			}
			return nil
		})
		ucancel()
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			cancel(errJobCancelled)
		case err == nil && rec.GetJob().GetStatus() != schedulerv1.JobStatus_JOB_STATUS_WORKING:
			if stepCtx.Err() == nil {
				cancel(errJobCancelled)
			}
		case err != nil:
			if p != nil {
				sc.Progress(p)
			}
			if w != nil {
				sc.Waiting(*w)
			}
		}
	}
}

// jobReportRetry is how soon a step whose job's end could not be reported is delivered again.
const jobReportRetry = 5 * time.Second

// settle writes the outcome of the step to the job record, then acknowledges or NAKs the
// message. If the record cannot be written, the message is NAKed and the step runs again (its
// runner's commit record makes that safe).
func (s *Service) settle(ctx context.Context, msg jetstream.Msg, sm *schedulerv1.StepMessage, log interface {
	Warn(string, ...any)
}, known *schedulerv1.JobRecord, knownRev uint64, mutate func(rec *schedulerv1.JobRecord) error, after func(rec *schedulerv1.JobRecord)) {
	finishedNow := false
	rec, _, err := s.store.UpdateFrom(ctx, sm.GetWorkspace(), sm.GetJobId(), known, knownRev, func(rec *schedulerv1.JobRecord) error {
		finishedNow = false
		if jobs.Final(rec.GetJob().GetStatus()) {
			return jobs.ErrNoChange
		}
		if err := mutate(rec); err != nil {
			return err
		}
		finishedNow = jobs.Final(rec.GetJob().GetStatus())
		return nil
	})
	if err != nil && !errors.Is(err, jobs.ErrNotFound) {
		log.Warn("recording the step's outcome failed; it will run again", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	// The end of the job is reported before the step is acknowledged: an executor that dies in
	// between leaves the step to be redelivered, and its redelivery reports again.
	if rec != nil && finishedNow {
		if err := s.jobFinished(rec); err != nil {
			// Not after(): it would purge this very message of a failed job. The job is
			// final, so there is no one to tell; its other queued steps are skipped.
			log.Warn("the job's ops events are not recorded yet; the step is delivered again to record them", "err", err)
			_ = msg.NakWithDelay(jobReportRetry)
			return
		}
	}
	if rec != nil && after != nil {
		after(rec)
	}
	if err := msg.Ack(); err != nil {
		log.Warn("acknowledging a step failed; its redelivery will be skipped", "err", err)
	}
}

// commit records a step's result; the last step finishes the job.
func (s *Service) commit(ctx context.Context, msg jetstream.Msg, sm *schedulerv1.StepMessage, res StepResult, known *schedulerv1.JobRecord, knownRev uint64, log interface{ Warn(string, ...any) }) {
	step := sm.GetStepId()
	s.settle(ctx, msg, sm, log, known, knownRev, func(rec *schedulerv1.JobRecord) error {
		delete(rec.Running, step)
		delete(rec.RunningProgress, step)
		if strings.HasPrefix(rec.GetJob().GetWaitingReason(), waitingPrefix) {
			// A commit that waited is done (a step still waiting says so again).
			rec.Job.WaitingReason = ""
		}
		if !jobs.StepDone(rec, step) {
			rec.DoneSteps = append(rec.DoneSteps, step)
			job := rec.GetJob()
			if job.Progress == nil {
				job.Progress = &schedulerv1.JobProgress{}
			}
			job.Progress.StepsDone = int64(len(rec.GetDoneSteps()))
			job.Progress.Statistics = jobs.AddStats(job.GetProgress().GetStatistics(), res.Statistics)
		}
		s.finishIfOver(rec)
		return nil
	}, nil)
	s.done.Add(1)
}

// finishIfOver ends a job whose last running step just ended: DONE when every step is done
// (also when a cancel or the maximum execution time came while the last commits were being
// finished: the job did all it had to), CANCELLED (ERROR with an error) when it was
// cancelling.
func (s *Service) finishIfOver(rec *schedulerv1.JobRecord) {
	switch {
	case jobs.AllDone(rec):
		rec.Job.Error = nil
		jobs.Finish(rec, schedulerv1.JobStatus_JOB_STATUS_DONE, s.now())
	case rec.GetJob().GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING && len(rec.GetRunning()) == 0:
		jobs.Finish(rec, schedulerv1.JobStatus_JOB_STATUS_CANCELLED, s.now())
	}
}

// stopped records a step stopped by a cancel or by the maximum execution time.
func (s *Service) stopped(ctx context.Context, msg jetstream.Msg, sm *schedulerv1.StepMessage, maxExec bool, log interface{ Warn(string, ...any) }) {
	step := sm.GetStepId()
	notify := false
	s.settle(ctx, msg, sm, log, nil, 0, func(rec *schedulerv1.JobRecord) error {
		notify = false
		delete(rec.Running, step)
		delete(rec.RunningProgress, step)
		job := rec.GetJob()
		if maxExec && job.GetError() == nil {
			job.Error = jobs.MaxExecutionTimeError(job.GetMaxExecutionTime().AsDuration())
		}
		if job.GetStatus() != schedulerv1.JobStatus_JOB_STATUS_CANCELLING {
			job.Status = schedulerv1.JobStatus_JOB_STATUS_CANCELLING
			notify = len(rec.GetRunning()) > 0
		}
		s.finishIfOver(rec)
		return nil
	}, func(rec *schedulerv1.JobRecord) { s.after(rec, notify) })
}

// retry records a transient failure and hands the step back with a backoff, or fails the job
// when the step has failed too often.
func (s *Service) retry(ctx context.Context, msg jetstream.Msg, sm *schedulerv1.StepMessage, runErr error, code int32, log interface{ Warn(string, ...any) }) {
	step := sm.GetStepId()
	var failures int32
	rec, _, err := s.store.Update(ctx, sm.GetWorkspace(), sm.GetJobId(), func(rec *schedulerv1.JobRecord) error {
		if jobs.Final(rec.GetJob().GetStatus()) {
			return errSkip
		}
		if rec.StepFailures == nil {
			rec.StepFailures = map[string]int32{}
		}
		rec.StepFailures[step]++
		failures = rec.StepFailures[step]
		delete(rec.Running, step)
		delete(rec.RunningProgress, step)
		return nil
	})
	switch {
	case errors.Is(err, errSkip), errors.Is(err, jobs.ErrNotFound):
		_ = msg.Ack()
		return
	case err != nil:
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if int(failures) > s.cfg.MaxRetries {
		// A step that recorded its commit never fails its job (its commit is finished whatever
		// happens); nor does one whose record cannot be read now (NATS away): it may have.
		cctx, ccancel := context.WithTimeout(ctx, kvCallTimeout)
		recorded, herr := s.hasCommit(cctx, jobs.CommitKey(sm.GetWorkspace(), sm.GetJobId(), step))
		ccancel()
		if herr == nil && !recorded {
			s.fail(ctx, msg, sm, fmt.Errorf("%w (after %d attempts)", runErr, failures), code, log)
			return
		}
		log.Warn("step failed again after recording its commit; it is retried until the commit is done", "err", runErr, "failures", failures, "commit_record_err", herr)
		_ = msg.NakWithDelay(min(backoff(failures), commitBackoffMax))
		return
	}
	_ = rec
	log.Warn("step failed; retrying", "err", runErr, "failures", failures, "backoff", backoff(failures))
	_ = msg.NakWithDelay(backoff(failures))
}

// fail fails the job with the step's error: at once when nothing else of it runs, else the job
// goes CANCELLING (its other steps stop) and ends ERROR.
func (s *Service) fail(ctx context.Context, msg jetstream.Msg, sm *schedulerv1.StepMessage, runErr error, code int32, log interface{ Warn(string, ...any) }) {
	step := sm.GetStepId()
	s.failed.Add(1)
	notify := false
	s.settle(ctx, msg, sm, log, nil, 0, func(rec *schedulerv1.JobRecord) error {
		notify = false
		delete(rec.Running, step)
		delete(rec.RunningProgress, step)
		job := rec.GetJob()
		if job.GetError() == nil {
			job.Error = jobs.StepError(step, runErr, code)
		}
		if len(rec.GetRunning()) == 0 {
			jobs.Finish(rec, schedulerv1.JobStatus_JOB_STATUS_ERROR, s.now())
			return nil
		}
		job.Status = schedulerv1.JobStatus_JOB_STATUS_CANCELLING
		notify = true
		return nil
	}, func(rec *schedulerv1.JobRecord) { s.after(rec, notify) })
}

// after tells the other executors to stop a job's steps, and removes a finished job's queued
// steps.
func (s *Service) after(rec *schedulerv1.JobRecord, notify bool) {
	job := rec.GetJob()
	if notify {
		_ = s.deps.NATS.NC.Publish(jobs.SubjectCancel, []byte(jobs.Key(job.GetWorkspace(), job.GetId())))
	}
	if jobs.Final(job.GetStatus()) && !jobs.AllDone(rec) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if st, err := s.deps.NATS.JS.Stream(ctx, jobs.StreamSteps); err == nil {
			_ = st.Purge(ctx, jetstream.WithPurgeSubject(jobs.JobSubjects(job.GetWorkspace(), job.GetId())))
		}
	}
}

// handOver removes a drained step from the job's running steps (so that a cancel meanwhile
// does not wait for it); the next executor to take the step lists it again.
func (s *Service) handOver(ctx context.Context, sm *schedulerv1.StepMessage) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _, _ = s.store.Update(ctx, sm.GetWorkspace(), sm.GetJobId(), func(rec *schedulerv1.JobRecord) error {
		if rec.GetRunning()[sm.GetStepId()] != s.instance {
			return jobs.ErrNoChange
		}
		delete(rec.Running, sm.GetStepId())
		delete(rec.RunningProgress, sm.GetStepId())
		return nil
	})
}
