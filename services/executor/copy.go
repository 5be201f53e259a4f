package executor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/scheduler/client/jobs"
)

// CopyRunner runs the one step of a COPY job: the copy node's rendered query (in the step's
// payload, see jobs.CopyStep) written into the target through the data flow.
//
//	append   stage: staging tables for the target and every Data Source downstream
//	         (dataflow.Prepare), the query into the target's (Load), the materialized views
//	         over the staged rows (Cascade); then the commit record says "committing" and which
//	         staging tables (compare-and-set: of two racing attempts one commits); then every
//	         staged partition is moved into its Data Source (Commit) and the staging dropped.
//	replace  the same staging, holding the target's complete new content and the complete
//	         recomputation of the views downstream of it; the commit record says "swapping"
//	         with the UUIDs of the staging tables; then each Data Source is exchanged with its
//	         staging table (EXCHANGE TABLES) unless it already holds that UUID.
//
// A delivery that finds the commit record only finishes what it says (moves left, swaps not
// done); one that does not finds nothing visible and starts over with its own staging tables
// (named after the job and the attempt, so two live attempts never share one). Before the
// record, a failure or a cancel drops the staging and leaves every Data Source as it was;
// after it, the commit is finished whatever happens: a cancel, the maximum execution time, or
// ClickHouse or NATS away for any time (finishCommit; on servers without MOVE PARTITION, each
// attach is recorded before it runs, see attachCommit). Every staging table of the job is
// dropped when the step ends; an executor starting up drops those of finished jobs whose
// commits are finished (SweepCopyStaging). The copy events are recorded when it commits, or
// by JobFinished when its job ends otherwise.
type CopyRunner struct {
	Conn warehouse.Conn
	// Users runs the copy's query as the workspace's ClickHouse user (nil: on Conn).
	Users   *warehouse.WorkspaceUsers
	Catalog dataflow.Catalog
	// Events records the copy events (nil: they are only logged).
	Events opsevents.Publisher
	Log    *slog.Logger
	// Now is the clock of the events (time.Now when nil).
	Now func() time.Time
	// OpsDatabase holds the ops log: when set, a copy's step ends only once its events are
	// readable there (within EventsWait), so that a client seeing the job done finds them.
	OpsDatabase string
	EventsWait  time.Duration

	// noMove is set once the server refused MOVE PARTITION ... TO TABLE (before 19.17).
	noMove atomic.Bool
}

var _ JobFinisher = (*CopyRunner)(nil)

// Phases of a copy's commit record.
const (
	copyCommitting = "committing"
	copySwapping   = "swapping"
)

