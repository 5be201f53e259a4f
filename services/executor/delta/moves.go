package delta

import (
	"context"
	"errors"
	"fmt"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// moveCommit is the commit of a step's staged partitions by moves (servers with MOVE PARTITION
// ... TO TABLE, and chDB). A move is atomic for the engine's readers but not for a crash of the
// engine (see dataflow.MovePlan), so:
//
//  1. the plan (the staged parts, each Data Source's highest block) is in the commit record
//     (DeltaCommit.move_plan) before the first move: the record that says "committing"
//     carries it, at no extra write;
//  2. the attempt that recorded it moves the partitions in the plan's order;
//  3. any later try (another attempt, or this one after an error) first waits for a move of
//     the step still running (a server whose executor died), then resolves what a killed
//     move left (dataflow.ResolveMoves: moved → dropped from staging; partly moved → the
//     moved parts dropped from staging; undecidable → step.RefusedError); it records a new
//     plan for what is left before moving it (a restarted engine numbers blocks anew).
//
// A record without a plan (of an earlier version) is committed by what the staging tables
// hold (dataflow.Delta.Commit).
type moveCommit struct {
	sc     *step.Context
	d      *dataflow.Delta
	record *persistencev1.DeltaCommit // the step's commit record, written with a new plan
	rev    uint64                     // the commit record's revision as this attempt knows it
	// fresh: the plan was made by this attempt, and no move has run since.
	fresh bool
}

func (c *moveCommit) run(ctx context.Context) error {
	plan := dataflow.MovePlanOf(c.record.GetMovePlan())
	if plan == nil {
		_, err := c.d.Commit(ctx) // a record of an earlier version
		return err
	}
	if c.fresh {
		c.fresh = false
		return c.move(ctx, plan)
	}
	running, err := c.d.MoveRunning(ctx, plan)
	if err != nil {
		return err
	}
	if running {
		return errors.New("a move of this step that an earlier attempt started is still running")
	}
	left, found, err := c.d.ResolveMoves(ctx, plan)
	var undecidable *dataflow.UndecidableMoveError
	if errors.As(err, &undecidable) {
		return step.RefusedError{Err: err}
	}
	c.sc.Log.Info("commit resumed: decided what earlier moves did", "left", len(left), "found_moved", len(found))
	for _, f := range found {
		if f.Moved {
			c.sc.Log.Info("an interrupted move had moved this partition already; dropped it from staging", "table", f.Move.Table, "partition", f.Move.PartitionID, "rows", f.Move.Rows)
		} else {
			c.sc.Log.Info("an interrupted move had moved some parts of this partition; moving the rest", "table", f.Move.Table, "partition", f.Move.PartitionID, "parts", f.Parts)
		}
	}
	if err != nil || len(left) == 0 {
		return err
	}
	next, err := c.d.Plan(ctx)
	if err != nil || next == nil {
		return errors.Join(err, errors.New("no plan for the moves left"))
	}
	c.record.MovePlan = next.Proto()
	rev, err := c.sc.StoreCommit(ctx, &persistencev1.StepCommit{Commit: &persistencev1.StepCommit_Delta{Delta: c.record}}, c.rev)
	if err != nil {
		return err // a conflict: another attempt changed the record; the next try reads it again
	}
	c.rev = rev
	return c.move(ctx, next)
}

// move runs the plan's moves (the fault points "move.inside" and "move.after" around them).
func (c *moveCommit) move(ctx context.Context, plan *dataflow.MovePlan) error {
	if c.sc.FaultArmed("move.inside") {
		stop, err := c.d.WatchMoved(ctx, plan, func() {
			c.sc.Log.Warn("fault point reached", "point", "move.inside", "kill", true)
			step.KillNow()
		})
		if err != nil {
			return fmt.Errorf("fault point move.inside: %w", err)
		}
		defer stop()
	}
	err := c.d.MovePlanned(ctx, plan, nil)
	c.sc.Fault("move.after")
	return err
}
