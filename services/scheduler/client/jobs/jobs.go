// Package jobs is the protocol the scheduler and the executors share over NATS: job records in
// the sluice_jobs KV bucket (changed only by compare-and-set), steps on the SLUICE_STEPS
// work-queue stream, step commit records, and cancel notices. Executors import it through the
// scheduler's client.
//
// The life of a job, and who writes what:
//
//	scheduler (CreateJob)   record WAITING; steps queued at once, or, for limited (copy) jobs,
//	                        later by the leader in FIFO order within the workspace's limit
//	                        (waiting_reason says why a job waits)
//	executor (step claimed) WAITING → WORKING (start_time), running[step] = instance
//	executor (step ends)    done_steps += step, progress += its statistics; the last step
//	                        makes the job DONE; then the message is acknowledged
//	executor (step fails)   transient: step_failures[step]++, NAK with backoff; permanent or
//	                        too many: ERROR with the error (CANCELLING first if other steps run)
//	scheduler (CancelJob)   WAITING, or WORKING with no step running → CANCELLED and the queued
//	                        steps purged; WORKING → CANCELLING and a notice to the executors,
//	                        whose last stopped step makes it CANCELLED
//	maximum execution time  counted from start_time; the executor's step context has it as
//	                        deadline and the leader's sweep catches the rest: CANCELLING with
//	                        the error, ending ERROR
//	leader (sweep)          removes finished jobs after the retention, finishes cancelling jobs
//	                        whose steps have all stopped, re-queues steps lost before queueing
//
// Every write is a compare-and-set on the record's revision (Store.Update), so concurrent
// writers never lose each other's changes and a decision taken on a stale record fails instead
// of overwriting. A step message is acknowledged only after the record says what happened, so a
// crash anywhere leaves the message to be redelivered; a redelivered step whose result is
// already recorded is acknowledged without running, and a step that runs again relies on its
// commit record (CommitKey) to do only what a previous attempt did not commit.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"hash/fnv"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// NATS resources of the job system.
const (
	// StreamSteps is the work-queue stream of steps; a message is removed when acknowledged.
	StreamSteps = "SLUICE_STEPS"
	// SubjectSteps prefixes step subjects: sluice.steps.<workspace>.<job id>.<step id>.
	SubjectSteps = "sluice.steps"
	// BucketJobs holds job records, key "<workspace>.<job id>".
	BucketJobs = "sluice_jobs"
	// BucketCommits holds step commit records, key "<workspace>.<job id>.<step id>".
	BucketCommits = "sluice_step_commits"
	// BucketLimits holds workspace limits, key "<workspace>".
	BucketLimits = "sluice_limits"
	// SubjectCancel carries cancel notices (core NATS, at most once): the payload is the job
	// key. Executors also re-read the job record at every heartbeat, so a lost notice only
	// delays a cancel by one heartbeat.
	SubjectCancel = "sluice.control.cancel"
	// ConsumerExecutors is the durable pull consumer every executor shares.
	ConsumerExecutors = "sluice-executors"
	// CommitRetention bounds how long commit records are kept: they matter only while their
	// job runs, and a job runs at most its maximum execution time.
	CommitRetention = 72 * time.Hour
)

// ErrNotFound is returned for a job that does not exist (or is no longer retained).
var ErrNotFound = errors.New("job not found")

// ErrNoChange, returned by an Update mutation, leaves the record as it is.
var ErrNoChange = errors.New("no change")

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
	h := fnv.New32a()
	_, _ = fmt.Fprintf(h, "%s\x00%s", workspace, requestID)
	return fmt.Sprintf("%012x%08x", firstSeen.UnixMilli(), h.Sum32())
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

// Store reads and changes job records.
type Store struct {
	KV jetstream.KeyValue
	// Now is the clock written into records.
	Now func() time.Time
}

// Decode parses a job record.
func Decode(b []byte) (*schedulerv1.JobRecord, error) {
	rec := &schedulerv1.JobRecord{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("decode job record: %w", err)
	}
	if rec.GetJob() == nil {
		return nil, errors.New("decode job record: no job")
	}
	return rec, nil
}

