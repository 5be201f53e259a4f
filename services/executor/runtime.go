package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/services/executor/step"
)

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

// delivery is one delivered step being handled.
type delivery struct {
	msg   jetstream.Msg
	sm    *persistencev1.StepMessage
	tries int64
	log   *slog.Logger
}

func (d *delivery) ws() string   { return d.sm.GetWorkspace() }
func (d *delivery) id() string   { return d.sm.GetJobId() }
func (d *delivery) step() string { return d.sm.GetStep().GetId() }

// handle runs one delivered step to its end: skipped, committed, retried later, handed back,
// or failing its job. The message is acknowledged only after the job record says what happened.
func (s *Service) handle(msg jetstream.Msg) {
	ctx := context.Background()
	sm := &persistencev1.StepMessage{}
	if err := proto.Unmarshal(msg.Data(), sm); err != nil {
		s.log.Error("unreadable step message dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	d := &delivery{msg: msg, sm: sm, tries: 1}
	if meta, err := msg.Metadata(); err == nil {
		d.tries = int64(meta.NumDelivered)
	}
	if d.tries > 1 {
		s.metrics.redelivered.Inc()
	}
	d.log = s.log.With("job", d.id(), "step", d.step(), "workspace", d.ws(), "attempt", d.tries)
	now := s.now()

	// Claim the step (jobs.Claim). In a cancelling job only a step that recorded its commit in
	// an earlier attempt runs: a commit, once recorded, is always finished.
	committed := func() (bool, error) { return s.jobs.HasCommit(ctx, d.ws(), d.id(), d.step()) }
	a, err := s.jobs.Store.ApplyFrom(ctx, d.ws(), d.id(), sm.GetRecord(), sm.GetRecordRevision(),
		s.reporting(ctx, d, func(rec *jobs.Record) jobs.Transition {
			return jobs.Claim(d.step(), s.instance, now, committed, s.jobs.OpenCommits(ctx, rec, d.log, d.step()))
		}))
	switch {
	case errors.Is(err, jobs.ErrSkip), errors.Is(err, jobs.ErrNotFound):
		if a.Record != nil && jobs.Final(a.Record.GetJob().GetStatus()) && d.tries > 1 {
			// The executor that finished the job may have died before its report was readable
			// (the step is acknowledged only after the record is written): report again;
			// reports are idempotent by event id.
			if err := s.report(ctx, d, a.Record); err != nil {
				d.log.Warn("the job's end is not reported yet; the step is delivered again to report it", "err", err)
				_ = msg.NakWithDelay(jobReportRetry)
				return
			}
		}
		s.metrics.steps.WithLabelValues("skipped").Inc()
		_ = msg.Ack()
		return
	case errors.Is(err, errNotReported):
		d.log.Warn("the job's end is not reported yet; the step is delivered again to report it", "err", err)
		_ = msg.NakWithDelay(jobReportRetry)
		return
	case err != nil:
		d.log.Warn("claiming a step failed; retrying", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	case a.Effects.Finished:
		// The claim ended a cancelling job: nothing of it runs any more.
		s.jobs.Carry(ctx, a.Record, a.Effects, d.log)
		s.metrics.steps.WithLabelValues("cancelled").Inc()
		_ = msg.Ack()
		return
	}
	if a.Record.GetJob().GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING {
		d.log.Info("finishing a step that recorded its commit, although its job is cancelling")
	}
	s.run(ctx, d, a.Record, a.Revision, now)
}

// run runs a claimed step with its kind's runner and settles its outcome.
func (s *Service) run(ctx context.Context, d *delivery, rec *jobs.Record, rev uint64, now time.Time) {
	runner := s.runners[d.sm.GetKind()]
	if runner == nil {
		s.fail(ctx, d, fmt.Errorf("no step runner for %s in this executor", d.sm.GetKind()), 0)
		return
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	job := rec.GetJob()
	if max := job.GetMaxExecutionTime().AsDuration(); max > 0 && job.GetStartTime() != nil {
		var stop context.CancelFunc
		sctx, stop = context.WithDeadlineCause(sctx, job.GetStartTime().AsTime().Add(max), step.ErrMaxExecution)
		defer stop()
	}
	key := jobs.CommitKey(d.ws(), d.id(), d.step())
	s.mu.Lock()
	s.running[key] = &runningStep{msg: d.sm, start: now, tries: d.tries, cancel: cancel}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, key)
		s.mu.Unlock()
	}()
	sc := step.NewContext(job, d.sm.GetStep(), d.tries, rec.GetStepFailures()[d.step()], d.log, step.Env{
		Commits: s.jobs.Commits, Beat: func() { _ = d.msg.InProgress() }, Faults: s.faults, Fence: s.fence,
	})
	// The heartbeat lives as long as the runner, not as long as the step's context: a step
	// that finishes its commit after a cancel must keep its message from being redelivered.
	hbCtx, hbStop := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go s.heartbeat(hbCtx, sctx, d.msg, sc, cancel, hbDone)
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
		s.settle(ctx, d, rec, rev, func(rec *jobs.Record) jobs.Transition {
			return jobs.CompleteStep(d.step(), res.Statistics, s.now(), s.jobs.OpenCommits(ctx, rec, d.log))
		})
		s.done.Add(1)
	case errors.Is(cause, step.ErrDrain):
		result = "handed_back"
		d.log.Info("step handed back for the drain")
		s.handOver(ctx, d)
		_ = d.msg.Nak()
	case errors.Is(cause, step.ErrJobCancelled), errors.Is(cause, step.ErrMaxExecution):
		result = "cancelled"
		maxExec := errors.Is(cause, step.ErrMaxExecution)
		s.settle(ctx, d, nil, 0, func(rec *jobs.Record) jobs.Transition {
			return jobs.StopStep(d.step(), maxExec, s.now(), s.jobs.OpenCommits(ctx, rec, d.log, d.step()))
		})
	default:
		retry, code := step.Classify(runErr)
		if retry {
			result = "retried"
			s.retry(ctx, d, runErr, code)
		} else {
			result = "failed"
			s.fail(ctx, d, runErr, code)
		}
	}
	s.metrics.steps.WithLabelValues(result).Inc()
}

// heartbeat keeps the message from being redelivered while the runner runs, watches the job
// record for a cancel (in case the notice was lost: the step's context, stepCtx, is then
// cancelled) and writes the step's progress and waiting reason (jobs.Progress).
func (s *Service) heartbeat(ctx, stepCtx context.Context, msg jetstream.Msg, sc *step.Context, cancel context.CancelCauseFunc, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.AckWait / 4)
	defer t.Stop()
	ws, id := sc.Job.GetWorkspace(), sc.Job.GetId()
	missing := 0 // beats in a row that found no record
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = msg.InProgress()
		p, w := sc.TakeProgress(), sc.TakeWaiting()
		uctx, ucancel := context.WithTimeout(ctx, step.KVCallTimeout)
		a, err := s.jobs.Store.Apply(uctx, ws, id, jobs.Progress(sc.Step.GetId(), p, w))
		ucancel()
		if !errors.Is(err, jobs.ErrNotFound) {
			missing = 0
		}
		switch {
		case errors.Is(err, jobs.ErrNotFound) && missing+1 < goneBeats:
			// Not yet a reason to stop (see goneBeats): keep the progress for the next beat.
			missing++
			if p != nil {
				sc.Progress(p)
			}
			if w != nil {
				sc.Waiting(*w)
			}
		case errors.Is(err, jobs.ErrNotFound):
			cancel(step.ErrJobCancelled)
		case err == nil && stopsSteps(a.Record.GetJob().GetStatus()):
			if stepCtx.Err() == nil {
				cancel(step.ErrJobCancelled)
			}
		case err != nil:
			// Not written: keep it for the next heartbeat.
			if p != nil {
				sc.Progress(p)
			}
			if w != nil {
				sc.Waiting(*w)
			}
		}
	}
}

