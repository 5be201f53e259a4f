// Package jobs is Sluice's job system, which the scheduler and the executors share: job records
// in the sluice_jobs KV bucket, steps on the SLUICE_STEPS work-queue stream, step commit records,
// workspace limits and cancel notices, and the one state machine that changes job records.
//
// Every change of a job record is one of the named transitions in machine.go (create, claim,
// progress, complete step, retry step, fail step, stop step, request cancel, admit, hand over,
// force finish): a pure function over the record (and the facts its caller read, such as
// whether a step recorded a commit), applied with a compare-and-set on the record's revision
// (Store.Apply), so that concurrent writers never lose each other's changes and a decision
// taken on a stale record is taken again on the new one. A transition returns the Effects its
// caller carries out once the record is written (System.Carry): tell the executors to stop a
// job's steps, remove the steps of a finished job from the queue.
//
// The life of a job, and who applies which transition:
//
//	scheduler   Create: WAITING; steps queued at once, or, for limited (copy) jobs, by the
//	            leader in FIFO order within the workspace's limit (Admit)
//	executor    Claim: WAITING → WORKING (start_time), running[step] = instance
//	executor    Progress (heartbeat): what running steps did so far, the waiting reason
//	executor    CompleteStep: done_steps += step, progress += its statistics; the last step
//	            makes the job DONE; then the message is acknowledged
//	executor    RetryStep: a transient failure, step_failures[step]++, NAK with backoff
//	executor    FailStep: ERROR with the step's error (CANCELLING first while other steps run)
//	executor    StopStep: a step stopped by a cancel or the maximum execution time
//	executor    HandOver: a draining executor gives its step back
//	scheduler   RequestCancel: CANCELLED at once when no step runs, else CANCELLING and a
//	            notice to the executors; also the maximum execution time (ending ERROR)
//	leader      ForceFinish: a cancelling job whose executors never reported
//
// A cancelling job ends in one place (end, in machine.go): once no step runs and no step has a
// commit it recorded and has not finished (a commit, once recorded, is always finished: see
// docs/data-movement.md). A step message is acknowledged only after the record says what
// happened, so a crash anywhere leaves the message to be redelivered; a redelivered step whose
// result is already recorded is acknowledged without running.
package jobs

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// Record is a job record (the internal shape; the API shows Record.Job).
type Record = persistencev1.JobRecord

// ErrNotFound is returned for a job that does not exist (or is no longer retained).
var ErrNotFound = errors.New("job not found")

// ErrNoChange, returned by a transition, leaves the record as it is.
var ErrNoChange = errors.New("no change")

// ErrSkip, returned by a transition, says that the step is not to run (its job is finished or
// gone, or the step is done): the caller acknowledges its message.
var ErrSkip = errors.New("skip step")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidName reports whether s can be a workspace name, a job id or a step id: each is a NATS
// subject token and a KV key token.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Key is the KV key of a job record.
func Key(workspace, id string) string { return workspace + "." + id }

// StepSubject is the subject of one step's message.
func StepSubject(workspace, id, step string) string {
	return SubjectSteps + "." + workspace + "." + id + "." + step
}

// JobSubjects matches every step message of a job.
func JobSubjects(workspace, id string) string {
	return SubjectSteps + "." + workspace + "." + id + ".>"
}

// MsgID is the Nats-Msg-Id of a step: publishing a step twice (a retry, a reconcile) within the
// stream's duplicate window stores it once.
func MsgID(id, step string) string { return id + "." + step }

// CommitKey is the KV key of a step's commit record; the idempotency key of the step.
func CommitKey(workspace, id, step string) string { return workspace + "." + id + "." + step }

// StartKey is the KV key of a job's start marker in the commits bucket (populates with a
// truncate or a cut-over). "start" is never a step id: steps are numbered, or named "copy".
func StartKey(workspace, id string) string { return CommitKey(workspace, id, "start") }

// NewID returns a job id: 12 hex digits of Unix milliseconds and 8 random ones, so that ids
// sort by creation time.
func NewID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%012x%08x", now.UnixMilli(), binary.BigEndian.Uint32(b[:]))
}

// RequestID is the id of the job a call with a request_id starts: the time the first call
// claimed the id (so ids still sort by time) and a hash of workspace and request id. A retry,
// also one that took over from a process that died after creating the job, derives the same id
// and finds the job instead of creating a second one.
func RequestID(firstSeen time.Time, workspace, requestID string) string {
	return hashedID(firstSeen, workspace+"\x00"+requestID)
}

// TickID is the job id of a copy schedule's tick: the tick's Unix milliseconds and a hash of
// workspace and pipe. Creating the job of a tick twice — two replicas, a restart, a retry —
// fails on the existing key. salt tells apart the rare pipes of one workspace whose hashes
// collide.
func TickID(workspace, pipe string, tick time.Time, salt int) string {
	return hashedID(tick, fmt.Sprintf("%s\x00%s\x00%d", workspace, pipe, salt))
}

func hashedID(t time.Time, key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return fmt.Sprintf("%012x%08x", t.UnixMilli(), h.Sum32())
}

// Final reports whether a status is a final state.
func Final(s schedulerv1.JobStatus) bool {
	switch s {
	case schedulerv1.JobStatus_JOB_STATUS_DONE, schedulerv1.JobStatus_JOB_STATUS_ERROR,
		schedulerv1.JobStatus_JOB_STATUS_CANCELLED:
		return true
	}
	return false
}

// AllDone reports whether every step of the record is done.
func AllDone(rec *Record) bool { return len(rec.GetDoneSteps()) >= len(rec.GetSteps()) }

// StepDone reports whether a step is done.
func StepDone(rec *Record, step string) bool {
	for _, d := range rec.GetDoneSteps() {
		if d == step {
			return true
		}
	}
	return false
}

// AddStats returns a + b (a may be nil; the result is a new value when a is nil).
func AddStats(a, b *commonv1.Statistics) *commonv1.Statistics {
	if a == nil {
		a = &commonv1.Statistics{}
	}
	if b == nil {
		return a
	}
	a.ReadRows += b.GetReadRows()
	a.ReadBytes += b.GetReadBytes()
	a.WrittenRows += b.GetWrittenRows()
	a.WrittenBytes += b.GetWrittenBytes()
	a.Elapsed = durationpb.New(a.GetElapsed().AsDuration() + b.GetElapsed().AsDuration())
	a.MemoryUsage = max(a.GetMemoryUsage(), b.GetMemoryUsage())
	if b.GetCpuTime() != nil {
		a.CpuTime = durationpb.New(a.GetCpuTime().AsDuration() + b.GetCpuTime().AsDuration())
	}
	return a
}

// MaxExecutionTimeError is the error of a job cancelled by its maximum execution time; the job
// ends ERROR with it.
func MaxExecutionTimeError(d time.Duration) *schedulerv1.JobError {
	return &schedulerv1.JobError{Message: fmt.Sprintf("maximum execution time of %s exceeded: the job was cancelled", d),
		Reason: commonv1.ErrorReason_ERROR_REASON_JOB_TIMEOUT}
}

// CommitWaitingPrefix starts the waiting reason of a job whose commit waits for ClickHouse or
// NATS ("committing, waiting for ClickHouse: ..."); the step's completion clears it.
const CommitWaitingPrefix = "committing, waiting for "