// copyCommit is the commit record of a copy step.
type copyCommit struct {
	Phase string `json:"phase"`
	// Key names the staging tables that hold the rows (dataflow.NewForJob).
	Key string `json:"key"`
	// Flow is the flow the step staged: finishing the commit needs exactly it, whatever the
	// catalog says by then (absent from records of earlier versions).
	Flow *dataflow.Flow `json:"flow,omitempty"`
	// Staged are the UUIDs of the staging tables (replace).
	Staged map[string]string `json:"staged,omitempty"`
	// Tables are the rows and bytes staged per Data Source.
	Tables map[string]tableStats `json:"tables"`
	// Read are the figures of reading the query.
	ReadRows  uint64 `json:"read_rows"`
	ReadBytes uint64 `json:"read_bytes"`
	// MemoryUsage and CPUSeconds are the engine's figures for the query, when it reports them.
	MemoryUsage uint64  `json:"memory_usage,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	// The moves' plan (moveCommit).
	moveState
	// The attach fallback's state, on servers without MOVE PARTITION ... TO TABLE.
	attachState
}

type tableStats struct {
	Rows  uint64 `json:"rows"`
	Bytes uint64 `json:"bytes"`
}

// RunStep implements StepRunner.
func (r *CopyRunner) RunStep(ctx context.Context, sc *StepContext) (StepResult, error) {
	start := r.now()
	p, err := jobs.DecodeCopyStep(sc.Payload)
	if err != nil {
		return StepResult{}, Permanent(err)
	}
	job := sc.Job
	// The record decides whether a commit is to be finished: read it whatever happens to the
	// job meanwhile (a cancel must not turn a recorded commit into a stopped step).
	lctx, lstop := drainOnly(ctx)
	c, rev, err := sc.LoadCommit(lctx)
	lstop()
	if err != nil {
		return StepResult{}, err
	}
	var cc *copyCommit
	var flow dataflow.Flow
	if c != nil {
		if cc, err = decodeCopyCommit(c.GetData()); err != nil {
			return StepResult{}, err
		}
		sc.Log.Info("copy step resumes its commit", "phase", cc.Phase, "by_attempt", c.GetAttempt())
	} else {
		for try := 1; ; try++ {
			// The views as they are, with no cut-over under way (see fence.go).
			at, err := sc.settledFence(ctx)
			if err != nil {
				return StepResult{}, err
			}
			if flow, err = dataflow.Resolve(ctx, r.Catalog, job.GetWorkspace(), p.Target, false); err != nil {
				return StepResult{}, catalogError(fmt.Errorf("copy into %s: %w", p.Target, err))
			}
			cc, rev, err = r.stage(ctx, sc, flow, p, rev, at)
			if errors.Is(err, errViewsChanged) && try < 3 {
				sc.Log.Info("a view downstream was cut over while the copy staged; staging again")
				continue
			}
			if err != nil {
				return StepResult{}, err
			}
			break
		}
	}
	if cc.Flow != nil {
		flow = *cc.Flow
	} else if c != nil {
		// A record of an earlier version, without its flow: the catalog's (unchanged, or the
		// commit would not have been recorded by this version).
		if flow, err = dataflow.Resolve(ctx, r.Catalog, job.GetWorkspace(), p.Target, false); err != nil {
			return StepResult{}, catalogError(fmt.Errorf("copy into %s: %w", p.Target, err))
		}
	}
	sc.fault("commit.recorded")
	// Past the commit record: the commit is finished whatever happens to the job's context.
	me, mem, reread := newAttempt(sc), newAttachMemory(), false
	err = finishCommit(ctx, sc, func(cctx context.Context) error {
		if reread {
			c, r2, err := sc.LoadCommit(cctx)
			if err != nil {
				return err
			}
			if c == nil {
				return Permanent(fmt.Errorf("copy commit record %s disappeared", sc.IdempotencyKey))
			}
			if cc, err = decodeCopyCommit(c.GetData()); err != nil {
				return err
			}
			rev = r2
		}
		fresh := !reread && c == nil // this attempt staged and recorded the plan
		reread = true
		return r.finish(cctx, sc, flow, job.GetId(), cc, rev, me, mem, fresh)
	})
	if err != nil {
		return StepResult{}, err
	}
	if len(flow.Views) > 0 {
		sc.leaveFence(ctx)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := r.dropStaging(dctx, sc, flow, cc); err != nil {
		sc.Log.Warn("dropping the copy's staging tables failed; the next executor start drops them", "err", err)
	}
	st := &commonv1.Statistics{ReadRows: cc.ReadRows, ReadBytes: cc.ReadBytes, Elapsed: durationpb.New(time.Since(start))}
	if t, ok := cc.Tables[p.Target]; ok {
		st.WrittenRows, st.WrittenBytes = t.Rows, t.Bytes
	}
	// The step is not finished before its events are stored: they are retried like the commit,
	// however long NATS is away; a drain or a crash leaves the step to a redelivery, which finds
	// the commit finished and publishes them again under the same ids (stored once).
	now := r.now()
	if err := finishCommit(ctx, sc, func(cctx context.Context) error {
		return r.events(cctx, sc.Job, sc.Log, p, flow, cc, opsevents.ResultOK, "", now)
	}); err != nil {
		return StepResult{}, err
	}
	return StepResult{Statistics: st}, nil
}

func decodeCopyCommit(b []byte) (*copyCommit, error) {
	cc := &copyCommit{}
	if err := json.Unmarshal(b, cc); err != nil {
		return nil, Permanent(fmt.Errorf("copy commit record: %w", err))
	}
	return cc, nil
}

// stage builds the staging tables and writes the commit record; it returns the record and its
// revision.
func (r *CopyRunner) stage(ctx context.Context, sc *StepContext, flow dataflow.Flow, p jobs.CopyStep, rev uint64, at viewFence) (*copyCommit, uint64, error) {
	key := fmt.Sprintf("%s#%d", sc.IdempotencyKey, sc.Attempt)
	d, err := dataflow.NewForJob(r.Conn, flow, sc.Job.GetId(), key)
	if err != nil {
		return nil, 0, Permanent(err)
	}
	users, err := r.Users.For(ctx, sc.Job.GetWorkspace(), flow.Database, r.Conn)
	if err != nil {
		return nil, 0, err
	}
	d.RunUsersSQLOn(users)
	cc, err := r.load(ctx, sc, d, flow, p, key)
	if err != nil {
		r.dropQuietly(ctx, sc, d)
		return nil, 0, err
	}
	cc.Flow = &flow
	if len(flow.Views) > 0 {
		if err := sc.enterFence(ctx, at); err != nil {
			r.dropQuietly(ctx, sc, d)
			if errors.Is(err, errViewsChanged) {
				return nil, 0, Transient(err)
			}
			return nil, 0, err
		}
	}
	data, _ := json.Marshal(cc)
	// Once asked, the write is seen through: a cancel must not leave it unknown.
	sctx, sstop := drainOnly(ctx)
	nrev, err := sc.StoreCommit(sctx, data, rev)
	sstop()
	switch {
	case errors.Is(err, ErrCommitConflict):
		// Another attempt committed first: finish its commit instead of this one.
		r.dropQuietly(ctx, sc, d)
		c, crev, lerr := sc.LoadCommit(ctx)
		if lerr != nil {
			return nil, 0, lerr
		}
		if c == nil {
			return nil, 0, Transient(errors.New("copy commit record changed, then disappeared"))
		}
		other, err := decodeCopyCommit(c.GetData())
		return other, crev, err
	case err != nil:
		// A drain interrupted the write, which NATS may have applied all the same: the
		// staging tables stay for the redelivery, which finishes the commit if the record says
		// so (the end of the job drops them otherwise).
		return nil, 0, err
	}
	return cc, nrev, nil
}
func (r *CopyRunner) load(ctx context.Context, sc *StepContext, d *dataflow.Delta, flow dataflow.Flow, p jobs.CopyStep, key string) (*copyCommit, error) {
	prepare := d.Prepare // replace: the staging tables become the Data Sources
	if p.Mode == jobs.CopyAppend {
		prepare = d.PrepareForMoves
	}
	if err := prepare(ctx); err != nil {
		return nil, fmt.Errorf("copy into %s: %w", p.Target, err)
	}
	// Appending: merges of staged parts would only delay the moves (a move waits for the merges
	// of its partition); the parts merge in their Data Source afterwards. (Not for replace: the
	// staging table becomes the Data Source, and the stop would go with it.)
	for _, t := range flow.Tables() {
		if p.Mode != jobs.CopyAppend {
			break
		}
		if _, err := r.Conn.Exec(ctx, "SYSTEM STOP MERGES "+d.Staging(t)); err != nil {
			sc.Log.Debug("staging merges not stopped", "table", t, "err", err)
		}
	}
	var staged map[string]string
	if p.Mode == jobs.CopyReplace {
		// The staging tables' UUIDs are how a redelivery recognises a swap already done.
		var err error
		if _, staged, err = d.TableUUIDs(ctx); err != nil {
			return nil, err
		}
		for t, u := range staged {
			if !dataflow.UsableUUID(u) {
				return nil, Permanent(fmt.Errorf("replace into %s: this ClickHouse gives tables no UUID (an Ordinary database, or a server older than 20.x): an atomic replace needs EXCHANGE TABLES on an Atomic database; use append, or a newer server: %w", t, jobs.ErrUnsupported))
			}
		}
	}
	ld, err := d.Load(ctx, p.SQL, p.Columns)
	if err != nil {
		return nil, fmt.Errorf("copy into %s: %w", p.Target, err)
	}
	sc.Progress(&commonv1.Statistics{ReadRows: ld.ReadRows, ReadBytes: ld.ReadBytes, WrittenRows: ld.WrittenRows, WrittenBytes: ld.WrittenBytes})
	if _, err := d.Cascade(ctx); err != nil {
		return nil, fmt.Errorf("copy into %s: materialized views downstream: %w", p.Target, err)
	}
	var plan *dataflow.MovePlan
	if p.Mode == jobs.CopyAppend && !r.noMove.Load() {
		if plan, err = d.Plan(ctx); err != nil {
			return nil, err
		}
	}
	var pending []dataflow.Move
	if plan != nil {
		pending = plan.Moves
	} else if pending, err = d.Pending(ctx); err != nil {
		return nil, err
	}
	cc := &copyCommit{Key: key, Tables: map[string]tableStats{}, ReadRows: ld.ReadRows, ReadBytes: ld.ReadBytes, MemoryUsage: ld.MemoryUsage, CPUSeconds: ld.CPUTime.Seconds()}
	for _, t := range flow.Tables() {
		cc.Tables[t] = tableStats{}
	}
	cc.Plan = plan
	for _, m := range pending {
		ts := cc.Tables[m.Table]
		ts.Rows += m.Rows
		ts.Bytes += m.Bytes
		cc.Tables[m.Table] = ts
	}
	if p.Mode == jobs.CopyReplace {
		cc.Phase = copySwapping
		cc.Staged = staged
	} else {
		cc.Phase = copyCommitting
	}
	return cc, nil
}

// finish completes a recorded commit: moves what is still staged, or swaps what is not
// swapped. It may be called any number of times; see commit.go.
func (r *CopyRunner) finish(ctx context.Context, sc *StepContext, flow dataflow.Flow, jobID string, cc *copyCommit, rev uint64, me string, mem *attachMemory, fresh bool) error {
	d, err := dataflow.NewForJob(r.Conn, flow, jobID, cc.Key)
	if err != nil {
		return Permanent(err)
	}
	switch cc.Phase {
	case copySwapping:
		return d.SwapOnce(ctx, cc.Staged)
	case copyCommitting:
		if !r.noMove.Load() && cc.Attach == nil && len(cc.Attached) == 0 {
			m := &moveCommit{sc: sc, d: d, conn: r.Conn, record: cc, state: &cc.moveState, rev: rev, fresh: fresh}
			err = m.run(ctx)
			if !dataflow.MoveUnsupported(err) {
				return err
			}
			sc.Log.Info("this server has no MOVE PARTITION TO TABLE: attaching partitions and dropping them from staging")
			r.noMove.Store(true)
		}
		a := &attachCommit{sc: sc, d: d, conn: r.Conn, record: cc, state: &cc.attachState, rev: rev, me: me, mem: mem}
		return a.run(ctx)
	}
	return Permanent(fmt.Errorf("copy commit record: unknown phase %q", cc.Phase))
}

// dropStaging drops the staging tables of the job: on a first attempt that committed its own
// rows, the delta's (no other attempt can have left any); otherwise every one of the job's.
func (r *CopyRunner) dropStaging(ctx context.Context, sc *StepContext, flow dataflow.Flow, cc *copyCommit) error {
	if sc.Attempt == 1 && cc.Key == fmt.Sprintf("%s#%d", sc.IdempotencyKey, sc.Attempt) {
		d, err := dataflow.NewForJob(r.Conn, flow, sc.Job.GetId(), cc.Key)
		if err != nil {
			return err
		}
		return d.Drop(ctx)
	}
	return dataflow.DropJobStaging(ctx, r.Conn, flow.Database, sc.Job.GetId())
}

func (r *CopyRunner) dropQuietly(ctx context.Context, sc *StepContext, d *dataflow.Delta) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := d.Drop(dctx); err != nil {
		sc.Log.Warn("dropping staging tables failed; they are dropped when the job ends or the next executor starts", "err", err)
	}
}

// JobFinished records the events of a copy that ended without committing (error, cancel,
// maximum execution time): one per Data Source of its flow, result error or cancelled, with the
// job's error. A copy that committed recorded its events when it did. Event ids derive from
// the job and the Data Source, so reporting again writes nothing new. An error means some were
// not stored (NATS away): the report is to be made again.
func (r *CopyRunner) JobFinished(ctx context.Context, rec *schedulerv1.JobRecord, commits jetstream.KeyValue) error {
	job := rec.GetJob()
	result := opsevents.ResultError
	switch job.GetStatus() {
	case schedulerv1.JobStatus_JOB_STATUS_ERROR:
	case schedulerv1.JobStatus_JOB_STATUS_CANCELLED:
		result = opsevents.ResultCancelled
	default:
		return nil
	}
	log := r.logger().With("job", job.GetId(), "workspace", job.GetWorkspace())
	var errs []error
	for _, st := range rec.GetSteps() {
		p, err := jobs.DecodeCopyStep(st.GetPayload())
		if err != nil {
			continue
		}
		flow := dataflow.Flow{Target: p.Target}
		e, err := commits.Get(ctx, jobs.CommitKey(job.GetWorkspace(), job.GetId(), st.GetId()))
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			// The record names the cascade's Data Sources: without it the events would miss them.
			errs = append(errs, fmt.Errorf("copy commit record of step %s: %w", st.GetId(), err))
			continue
		}
		if err == nil {
			c := &schedulerv1.StepCommit{}
			if proto.Unmarshal(e.Value(), c) == nil {
				if cc, err := decodeCopyCommit(c.GetData()); err == nil && cc.Flow != nil {
					flow = *cc.Flow
				}
			}
		}
		msg := job.GetError().GetMessage()
		if msg == "" && result == opsevents.ResultCancelled {
			msg = "the job was cancelled"
		}
		if err := r.events(ctx, job, log, p, flow, nil, result, msg, job.GetFinishTime().AsTime()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *CopyRunner) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// events records one copy event per Data Source written: the target, then each Data Source
// the cascade wrote. It returns an error (NATS's) when one was not stored; the ids derive from
// the job and the Data Source, so calling it again stores each event once.
func (r *CopyRunner) events(ctx context.Context, job *schedulerv1.Job, log *slog.Logger, p jobs.CopyStep, flow dataflow.Flow, cc *copyCommit, result, msg string, now time.Time) error {
	exec := opsevents.ExecutionManual
	if job.GetExecutionType() == schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED {
		exec = opsevents.ExecutionScheduled
	}
	ids := opsevents.ResourceIDs(ctx, r.Catalog, job.GetWorkspace(), p.Target)
	var published []string
	var failed error
	for _, t := range flow.Tables() {
		st := &commonv1.Statistics{}
		if cc != nil {
			st.WrittenRows, st.WrittenBytes = cc.Tables[t].Rows, cc.Tables[t].Bytes
			if t == p.Target {
				st.ReadRows, st.ReadBytes = cc.ReadRows, cc.ReadBytes
				st.MemoryUsage = cc.MemoryUsage
				if cc.CPUSeconds > 0 {
					st.CpuTime = durationpb.New(time.Duration(cc.CPUSeconds * float64(time.Second)))
				}
			}
		}
		ev := opsevents.JobEvent(opsevents.JobResult{
			Workspace: job.GetWorkspace(), EventType: opsevents.EventCopy, JobID: job.GetId(),
			CreatedAt: job.GetCreateTime().AsTime(), FinishedAt: now, DataSourceName: t, PipeName: job.GetPipe(),
			DataSourceID: ids[t], PipeID: ids[job.GetPipe()],
			Result: result, Error: msg, Stats: st, Mode: p.Mode, ExecutionType: exec,
		})
		if r.Events == nil {
			log.Info("copy event", "datasource", t, "result", result, "rows", st.GetWrittenRows(), "error", msg)
			continue
		}
		if err := opsevents.Validate(ev); err != nil {
			// No retry can store it: say so rather than retry for ever.
			log.Error("copy event is invalid; not recorded", "datasource", t, "err", err)
			continue
		}
		if err := r.Events.Publish(ctx, ev); err != nil {
			log.Warn("copy event not recorded yet", "datasource", t, "err", err)
			failed = natsError{fmt.Errorf("copy event of %s: %w", t, err)}
			continue
		}
		published = append(published, ev.GetId())
	}
	if failed != nil {
		return failed
	}
	if r.OpsDatabase != "" && len(published) > 0 {
		if !opsevents.WaitWritten(ctx, r.Conn, r.OpsDatabase, job.GetWorkspace(), published, cmp.Or(r.EventsWait, 10*time.Second)) {
			log.Warn("the copy's events are not in the ops log yet; the job is reported finished without waiting longer", "events", len(published))
		}
	}
	return nil
}

func (r *CopyRunner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// catalogError marks the catalog's unavailability as transient; the rest (the target was
// removed, the workspace is gone) fails the job.
func catalogError(err error) error {
	switch status.Code(errors.Unwrap(err)) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return Transient(err)
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		switch se.GRPCStatus().Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
			return Transient(err)
		}
	}
	return err
}

// SweepCopyStaging drops the staging tables of copy jobs that are finished (or no longer
// retained) and whose commits are finished: what executors that died mid-copy left behind and
// no later attempt cleaned. It runs when an executor starts. Staging tables of unfinished jobs
// are left to their steps, and those of a step that recorded its commit without finishing it
// (a refused attach) are kept as long as its commit record (jobs.CommitRetention).
func SweepCopyStaging(ctx context.Context, conn warehouse.Conn, nc *natsx.Conn, log *slog.Logger) error {
	tables, err := dataflow.ListStaging(ctx, conn, "")
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return nil
	}
	kv, err := nc.EnsureKV(ctx, jobs.JobsBucketConfig())
	if err != nil {
		return err
	}
	commits, err := nc.EnsureKV(ctx, jobs.CommitsBucketConfig())
	if err != nil {
		return err
	}
	droppable := map[string]bool{}
	var errs []error
	for _, t := range tables {
		if t.Job == "" {
			continue
		}
		drop, known := droppable[t.Job]
		if !known {
			drop, err = stagingDroppable(ctx, kv, commits, t.Job)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			droppable[t.Job] = drop
		}
		if !drop {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+warehouse.QualifiedName(t.Database, t.Name)); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("dropped the staging table of a finished job", "database", t.Database, "table", t.Name, "job", t.Job)
	}
	return errors.Join(errs...)
}

// stagingDroppable reports whether a job's staging tables may go: the job is finished (or no
// longer recorded) and no step of it has a commit record without being done.
func stagingDroppable(ctx context.Context, jobsKV, commits jetstream.KeyValue, id string) (bool, error) {
	var rec *schedulerv1.JobRecord
	if err := watchKeys(ctx, jobsKV, "*."+id, func(e jetstream.KeyValueEntry) error {
		r, err := jobs.Decode(e.Value())
		rec = r
		return err
	}); err != nil {
		return false, err
	}
	if rec != nil && !jobs.Final(rec.GetJob().GetStatus()) {
		return false, nil
	}
	open := false
	err := watchKeys(ctx, commits, "*."+id+".*", func(e jetstream.KeyValueEntry) error {
		parts := strings.Split(e.Key(), ".")
		if rec == nil || !jobs.StepDone(rec, parts[len(parts)-1]) {
			open = true
		}
		return nil
	})
	return !open, err
}

// watchKeys calls f with the current entry of every key matching filter.
func watchKeys(ctx context.Context, kv jetstream.KeyValue, filter string, f func(jetstream.KeyValueEntry) error) error {
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
