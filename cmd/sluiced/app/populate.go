package app

import (
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
	"github.com/sluicehq/sluice/services/executor"
)

// populateRunners are the executor's step runners for populates.
func (a *App) populateRunners(cat catalogclient.Client) map[schedulerv1.JobKind]executor.StepRunner {
	return map[schedulerv1.JobKind]executor.StepRunner{
		schedulerv1.JobKind_JOB_KIND_POPULATEVIEW: executor.NewPopulateRunner(executor.PopulateDeps{
			Warehouse: a.warehouse, Users: a.workspaceUsers, Catalog: cat, Events: opsevents.NewPublisher(a.nats, a.tel.Propagator),
			Log: a.log.With("service", "executor", "runner", "populate"),
		}),
	}
}
