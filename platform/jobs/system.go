package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/natsx"
)

// The NATS resources of the job system. This package defines and creates them (Open); the
// scheduler and the executors reach them only through it.
const (
	// StreamSteps is the work-queue stream of steps; a message is removed when acknowledged.
	StreamSteps = "SLUICE_STEPS"
	// SubjectSteps prefixes step subjects: sluice.steps.<workspace>.<job id>.<step id>.
	SubjectSteps = "sluice.steps"
	// BucketJobs holds job records, key "<workspace>.<job id>".
	BucketJobs = "sluice_jobs"
	// StreamRecords is the stream under BucketJobs (NATS names it KV_<bucket>): a reader that
	// follows every change of every record (the jobs log) consumes it.
	StreamRecords = "KV_" + BucketJobs
	// BucketCommits holds step commit records, key "<workspace>.<job id>.<step id>", and job
	// start markers (StartKey).
	BucketCommits = "sluice_step_commits"
	// BucketLimits holds workspace limits, key "<workspace>".
	BucketLimits = "sluice_limits"
	// SubjectCancel carries cancel notices (core NATS, at most once): the payload is the job
	// key. Executors also re-read the job record at every heartbeat, so a lost notice only
	// delays a cancel by one heartbeat.
	SubjectCancel = "sluice.control.cancel"
	// CommitRetention bounds how long commit records are kept: they matter only while their
	// job runs, and a job runs at most its maximum execution time.
	CommitRetention = 72 * time.Hour
	// stepDuplicates is the stream's de-duplication window (Nats-Msg-Id).
	stepDuplicates = 10 * time.Minute
	// inlineRecordMax bounds the size of a job record carried in its step messages.
	inlineRecordMax = 2048
)

// System is a process's handle on the job system.
type System struct {
	Store *Store
	// Commits holds step commit records and job start markers.
	Commits jetstream.KeyValue
	// Limits holds workspace limits.
	Limits jetstream.KeyValue
	// Steps is the work-queue stream.
	Steps jetstream.Stream

	js jetstream.JetStream
	nc *nats.Conn
}

// Open creates the job system's stream and buckets, or updates them to their configuration
// (idempotently: the scheduler and the executors open it at start, whichever comes first).
func Open(ctx context.Context, nc *natsx.Conn, now func() time.Time) (*System, error) {
	steps, err := nc.EnsureStream(ctx, jetstream.StreamConfig{
		Name: StreamSteps, Description: "job steps for executors", Subjects: []string{SubjectSteps + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: stepDuplicates,
	})
	if err != nil {
		return nil, err
	}
	sys := &System{Steps: steps, js: nc.JS, nc: nc.NC}
	kv, err := nc.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: BucketJobs, Description: "job records", History: 1})
	if err != nil {
		return nil, err
	}
	sys.Store = &Store{KV: kv, Now: now}
	if sys.Store.stream, err = nc.JS.Stream(ctx, StreamRecords); err != nil {
		return nil, fmt.Errorf("stream of bucket %s: %w", BucketJobs, err)
	}
	if sys.Commits, err = nc.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket: BucketCommits, Description: "step commit records", History: 1, TTL: CommitRetention,
	}); err != nil {
		return nil, err
	}
	if sys.Limits, err = nc.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: BucketLimits, Description: "workspace job limits", History: 1}); err != nil {
		return nil, err
	}
	return sys, nil
}

// Publish puts the job's steps that are not done on the queue; rev is the record's revision.
// Publishing is idempotent within the stream's duplicate window (Nats-Msg-Id), and executors
// skip steps already done.
func (s *System) Publish(ctx context.Context, rec *Record, rev uint64) error {
	msgs, err := StepMsgs(rec, rev)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if _, err := s.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("queue job %s (%s): %w", rec.GetJob().GetId(), m.Subject, err)
		}
	}
	return nil
}

// PublishStep puts one step on the queue; rec (at revision rev) is the job record to carry in
// the message, or nil.
func (s *System) PublishStep(ctx context.Context, job *schedulerv1.Job, st *persistencev1.StepSpec, rec *Record, rev uint64) error {
	msg, err := StepMsg(job, st, rec, rev)
	if err != nil {
		return err
	}
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("queue job %s step %s: %w", job.GetId(), st.GetId(), err)
	}
	return nil
}

// StepMsg is the queue message of one step, with its Nats-Msg-Id (publishing it twice within
// the stream's duplicate window queues it once), for callers that publish many at once
// (asynchronously); rec (at revision rev) is the job record to carry in the message, or nil.
func StepMsg(job *schedulerv1.Job, st *persistencev1.StepSpec, rec *Record, rev uint64) (*nats.Msg, error) {
	b, err := proto.Marshal(&persistencev1.StepMessage{
		Workspace: job.GetWorkspace(), JobId: job.GetId(), Kind: job.GetKind(), Step: st, Record: rec, RecordRevision: rev,
	})
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: StepSubject(job.GetWorkspace(), job.GetId(), st.GetId()), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, MsgID(job.GetId(), st.GetId()))
	return msg, nil
}

