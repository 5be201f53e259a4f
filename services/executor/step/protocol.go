package step

// The commit protocol of copies and populates (docs/data-movement.md states it whole):
//
//  1. Before its commit record says "committing", a step has changed nothing visible: any
//     failure leaves every Data Source as it was, and the step may fail its job.
//  2. Once the record says "committing", the commit is finished, however long ClickHouse or
//     NATS is away: FinishCommit retries it with backoff (the job shows "committing, waiting
//     for ClickHouse"), never giving up on a retry count or a time budget. Only an executor
//     draining hands it to another executor, which resumes it from the record.
//  3. Every commit statement can be repeated: the moves (`MOVE PARTITION ... TO TABLE`) are
//     planned in the record that says "committing" and decided after a crash from the moved
//     parts' files (package delta's moveCommit: a move is not atomic through a crash of the
//     engine), and where the engine cannot tell, the step refuses; an exchange is recognised
//     by its table UUIDs; an attach (servers without MOVE PARTITION) is recorded as an intent
//     before it runs and resolved after a crash (package delta), and where the server cannot
//     tell, the step refuses rather than risk attaching twice.
//  4. Every NATS KV call of the path is bounded (KVCallTimeout) and retried: a NATS restart
//     costs seconds.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
)

// KVCallTimeout bounds one NATS KV call of a step's commit path. A call that does not answer
// in time is made again: a NATS server that restarts costs a few seconds, not the step.
const KVCallTimeout = 5 * time.Second

// CommitBackoffMax caps the wait between two tries of an interrupted commit.
const CommitBackoffMax = 10 * time.Second

// natsError marks an error of NATS (as opposed to ClickHouse), for the waiting reason.
type natsError struct{ error }

func (e natsError) Unwrap() error { return e.error }

// NATSError marks err as NATS's (FinishCommit then waits "for NATS"); nil stays nil.
func NATSError(err error) error {
	if err == nil {
		return nil
	}
	return natsError{err}
}

// RefusedError ends a commit that cannot go on without risking a duplicate (the one case where
// a recorded commit is not finished): the step fails its job with it, and its staging tables
// are kept for the operator.
type RefusedError struct{ Err error }

func (e RefusedError) Error() string { return e.Err.Error() }
func (e RefusedError) Unwrap() error { return e.Err }

// definitiveKV reports whether a KV error is an answer (not a failure to get one); a
// compare-and-set conflict is one, whatever code the bucket's stream reports it with.
func definitiveKV(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || natsx.IsConflict(err) ||
		errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrInvalidKey)
}

// RetryNATS makes call, each time bounded by KVCallTimeout, until it answers (success or a
// definitive KV error) or ctx ends.
func RetryNATS(ctx context.Context, log *slog.Logger, what string, call func(context.Context) error) error {
	for n := int32(1); ; n++ {
		cctx, cancel := context.WithTimeout(ctx, KVCallTimeout)
		err := call(cctx)
		cancel()
		if err == nil || definitiveKV(err) {
			return err
		}
		if ctx.Err() != nil {
			return natsError{fmt.Errorf("%s: %w", what, err)}
		}
		if log != nil {
			log.Warn("NATS call failed; retrying", "call", what, "try", n, "err", err)
		}
		t := time.NewTimer(min(Backoff(n), 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return natsError{fmt.Errorf("%s: %w", what, err)}
		case <-t.C:
		}
	}
}

// FinishCommit runs commit until it succeeds; the caller's commit record says "committing".
// A cancel or the job's maximum execution time does not stop it (a commit is never left half
// done); a drain returns, so that another executor resumes the commit from its record; a
// refusal (RefusedError) fails the step.
func FinishCommit(ctx context.Context, sc *Context, commit func(ctx context.Context) error) error {
	cctx, stop := DrainOnly(ctx)
	defer stop()
	for n := int32(1); ; n++ {
		err := commit(cctx)
		if err == nil {
			if n > 1 {
				sc.Waiting("")
				sc.Log.Info("commit finished after interruptions", "tries", n)
			}
			return nil
		}
		var refused RefusedError
		if errors.As(err, &refused) {
			return Permanent(err)
		}
		if errors.Is(context.Cause(ctx), ErrDrain) {
			return err
		}
		if errors.Is(err, ErrCommitConflict) && n < 5 {
			continue // another attempt changed the record: the next try reads it
		}
		dep := "ClickHouse"
		var ne natsError
		if errors.As(err, &ne) {
			dep = "NATS"
		}
		sc.Waiting(jobs.CommitWaitingPrefix + dep + ": " + FirstLine(err.Error()))
		wait := min(Backoff(n), CommitBackoffMax)
		sc.Log.Warn("commit interrupted; it is retried until it is done", "waiting_for", dep, "try", n, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		done := ctx.Done()
	sleep:
		for {
			select {
			case <-t.C:
				break sleep
			case <-done:
				if errors.Is(context.Cause(ctx), ErrDrain) {
					t.Stop()
					return err
				}
				done = nil // cancelled: the commit goes on
			}
		}
	}
}

// DrainOnly returns a context that ends only when ctx ends for a drain (not for a cancel or
// the maximum execution time): what a step that may have recorded its commit runs under.
func DrainOnly(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), ErrDrain) {
			cancel(ErrDrain)
		}
	})
	return c, func() { stop(); cancel(nil) }
}

func FirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
