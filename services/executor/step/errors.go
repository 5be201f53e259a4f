package step

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// Causes of a step's context ending early (context.Cause).
var (
	// ErrJobCancelled: the job was cancelled (or failed elsewhere).
	ErrJobCancelled = errors.New("job cancelled")
	// ErrMaxExecution: the job's maximum execution time passed.
	ErrMaxExecution = errors.New("maximum execution time exceeded")
	// ErrDrain: the executor drains; the step goes to another executor.
	ErrDrain = errors.New("executor draining")
)

// ErrCommitConflict means another attempt of the step wrote its commit record first.
var ErrCommitConflict = errors.New("step commit record changed by another attempt")

// ErrUnsupported marks a step error caused by what the ClickHouse server lacks (the job error's
// reason is UNSUPPORTED).
var ErrUnsupported = errors.New("not supported by this ClickHouse server")

// permanentError and transientError mark how a step's error should be handled.
type permanentError struct{ error }
type transientError struct{ error }

func (e permanentError) Unwrap() error { return e.error }
func (e transientError) Unwrap() error { return e.error }

// Permanent marks err as one that retrying cannot fix: the job fails with it.
func Permanent(err error) error { return permanentError{err} }

// Transient marks err as one that may pass: the step is retried with backoff.
func Transient(err error) error { return transientError{err} }

// Classify decides whether a step's error is worth a retry, and finds its ClickHouse code.
// Marks set by the runner win; otherwise ClickHouse's classification decides: unavailable,
// overloaded, timeouts and memory limits are retried (a runner lowers its resources on a retry
// after a memory limit), the rest fails the job.
func Classify(err error) (retry bool, code int32) {
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

// JobError is the job error of a failed step: its message, ClickHouse's code and the reason,
// from the error's class (memory, time, ClickHouse's refusal, an unsupported server).
func JobError(step string, err error, code int32) *schedulerv1.JobError {
	reason := commonv1.ErrorReason_ERROR_REASON_STEP_FAILED
	switch {
	case errors.Is(err, ErrUnsupported):
		reason = commonv1.ErrorReason_ERROR_REASON_UNSUPPORTED
	case warehouse.ClassOf(err) == warehouse.ClassMemoryLimit:
		reason = commonv1.ErrorReason_ERROR_REASON_MEMORY_LIMIT
	case warehouse.ClassOf(err) == warehouse.ClassTimeout:
		reason = commonv1.ErrorReason_ERROR_REASON_JOB_TIMEOUT
	case warehouse.ClassOf(err) == warehouse.ClassCancelled || errors.Is(err, context.Canceled):
		reason = commonv1.ErrorReason_ERROR_REASON_CANCELLED
	case code != 0:
		reason = commonv1.ErrorReason_ERROR_REASON_CLICKHOUSE_ERROR
	}
	return &schedulerv1.JobError{Message: fmt.Sprintf("step %s: %v", step, err), ClickhouseCode: code, Reason: reason}
}

// Backoff is the delay before retry number n (1-based) of a step that failed transiently.
func Backoff(n int32) time.Duration {
	d := 250 * time.Millisecond << min(n-1, 7)
	return min(d, 30*time.Second)
}

// CatalogError marks the catalog's unavailability as transient; the rest (the target was
// removed, the workspace is gone) fails the job.
func CatalogError(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		switch se.GRPCStatus().Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
			return Transient(err)
		}
	}
	return err
}