// goneBeats is how many heartbeats in a row must find no job record before the step stops as
// cancelled. Records are read from any replica of the bucket (KV reads are direct gets), and a
// replica behind the job's creation answers "not found" for a moment; a job's record is removed
// only long after the job ended, so a missing record that stays missing is a job that is gone.
const goneBeats = 3

// stopsSteps tells whether a job's status, as a heartbeat reads it, stops the job's running
// steps: cancelling or final. WAITING does not: the running step's own claim made the job
// working, so a record that says waiting is a replica behind that claim, not a cancel (a step
// stopped on it would end its job CANCELLED with no cancel asked and no error).
func stopsSteps(s schedulerv1.JobStatus) bool {
	return s == schedulerv1.JobStatus_JOB_STATUS_CANCELLING || jobs.Final(s)
}

// jobReportRetry is how soon a step whose job's end could not be reported is delivered again.
const jobReportRetry = 5 * time.Second

// errNotReported fails a transition that would end a job whose end its runner could not report:
// the final record is not written, and the step is delivered again (after jobReportRetry) to
// report it.
var errNotReported = errors.New("the job's end is not reported")

// reporting wraps the transition a step's outcome applies: when it ends the job, the job
// kind's runner reports the end (ops events) before the final record is written, so that a
// client that sees the job finished finds its events. A report that is not stored fails the
// transition (errNotReported). A write that conflicts applies the transition, and so reports,
// again: reports are idempotent by event id.
func (s *Service) reporting(ctx context.Context, d *delivery, t func(rec *jobs.Record) jobs.Transition) jobs.Transition {
	return func(rec *jobs.Record) (jobs.Effects, error) {
		eff, err := t(rec)(rec)
		if err == nil && eff.Finished {
			if rerr := s.report(ctx, d, rec); rerr != nil {
				return jobs.Effects{}, fmt.Errorf("%w: %w", errNotReported, rerr)
			}
		}
		return eff, err
	}
}

