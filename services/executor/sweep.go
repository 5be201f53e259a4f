package executor

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/dataflow"
)

// SweepStaging drops the staging tables of jobs that are finished (or no longer retained) and
// whose commits are finished: what executors that died mid-step left behind and no later
// attempt cleaned. An executor runs it when it starts. Staging tables of unfinished jobs are
// left to their steps, and those of a step that recorded its commit without finishing it (a
// refused attach) are kept as long as its commit record (jobs.CommitRetention).
func SweepStaging(ctx context.Context, conn warehouse.Conn, sys *jobs.System, log *slog.Logger) error {
	tables, err := dataflow.ListStaging(ctx, conn, "")
	if err != nil {
		return err
	}
	settled := map[string]bool{}
	var errs []error
	for _, t := range tables {
		if t.Job == "" {
			continue
		}
		drop, known := settled[t.Job]
		if !known {
			if drop, err = sys.Settled(ctx, t.Job); err != nil {
				errs = append(errs, err)
				continue
			}
			settled[t.Job] = drop
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
