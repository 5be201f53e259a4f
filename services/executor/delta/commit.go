package delta

import (
	"context"
	"fmt"
	"sync/atomic"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// Committer finishes recorded commits on one ClickHouse: moves (MOVE PARTITION ... TO TABLE),
// exchanges (replace), or, on servers without MOVE PARTITION, attaches with recorded intents.
// An executor has one for all its steps.
type Committer struct {
	Conn warehouse.Conn
	// noMove is set once the server refused MOVE PARTITION ... TO TABLE (before 19.17).
	noMove atomic.Bool
}

// NoMove reports whether the server refused MOVE PARTITION ... TO TABLE: commits attach, and
// staging tables should not merge (see attachCommit).
func (c *Committer) NoMove() bool { return c.noMove.Load() }

// Finish completes a recorded commit (rec, at revision rev of the step's commit record), retrying
// it until it is done (step.FinishCommit): it moves what is still staged, or exchanges what is not
// exchanged, or attaches. Every try but the first reads the record again (an attach intent or a
// new move plan may have changed it). staged is the attempt's own staging (its Delta set) when
// it staged and recorded the commit: its first try moves by the recorded plan at once.
func (c *Committer) Finish(ctx context.Context, sc *step.Context, rec *persistencev1.DeltaCommit, rev uint64, staged *Staged) error {
	me, mem, first := newAttempt(sc), newAttachMemory(), true
	return step.FinishCommit(ctx, sc, func(cctx context.Context) error {
		try1 := first
		first = false
		if !try1 {
			cur, r2, err := sc.LoadCommit(cctx)
			if err != nil {
				return err
			}
			if cur.GetDelta() == nil {
				return step.Permanent(fmt.Errorf("commit record %s disappeared", sc.IdempotencyKey))
			}
			rec, rev = cur.GetDelta(), r2
		}
		d, err := c.staging(sc, rec)
		if err != nil {
			return step.Permanent(err)
		}
		switch rec.GetPhase() {
		case persistencev1.CommitPhase_COMMIT_PHASE_SWAPPING:
			return d.SwapOnce(cctx, rec.GetStagedUuids())
		case persistencev1.CommitPhase_COMMIT_PHASE_MOVING:
		default:
			return step.Permanent(fmt.Errorf("commit record %s: unknown phase %s", sc.IdempotencyKey, rec.GetPhase()))
		}
		if !c.noMove.Load() && rec.GetAttach() == nil {
			// fresh: this attempt staged and recorded the plan, and no move has run since.
			m := &moveCommit{sc: sc, d: d, record: rec, rev: rev, fresh: try1 && staged != nil && staged.Delta != nil}
			err = m.run(cctx)
			rev = m.rev
			if !dataflow.MoveUnsupported(err) {
				return err // on an error the next try resolves what is left
			}
			sc.Log.Info("this server has no MOVE PARTITION TO TABLE: attaching partitions and dropping them from staging")
			c.noMove.Store(true)
		}
		a := &attachCommit{sc: sc, d: d, conn: c.Conn, record: rec, rev: rev, me: me, mem: mem}
		return a.run(cctx)
	})
}

// staging is the delta of a commit record: its flow's staging tables under its key (and its
// attempt, for a step whose attempts stage into tables of their own).
func (c *Committer) staging(sc *step.Context, rec *persistencev1.DeltaCommit) (*dataflow.Delta, error) {
	if a := rec.GetAttempt(); a != "" {
		return dataflow.NewForAttempt(c.Conn, dataflow.FlowOf(rec.GetFlow()), sc.Job.GetId(), rec.GetStagingKey(), a)
	}
	return dataflow.New(c.Conn, dataflow.FlowOf(rec.GetFlow()), sc.Job.GetId(), rec.GetStagingKey())
}