// report tells the job kind's runner that a job ends (step.Reporter), within a bound, and
// returns its error when the report is not stored. The step's message is kept from
// redelivery meanwhile (the report waits for the events to be readable, which may take
// longer than the ack wait).
func (s *Service) report(ctx context.Context, d *delivery, rec *jobs.Record) error {
	r, ok := s.runners[rec.GetJob().GetKind()].(step.Reporter)
	if !ok {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.EventsWait+10*time.Second)
	defer cancel()
	beat := time.NewTicker(s.cfg.AckWait / 4)
	defer beat.Stop()
	reported := make(chan error, 1)
	go func() {
		reported <- r.JobEnds(rctx, rec, s.jobs)
	}()
	for {
		select {
		case err := <-reported:
			return err
		case <-beat.C:
			_ = d.msg.InProgress()
		}
	}
}

// settle writes the outcome of a step to its job record (the transition t returns for the
// record read), carries out the transition's effects, then acknowledges the message. If the
// record cannot be written, the message is NAKed and the step runs again (its runner's commit
// record makes that safe). known, at revision knownRev, is the record the caller holds (nil:
// read it).
func (s *Service) settle(ctx context.Context, d *delivery, known *jobs.Record, knownRev uint64, t func(rec *jobs.Record) jobs.Transition) {
	a, err := s.jobs.Store.ApplyFrom(ctx, d.ws(), d.id(), known, knownRev, s.reporting(ctx, d, t))
	if errors.Is(err, errNotReported) {
		// The final record is not written: the step runs again (its commit record makes that
		// safe), ends the job again and reports again.
		d.log.Warn("the job's end is not reported yet; the step is delivered again to report it", "err", err)
		_ = d.msg.NakWithDelay(jobReportRetry)
		return
	}
	if err != nil && !errors.Is(err, jobs.ErrNotFound) && !errors.Is(err, jobs.ErrSkip) {
		d.log.Warn("recording the step's outcome failed; it will run again", "err", err)
		_ = d.msg.NakWithDelay(time.Second)
		return
	}
	if err == nil {
		s.jobs.Carry(ctx, a.Record, a.Effects, d.log)
	}
	if err := d.msg.Ack(); err != nil {
		d.log.Warn("acknowledging a step failed; its redelivery will be skipped", "err", err)
	}
}

// retry records a transient failure (jobs.RetryStep) and hands the step back with a backoff,
// or fails the job when the step has failed too often.
func (s *Service) retry(ctx context.Context, d *delivery, runErr error, code int32) {
	a, err := s.jobs.Store.Apply(ctx, d.ws(), d.id(), jobs.RetryStep(d.step()))
	switch {
	case errors.Is(err, jobs.ErrSkip), errors.Is(err, jobs.ErrNotFound):
		_ = d.msg.Ack()
		return
	case err != nil:
		_ = d.msg.NakWithDelay(time.Second)
		return
	}
	failures := a.Record.GetStepFailures()[d.step()]
	if int(failures) > s.cfg.MaxRetries {
		// A step that recorded its commit never fails its job (its commit is finished whatever
		// happens); nor does one whose record cannot be read now (NATS away): it may have.
		cctx, ccancel := context.WithTimeout(ctx, step.KVCallTimeout)
		recorded, herr := s.jobs.HasCommit(cctx, d.ws(), d.id(), d.step())
		ccancel()
		if herr == nil && !recorded {
			s.fail(ctx, d, fmt.Errorf("%w (after %d attempts)", runErr, failures), code)
			return
		}
		d.log.Warn("step failed again after recording its commit; it is retried until the commit is done", "err", runErr, "failures", failures, "commit_record_err", herr)
		_ = d.msg.NakWithDelay(min(step.Backoff(failures), step.CommitBackoffMax))
		return
	}
	d.log.Warn("step failed; retrying", "err", runErr, "failures", failures, "backoff", step.Backoff(failures))
	_ = d.msg.NakWithDelay(step.Backoff(failures))
}

// fail fails the job with the step's error (jobs.FailStep).
func (s *Service) fail(ctx context.Context, d *delivery, runErr error, code int32) {
	s.failed.Add(1)
	jobErr := step.JobError(d.step(), runErr, code)
	s.settle(ctx, d, nil, 0, func(rec *jobs.Record) jobs.Transition {
		return jobs.FailStep(d.step(), jobErr, s.now(), s.jobs.OpenCommits(ctx, rec, d.log, d.step()))
	})
}

// handOver gives a drained step back (jobs.HandOver), so that a cancel meanwhile does not wait
// for it; the next executor to take the step lists it again.
func (s *Service) handOver(ctx context.Context, d *delivery) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _ = s.jobs.Store.Apply(ctx, d.ws(), d.id(), jobs.HandOver(d.step(), s.instance))
}
