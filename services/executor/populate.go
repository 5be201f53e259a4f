package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/scheduler/client/jobs"
)

// PopulateCatalog is what a populate needs from the catalog (its generated client has it).
type PopulateCatalog interface {
	dataflow.Catalog
	GetDataSource(ctx context.Context, in *catalogv1.GetDataSourceRequest, opts ...grpc.CallOption) (*catalogv1.GetDataSourceResponse, error)
	CutOverView(ctx context.Context, in *catalogv1.CutOverViewRequest, opts ...grpc.CallOption) (*catalogv1.CutOverViewResponse, error)
}

// JobFinisher is implemented by step runners that report the end of their jobs (ops events):
// the executor whose step outcome finished a job calls it once the record is final, before it
// acknowledges the step. An error means the report is not stored (NATS away): the step is
// redelivered, and its redelivery reports again, until it is. Reports must be idempotent.
type JobFinisher interface {
	JobFinished(ctx context.Context, rec *schedulerv1.JobRecord, commits jetstream.KeyValue) error
}

// jobFinished tells the job kind's runner that a job ended.
func (s *Service) jobFinished(rec *schedulerv1.JobRecord) error {
	f, ok := s.runnerFor(rec.GetJob().GetKind()).(JobFinisher)
	if !ok || !jobs.Final(rec.GetJob().GetStatus()) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.JobFinished(ctx, rec, s.commits)
}

// PopulateDeps are what the POPULATEVIEW runner is given.
type PopulateDeps struct {
	Warehouse warehouse.Conn
	// Users runs the populate's queries as the workspace's ClickHouse user (nil: on Warehouse).
	Users   *warehouse.WorkspaceUsers
	Catalog PopulateCatalog
	// Events records the `populateview` ops events when a populate job ends (nil: none).
	Events opsevents.Publisher
	// MemoryBudget is the default per-step memory budget in bytes (max_memory_usage of every
	// statement of a step) when the job gives none; 0 leaves ClickHouse's own limit.
	MemoryBudget uint64
	Log          *slog.Logger
}

// jobPlan is what every step of a job asks the catalog: asked once per job and executor (the
// steps of one job use the same flow and query, also if the pipe is pushed meanwhile).
type jobPlan struct {
	flow *dataflow.Flow
	// flowEpoch is the view fence's epoch the flow was resolved at (see fence.go).
	flowEpoch uint64
	query     string
	columns   []string
	hashKey   string
	rendered  bool
}

// maxPlans bounds the plans an executor keeps (one per recent populate job).
const maxPlans = 64

func (r *PopulateRunner) cached(id string) *jobPlan {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.plans == nil {
		r.plans = map[string]*jobPlan{}
	}
	pl := r.plans[id]
	if pl == nil {
		if len(r.plans) >= maxPlans {
			for k := range r.plans {
				delete(r.plans, k)
				break
			}
		}
		pl = &jobPlan{}
		r.plans[id] = pl
	}
	return pl
}

// flow resolves the job's data flow (once per job and view fence epoch: a cut-over of a view
// downstream changes its query).
func (r *PopulateRunner) flow(ctx context.Context, job *schedulerv1.Job, epoch uint64) (dataflow.Flow, error) {
	pl := r.cached(job.GetId())
	r.mu.Lock()
	f, at := pl.flow, pl.flowEpoch
	r.mu.Unlock()
	if f != nil && at == epoch {
		return *f, nil
	}
	flow, err := dataflow.Resolve(ctx, r.d.Catalog, job.GetWorkspace(), job.GetTargetDatasource(), job.GetPopulate().GetOnlyThisView())
	if err != nil {
		return flow, Transient(err)
	}
	r.mu.Lock()
	pl.flow, pl.flowEpoch = &flow, epoch
	r.mu.Unlock()
	return flow, nil
}

