// Package step is what a step runner works with: the Runner contract, the step's Context (its
// job, its work, its commit record, progress, the view fence, fault points), how its errors are
// classified, and the commit protocol's primitives shared by copies and populates
// (docs/data-movement.md): bounded and retried NATS calls, a commit finished whatever happens.
package step

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
)

// Runner runs the steps of one job kind.
//
// The contract: RunStep may be called more than once for the same step (its executor died, the
// step failed transiently, NATS lost the acknowledgement), also after a previous attempt
// committed. A runner makes that safe with the step's commit record: read what a previous
// attempt committed (LoadCommit), do only what is missing, and record the commit with a
// compare-and-set (StoreCommit) as part of committing, so that of two racing attempts only one
// commits. RunStep must return soon after ctx is done (cancel, maximum execution time, drain),
// leaving nothing uncommitted behind.
type Runner interface {
	RunStep(ctx context.Context, c *Context) (Result, error)
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, c *Context) (Result, error)

// RunStep calls f.
func (f RunnerFunc) RunStep(ctx context.Context, c *Context) (Result, error) { return f(ctx, c) }

// Reporter is implemented by runners whose jobs report their end (ops events). The runtime
// calls JobEnds with the job's final record just before it writes it, whichever step's outcome
// ends the job: what the runner reports is readable before a client can see the job finished.
// It may be called again for the same job (a write that conflicted, a redelivery), so what it
// reports must be idempotent (event ids derived from the job). An error means the report is
// not stored (NATS away, or a commit record it needs could not be read): the runtime then does
// not write the final record and delivers the step again, which reports again.
type Reporter interface {
	JobEnds(ctx context.Context, rec *jobs.Record, commits Commits) error
}

// Commits reads the commit records of a job's steps (jobs.System has it).
type Commits interface {
	Commit(ctx context.Context, workspace, id, step string) (*persistencev1.StepCommit, error)
}

// Result is what a committed step reports; it is added to the job's progress.
type Result struct {
	Statistics *commonv1.Statistics
}

// Context is what a step runner is given.
type Context struct {
	// Job is the job as it was when the step started (read only).
	Job *schedulerv1.Job
	// Step is the step's id and work.
	Step *persistencev1.StepSpec
	// Attempt is the delivery attempt, 1 for the first: it counts redeliveries after a crash
	// as well as retries. It is not proof of a first attempt: after the NATS server itself
	// restarts, delivery counts can start again from 1. Use the commit record for that.
	Attempt int64
	// Failures is how many earlier attempts failed with a transient error.
	Failures int32
	// IdempotencyKey is "<workspace>.<job id>.<step id>": the same for every attempt of the
	// step, different for every step (for example ClickHouse's insert_deduplication_token).
	IdempotencyKey string
	// Log carries the job and step.
	Log *slog.Logger

	env      Env
	mu       sync.Mutex
	progress *commonv1.Statistics
	waiting  *string // a change of the waiting reason not yet written to the job record
}

// Env is what the runtime gives every step's Context.
type Env struct {
	// Commits is the job system's commits bucket.
	Commits jetstream.KeyValue
	// Beat tells NATS the step is alive.
	Beat func()
	// Faults are the process's armed fault points (nil: none).
	Faults *Faults
	// Fence is the view fence (nil: none, for steps that cascade through no view).
	Fence *Fence
}

// NewContext is the context of one attempt of a step.
func NewContext(job *schedulerv1.Job, spec *persistencev1.StepSpec, attempt int64, failures int32, log *slog.Logger, env Env) *Context {
	return &Context{
		Job: job, Step: spec, Attempt: attempt, Failures: failures, Log: log, env: env,
		IdempotencyKey: jobs.CommitKey(job.GetWorkspace(), job.GetId(), spec.GetId()),
	}
}

