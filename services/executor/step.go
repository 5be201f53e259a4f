package executor

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
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/scheduler/client/jobs"
)

// StepRunner runs the steps of one job kind. Copies and populates register theirs with
// Runners in Deps.
//
// The contract: RunStep may be called more than once for the same step (its executor died, the
// step failed transiently, NATS lost the acknowledgement), also after a previous attempt
// committed. A runner makes that safe with the step's commit record: read what a previous
// attempt committed (LoadCommit), do only what is missing, and record the commit with a
// compare-and-set (StoreCommit) as part of committing, so that of two racing attempts only one
// commits. RunStep must return soon after ctx is done (cancel, maximum execution time, drain),
// leaving nothing uncommitted behind.
type StepRunner interface {
	RunStep(ctx context.Context, s *StepContext) (StepResult, error)
}

// StepRunnerFunc adapts a function to StepRunner.
type StepRunnerFunc func(ctx context.Context, s *StepContext) (StepResult, error)

// RunStep calls f.
func (f StepRunnerFunc) RunStep(ctx context.Context, s *StepContext) (StepResult, error) {
	return f(ctx, s)
}

// StepResult is what a committed step reports; it is added to the job's progress.
type StepResult struct {
	Statistics *commonv1.Statistics
}

// StepContext is what a step runner is given.
type StepContext struct {
	// Job is the job as it was when the step started (read only).
	Job *schedulerv1.Job
	// StepID and Payload identify the step's work (StepSpec).
	StepID  string
	Payload []byte
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

	commits  jetstream.KeyValue
	beat     func()
	faults   *faultSet
	fence    *fenceStore
	mu       sync.Mutex
	progress *commonv1.Statistics
	waiting  *string // a change of the waiting reason not yet written to the job record
}

// ErrCommitConflict means another attempt of the step wrote its commit record first.
var ErrCommitConflict = errors.New("step commit record changed by another attempt")

// LoadCommit returns what a previous attempt committed, with the record's revision for
// StoreCommit; (nil, 0, nil) when nothing was committed. The read is bounded and retried until
// NATS answers or ctx ends.
func (s *StepContext) LoadCommit(ctx context.Context) (*schedulerv1.StepCommit, uint64, error) {
	var e jetstream.KeyValueEntry
	err := retryNATS(ctx, s.Log, "read commit record "+s.IdempotencyKey, func(ctx context.Context) error {
		var err error
		e, err = s.commits.Get(ctx, s.IdempotencyKey)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, Transient(err)
	}
	c := &schedulerv1.StepCommit{}
	if err := proto.Unmarshal(e.Value(), c); err != nil {
		return nil, 0, fmt.Errorf("decode commit record %s: %w", s.IdempotencyKey, err)
	}
	return c, e.Revision(), nil
}

// StoreCommit writes the step's commit record if it is still at revision rev (0: if there is
// none yet) and returns the new revision; ErrCommitConflict when another attempt wrote first.
// The write is bounded and retried until NATS answers or ctx ends; a write that NATS applied
// but whose answer was lost is recognised on the retry (the record then holds exactly what
// this call wrote) and is a success, not a conflict.
func (s *StepContext) StoreCommit(ctx context.Context, data []byte, rev uint64) (uint64, error) {
	b, err := proto.Marshal(&schedulerv1.StepCommit{Attempt: s.Attempt, Data: data})
	if err != nil {
		return 0, err
	}
	var nrev uint64
	err = retryNATS(ctx, s.Log, "write commit record "+s.IdempotencyKey, func(ctx context.Context) error {
		var err error
		if rev == 0 {
			nrev, err = s.commits.Create(ctx, s.IdempotencyKey, b)
		} else {
			nrev, err = s.commits.Update(ctx, s.IdempotencyKey, b, rev)
		}
		return err
	})
	if natsx.IsConflict(err) {
		var e jetstream.KeyValueEntry
		gerr := retryNATS(ctx, s.Log, "read commit record "+s.IdempotencyKey, func(ctx context.Context) error {
			var err error
			e, err = s.commits.Get(ctx, s.IdempotencyKey)
			return err
		})
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
func (s *StepContext) Waiting(reason string) {
	s.mu.Lock()
	s.waiting = &reason
	s.mu.Unlock()
}

func (s *StepContext) takeWaiting() *string {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.waiting
	s.waiting = nil
	return w
}

// faultArmed counts a hit of a fault point whose action the caller runs itself, and returns
// its rule if this hit is armed.
func (s *StepContext) faultArmed(point string) *faultRule {
	if s.faults == nil {
		return nil
	}
	return s.faults.take(point)
}

// fault is a fault-injection point for tests (see faultSet).
func (s *StepContext) fault(point string) {
	if s.faults != nil {
		s.faults.hit(point, s.Log)
	}
}

// Progress reports what the step has done so far (cumulative for this step, not committed);
// WatchJob shows it with the next heartbeat.
func (s *StepContext) Progress(st *commonv1.Statistics) {
	s.mu.Lock()
	s.progress = proto.Clone(st).(*commonv1.Statistics)
	s.mu.Unlock()
}

func (s *StepContext) takeProgress() *commonv1.Statistics {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.progress
	s.progress = nil
	return p
}

// Heartbeat tells NATS the step is alive now. The runtime heartbeats every quarter of the ack
// wait on its own; call it before a single blocking call longer than that only if the runtime's
// own heartbeat could be starved.
func (s *StepContext) Heartbeat() { s.beat() }

// permanentError and transientError mark how a step's error should be handled.
type permanentError struct{ error }
type transientError struct{ error }

func (e permanentError) Unwrap() error { return e.error }
func (e transientError) Unwrap() error { return e.error }

// Permanent marks err as one that retrying cannot fix: the job fails with it.
func Permanent(err error) error { return permanentError{err} }

// Transient marks err as one that may pass: the step is retried with backoff.
func Transient(err error) error { return transientError{err} }

// classify decides whether a step's error is worth a retry, and finds its ClickHouse code.
// Marks set by the runner win; otherwise ClickHouse's classification decides: unavailable,
// overloaded, timeouts and memory limits are retried (a runner lowers its resources on a retry
// after a memory limit), the rest fails the job.
func classify(err error) (retry bool, code int32) {
	code = warehouse.CodeOf(err)
	var p permanentError
	var t transientError
	switch {
	case errors.As(err, &p):
		return false, code
	case errors.As(err, &t):
		return true, code
	}
	switch warehouse.ClassOf(err) {
	case warehouse.ClassRetryable, warehouse.ClassTimeout, warehouse.ClassMemoryLimit:
		return true, code
	}
	return false, code
}

// runnerFor returns the kind's runner.
func (s *Service) runnerFor(kind schedulerv1.JobKind) StepRunner { return s.runners[kind] }

// keyOf is the job record key of a step message.
func keyOf(m *schedulerv1.StepMessage) string { return jobs.Key(m.GetWorkspace(), m.GetJobId()) }
