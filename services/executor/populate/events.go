package populate

import (
	"cmp"
	"context"
	"fmt"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/opsevents/opslogdb"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/executor/step"
)

// JobEnds implements step.Reporter: the end of a populate. After a snapshot cut-over the
// source's merges start again. Then the `populateview` ops events: one for the target and one
// for each Data Source its cascade wrote, with the rows and bytes every committed step moved
// into it, the job's result, error and elapsed time (DATAFILES-SPEC §5.2). Event ids derive
// from (job, Data Source), so a second report of the same job writes nothing new; with an ops
// database, it returns once the events are readable there. An error means the report is not
// stored (a commit record or an event NATS did not give or take): it is to be made again.
func (r *Runner) JobEnds(ctx context.Context, rec *jobs.Record, commits step.Commits) error {
	job := rec.GetJob()
	ws := job.GetWorkspace()
	source := sourceOf(rec)
	if job.GetPopulate().GetCutoverSnapshot() && source != "" {
		if w, err := r.d.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws}); err == nil {
			src := warehouse.QualifiedName(w.GetWorkspace().GetDatabase(), source)
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
	for _, st := range rec.GetSteps() {
		c, err := commits.Commit(ctx, ws, job.GetId(), st.GetId())
		if err != nil {
			// Its rows would be missing from the totals: report later rather than wrong.
			return fmt.Errorf("populate commit record of step %s: %w", st.GetId(), err)
		}
		if c.GetDelta() == nil {
			continue // the step committed nothing
		}
		d := c.GetDelta()
		for _, t := range d.GetTables() {
			if totals[t.GetTable()] == nil {
				totals[t.GetTable()] = &commonv1.Statistics{}
				order = append(order, t.GetTable())
			}
			tt := totals[t.GetTable()]
			tt.WrittenRows += t.GetRows()
			tt.WrittenBytes += t.GetBytes()
			if t.GetTable() == d.GetFlow().GetTarget() {
				tt.ReadRows += d.GetReadRows()
				tt.ReadBytes += d.GetReadBytes()
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
	var published []string
	for _, t := range order {
		ev := opsevents.JobEvent(opsevents.JobResult{
			Workspace: ws, EventType: opsevents.EventPopulateView, JobID: job.GetId(),
			CreatedAt: job.GetCreateTime().AsTime(), FinishedAt: job.GetFinishTime().AsTime(),
			DataSourceName: t, PipeName: job.GetPipe(), Result: result, Error: errText, Stats: totals[t],
			DataSourceID: ids[t], PipeID: ids[job.GetPipe()],
			Options: map[string]string{opsevents.OptionTriggerDataSourceID: source},
		})
		if err := opsevents.Validate(ev); err != nil {
			// No retry can store it: say so rather than retry for ever.
			r.d.Log.Error("populateview event is invalid; not recorded", "job", job.GetId(), "datasource", t, "err", err)
			continue
		}
		if err := r.d.Events.Publish(ctx, ev); err != nil {
			r.d.Log.Warn("populateview event not recorded yet", "job", job.GetId(), "datasource", t, "err", err)
			return fmt.Errorf("populateview event of %s: %w", t, err)
		}
		published = append(published, ev.GetId())
	}
	if r.d.OpsDatabase != "" && len(published) > 0 {
		if !opslogdb.WaitWritten(ctx, r.d.Warehouse, r.d.Written, r.d.OpsDatabase, ws, published, cmp.Or(r.d.EventsWait, 10*time.Second)) {
			r.d.Log.Warn("the populate's events are not in the ops log yet; the job is reported finished without waiting longer", "job", job.GetId(), "events", len(published))
		}
	}
	return nil
}

// sourceOf is a populate job's source Data Source (every step names it).
func sourceOf(rec *jobs.Record) string {
	for _, st := range rec.GetSteps() {
		if s := st.GetPopulate().GetSource(); s != "" {
			return s
		}
	}
	return ""
}