// LoadCommit returns what a previous attempt committed, with the record's revision for
// StoreCommit; (nil, 0, nil) when nothing was committed. The read is bounded and retried until
// NATS answers or ctx ends.
func (c *Context) LoadCommit(ctx context.Context) (*persistencev1.StepCommit, uint64, error) {
	e, err := c.readCommit(ctx)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, Transient(err)
	}
	rec := &persistencev1.StepCommit{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, Permanent(fmt.Errorf("decode commit record %s: %w", c.IdempotencyKey, err))
	}
	return rec, e.Revision(), nil
}

func (c *Context) readCommit(ctx context.Context) (jetstream.KeyValueEntry, error) {
	var e jetstream.KeyValueEntry
	err := RetryNATS(ctx, c.Log, "read commit record "+c.IdempotencyKey, func(ctx context.Context) error {
		var err error
		e, err = c.env.Commits.Get(ctx, c.IdempotencyKey)
		return err
	})
	return e, err
}

// StoreCommit writes the step's commit record (its attempt set to this one) if it is still at
// revision rev (0: if there is none yet) and returns the new revision; ErrCommitConflict when
// another attempt wrote first. The write is bounded and retried until NATS answers or ctx ends;
// a write that NATS applied but whose answer was lost is recognised on the retry (the record
// then holds exactly what this call wrote) and is a success, not a conflict.
func (c *Context) StoreCommit(ctx context.Context, rec *persistencev1.StepCommit, rev uint64) (uint64, error) {
	rec.Attempt = c.Attempt
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return 0, err
	}
	var nrev uint64
	err = RetryNATS(ctx, c.Log, "write commit record "+c.IdempotencyKey, func(ctx context.Context) error {
		var err error
		if rev == 0 {
			nrev, err = c.env.Commits.Create(ctx, c.IdempotencyKey, b)
		} else {
			nrev, err = c.env.Commits.Update(ctx, c.IdempotencyKey, b, rev)
		}
		return err
	})
	if natsx.IsConflict(err) {
		e, gerr := c.readCommit(ctx)
		if gerr == nil && bytes.Equal(e.Value(), b) {
			return e.Revision(), nil
		}
		return 0, ErrCommitConflict
	}
	if err != nil {
		return 0, Transient(err)
	}
	return nrev, nil
}

// Waiting tells the job what the step waits for ("committing, waiting for ClickHouse: ..."),
// or "" when it no longer waits; the next heartbeat writes it as the job's waiting reason.
func (c *Context) Waiting(reason string) {
	c.mu.Lock()
	c.waiting = &reason
	c.mu.Unlock()
}

// TakeWaiting returns the waiting reason not yet written (nil: no change) and forgets it.
func (c *Context) TakeWaiting() *string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.waiting
	c.waiting = nil
	return w
}

// Progress reports what the step has done so far (cumulative for this step, not committed);
// WatchJob shows it with the next heartbeat.
func (c *Context) Progress(st *commonv1.Statistics) {
	c.mu.Lock()
	c.progress = proto.Clone(st).(*commonv1.Statistics)
	c.mu.Unlock()
}

// TakeProgress returns the progress not yet written (nil: none) and forgets it.
func (c *Context) TakeProgress() *commonv1.Statistics {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress
	c.progress = nil
	return p
}

// Heartbeat tells NATS the step is alive now. The runtime heartbeats every quarter of the ack
// wait on its own; call it before a single blocking call longer than that only if the runtime's
// own heartbeat could be starved.
func (c *Context) Heartbeat() {
	if c.env.Beat != nil {
		c.env.Beat()
	}
}

// FaultArmed counts a hit of a fault point whose action the caller runs itself (at a moment
// it watches for, such as "move.inside"), and reports whether this hit is armed to kill: the
// caller then ends the process with KillNow when that moment comes.
func (c *Context) FaultArmed(point string) bool {
	if c.env.Faults == nil {
		return false
	}
	r := c.env.Faults.take(point)
	return r != nil && r.kill
}

// Fault is a fault-injection point for tests (see Faults).
func (c *Context) Fault(point string) {
	if c.env.Faults != nil {
		c.env.Faults.hit(point, c.Log)
	}
}
