// Package delta is the one pattern of copies and populates: a delta — the rows of a copy, or of
// one partition of a populate — staged through the data flow, recorded, then committed exactly
// once (docs/data-movement.md). A kind supplies its Plan (what to do once per job, which flow,
// how to stage); Run does the rest the same way for both:
//
//	commit record?  ──yes──▶ finish it (Committer.Finish)
//	     │ no
//	Plan.Start ─▶ view fence settled ─▶ Plan.Flow ─▶ Plan.Stage ─▶ enter the fence ─▶ record
//	     ─▶ finish the commit (moves, exchanges or attaches, whatever happens) ─▶ leave the
//	        fence ─▶ drop the staging tables
package delta

import (
	"context"
	"errors"
	"fmt"
	"time"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// Plan is what a kind of delta step supplies to Run.
type Plan interface {
	// Start does what must happen once per job before any of its steps stages (a populate's
	// truncate or cut-over). It may run again on a redelivery, before anything is recorded.
	Start(ctx context.Context) error
	// Flow resolves the step's flow with the views as they are at the view fence's epoch.
	Flow(ctx context.Context, epoch uint64) (dataflow.Flow, error)
	// Stage writes the step's rows into empty staging tables of flow, cascades them through
	// its views and returns what to record; on an error it leaves no staging table behind.
	Stage(ctx context.Context, flow dataflow.Flow) (*Staged, error)
}

// Staged is a staged delta, ready to be recorded.
type Staged struct {
	// Record is the commit record to write (phase, staging key, figures); Run adds the flow.
	Record *persistencev1.DeltaCommit
	// Delta holds the staging tables; nil for a commit another attempt recorded (follow).
	Delta *dataflow.Delta
}

// stageTries bounds how often a step stages again at once because a view of its flow was cut
// over meanwhile, before it hands the step back to the queue.
const stageTries = 3

// Run runs one attempt of a delta step and returns its commit record once the commit is
// finished. A step that finds its commit recorded (by an earlier attempt) only finishes it;
// otherwise it stages, records and commits. Before the record, a failure leaves every Data
// Source as it was; after it, the commit is finished whatever happens to the job.
func Run(ctx context.Context, sc *step.Context, c *Committer, p Plan) (*persistencev1.DeltaCommit, error) {
	// The record decides whether a commit is to be finished: read it whatever happens to the
	// job meanwhile (a cancel must not turn a recorded commit into a stopped step).
	lctx, lstop := step.DrainOnly(ctx)
	prev, rev, err := sc.LoadCommit(lctx)
	lstop()
	if err != nil {
		return nil, err
	}
	var staged *Staged
	rec := prev.GetDelta()
	switch {
	case rec != nil:
		sc.Log.Info("step resumes its recorded commit", "phase", rec.GetPhase(), "by_attempt", prev.GetAttempt())
	case prev != nil:
		return nil, step.Permanent(fmt.Errorf("commit record %s is not a delta's", sc.IdempotencyKey))
	default:
		if staged, rev, err = stageAndRecord(ctx, sc, p); err != nil {
			return nil, err
		}
		rec = staged.Record
	}
	sc.Fault("commit.recorded")
	if err := c.Finish(ctx, sc, rec, rev, staged); err != nil {
		return nil, err
	}
	if len(rec.GetFlow().GetViews()) > 0 {
		sc.LeaveFence(ctx)
	}
	if d, err := c.staging(sc, rec); err == nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		err := d.Drop(dctx)
		if rec.GetAttempt() != "" {
			// What other attempts of the step left in tables of their own.
			err = errors.Join(err, dataflow.DropStepStaging(dctx, c.Conn, rec.GetFlow().GetDatabase(), sc.Job.GetId(), rec.GetStagingKey()))
		}
		if err != nil {
			sc.Log.Warn("dropping the staging tables after the commit failed; they are dropped when the job ends or an executor starts", "err", err)
		}
	}
	return rec, nil
}