// Get returns a job record and its revision.
func (s *Store) Get(ctx context.Context, workspace, id string) (*schedulerv1.JobRecord, uint64, error) {
	if !ValidName(workspace) || !ValidName(id) {
		return nil, 0, ErrNotFound
	}
	e, err := s.KV.Get(ctx, Key(workspace, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read job %s: %w", id, err)
	}
	rec, err := Decode(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return rec, e.Revision(), nil
}

// Create stores a new record.
func (s *Store) Create(ctx context.Context, rec *schedulerv1.JobRecord) (uint64, error) {
	b, err := proto.Marshal(rec)
	if err != nil {
		return 0, err
	}
	rev, err := s.KV.Create(ctx, Key(rec.GetJob().GetWorkspace(), rec.GetJob().GetId()), b)
	if err != nil {
		return 0, fmt.Errorf("create job %s: %w", rec.GetJob().GetId(), err)
	}
	return rev, nil
}

// Put writes rec over revision rev (compare-and-set); natsx.IsConflict(err) means another
// writer changed the record first.
func (s *Store) Put(ctx context.Context, rec *schedulerv1.JobRecord, rev uint64) (uint64, error) {
	b, err := proto.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return s.KV.Update(ctx, Key(rec.GetJob().GetWorkspace(), rec.GetJob().GetId()), b, rev)
}

// PutMsg is Put as a message to publish (asynchronously, many in flight): the write of rec
// over revision rev to the bucket's stream, refused by the server if the key's last revision
// is another (an API error that IsRevisionMismatch recognises). The acknowledgement's sequence
// is the new revision.
func (s *Store) PutMsg(rec *schedulerv1.JobRecord, rev uint64) (*nats.Msg, error) {
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: "$KV." + s.KV.Bucket() + "." + Key(rec.GetJob().GetWorkspace(), rec.GetJob().GetId()), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	return msg, nil
}

// IsRevisionMismatch reports whether err is the server's refusal of a compare-and-set write
// because another writer changed the key first: natsx.IsConflict, and also the bare API error
// of a write published as a message (PutMsg), which the KV client has not mapped: 10071 from a
// single server, 10164 from a replicated bucket.
func IsRevisionMismatch(err error) bool {
	if natsx.IsConflict(err) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Update applies mutate to the latest record and writes it with compare-and-set, re-reading and
// re-applying on conflict, so concurrent writers (scheduler, several executors) never lose each
// other's changes. mutate returning ErrNoChange leaves the record unchanged (Update returns the
// record read and no error); any other error is returned. The update time is set on write.
func (s *Store) Update(ctx context.Context, workspace, id string, mutate func(*schedulerv1.JobRecord) error) (*schedulerv1.JobRecord, uint64, error) {
	return s.UpdateFrom(ctx, workspace, id, nil, 0, mutate)
}

// UpdateFrom is Update starting from a record the caller read at revision rev (saving a read
// when nobody changed it since); known is not modified.
func (s *Store) UpdateFrom(ctx context.Context, workspace, id string, known *schedulerv1.JobRecord, knownRev uint64, mutate func(*schedulerv1.JobRecord) error) (*schedulerv1.JobRecord, uint64, error) {
	for {
		var rec *schedulerv1.JobRecord
		var rev uint64
		var err error
		if known != nil {
			rec, rev = proto.Clone(known).(*schedulerv1.JobRecord), knownRev
			known = nil
		} else if rec, rev, err = s.Get(ctx, workspace, id); err != nil {
			return nil, 0, err
		}
		if err := mutate(rec); err != nil {
			if errors.Is(err, ErrNoChange) {
				return rec, rev, nil
			}
			return rec, rev, err
		}
		rec.Job.UpdateTime = timestamppb.New(s.Now())
		nrev, err := s.Put(ctx, rec, rev)
		if natsx.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("update job %s: %w", id, err)
		}
		return rec, nrev, nil
	}
}

// inlineRecordMax bounds the size of a job record carried in its step messages.
const inlineRecordMax = 2048

// PublishSteps puts the job's steps that are not done on the queue; rev is the record's
// revision. Publishing is idempotent within the stream's duplicate window (Nats-Msg-Id), and
// executors skip steps already done.
func PublishSteps(ctx context.Context, js jetstream.JetStream, rec *schedulerv1.JobRecord, rev uint64) error {
	msgs, err := StepMsgs(rec, rev)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("queue job %s (%s): %w", rec.GetJob().GetId(), m.Subject, err)
		}
	}
	return nil
}

