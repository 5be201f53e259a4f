package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/natsx"
)

// Store reads and changes job records (the sluice_jobs bucket).
type Store struct {
	KV jetstream.KeyValue
	// Now is the clock written into records (update times).
	Now func() time.Time
	// stream is the bucket's stream, for Remove.
	stream jetstream.Stream
}

// Decode parses a job record.
func Decode(b []byte) (*Record, error) {
	rec := &Record{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("decode job record: %w", err)
	}
	if rec.GetJob() == nil {
		return nil, errors.New("decode job record: no job")
	}
	return rec, nil
}

// Get returns a job record and its revision.
func (s *Store) Get(ctx context.Context, workspace, id string) (*Record, uint64, error) {
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

// Create stores a new record; jetstream.ErrKeyExists when the job exists.
func (s *Store) Create(ctx context.Context, rec *Record) (uint64, error) {
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

// put writes rec over revision rev (compare-and-set); natsx.IsConflict(err) means another
// writer changed the record first.
func (s *Store) put(ctx context.Context, rec *Record, rev uint64) (uint64, error) {
	rec.Job.UpdateTime = timestamppb.New(s.Now())
	b, err := proto.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return s.KV.Update(ctx, Key(rec.GetJob().GetWorkspace(), rec.GetJob().GetId()), b, rev)
}

// ApplyMsg is ApplyAt as a message to publish (asynchronously, many in flight): t applied to
// a copy of rec, and the write of the result over revision rev to the bucket's stream, which
// the server refuses if the key's last revision is another (an API error IsRevisionMismatch
// recognises). The acknowledgement's sequence is the new revision. t returning ErrNoChange
// (or any error) is returned, with no message.
func (s *Store) ApplyMsg(rec *Record, rev uint64, t Transition) (*Record, *nats.Msg, error) {
	rec = proto.Clone(rec).(*Record)
	if _, err := t(rec); err != nil {
		return nil, nil, err
	}
	rec.Job.UpdateTime = timestamppb.New(s.Now())
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, nil, err
	}
	msg := &nats.Msg{Subject: "$KV." + s.KV.Bucket() + "." + Key(rec.GetJob().GetWorkspace(), rec.GetJob().GetId()), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	return rec, msg, nil
}

// CreateMsg is Create as a message to publish (asynchronously, many in flight): the server
// refuses it when the key has any revision (IsRevisionMismatch), so that a job is created at
// most once however often its creation is sent. The acknowledgement's sequence is the record's
// revision.
func (s *Store) CreateMsg(rec *Record) (*nats.Msg, error) {
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: "$KV." + s.KV.Bucket() + "." + Key(rec.GetJob().GetWorkspace(), rec.GetJob().GetId()), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	return msg, nil
}

// IsRevisionMismatch reports whether err is the server's refusal of a compare-and-set write
// because another writer changed the record first: natsx.IsConflict, and also the bare API
// error of a write published as a message (ApplyMsg), which the KV client has not mapped:
// 10071 from a single server, 10164 from a replicated bucket.
func IsRevisionMismatch(err error) bool {
	if natsx.IsConflict(err) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Applied is a record a transition changed, as written.
type Applied struct {
	Record   *Record
	Revision uint64
	// Effects are what the caller carries out now that the record is written (System.Carry).
	Effects Effects
}

// Apply applies t to the latest record of a job and writes the result with compare-and-set,
// reading and applying again on a conflict, so that concurrent writers (the scheduler, several
// executors) never lose each other's changes. t returning ErrNoChange leaves the record as it
// is (Apply returns the record read and no error); any other error is returned with the record
// t saw. The update time is set on write.
func (s *Store) Apply(ctx context.Context, workspace, id string, t Transition) (Applied, error) {
	return s.ApplyFrom(ctx, workspace, id, nil, 0, t)
}

// ApplyFrom is Apply starting from a record the caller read at revision rev (saving a read when
// nobody changed it since); known is not modified.
func (s *Store) ApplyFrom(ctx context.Context, workspace, id string, known *Record, knownRev uint64, t Transition) (Applied, error) {
	for {
		var rec *Record
		var rev uint64
		var err error
		if known != nil {
			rec, rev = proto.Clone(known).(*Record), knownRev
			known = nil
		} else if rec, rev, err = s.Get(ctx, workspace, id); err != nil {
			return Applied{}, err
		}
		eff, err := t(rec)
		if errors.Is(err, ErrNoChange) {
			return Applied{Record: rec, Revision: rev}, nil
		}
		if err != nil {
			return Applied{Record: rec, Revision: rev}, err
		}
		nrev, err := s.put(ctx, rec, rev)
		if natsx.IsConflict(err) {
			continue
		}
		if err != nil {
			return Applied{}, fmt.Errorf("update job %s: %w", id, err)
		}
		return Applied{Record: rec, Revision: nrev, Effects: eff}, nil
	}
}

// ApplyAt applies t to a copy of rec, which the caller read at revision rev, and writes it if
// the record is still at rev: one try, for a caller that decides from its own view of many
// records (the leader's admission) and must not apply the transition to a record that changed
// under it. natsx.IsConflict(err) when it did.
func (s *Store) ApplyAt(ctx context.Context, rec *Record, rev uint64, t Transition) (Applied, error) {
	rec = proto.Clone(rec).(*Record)
	eff, err := t(rec)
	if errors.Is(err, ErrNoChange) {
		return Applied{Record: rec, Revision: rev}, nil
	}
	if err != nil {
		return Applied{}, err
	}
	nrev, err := s.put(ctx, rec, rev)
	if err != nil {
		return Applied{}, err
	}
	return Applied{Record: rec, Revision: nrev, Effects: eff}, nil
}

// Remove deletes a finished record for good: purging the key's subject on the bucket's stream
// leaves no delete marker behind (finished records are never written again).
func (s *Store) Remove(ctx context.Context, workspace, id string) error {
	return s.stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+BucketJobs+"."+Key(workspace, id)))
}

// Watch follows the records whose keys match filter ("<workspace>.*", or ">" for all).
func (s *Store) Watch(ctx context.Context, filter string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return s.KV.Watch(ctx, filter, opts...)
}

// Public is the job as the API shows it: its progress includes what running steps reported.
func Public(rec *Record) *schedulerv1.Job {
	job := rec.GetJob()
	if len(rec.GetRunningProgress()) == 0 {
		return job
	}
	job = proto.Clone(job).(*schedulerv1.Job)
	if job.Progress == nil {
		job.Progress = &schedulerv1.JobProgress{}
	}
	st := AddStats(nil, job.GetProgress().GetStatistics())
	for _, p := range rec.GetRunningProgress() {
		st = AddStats(st, p)
	}
	job.Progress.Statistics = st
	return job
}