// StepMsgs are the queue messages of the job's steps that are not done (see Publish); the
// record is carried in them when it is small enough.
func StepMsgs(rec *Record, rev uint64) ([]*nats.Msg, error) {
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

// Queued reports whether a step's message is on the queue.
func (s *System) Queued(ctx context.Context, workspace, id, step string) (bool, error) {
	_, err := s.Steps.GetLastMsgForSubject(ctx, StepSubject(workspace, id, step))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Carry carries out the effects of a transition applied to rec: a cancel notice to the
// executors, and the removal of a finished job's queued steps. Both are best effort: executors
// also notice a cancel at their next heartbeat, and skip the steps of a finished job.
func (s *System) Carry(ctx context.Context, rec *Record, eff Effects, log *slog.Logger) {
	job := rec.GetJob()
	if eff.Notify {
		if err := s.nc.Publish(SubjectCancel, []byte(Key(job.GetWorkspace(), job.GetId()))); err != nil && log != nil {
			log.Warn("cancel notice not sent; executors notice at their next heartbeat", "job", job.GetId(), "err", err)
		}
	}
	if eff.Purge {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.Steps.Purge(pctx, jetstream.WithPurgeSubject(JobSubjects(job.GetWorkspace(), job.GetId()))); err != nil && log != nil {
			log.Warn("removing a finished job's queued steps failed; executors will skip them", "job", job.GetId(), "err", err)
		}
	}
}

// OpenCommits is the OpenCommits fact of rec, read from the commits bucket: whether a step of
// the job that is not done has a commit record (true also when the records cannot be read now).
// The steps in except do not count: an executor settling a step's own outcome (a failure, a
// stop) asks about the job's other steps.
func (s *System) OpenCommits(ctx context.Context, rec *Record, log *slog.Logger, except ...string) OpenCommits {
	return func() bool {
		job := rec.GetJob()
		if AllDone(rec) {
			return false
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		keys, err := s.Commits.ListKeysFiltered(cctx, CommitKey(job.GetWorkspace(), job.GetId(), "*"))
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return false
		}
		if err != nil {
			if log != nil {
				log.Warn("listing a job's commit records", "job", job.GetId(), "err", err)
			}
			return true
		}
		steps := map[string]bool{}
		for _, st := range rec.GetSteps() {
			steps[st.GetId()] = true
		}
		open := false
		for k := range keys.Keys() {
			step := k[strings.LastIndexByte(k, '.')+1:]
			if steps[step] && !StepDone(rec, step) && !slices.Contains(except, step) {
				open = true
			}
		}
		return open
	}
}

// HasCommit tells whether a step's commit record exists (an earlier attempt committed, or was
// committing).
func (s *System) HasCommit(ctx context.Context, workspace, id, step string) (bool, error) {
	key := CommitKey(workspace, id, step)
	_, err := s.Commits.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read commit record %s: %w", key, err)
	}
	return true, nil
}

// Commit reads a step's commit record; nil when there is none.
func (s *System) Commit(ctx context.Context, workspace, id, step string) (*persistencev1.StepCommit, error) {
	e, err := s.Commits.Get(ctx, CommitKey(workspace, id, step))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := &persistencev1.StepCommit{}
	if err := proto.Unmarshal(e.Value(), c); err != nil {
		return nil, fmt.Errorf("decode commit record %s: %w", e.Key(), err)
	}
	return c, nil
}

// WorkspaceLimits returns a workspace's stored limits and their revision; (nil, 0, nil) when none.
func (s *System) WorkspaceLimits(ctx context.Context, workspace string) (*schedulerv1.WorkspaceLimits, uint64, error) {
	e, err := s.Limits.Get(ctx, workspace)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read limits of %s: %w", workspace, err)
	}
	l := &schedulerv1.WorkspaceLimits{}
	if err := proto.Unmarshal(e.Value(), l); err != nil {
		return nil, 0, fmt.Errorf("decode limits of %s: %w", workspace, err)
	}
	return l, e.Revision(), nil
}

// Settled reports whether the job with this id (in any workspace) is finished, or no longer
// recorded, and no step of it has a commit record without being done: what its steps left
// behind (staging tables) may go. It reads the records as they are now, without waiting.
func (s *System) Settled(ctx context.Context, id string) (bool, error) {
	var rec *Record
	if err := eachEntry(ctx, s.Store.KV, "*."+id, func(e jetstream.KeyValueEntry) error {
		r, err := Decode(e.Value())
		rec = r
		return err
	}); err != nil {
		return false, err
	}
	if rec != nil && !Final(rec.GetJob().GetStatus()) {
		return false, nil
	}
	open := false
	err := eachEntry(ctx, s.Commits, "*."+id+".*", func(e jetstream.KeyValueEntry) error {
		step := e.Key()[strings.LastIndexByte(e.Key(), '.')+1:]
		if rec == nil || !StepDone(rec, step) {
			open = true
		}
		return nil
	})
	return !open, err
}

// eachEntry calls f with the current entry of every key of kv matching filter.
func eachEntry(ctx context.Context, kv jetstream.KeyValue, filter string, f func(jetstream.KeyValueEntry) error) error {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			return nil
		}
		if err := f(e); err != nil {
			return err
		}
	}
	return nil
}