// PublishStep puts one step on the queue; rec (at revision rev) is the job record to carry in
// the message, or nil.
func PublishStep(ctx context.Context, js jetstream.JetStream, job *schedulerv1.Job, st *schedulerv1.StepSpec, rec *schedulerv1.JobRecord, rev uint64) error {
	msg, err := StepMsg(job, st, rec, rev)
	if err != nil {
		return err
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("queue job %s step %s: %w", job.GetId(), st.GetId(), err)
	}
	return nil
}

// StepMsg is the queue message of one step, with its Nats-Msg-Id (publishing it twice within
// the stream's duplicate window queues it once); rec (at revision rev) is the job record to
// carry in the message, or nil.
func StepMsg(job *schedulerv1.Job, st *schedulerv1.StepSpec, rec *schedulerv1.JobRecord, rev uint64) (*nats.Msg, error) {
	b, err := proto.Marshal(&schedulerv1.StepMessage{
		Workspace: job.GetWorkspace(), JobId: job.GetId(), StepId: st.GetId(), Kind: job.GetKind(), Payload: st.GetPayload(),
		Record: rec, RecordRevision: rev,
	})
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: StepSubject(job.GetWorkspace(), job.GetId(), st.GetId()), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, MsgID(job.GetId(), st.GetId()))
	return msg, nil
}

// StepMsgs are the queue messages of the job's steps that are not done (see PublishSteps).
func StepMsgs(rec *schedulerv1.JobRecord, rev uint64) ([]*nats.Msg, error) {
	inline := rec
	if proto.Size(rec) > inlineRecordMax {
		inline, rev = nil, 0
	}
	var msgs []*nats.Msg
	for _, st := range rec.GetSteps() {
		if StepDone(rec, st.GetId()) {
			continue
		}
		m, err := StepMsg(rec.GetJob(), st, inline, rev)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// AllDone reports whether every step of the record is done.
func AllDone(rec *schedulerv1.JobRecord) bool { return len(rec.GetDoneSteps()) >= len(rec.GetSteps()) }

// StepDone reports whether a step is done.
func StepDone(rec *schedulerv1.JobRecord, step string) bool {
	for _, d := range rec.GetDoneSteps() {
		if d == step {
			return true
		}
	}
	return false
}

// Finish moves rec to a final status at now: an error (also a maximum execution time that was
// exceeded) makes a cancelling job end ERROR, otherwise CANCELLED. Running-step bookkeeping is
// cleared.
func Finish(rec *schedulerv1.JobRecord, status schedulerv1.JobStatus, now time.Time) {
	job := rec.GetJob()
	if status == schedulerv1.JobStatus_JOB_STATUS_CANCELLED && job.GetError() != nil {
		status = schedulerv1.JobStatus_JOB_STATUS_ERROR
	}
	job.Status = status
	job.FinishTime = timestamppb.New(now)
	job.WaitingReason = ""
	rec.Running = nil
	rec.RunningProgress = nil
}

// StreamConfig is the SLUICE_STEPS stream. The scheduler and the executors both ensure it at
// start, so that either may start first.
func StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamSteps,
		Description: "job steps for executors",
		Subjects:    []string{SubjectSteps + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  10 * time.Minute,
	}
}

// JobsBucketConfig is the sluice_jobs bucket.
func JobsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketJobs, Description: "job records", History: 1}
}

// CommitsBucketConfig is the sluice_step_commits bucket.
func CommitsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketCommits, Description: "step commit records", History: 1, TTL: CommitRetention}
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

// ErrUnsupported marks a step error caused by what the ClickHouse server lacks (the job error's
// reason is UNSUPPORTED).
var ErrUnsupported = errors.New("not supported by this ClickHouse server")

// StepError is the job error of a failed step: its message, ClickHouse's code and the reason,
// from the error's class (memory, time, ClickHouse's refusal, an unsupported server).
func StepError(step string, err error, code int32) *schedulerv1.JobError {
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
