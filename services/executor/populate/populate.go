// Package populate runs the steps of POPULATEVIEW jobs: one source partition or a group of small
// ones each (the scheduler sizes them), through the data flow, exactly once, as one instance of
// the delta pattern (package delta). See docs/populate.md. A step of partitions P of source S,
// for the materialized node N (S → T):
//
//  1. start (start.go): if the job truncates or cuts over, the job's start is done once, before
//     any step loads (one step does it, recorded in the job's start marker; the others wait);
//  2. plan (plan.go): the flow from T downstream (none with only_this_view), and N's query
//     re-pointed at `(SELECT * FROM S WHERE _partition_id IN P [AND condition])`, both asked
//     of the catalog once per job and executor;
//  3. stage (stage.go): the query into T's staging table, then the views downstream over the
//     staged rows in the catalog's topological order; on a memory limit, again with fewer
//     resources, then split into sub-ranges;
//  4. commit (package delta): record "moving" with the flow and the staged figures, move the
//     staged partitions into their Data Sources, upstream first, and drop the staging tables;
//  5. events (events.go): the job's `populateview` events when it ends.
//
// Each attempt stages into staging tables of its own (named after the job, the step and the
// attempt: dataflow.NewForAttempt), and the commit record names them. A redelivered step that
// finds its commit recorded only finishes the moves from the tables the record names (they say
// what is left); any other redelivery starts again from 3 with new tables. An attempt that
// loses the race to record drops its own tables; a late attempt can thus never add rows to a
// recorded commit. Every source row is counted once in T and downstream.
package populate

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/delta"
	"github.com/sluicehq/sluice/services/executor/step"
)

// Catalog is what a populate needs from the catalog (its generated client has it).
type Catalog interface {
	dataflow.Catalog
	GetDataSource(ctx context.Context, in *catalogv1.GetDataSourceRequest, opts ...grpc.CallOption) (*catalogv1.GetDataSourceResponse, error)
	CutOverView(ctx context.Context, in *catalogv1.CutOverViewRequest, opts ...grpc.CallOption) (*catalogv1.CutOverViewResponse, error)
}

// Deps are what the runner is given.
type Deps struct {
	Warehouse warehouse.Conn
	// Committer finishes commits (one per executor).
	Committer *delta.Committer
	// Users runs the populate's queries as the workspace's ClickHouse user (nil: on Warehouse).
	Users   *warehouse.WorkspaceUsers
	Catalog Catalog
	// Events records the `populateview` ops events when a populate job ends (nil: none).
	Events opsevents.Publisher
	// OpsDatabase holds the ops log: when set, a populate's job ends only once its events are
	// readable there (within EventsWait).
	OpsDatabase string
	EventsWait  time.Duration
	// Written, when set, is where the wait for the events listens to the opslog writer's
	// announcements (opslogdb.WaitWritten) instead of polling ClickHouse.
	Written *nats.Conn
	// MemoryBudget is the per-step memory budget in bytes (max_memory_usage of every statement
	// of a step) when the job gives none; 0 leaves ClickHouse's own limit.
	MemoryBudget uint64
	Log          *slog.Logger
}

// Runner runs POPULATEVIEW steps.
type Runner struct {
	d Deps

	mu    sync.Mutex
	plans map[string]*jobPlan // by job id
}

var (
	_ step.Runner   = (*Runner)(nil)
	_ step.Reporter = (*Runner)(nil)
)

// New returns the runner.
func New(d Deps) *Runner {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Runner{d: d, plans: map[string]*jobPlan{}}
}

// RunStep implements step.Runner.
func (r *Runner) RunStep(ctx context.Context, sc *step.Context) (step.Result, error) {
	p := sc.Step.GetPopulate()
	if p.GetSource() == "" {
		return step.Result{}, step.Permanent(fmt.Errorf("step %s is not a populate step with a source", sc.Step.GetId()))
	}
	begin := time.Now()
	pl := &plan{r: r, sc: sc, p: p}
	rec, err := delta.Run(ctx, sc, r.d.Committer, pl)
	if err != nil {
		return step.Result{}, err
	}
	sc.Log.Debug("populate step", "partition", partitionsName(p), "staged", pl.staged, "committed", time.Since(begin), "level", rec.GetLevel(), "split", rec.GetSplit())
	return step.Result{Statistics: statistics(rec)}, nil
}

// statistics are a step's figures for the job's progress: read rows and bytes of the partition,
// and the rows and bytes written into the target.
func statistics(rec *persistencev1.DeltaCommit) *commonv1.Statistics {
	st := &commonv1.Statistics{ReadRows: rec.GetReadRows(), ReadBytes: rec.GetReadBytes()}
	st.WrittenRows, st.WrittenBytes = delta.Written(rec, rec.GetFlow().GetTarget())
	return st
}

// plan is one attempt of a populate step, as delta.Run asks it.
type plan struct {
	r  *Runner
	sc *step.Context
	p  *persistencev1.PopulateStep
	// started is the job's start marker (after Start).
	started *persistencev1.JobStart
	staged  time.Duration
}

// Start implements delta.Plan: the job's truncate or cut-over, once (start.go).
func (pl *plan) Start(ctx context.Context) error {
	pl.sc.Fault("stage.begin") // no commit recorded: this attempt stages
	opts := pl.sc.Job.GetPopulate()
	if !opts.GetTruncate() && !opts.GetCutoverSnapshot() && opts.GetCutoverColumn() == "" {
		return nil
	}
	flow, err := pl.r.flow(ctx, pl.sc.Job, 0)
	if err != nil {
		return err
	}
	pl.started, err = pl.sc.StartOnce(ctx, func(ctx context.Context) (*persistencev1.JobStart, error) {
		return pl.r.start(ctx, pl.sc, flow, pl.p.GetSource())
	})
	return err
}

// Flow implements delta.Plan (plan.go).
func (pl *plan) Flow(ctx context.Context, epoch uint64) (dataflow.Flow, error) {
	return pl.r.flow(ctx, pl.sc.Job, epoch)
}

// Stage implements delta.Plan (stage.go).
func (pl *plan) Stage(ctx context.Context, flow dataflow.Flow) (*delta.Staged, error) {
	begin := time.Now()
	defer func() { pl.staged = time.Since(begin) }()
	st, err := pl.r.newStage(ctx, pl.sc, pl.p, flow)
	if err != nil {
		return nil, err
	}
	if pl.sc.Job.GetPopulate().GetCutoverSnapshot() {
		parts, err := pl.r.snapshotParts(ctx, flow.Database, pl.p, pl.started.GetMaxBlock())
		if err != nil {
			return nil, err
		}
		st.snapshot(parts)
	}
	staged, err := st.stage(ctx)
	if err != nil {
		delta.DropQuietly(ctx, pl.sc, st.delta)
		return nil, err
	}
	return staged, nil
}

// snapshot limits the stage to the parts of a snapshot cut-over (none: no rows).
func (st *stage) snapshot(parts []string) {
	if len(parts) == 0 {
		st.filter = "0"
		return
	}
	q := make([]string, len(parts))
	for i, n := range parts {
		q[i] = warehouse.QuoteString(n)
	}
	in := "_part IN (" + strings.Join(q, ", ") + ")"
	own := jobs.PopulatePartitions(st.p)
	byPartition := partitionIn("_partition_id", own)
	if len(own) > 0 && strings.Contains(st.filter, byPartition) {
		st.filter = strings.Replace(st.filter, byPartition, in, 1)
		return
	}
	st.filter = joinConds(in, st.filter)
}

func joinConds(a, b string) string {
	if b == "" {
		return a
	}
	return a + " AND " + b
}
