package app

import (
	"context"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
	"github.com/sluicehq/sluice/services/executor"
)

// withCopyRunner adds the COPY step runner to an executor's runners.
func (a *App) withCopyRunner(runners map[schedulerv1.JobKind]executor.StepRunner, cat catalogclient.Client) map[schedulerv1.JobKind]executor.StepRunner {
	if runners == nil {
		runners = map[schedulerv1.JobKind]executor.StepRunner{}
	}
	runners[schedulerv1.JobKind_JOB_KIND_COPY] = &executor.CopyRunner{
		Conn: a.warehouse, Users: a.workspaceUsers, Catalog: cat, Events: opsevents.NewPublisher(a.nats, a.tel.Propagator),
		Log: a.log.With("service", "executor", "runner", "copy"), OpsDatabase: a.cfg.ClickHouse.Database,
	}
	return runners
}

// sweepCopyStaging drops staging tables that copies of finished jobs left behind (an executor
// killed mid-copy whose job then ended otherwise); it runs as an executor starts.
func (a *App) sweepCopyStaging(ctx context.Context) {
	if err := executor.SweepCopyStaging(ctx, a.warehouse, a.nats, a.log.With("service", "executor")); err != nil {
		a.log.Warn("sweeping the staging tables of finished copies failed", "err", err)
	}
}
