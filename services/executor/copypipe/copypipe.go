// Package copypipe runs the one step of a COPY job: the copy node's rendered query (the step's
// CopyStep) written into the target through the data flow, as one instance of the delta
// pattern (package delta):
//
//	append   stage: staging tables for the target and every Data Source downstream, the query
//	         into the target's, the materialized views over the staged rows (the cascade);
//	         record "moving" with the staging tables; move every staged partition into its
//	         Data Source, upstream first.
//	replace  the same staging, holding the target's complete new content and the complete
//	         recomputation of the views downstream of it; record "swapping" with the UUIDs of
//	         the staging tables; exchange each Data Source with its staging table (EXCHANGE
//	         TABLES) unless it already holds that UUID.
//
// Staging tables are named after the job and the attempt, so two live attempts never share
// one; a delivery that finds the commit record only finishes what it says. The copy's ops
// events are stored before its step is finished (in step.FinishCommit's retries), and again,
// under the same ids, when its job ends (JobEnds), before the job is reported finished.
package copypipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/durationpb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/delta"
	"github.com/sluicehq/sluice/services/executor/step"
)

// Runner runs COPY steps.
type Runner struct {
	Conn warehouse.Conn
	// Committer finishes commits (one per executor).
	Committer *delta.Committer
	// Users runs the copy's query as the workspace's ClickHouse user (nil: on Conn).
	Users   *warehouse.WorkspaceUsers
	Catalog dataflow.Catalog
	// Events records the copy events (nil: they are only logged).
	Events opsevents.Publisher
	Log    *slog.Logger
	// Now is the clock of the step's elapsed time (time.Now when nil).
	Now func() time.Time
	// OpsDatabase holds the ops log: when set, a copy's job ends only once its events are
	// readable there (within EventsWait), so that a client seeing the job done finds them.
	OpsDatabase string
	EventsWait  time.Duration
	// Written, when set, is where the wait for the events listens to the opslog writer's
	// announcements (opslogdb.WaitWritten) instead of polling ClickHouse.
	Written *nats.Conn
}

var (
	_ step.Runner   = (*Runner)(nil)
	_ step.Reporter = (*Runner)(nil)
)

// Step is a COPY step's work, checked.
func Step(spec *persistencev1.StepSpec) (*persistencev1.CopyStep, error) {
	p := spec.GetCopy()
	switch {
	case p == nil:
		return nil, fmt.Errorf("step %s is not a copy step", spec.GetId())
	case p.GetTarget() == "":
		return nil, errors.New("copy step: no target Data Source")
	case p.GetSql() == "":
		return nil, errors.New("copy step: no SQL")
	case p.GetMode() != commonv1.CopyMode_COPY_MODE_APPEND && p.GetMode() != commonv1.CopyMode_COPY_MODE_REPLACE:
		return nil, fmt.Errorf("copy step: mode %s is not append or replace", p.GetMode())
	}
	return p, nil
}

// RunStep implements step.Runner.
func (r *Runner) RunStep(ctx context.Context, sc *step.Context) (step.Result, error) {
	start := r.now()
	p, err := Step(sc.Step)
	if err != nil {
		return step.Result{}, step.Permanent(err)
	}
	rec, err := delta.Run(ctx, sc, r.Committer, &plan{r: r, sc: sc, p: p})
	if err != nil {
		return step.Result{}, err
	}
	st := &commonv1.Statistics{ReadRows: rec.GetReadRows(), ReadBytes: rec.GetReadBytes(), Elapsed: durationpb.New(r.now().Sub(start))}
	st.WrittenRows, st.WrittenBytes = delta.Written(rec, p.GetTarget())
	// The step is not finished before NATS has stored its events: they are retried like the
	// commit, however long NATS refuses them ("committing, waiting for NATS"); a drain or a
	// crash leaves the step to a redelivery, which finds the commit finished and publishes them
	// again under the same ids (stored once). The job's end (JobEnds) waits for them to be
	// readable in the ops log.
	flow := dataflow.Flow{Target: p.GetTarget()}
	if rec.GetFlow() != nil {
		flow = dataflow.FlowOf(rec.GetFlow())
	}
	finished := r.now()
	if err := step.FinishCommit(ctx, sc, func(cctx context.Context) error {
		return r.events(cctx, sc.Job, sc.Log, p, flow, rec, opsevents.ResultOK, "", finished, false)
	}); err != nil {
		return step.Result{}, err
	}
	return step.Result{Statistics: st}, nil
}

// plan is one attempt of a copy step, as delta.Run asks it.
type plan struct {
	r  *Runner
	sc *step.Context
	p  *persistencev1.CopyStep
}

