package copypipe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/opsevents/opslogdb"
	"github.com/sluicehq/sluice/services/executor/dataflow"
	"github.com/sluicehq/sluice/services/executor/step"
)

// JobEnds implements step.Reporter: the copy events of a job that ends, one per Data Source of
// its flow (the target, then each one the cascade writes), with the figures its commit record
// holds when it committed, or the job's error when it did not (error, cancel, maximum execution
// time). Event ids derive from the job and the Data Source, so reporting again writes nothing
// new; with an ops database, it returns once the events are readable there. An error means some
// were not stored (NATS away, or a commit record that names the cascade's Data Sources could
// not be read): the report is to be made again.
func (r *Runner) JobEnds(ctx context.Context, rec *jobs.Record, commits step.Commits) error {
	job := rec.GetJob()
	result, msg := opsevents.ResultOK, ""
	switch job.GetStatus() {
	case schedulerv1.JobStatus_JOB_STATUS_DONE:
	case schedulerv1.JobStatus_JOB_STATUS_ERROR:
		result, msg = opsevents.ResultError, job.GetError().GetMessage()
	case schedulerv1.JobStatus_JOB_STATUS_CANCELLED:
		result, msg = opsevents.ResultCancelled, job.GetError().GetMessage()
		if msg == "" {
			msg = "the job was cancelled"
		}
	default:
		return nil
	}
	log := r.logger().With("job", job.GetId(), "workspace", job.GetWorkspace())
	var errs []error
	for _, st := range rec.GetSteps() {
		p, err := Step(st)
		if err != nil {
			continue
		}
		// No record (nil, nil) means the step committed nothing; an error means it could not
		// be read, and the events would miss the cascade's Data Sources.
		c, err := commits.Commit(ctx, job.GetWorkspace(), job.GetId(), st.GetId())
		if err != nil {
			errs = append(errs, fmt.Errorf("copy commit record of step %s: %w", st.GetId(), err))
			continue
		}
		committed := c.GetDelta()
		flow := dataflow.Flow{Target: p.GetTarget()}
		if committed.GetFlow() != nil {
			flow = dataflow.FlowOf(committed.GetFlow())
		}
		if result != opsevents.ResultOK {
			committed = nil // nothing of it was written
		}
		if err := r.events(ctx, job, log, p, flow, committed, result, msg, job.GetFinishTime().AsTime(), true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// events records one copy event per Data Source written: the target, then each Data Source the
// cascade wrote, finished at finished. It returns an error (NATS's, step.NATSError) when one
// was not stored; the ids derive from the job, the event type and the Data Source, so calling
// it again stores each event once. An event that fails validation is logged and skipped: no
// retry can store it. With wait and an ops database, it returns once the events are readable
// there (or after EventsWait, logged).
func (r *Runner) events(ctx context.Context, job *schedulerv1.Job, log *slog.Logger, p *persistencev1.CopyStep, flow dataflow.Flow, rec *persistencev1.DeltaCommit, result, msg string, finished time.Time, wait bool) error {
	exec := opsevents.ExecutionManual
	if job.GetExecutionType() == schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED {
		exec = opsevents.ExecutionScheduled
	}
	mode := "append"
	if p.GetMode() == commonv1.CopyMode_COPY_MODE_REPLACE {
		mode = "replace"
	}
	ids := opsevents.ResourceIDs(ctx, r.Catalog, job.GetWorkspace(), p.GetTarget())
	var published []string
	var failed error
	for _, t := range flow.Tables() {
		st := &commonv1.Statistics{}
		if rec != nil {
			for _, f := range rec.GetTables() {
				if f.GetTable() == t {
					st.WrittenRows, st.WrittenBytes = f.GetRows(), f.GetBytes()
				}
			}
			if t == p.GetTarget() {
				st.ReadRows, st.ReadBytes, st.MemoryUsage, st.CpuTime = rec.GetReadRows(), rec.GetReadBytes(), rec.GetMemoryUsage(), rec.GetCpuTime()
			}
		}
		ev := opsevents.JobEvent(opsevents.JobResult{
			Workspace: job.GetWorkspace(), EventType: opsevents.EventCopy, JobID: job.GetId(),
			CreatedAt: job.GetCreateTime().AsTime(), FinishedAt: finished, DataSourceName: t, PipeName: job.GetPipe(),
			DataSourceID: ids[t], PipeID: ids[job.GetPipe()],
			Result: result, Error: msg, Stats: st, Mode: mode, ExecutionType: exec,
		})
		if r.Events == nil {
			log.Info("copy event", "datasource", t, "result", result, "rows", st.GetWrittenRows(), "error", msg)
			continue
		}
		if err := opsevents.Validate(ev); err != nil {
			log.Error("copy event is invalid; not recorded", "datasource", t, "err", err)
			continue
		}
		if err := r.Events.Publish(ctx, ev); err != nil {
			log.Warn("copy event not recorded yet", "datasource", t, "err", err)
			failed = step.NATSError(fmt.Errorf("copy event of %s: %w", t, err))
			continue
		}
		published = append(published, ev.GetId())
	}
	if failed != nil {
		return failed
	}
	if wait && r.OpsDatabase != "" && len(published) > 0 {
		if !opslogdb.WaitWritten(ctx, r.Conn, r.Written, r.OpsDatabase, job.GetWorkspace(), published, cmp.Or(r.EventsWait, 10*time.Second)) {
			log.Warn("the copy's events are not in the ops log yet; the job is reported finished without waiting longer", "events", len(published))
		}
	}
	return nil
}