// stageAndRecord stages the step's delta with the views as they are and records its commit. A
// step that loses the race to record follows the record of the attempt that won.
func stageAndRecord(ctx context.Context, sc *step.Context, p Plan) (*Staged, uint64, error) {
	if err := p.Start(ctx); err != nil {
		return nil, 0, err
	}
	for try := 1; ; try++ {
		// The views as they are, with no cut-over under way (see step/fence.go).
		at, err := sc.SettledFence(ctx)
		if err != nil {
			return nil, 0, err
		}
		flow, err := p.Flow(ctx, at.Epoch())
		if err != nil {
			return nil, 0, err
		}
		st, err := p.Stage(ctx, flow)
		if err != nil {
			return nil, 0, err
		}
		st.Record.Flow = flow.Proto()
		if len(flow.Views) > 0 {
			if err := sc.EnterFence(ctx, at); err != nil {
				DropQuietly(ctx, sc, st.Delta)
				if errors.Is(err, step.ErrViewsChanged) {
					if try < stageTries {
						sc.Log.Info("a view downstream was cut over while the step staged; staging again")
						continue
					}
					return nil, 0, step.Transient(err)
				}
				return nil, 0, err
			}
		}
		// Once asked, the write is seen through: a cancel must not leave it unknown.
		wctx, wstop := step.DrainOnly(ctx)
		rev, err := sc.StoreCommit(wctx, &persistencev1.StepCommit{Commit: &persistencev1.StepCommit_Delta{Delta: st.Record}}, 0)
		wstop()
		switch {
		case errors.Is(err, step.ErrCommitConflict):
			return follow(ctx, sc, st)
		case err != nil:
			// A drain interrupted the write, which NATS may have applied all the same: the
			// staging tables stay for the redelivery, which finishes the commit if the record
			// says so (the end of the job drops them otherwise).
			return nil, 0, err
		}
		return st, rev, nil
	}
}

// follow is a step whose commit another attempt recorded first: it finishes that commit
// instead, on that attempt's staging tables (dropping its own, unless they are the same).
func follow(ctx context.Context, sc *step.Context, mine *Staged) (*Staged, uint64, error) {
	other, rev, err := sc.LoadCommit(ctx)
	if err != nil {
		return nil, 0, err
	}
	if other.GetDelta() == nil {
		return nil, 0, step.Transient(errors.New("the commit record changed, then disappeared"))
	}
	if o := other.GetDelta(); o.GetStagingKey() != mine.Record.GetStagingKey() || o.GetAttempt() != mine.Record.GetAttempt() {
		// Its staging tables hold the rows to commit; this attempt's own go.
		DropQuietly(ctx, sc, mine.Delta)
	}
	sc.Log.Info("another attempt recorded the commit first; finishing its commit", "by_attempt", other.GetAttempt())
	return &Staged{Record: other.GetDelta()}, rev, nil
}

// DropQuietly drops a delta's staging tables, logging a failure: what is left is dropped when
// the job ends or an executor starts.
func DropQuietly(ctx context.Context, sc *step.Context, d *dataflow.Delta) {
	if d == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := d.Drop(dctx); err != nil {
		sc.Log.Warn("dropping staging tables failed; they are dropped when the job ends or an executor starts", "err", err)
	}
}

// Figures sums the staged rows and bytes of moves by Data Source, in the flow's order.
func Figures(flow dataflow.Flow, moves []dataflow.Move) []*persistencev1.TableFigures {
	out := make([]*persistencev1.TableFigures, 0, len(flow.Tables()))
	by := map[string]*persistencev1.TableFigures{}
	for _, t := range flow.Tables() {
		f := &persistencev1.TableFigures{Table: t}
		out = append(out, f)
		by[t] = f
	}
	for _, m := range moves {
		if f := by[m.Table]; f != nil {
			f.Rows += m.Rows
			f.Bytes += m.Bytes
		}
	}
	return out
}

// Written returns the rows and bytes a commit record staged for one Data Source.
func Written(rec *persistencev1.DeltaCommit, table string) (rows, bytes uint64) {
	for _, f := range rec.GetTables() {
		if f.GetTable() == table {
			rows += f.GetRows()
			bytes += f.GetBytes()
		}
	}
	return rows, bytes
}