// Start implements delta.Plan: a copy has nothing to do once per job.
func (*plan) Start(context.Context) error { return nil }

// Flow implements delta.Plan: the target and the views downstream of it, as deployed now.
func (pl *plan) Flow(ctx context.Context, _ uint64) (dataflow.Flow, error) {
	flow, err := dataflow.Resolve(ctx, pl.r.Catalog, pl.sc.Job.GetWorkspace(), pl.p.GetTarget(), false)
	if err != nil {
		return flow, step.CatalogError(fmt.Errorf("copy into %s: %w", pl.p.GetTarget(), err))
	}
	return flow, nil
}

// Stage implements delta.Plan: the query into the target's staging table, then the cascade.
func (pl *plan) Stage(ctx context.Context, flow dataflow.Flow) (*delta.Staged, error) {
	sc, r := pl.sc, pl.r
	key := fmt.Sprintf("%s#%d", sc.IdempotencyKey, sc.Attempt)
	d, err := dataflow.New(r.Conn, flow, sc.Job.GetId(), key)
	if err != nil {
		return nil, step.Permanent(err)
	}
	users, err := r.Users.For(ctx, sc.Job.GetWorkspace(), flow.Database, r.Conn)
	if err != nil {
		return nil, err
	}
	d.RunUsersSQLOn(users)
	st, err := pl.load(ctx, d, flow, key)
	if err != nil {
		delta.DropQuietly(ctx, sc, d)
		return nil, err
	}
	return st, nil
}

func (pl *plan) load(ctx context.Context, d *dataflow.Delta, flow dataflow.Flow, key string) (*delta.Staged, error) {
	sc, p := pl.sc, pl.p
	replace := p.GetMode() == commonv1.CopyMode_COPY_MODE_REPLACE
	prepare := d.PrepareForMoves // append: the staged parts stay as the move plan lists them
	if replace {
		prepare = d.Prepare // the staging tables become the Data Sources
	}
	if err := prepare(ctx); err != nil {
		return nil, fmt.Errorf("copy into %s: %w", p.GetTarget(), err)
	}
	if !replace {
		// Appending: merges of staged parts would only delay the moves (a move waits for the
		// merges of its partition); the parts merge in their Data Source afterwards. (Not for
		// replace: the staging table becomes the Data Source, and the stop would go with it.)
		d.StopStagingMerges(ctx)
	}
	rec := &persistencev1.DeltaCommit{Phase: persistencev1.CommitPhase_COMMIT_PHASE_MOVING, StagingKey: key}
	if replace {
		// The staging tables' UUIDs are how a redelivery recognises a swap already done.
		_, staged, err := d.TableUUIDs(ctx)
		if err != nil {
			return nil, err
		}
		for t, u := range staged {
			if !dataflow.UsableUUID(u) {
				return nil, step.Permanent(fmt.Errorf("replace into %s: this ClickHouse gives tables no UUID (an Ordinary database, or a server older than 20.x): an atomic replace needs EXCHANGE TABLES on an Atomic database; use append, or a newer server: %w", t, step.ErrUnsupported))
			}
		}
		rec.Phase, rec.StagedUuids = persistencev1.CommitPhase_COMMIT_PHASE_SWAPPING, staged
	}
	ld, err := d.Load(ctx, p.GetSql(), p.GetColumns())
	if err != nil {
		return nil, fmt.Errorf("copy into %s: %w", p.GetTarget(), err)
	}
	sc.Progress(&commonv1.Statistics{ReadRows: ld.ReadRows, ReadBytes: ld.ReadBytes, WrittenRows: ld.WrittenRows, WrittenBytes: ld.WrittenBytes})
	if _, err := d.Cascade(ctx); err != nil {
		return nil, fmt.Errorf("copy into %s: materialized views downstream: %w", p.GetTarget(), err)
	}
	var plan *dataflow.MovePlan
	if !replace && !pl.r.Committer.NoMove() {
		if plan, err = d.Plan(ctx); err != nil {
			return nil, err
		}
	}
	var moves []dataflow.Move
	if plan != nil {
		moves = plan.Moves
	} else if moves, err = d.Pending(ctx); err != nil {
		return nil, err
	}
	rec.MovePlan = plan.Proto()
	rec.Tables = delta.Figures(flow, moves)
	rec.ReadRows, rec.ReadBytes, rec.MemoryUsage = ld.ReadRows, ld.ReadBytes, ld.MemoryUsage
	if ld.CPUTime > 0 {
		rec.CpuTime = durationpb.New(ld.CPUTime)
	}
	return &delta.Staged{Record: rec, Delta: d}, nil
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}