// plan renders the job's node query (re-pointed at the source) and finds what sub-ranges hash.
func (r *PopulateRunner) plan(ctx context.Context, job *schedulerv1.Job, source, db string) (jobPlan, error) {
	pl := r.cached(job.GetId())
	r.mu.Lock()
	done := *pl
	r.mu.Unlock()
	if done.rendered {
		return done, nil
	}
	// The node's own query, without the cut-over its view may handle: the populate handles
	// the rows up to it.
	rn, err := r.d.Catalog.RenderNode(ctx, &catalogv1.RenderNodeRequest{Workspace: job.GetWorkspace(), Pipe: job.GetPipe(), Node: job.GetNode(), WithoutCutover: true})
	if err != nil {
		return done, Transient(fmt.Errorf("query of %s: %w", job.GetPipe(), err))
	}
	query, err := repointSource(rn.GetSql(), db, source)
	if err != nil {
		return done, Permanent(fmt.Errorf("query of %s: %w", job.GetPipe(), err))
	}
	ds, err := r.d.Catalog.GetDataSource(ctx, &catalogv1.GetDataSourceRequest{Workspace: job.GetWorkspace(), Name: source})
	if err != nil {
		return done, Transient(fmt.Errorf("source %s: %w", source, err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pl.query, pl.hashKey, pl.columns, pl.rendered = query, hashKey(ds.GetDatasource()), nil, true
	for _, c := range rn.GetColumns() {
		pl.columns = append(pl.columns, c.GetName())
	}
	return *pl, nil
}

// PopulateRunner runs the steps of POPULATEVIEW jobs: one source partition each, through the
// data flow (package dataflow), exactly once. See docs/populate.md.
//
// A step of partition p of source S, for the materialized node N (S → T):
//  1. If the job truncates or cuts over, make sure the job's start was done before any step
//     loads (one step does it, recorded in the job's start marker; the others wait for it):
//     see ensureStarted.
//  2. Stage: create staging tables for T and every Data Source downstream of it (none with
//     only_this_view); insert N's query, with S re-pointed at
//     `(SELECT * FROM S WHERE _partition_id = 'p' [AND (condition)] [AND cut-over])`, into T's
//     staging table; then cascade the downstream views over the staged rows in the catalog's
//     topological order.
//  3. Record "committing" with the flow and the staged figures in the step's commit record
//     (compare-and-set), then move the staged partitions into their Data Sources, upstream
//     first, and drop the staging tables.
//
// Each attempt stages into staging tables of its own (named after the job, the step and the
// attempt), and the record names them. A redelivered step that finds "committing" only
// finishes the moves from the tables the record names (they say what is left); any other
// redelivery starts again from 2 with new tables. An attempt that loses the race to record
// drops its own tables; a late attempt can thus never add rows to a recorded commit. Every
// source row is counted once in T and downstream.
//
// Memory: the first attempt's settings come from the partition's size (system.parts) against
// the budget. A staging statement that fails with MEMORY_LIMIT_EXCEEDED restages with fewer
// threads and smaller blocks, then split into sub-ranges of the partition
// (`cityHash64(<sorting key>) % N = i`, N = 2, 4, ... 64), all into the same staging table;
// restaging always starts from empty staging tables, so nothing is written twice. Only when
// the largest split still fails does the step fail, naming the partition.
type PopulateRunner struct {
	d PopulateDeps

	mu    sync.Mutex
	plans map[string]*jobPlan // by job id
	// noMove is set once the server refused MOVE PARTITION ... TO TABLE (before 19.17).
	noMove atomic.Bool
}

var _ StepRunner = (*PopulateRunner)(nil)

// NewPopulateRunner returns the POPULATEVIEW runner.
func NewPopulateRunner(d PopulateDeps) *PopulateRunner {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &PopulateRunner{d: d}
}

// populateCommit is a populate step's commit record (StepCommit.data, JSON).
type populateCommit struct {
	// State is "committing": the staged partitions are being moved (only ever set once).
	State string `json:"state"`
	// Flow is the flow the step staged (moves must use exactly it, whatever the catalog says now).
	Flow dataflow.Flow `json:"flow"`
	// Stage is the attempt whose staging tables hold the rows (dataflow.NewForAttempt); empty
	// in records of earlier versions, whose staging tables were named after the step alone.
	Stage string `json:"stage,omitempty"`
	// Tables are the rows and bytes staged per Data Source, in flow order.
	Tables []tableFigures `json:"tables"`
	// Read are the rows and bytes the step read.
	ReadRows  uint64 `json:"read_rows"`
	ReadBytes uint64 `json:"read_bytes"`
	// Split is the number of sub-ranges the partition was staged in (0: one statement).
	Split int `json:"split,omitempty"`
	// Level is the resource level the staging succeeded with.
	Level int `json:"level,omitempty"`
	// The moves' plan (moveCommit).
	moveState
	// The attach fallback's state, on servers without MOVE PARTITION ... TO TABLE.
	attachState
}

type tableFigures struct {
	Table string `json:"table"`
	Rows  uint64 `json:"rows"`
	Bytes uint64 `json:"bytes"`
}

const stateCommitting = "committing"

// maxSplit is the largest number of sub-ranges a partition is split into before its step fails.
const maxSplit = 64

// truncateStep is the pseudo step id of a job's start marker in the commits bucket.
const truncateStep = "truncate"

// RunStep implements StepRunner.
func (r *PopulateRunner) RunStep(ctx context.Context, s *StepContext) (StepResult, error) {
	p, err := jobs.DecodePopulateStep(s.Payload)
	if err != nil {
		return StepResult{}, Permanent(err)
	}
	job := s.Job
	opts := job.GetPopulate()
	begin := time.Now()
	// The record decides whether a commit is to be finished: read it whatever happens to the
	// job meanwhile (a cancel must not turn a recorded commit into a stopped step).
	lctx, lstop := drainOnly(ctx)
	prev, rev, err := s.LoadCommit(lctx)
	lstop()
	if err != nil {
		return StepResult{}, err
	}
	if prev != nil {
		var pc populateCommit
		if err := json.Unmarshal(prev.GetData(), &pc); err != nil {
			return StepResult{}, Permanent(fmt.Errorf("commit record of %s: %w", s.IdempotencyKey, err))
		}
		if pc.State == stateCommitting {
			s.Log.Info("populate step was committing; finishing its moves", "partition", p.Partition)
			return r.commit(ctx, s, pc, rev, nil)
		}
	}
	s.fault("stage.begin")
	flow, err := r.flow(ctx, job, 0)
	if err != nil {
		return StepResult{}, err
	}
	var started jobStart
	if opts.GetTruncate() || opts.GetCutoverSnapshot() || opts.GetCutoverColumn() != "" {
		if started, err = r.ensureStarted(ctx, s, flow, p.Source); err != nil {
			return StepResult{}, err
		}
	}
	// The views downstream as they are, with no cut-over under way (see fence.go).
	at, err := s.settledFence(ctx)
	if err != nil {
		return StepResult{}, err
	}
	if flow, err = r.flow(ctx, job, at.Epoch); err != nil {
		return StepResult{}, err
	}
	st, err := r.newStage(ctx, s, p, flow)
	if err != nil {
		return StepResult{}, err
	}
	if opts.GetCutoverSnapshot() {
		parts, err := r.snapshotParts(ctx, flow.Database, p, started.MaxBlock)
		if err != nil {
			return StepResult{}, err
		}
		if len(parts) == 0 {
			st.filter = "0"
		} else {
			q := make([]string, len(parts))
			for i, n := range parts {
				q[i] = warehouse.QuoteString(n)
			}
			st.filter = strings.Replace(st.filter, "_partition_id = "+warehouse.QuoteString(p.Partition), "_part IN ("+strings.Join(q, ", ")+")", 1)
			if p.Partition == "" || !strings.Contains(st.filter, "_part IN") {
				st.filter = joinConds("_part IN ("+strings.Join(q, ", ")+")", st.filter)
			}
		}
	}
	prepared := time.Since(begin)
	pc, err := st.stage(ctx)
	if err != nil {
		_ = st.delta.Drop(context.WithoutCancel(ctx))
		return StepResult{}, err
	}
	pc.Stage = st.token
	staged := time.Since(begin)
	if len(flow.Views) > 0 {
		if err := s.enterFence(ctx, at); err != nil {
			_ = st.delta.Drop(context.WithoutCancel(ctx))
			if errors.Is(err, errViewsChanged) {
				return StepResult{}, Transient(err)
			}
			return StepResult{}, err
		}
	}
	data, _ := json.Marshal(pc)
	// Once asked, the write is seen through: a cancel must not leave it unknown.
	sctx, sstop := drainOnly(ctx)
	nrev, err := s.StoreCommit(sctx, data, rev)
	sstop()
	if err != nil {
		if errors.Is(err, ErrCommitConflict) {
			// Another attempt recorded first: its staging tables hold the rows to commit;
			// this attempt's own go, and the step runs again to follow that record.
			_ = st.delta.Drop(context.WithoutCancel(ctx))
			return StepResult{}, Transient(err)
		}
		// A drain interrupted the write, which NATS may have applied all the same: the
		// staging tables stay; the redelivery finishes the commit if the record says so, and
		// restages into tables of its own otherwise (the attempt that finishes the step's
		// commit drops these).
		return StepResult{}, err
	}
	recorded := time.Since(begin)
	s.fault("commit.recorded")
	res, err := r.commit(ctx, s, pc, nrev, st)
	s.Log.Debug("populate step", "partition", p.Partition, "prepared", prepared, "staged", staged, "recorded", recorded, "committed", time.Since(begin), "level", pc.Level, "split", pc.Split)
	return res, err
}

// commit finishes a recorded commit (see commit.go): it moves what the step staged into the
// Data Sources, upstream first, or attaches it on servers without MOVE PARTITION, retrying until
// it is done, and drops the staging tables. rev is the commit record's revision; st, for the
// attempt that staged, lists the moves without reading them again.
func (r *PopulateRunner) commit(ctx context.Context, s *StepContext, pc populateCommit, rev uint64, st *stage) (StepResult, error) {
	me, mem, first := newAttempt(s), newAttachMemory(), true
	var d *dataflow.Delta
	err := finishCommit(ctx, s, func(cctx context.Context) error {
		if !first {
			c, r2, err := s.LoadCommit(cctx)
			if err != nil {
				return err
			}
			if c == nil {
				return Permanent(fmt.Errorf("commit record of %s disappeared", s.IdempotencyKey))
			}
			pc = populateCommit{}
			if err := json.Unmarshal(c.GetData(), &pc); err != nil {
				return Permanent(fmt.Errorf("commit record of %s: %w", s.IdempotencyKey, err))
			}
			rev = r2
		}
		var err error
		if d, err = recordedDelta(r.d.Warehouse, s, pc); err != nil {
			return Permanent(err)
		}
		fresh := first && st != nil
		first = false
		if !r.noMove.Load() && pc.Attach == nil && len(pc.Attached) == 0 {
			m := &moveCommit{sc: s, d: d, conn: r.d.Warehouse, record: &pc, state: &pc.moveState, rev: rev, fresh: fresh}
			err = m.run(cctx)
			rev = m.rev
			if !dataflow.MoveUnsupported(err) {
				return err
			}
			s.Log.Info("this server has no MOVE PARTITION TO TABLE: attaching partitions and dropping them from staging")
			r.noMove.Store(true)
		}
		a := &attachCommit{sc: s, d: d, conn: r.d.Warehouse, record: &pc, state: &pc.attachState, rev: rev, me: me, mem: mem}
		return a.run(cctx)
	})
	if err != nil {
		return StepResult{}, err
	}
	if len(pc.Flow.Views) > 0 {
		s.leaveFence(ctx)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	err = errors.Join(d.Drop(dctx), dataflow.DropStepStaging(dctx, r.d.Warehouse, pc.Flow.Database, s.Job.GetId(), s.IdempotencyKey))
	if err != nil {
		s.Log.Warn("dropping staging tables after the commit failed; an executor starting drops them once the job is finished", "err", err)
	}
	return StepResult{Statistics: pc.statistics()}, nil
}

// recordedDelta is the delta whose staging tables a commit record names.
func recordedDelta(conn warehouse.Conn, s *StepContext, pc populateCommit) (*dataflow.Delta, error) {
	if pc.Stage == "" {
		return dataflow.New(conn, pc.Flow, s.IdempotencyKey)
	}
	return dataflow.NewForAttempt(conn, pc.Flow, s.Job.GetId(), s.IdempotencyKey, pc.Stage)
}

// statistics are the step's figures for the job's progress: read rows and bytes of the
// partition, and the rows and bytes written into the target.
func (pc populateCommit) statistics() *commonv1.Statistics {
	st := &commonv1.Statistics{ReadRows: pc.ReadRows, ReadBytes: pc.ReadBytes}
	for _, t := range pc.Tables {
		if t.Table == pc.Flow.Target {
			st.WrittenRows += t.Rows
			st.WrittenBytes += t.Bytes
		}
	}
	return st
}

// jobStart is a populate job's start marker (commits bucket, key <ws>.<job>.truncate, JSON):
// the work done once per job before any step loads, and its outcome.
type jobStart struct {
	// Owner is the idempotency key of the step doing the work; empty once it is done.
	Owner string `json:"owner,omitempty"`
	Done  bool   `json:"done,omitempty"`
	// MaxBlock is the source's highest block number at the snapshot cut-over: the steps read
	// the rows of parts whose blocks are all at or below it.
	MaxBlock uint64 `json:"max_block,omitempty"`
}

// ensureStarted does the job's start once, before any step loads: truncate empties the target;
// a snapshot cut-over stops the source's merges, empties the flow's Data Sources and records
// the source's highest block number, retrying until no insert landed in between. The first step
// to get here creates the marker and does the work; the others wait until it is done. A
// redelivery of the owning step (same idempotency key) does it again, which is harmless: no
// step has loaded, let alone moved, anything before the marker is done.
func (r *PopulateRunner) ensureStarted(ctx context.Context, s *StepContext, flow dataflow.Flow, source string) (jobStart, error) {
	key := jobs.CommitKey(s.Job.GetWorkspace(), s.Job.GetId(), truncateStep)
	mine, _ := json.Marshal(jobStart{Owner: s.IdempotencyKey})
	for {
		var rev uint64
		e, err := s.commits.Get(ctx, key)
		var js jobStart
		if err == nil {
			if jerr := json.Unmarshal(e.Value(), &js); jerr != nil {
				return js, Permanent(fmt.Errorf("job start marker: %w", jerr))
			}
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err = s.commits.Create(ctx, key, mine)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return js, Transient(fmt.Errorf("job start marker: %w", err))
			}
		case err != nil:
			return js, Transient(fmt.Errorf("job start marker: %w", err))
		case js.Done:
			return js, nil
		case js.Owner == s.IdempotencyKey:
			rev = e.Revision()
		default:
			select {
			case <-ctx.Done():
				return js, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		done, err := r.start(ctx, s, flow, source)
		if err != nil {
			return done, err
		}
		b, _ := json.Marshal(done)
		if _, err := s.commits.Update(ctx, key, b, rev); err != nil {
			return done, Transient(fmt.Errorf("job start marker: %w", err))
		}
		return done, nil
	}
}

// start is the work of ensureStarted.
func (r *PopulateRunner) start(ctx context.Context, s *StepContext, flow dataflow.Flow, source string) (jobStart, error) {
	opts := s.Job.GetPopulate()
	tables := []string{flow.Target}
	if opts.GetCutoverSnapshot() {
		tables = flow.Tables()
	}
	if opts.GetCutoverColumn() != "" {
		return jobStart{Done: true}, r.cutOverColumn(ctx, s, flow, source)
	}
	truncate := func() error { return truncateOn(ctx, r.d.Warehouse, flow.Database, tables) }
	if !opts.GetCutoverSnapshot() {
		if err := truncate(); err != nil {
			return jobStart{}, err
		}
		s.Log.Info("populate truncated its target", "target", flow.Target)
		return jobStart{Done: true}, nil
	}
	src := warehouse.QualifiedName(flow.Database, source)
	if _, err := r.d.Warehouse.Exec(ctx, "SYSTEM STOP MERGES "+src); err != nil {
		return jobStart{}, fmt.Errorf("stop merges of %s: %w", source, err)
	}
	// The emptying and the snapshot must see the same inserts: on the embedded engine both run
	// back to back with nothing in between (Sequencer); on a server, until no insert landed
	// between them.
	if seq, ok := r.d.Warehouse.(warehouse.Sequencer); ok {
		var block uint64
		err := seq.Sequence(ctx, func(c warehouse.Conn) error {
			if err := truncateOn(ctx, c, flow.Database, tables); err != nil {
				return err
			}
			var err error
			block, err = maxBlock(ctx, c, flow.Database, source)
			return err
		})
		if err != nil {
			return jobStart{}, err
		}
		s.Log.Info("populate cut over", "source", source, "max_block", block, "emptied", tables)
		return jobStart{Done: true, MaxBlock: block}, nil
	}
	for try := 1; ; try++ {
		before, err := maxBlock(ctx, r.d.Warehouse, flow.Database, source)
		if err != nil {
			return jobStart{}, err
		}
		if err := truncate(); err != nil {
			return jobStart{}, err
		}
		after, err := maxBlock(ctx, r.d.Warehouse, flow.Database, source)
		if err != nil {
			return jobStart{}, err
		}
		if before == after {
			s.Log.Info("populate cut over", "source", source, "max_block", after, "emptied", tables, "tries", try)
			return jobStart{Done: true, MaxBlock: after}, nil
		}
		if try >= 100 {
			return jobStart{}, Permanent(fmt.Errorf("snapshot cut-over of %s: inserts landed between every attempt (%d)", source, try))
		}
	}
}

func truncateOn(ctx context.Context, c warehouse.Conn, db string, tables []string) error {
	for _, t := range tables {
		if _, err := c.Exec(ctx, "TRUNCATE TABLE "+warehouse.QualifiedName(db, t)); err != nil {
			return fmt.Errorf("truncate %s: %w", t, err)
		}
	}
	return nil
}

// cutOverColumn is the start of a populate with a cut-over column:
//
//  1. the catalog cuts the view over (CutOverView): it checks the column, the value and that
//     no source row is after it yet, changes the view to handle only the rows after it (part
//     of the view's definition from then on, so that every cascade through it does the
//     same), stops the merges of the flow's Data Sources and reads their highest block
//     numbers; a check that fails leaves everything as it was, and one that fails after the
//     change reverts it. Asked again for the same job, it returns what it recorded.
//  2. each Data Source of the flow (the target, and those downstream unless only_this_view)
//     loses the parts up to its recorded block: what the view wrote before the cut-over, which
//     the populate writes again. Parts written after it (the view handling new rows) stay.
//     Dropping a part that is gone already does nothing, so a redelivery does the same. Then
//     their merges start again.
//  3. it waits until the cut-over has passed, so that the rows up to it are in the source.
func (r *PopulateRunner) cutOverColumn(ctx context.Context, s *StepContext, flow dataflow.Flow, source string) error {
	job := s.Job
	col, val := job.GetPopulate().GetCutoverColumn(), job.GetPopulate().GetCutoverValue()
	// No commit that cascades through the views (staged with the view as it was) may land
	// after the cut-over: the fence makes new ones stage again and waits for those under way.
	if s.fence != nil {
		if err := s.fence.beginCut(ctx, job.GetWorkspace(), job.GetId()); err != nil {
			return err
		}
		defer func() {
			if err := s.fence.endCut(context.WithoutCancel(ctx), job.GetWorkspace(), job.GetId()); err != nil {
				s.Log.Warn("clearing the view fence failed; it is cleared when the job ends", "err", err)
			}
		}()
	}
	resp, err := r.d.Catalog.CutOverView(ctx, &catalogv1.CutOverViewRequest{
		Workspace: job.GetWorkspace(), Pipe: job.GetPipe(), Node: job.GetNode(),
		Column: col, Value: val, JobId: job.GetId(), Tables: flow.Tables(),
	})
	if err != nil {
		return catalogError(fmt.Errorf("cut-over of the view of %s: %w", job.GetPipe(), err))
	}
	for _, t := range flow.Tables() {
		if err := dropPartsUpTo(ctx, r.d.Warehouse, flow.Database, t, resp.GetBlocks()[t]); err != nil {
			return err
		}
		if _, err := r.d.Warehouse.Exec(ctx, "SYSTEM START MERGES "+warehouse.QualifiedName(flow.Database, t)); err != nil {
			return fmt.Errorf("start merges of %s: %w", t, err)
		}
	}
	if s.fence != nil {
		// Commits cascade again, through the view as it is now.
		if err := s.fence.endCut(ctx, job.GetWorkspace(), job.GetId()); err != nil {
			return err
		}
	}
	src := warehouse.QualifiedName(flow.Database, source)
	after := warehouse.QuoteIdent(col) + " > " + warehouse.QuoteString(val)
	s.Log.Info("populate cut the view over; waiting for the cut-over to pass", "view", job.GetPipe(), "cutover", after, "emptied_up_to", resp.GetBlocks())
	wait := "SELECT (SELECT count() FROM " + src + " WHERE " + after + ") > 0 OR ifNull(now() > parseDateTimeBestEffortOrNull(" + warehouse.QuoteString(val) + ") + 1, 0)"
	for {
		res, err := r.d.Warehouse.Query(ctx, wait)
		if err != nil {
			return err
		}
		if len(res.Rows) == 1 && toUint64(res.Rows[0][0]) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// dropPartsUpTo drops a table's parts whose blocks are all at or below block: what it held
// when a view was cut over. A part that also holds later blocks (merged across the cut-over,
// which stopped merges prevent unless ClickHouse restarted meanwhile) cannot be split: the
// populate fails rather than drop rows the view wrote after the cut-over.
func dropPartsUpTo(ctx context.Context, c warehouse.Conn, db, table string, block uint64) error {
	res, err := c.Query(ctx, fmt.Sprintf("SELECT name, max_block_number FROM system.parts WHERE database = %s AND table = %s AND active AND min_block_number <= %d ORDER BY name",
		warehouse.QuoteString(db), warehouse.QuoteString(table), block))
	if err != nil {
		return fmt.Errorf("parts of %s: %w", table, err)
	}
	for _, row := range res.Rows {
		name, hi := fmt.Sprint(row[0]), toUint64(row[1])
		if hi > block {
			return Permanent(fmt.Errorf("part %s of %s holds rows from before and after the cut-over (block %d): they cannot be told apart; run the populate again", name, table, block))
		}
		if _, err := c.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PART %s", warehouse.QualifiedName(db, table), warehouse.QuoteString(name))); err != nil {
			if warehouse.CodeOf(err) == 232 { // NO_SUCH_DATA_PART: dropped by an earlier attempt
				continue
			}
			return fmt.Errorf("drop part %s of %s: %w", name, table, err)
		}
	}
	return nil
}

func maxBlock(ctx context.Context, c warehouse.Conn, db, table string) (uint64, error) {
	res, err := c.Query(ctx, fmt.Sprintf("SELECT max(max_block_number) FROM system.parts WHERE database = %s AND table = %s AND active",
		warehouse.QuoteString(db), warehouse.QuoteString(table)))
	if err != nil {
		return 0, fmt.Errorf("blocks of %s: %w", table, err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, nil
	}
	return toUint64(res.Rows[0][0]), nil
}

// snapshotParts are the parts of the step's partitions (its own, and for step 0 any partition
// the job's list missed) whose blocks are all at or below the cut-over block. A part that
// straddles it (merged across the cut-over, say after a restart lifted the stopped merges)
// cannot be split by rows: the step fails and asks for a new populate.
func (r *PopulateRunner) snapshotParts(ctx context.Context, db string, p jobs.PopulateStep, maxBlock uint64) ([]string, error) {
	where := fmt.Sprintf("database = %s AND table = %s AND active", warehouse.QuoteString(db), warehouse.QuoteString(p.Source))
	if len(p.JobPartitions) > 0 {
		known := make([]string, 0, len(p.JobPartitions))
		for _, k := range p.JobPartitions {
			if k != p.Partition {
				known = append(known, warehouse.QuoteString(k))
			}
		}
		if len(known) > 0 {
			where += " AND partition_id NOT IN (" + strings.Join(known, ", ") + ")"
		}
	} else {
		where += " AND partition_id = " + warehouse.QuoteString(p.Partition)
	}
	res, err := r.d.Warehouse.Query(ctx, fmt.Sprintf("SELECT name, min_block_number, max_block_number FROM system.parts WHERE %s ORDER BY name", where))
	if err != nil {
		return nil, fmt.Errorf("parts of %s: %w", p.Source, err)
	}
	var out []string
	for _, row := range res.Rows {
		name, lo, hi := fmt.Sprint(row[0]), toUint64(row[1]), toUint64(row[2])
		switch {
		case hi <= maxBlock:
			out = append(out, name)
		case lo <= maxBlock:
			return nil, Permanent(fmt.Errorf("part %s of %s was merged across the cut-over (block %d): its rows cannot be told apart; run the populate again", name, p.Source, maxBlock))
		}
	}
	return out, nil
}

// stage is one attempt at staging a partition.
type stage struct {
	r        *PopulateRunner
	s        *StepContext
	p        jobs.PopulateStep
	flow     dataflow.Flow
	delta    *dataflow.Delta
	token    string   // the attempt naming the staging tables (dataflow.NewForAttempt)
	query    string   // the node's query, source re-pointed at %s (the partition subquery)
	columns  []string // the node's result columns
	hashKey  string   // expression the sub-ranges hash
	filter   string   // partition, condition and cut-over
	budget   uint64
	rows     uint64
	bytes    uint64
	maxLevel int
}

func (r *PopulateRunner) newStage(ctx context.Context, s *StepContext, p jobs.PopulateStep, flow dataflow.Flow) (*stage, error) {
	job := s.Job
	// Staging tables of this attempt alone: an attempt that is late (it started before another
	// one recorded the commit, or its message was redelivered while it ran on) must never
	// write into the tables a commit record names, or a later attempt finishing that commit
	// would move its rows too.
	var b [4]byte
	_, _ = rand.Read(b[:])
	attempt := hex.EncodeToString(b[:])
	d, err := dataflow.NewForAttempt(r.d.Warehouse, flow, job.GetId(), s.IdempotencyKey, attempt)
	if err != nil {
		return nil, Permanent(err)
	}
	users, err := r.d.Users.For(ctx, job.GetWorkspace(), flow.Database, r.d.Warehouse)
	if err != nil {
		return nil, err
	}
	d.RunUsersSQLOn(users)
	pl, err := r.plan(ctx, job, p.Source, flow.Database)
	if err != nil {
		return nil, err
	}
	query := pl.query
	st := &stage{r: r, s: s, p: p, flow: flow, delta: d, token: attempt, query: query, budget: p.MemoryBudget, maxLevel: 2}
	if st.budget == 0 {
		st.budget = r.d.MemoryBudget
	}
	st.columns, st.hashKey = pl.columns, pl.hashKey
	var conds []string
	if p.Partition != "" {
		conds = append(conds, "_partition_id = "+warehouse.QuoteString(p.Partition))
	}
	if c := strings.TrimSpace(job.GetPopulate().GetSqlCondition()); c != "" {
		conds = append(conds, "("+c+")")
	}
	if col := job.GetPopulate().GetCutoverColumn(); col != "" {
		conds = append(conds, warehouse.QuoteIdent(col)+" <= "+warehouse.QuoteString(job.GetPopulate().GetCutoverValue()))
	}
	st.filter = strings.Join(conds, " AND ")
	if p.Partition != "" && st.budget > 0 {
		res, err := r.d.Warehouse.Query(ctx, fmt.Sprintf("SELECT sum(rows), sum(data_uncompressed_bytes) FROM system.parts WHERE database = %s AND table = %s AND active AND partition_id = %s",
			warehouse.QuoteString(flow.Database), warehouse.QuoteString(p.Source), warehouse.QuoteString(p.Partition)))
		if err == nil && len(res.Rows) == 1 && len(res.Rows[0]) == 2 {
			st.rows, st.bytes = toUint64(res.Rows[0][0]), toUint64(res.Rows[0][1])
		}
	}
	return st, nil
}

// hashKey is what sub-ranges of a partition hash: the sorting key (cheap to read, and rows of
// one key stay together), else every column.
func hashKey(ds *catalogv1.DataSource) string {
	if k := strings.TrimSpace(ds.GetSortingKey()); k != "" && k != "tuple()" {
		return k
	}
	var cols []string
	for _, c := range ds.GetColumns() {
		cols = append(cols, warehouse.QuoteIdent(c.GetName()))
	}
	return strings.Join(cols, ", ")
}

// repointSource rewrites the node's query so that its trigger reference (the left-most table,
// the one whose inserts fire the view) reads a subquery; the result has one %s for it. Other
// references to the source (a self-join) read the whole table, as they do when the view fires.
func repointSource(sql, db, source string) (string, error) {
	an, err := chsql.Analyze(sql, nil)
	if err != nil {
		return "", err
	}
	left, ok := an.LeftTable()
	if !ok || left.Kind != chsql.RefTable || left.Name != source || (left.Database != "" && left.Database != db) {
		return "", fmt.Errorf("the query's left-most table is not %s", source)
	}
	const mark = "\x00SOURCE\x00"
	out, err := an.Rewrite(func(ref chsql.TableRef) (string, error) {
		if ref.Start == left.Start && ref.End == left.End {
			return ref.Subquery(mark), nil
		}
		return sql[ref.Start:ref.End], nil
	})
	if err != nil {
		return "", err
	}
	out = strings.ReplaceAll(out, "%", "%%")
	return strings.Replace(out, mark, "%s", 1), nil
}

// levelSettings are the resources of a staging attempt: level 0 as ClickHouse chooses, 1 fewer
// threads and smaller blocks, 2 one thread, small blocks and external aggregation and sorting.
func (st *stage) levelSettings(level int) warehouse.Settings {
	s := warehouse.Settings{}
	if st.budget > 0 {
		s["max_memory_usage"] = st.budget
	}
	switch {
	case level == 1:
		s["max_threads"] = 2
		s["max_insert_threads"] = 1
		s["max_block_size"] = 16384
		if st.budget > 0 {
			s["max_bytes_before_external_group_by"] = st.budget / 2
		}
	case level >= 2:
		s["max_threads"] = 1
		s["max_insert_threads"] = 1
		s["max_block_size"] = 4096
		s["min_insert_block_size_rows"] = 4096
		s["min_insert_block_size_bytes"] = 1 << 20
		if st.budget > 0 {
			s["max_bytes_before_external_group_by"] = st.budget / 4
			s["max_bytes_before_external_sort"] = st.budget / 4
		}
	}
	return s
}

// firstLevel picks the first attempt's level from the partition's uncompressed size against
// the budget: a partition much larger than the budget starts with fewer resources rather than
// failing first.
func (st *stage) firstLevel() int {
	if st.budget == 0 || st.bytes == 0 {
		return 0
	}
	switch ratio := float64(st.bytes) / float64(st.budget); {
	case ratio < 1:
		return 0
	case ratio < 4:
		return 1
	}
	return 2
}

// stage stages the partition, lowering resources and then splitting on memory limits.
func (st *stage) stage(ctx context.Context) (populateCommit, error) {
	level, split := st.firstLevel(), 0
	for {
		pc, err := st.attempt(ctx, level, split)
		if err == nil {
			pc.Level, pc.Split = level, split
			return pc, nil
		}
		if warehouse.ClassOf(err) != warehouse.ClassMemoryLimit || ctx.Err() != nil {
			return pc, err
		}
		switch {
		case level < st.maxLevel:
			level++
		case split == 0:
			split = 2
		case split < maxSplit:
			split *= 2
		default:
			return pc, Permanent(fmt.Errorf("populate partition %s of %s: memory limit exceeded even split into %d ranges with one thread (raise the memory budget, or populate with a narrower --sql-condition): %w",
				st.partitionName(), st.p.Source, split, err))
		}
		st.s.Log.Warn("populate step hit the memory limit; restaging with fewer resources",
			"partition", st.p.Partition, "level", level, "split", split, "err", err)
	}
}

func (st *stage) partitionName() string {
	if st.p.Partition == "" {
		return "(all)"
	}
	return st.p.Partition
}

// attempt stages the whole partition once: from empty staging tables, the node's query over
// the partition (in split sub-ranges when split > 0), then the cascade.
func (st *stage) attempt(ctx context.Context, level, split int) (populateCommit, error) {
	pc := populateCommit{State: stateCommitting, Flow: st.flow}
	// Always from empty staging tables: even a first delivery may find what an attempt left
	// (after a crash of an embedded NATS, its delivery count can start again from 1).
	if err := st.delta.PrepareForMoves(ctx); err != nil {
		return pc, err
	}
	if st.r.noMove.Load() {
		// The commit attaches: no merges in staging (see attachCommit.run).
		st.delta.StopStagingMerges(ctx)
	}
	set := warehouse.WithSettings(st.levelSettings(level))
	ranges := []string{""}
	if split > 0 {
		ranges = ranges[:0]
		for i := range split {
			ranges = append(ranges, fmt.Sprintf("cityHash64(%s) %% %d = %d", st.hashKey, split, i))
		}
	}
	for _, rg := range ranges {
		conds := st.filter
		if rg != "" {
			if conds != "" {
				conds += " AND "
			}
			conds += rg
		}
		sub := "SELECT * FROM " + warehouse.QualifiedName(st.flow.Database, st.p.Source)
		if conds != "" {
			sub += " WHERE " + conds
		}
		stats, err := st.delta.Load(ctx, fmt.Sprintf(st.query, sub), st.columns, set)
		if err != nil {
			return pc, fmt.Errorf("populate partition %s of %s: %w", st.partitionName(), st.p.Source, err)
		}
		pc.ReadRows += stats.ReadRows
		pc.ReadBytes += stats.ReadBytes
		st.s.Progress(&commonv1.Statistics{ReadRows: pc.ReadRows, ReadBytes: pc.ReadBytes, WrittenRows: stats.WrittenRows, WrittenBytes: stats.WrittenBytes})
	}
	if _, err := st.delta.Cascade(ctx, set); err != nil {
		return pc, fmt.Errorf("populate partition %s of %s, cascade: %w", st.partitionName(), st.p.Source, err)
	}
	var moves []dataflow.Move
	if !st.r.noMove.Load() {
		plan, err := st.delta.Plan(ctx)
		if err != nil {
			return pc, err
		}
		if plan != nil {
			pc.Plan, moves = plan, plan.Moves
		}
	}
	if pc.Plan == nil {
		var err error
		if moves, err = st.delta.Pending(ctx); err != nil {
			return pc, err
		}
	}
	byTable := map[string]*tableFigures{}
	for _, t := range st.flow.Tables() {
		pc.Tables = append(pc.Tables, tableFigures{Table: t})
	}
	for i := range pc.Tables {
		byTable[pc.Tables[i].Table] = &pc.Tables[i]
	}
	for _, m := range moves {
		if f := byTable[m.Table]; f != nil {
			f.Rows += m.Rows
			f.Bytes += m.Bytes
		}
	}
	return pc, nil
}

// JobFinished records the `populateview` ops events of a finished populate: one for the target
// and one for each Data Source its cascade wrote, with the rows and bytes every committed step
// moved into it, the job's result, error and elapsed time (DATAFILES-SPEC §5.2). Event ids
// derive from (job, Data Source), so a second report of the same job writes nothing new. An
// error means the report is incomplete (a commit record or an event NATS did not give or take).
func (r *PopulateRunner) JobFinished(ctx context.Context, rec *schedulerv1.JobRecord, commits jetstream.KeyValue) error {
	job := rec.GetJob()
	ws := job.GetWorkspace()
	if job.GetPopulate().GetCutoverSnapshot() {
		if w, err := r.d.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws}); err == nil {
			src := warehouse.QualifiedName(w.GetWorkspace().GetDatabase(), job.GetParameters()["source"])
			if _, err := r.d.Warehouse.Exec(ctx, "SYSTEM START MERGES "+src); err != nil {
				r.d.Log.Warn("restarting the source's merges after a snapshot cut-over failed", "job", job.GetId(), "err", err)
			}
		}
	}
	if r.d.Events == nil {
		return nil
	}
	totals := map[string]*commonv1.Statistics{job.GetTargetDatasource(): {}}
	order := []string{job.GetTargetDatasource()}
	for _, step := range rec.GetSteps() {
		e, err := commits.Get(ctx, jobs.CommitKey(ws, job.GetId(), step.GetId()))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // the step committed nothing
		}
		if err != nil {
			// Its rows would be missing from the totals: report later rather than wrong.
			return fmt.Errorf("populate commit record of step %s: %w", step.GetId(), err)
		}
		c := &schedulerv1.StepCommit{}
		if proto.Unmarshal(e.Value(), c) != nil {
			continue
		}
		var pc populateCommit
		if json.Unmarshal(c.GetData(), &pc) != nil || pc.State != stateCommitting {
			continue
		}
		for _, t := range pc.Tables {
			if totals[t.Table] == nil {
				totals[t.Table] = &commonv1.Statistics{}
				order = append(order, t.Table)
			}
			tt := totals[t.Table]
			tt.WrittenRows += t.Rows
			tt.WrittenBytes += t.Bytes
			if t.Table == pc.Flow.Target {
				tt.ReadRows += pc.ReadRows
				tt.ReadBytes += pc.ReadBytes
			}
		}
	}
	result, errText := opsevents.ResultOK, ""
	switch job.GetStatus() {
	case schedulerv1.JobStatus_JOB_STATUS_ERROR:
		result, errText = opsevents.ResultError, job.GetError().GetMessage()
	case schedulerv1.JobStatus_JOB_STATUS_CANCELLED:
		result, errText = opsevents.ResultCancelled, job.GetError().GetMessage()
	}
	ids := opsevents.ResourceIDs(ctx, r.d.Catalog, ws, job.GetTargetDatasource())
	for _, t := range order {
		ev := opsevents.JobEvent(opsevents.JobResult{
			Workspace: ws, EventType: opsevents.EventPopulateView, JobID: job.GetId(),
			CreatedAt: job.GetCreateTime().AsTime(), FinishedAt: job.GetFinishTime().AsTime(),
			DataSourceName: t, PipeName: job.GetPipe(), Result: result, Error: errText, Stats: totals[t],
			DataSourceID: ids[t], PipeID: ids[job.GetPipe()],
			Options: map[string]string{opsevents.OptionTriggerDataSourceID: job.GetParameters()["source"]},
		})
		if err := r.d.Events.Publish(ctx, ev); err != nil {
			r.d.Log.Warn("populateview event not recorded yet", "job", job.GetId(), "datasource", t, "err", err)
			return err
		}
	}
	return nil
}

func joinConds(a, b string) string {
	if b == "" {
		return a
	}
	return a + " AND " + b
}

func toUint64(v any) uint64 {
	switch x := v.(type) {
	case uint64:
		return x
	case int64:
		if x > 0 {
			return uint64(x)
		}
	case float64:
		if x > 0 {
			return uint64(x)
		}
	case string:
		var n uint64
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return 0
}
