package scheduler

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
)

// Populate implements SchedulerService: a POPULATEVIEW job with one step per partition of the
// view's source Data Source.
//
// The scheduler has no ClickHouse connection and writes no SQL: the catalog, which owns the
// workspace's SQL, plans the populate (PlanPopulate: the node, its target and source, the
// source's partitions, the checked condition every step applies). Steps size themselves from
// system.parts when they run (an executor has the connection).
func (s *Service) Populate(ctx context.Context, req *schedulerv1.PopulateRequest) (*schedulerv1.PopulateResponse, error) {
	job, err := s.populate(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.PopulateResponse{Job: job}, nil
}

func (s *Service) populate(ctx context.Context, req *schedulerv1.PopulateRequest) (*schedulerv1.Job, error) {
	ws := req.GetWorkspace()
	if err := checkWorkspace(ws); err != nil {
		return nil, err
	}
	if req.GetPipe() == "" {
		return nil, &InvalidError{Field: "pipe", Msg: "required"}
	}
	if s.deps.Catalog == nil {
		return nil, status.Error(codes.Unavailable, "populate: no catalog connection")
	}
	opts := req.GetOptions()
	if opts == nil {
		opts = &schedulerv1.PopulateOptions{}
	}
	plan, err := s.deps.Catalog.PlanPopulate(ctx, &catalogv1.PlanPopulateRequest{
		Workspace: ws, Pipe: req.GetPipe(), Node: req.GetNode(), SqlCondition: opts.GetSqlCondition(),
		CutoverColumn: opts.GetCutoverColumn(), CutoverValue: opts.GetCutoverValue(), CutoverSnapshot: opts.GetCutoverSnapshot(),
	})
	if err != nil {
		return nil, err // the catalog's status (NotFound, InvalidArgument) as it gave it
	}
	opts.SqlCondition = plan.GetSqlCondition()
	steps := populateSteps(plan, req.GetMemoryBudgetBytes(), opts.GetCutoverSnapshot())
	job, err := s.createJob(ctx, jobRequest{
		Workspace: ws, Kind: schedulerv1.JobKind_JOB_KIND_POPULATEVIEW, Pipe: req.GetPipe(), Node: plan.GetNode(),
		TargetDatasource: plan.GetTarget(), Populate: opts, MaxExecutionTime: req.GetMaxExecutionTime().AsDuration(), Steps: steps,
	})
	if err != nil {
		return nil, err
	}
	s.populateQueued(ctx, job, plan)
	return job, nil
}

// populateSteps are a populate's steps: one per source partition. An empty source still makes
// a job (with one step reading the whole source), so that truncate and the ops log behave as for
// any other populate. With a snapshot cut-over, step 0 also reads the partitions created
// between the plan and the cut-over.
func populateSteps(plan *catalogv1.PlanPopulateResponse, budget uint64, snapshot bool) []*persistencev1.StepSpec {
	parts := plan.GetPartitions()
	if len(parts) == 0 {
		parts = []*catalogv1.PopulatePartition{{}}
	}
	steps := make([]*persistencev1.StepSpec, len(parts))
	for i, p := range parts {
		ps := &persistencev1.PopulateStep{Source: plan.GetSource(), Partition: p.GetId(), Rows: p.GetRows(), MemoryBudget: budget, Condition: plan.GetCondition()}
		if i == 0 && snapshot {
			for _, q := range parts {
				ps.JobPartitions = append(ps.JobPartitions, q.GetId())
			}
		}
		steps[i] = &persistencev1.StepSpec{Id: strconv.Itoa(i), Work: &persistencev1.StepSpec_Populate{Populate: ps}}
	}
	return steps
}

// populateQueued records `populateview-queued` for the target (DATAFILES-SPEC §5.2). The
// event id derives from the job, so a retried publish writes one row; a failure to publish is
// logged, not returned: the job exists.
func (s *Service) populateQueued(ctx context.Context, job *schedulerv1.Job, plan *catalogv1.PlanPopulateResponse) {
	if s.deps.NATS == nil {
		return
	}
	pub := opsevents.NewPublisher(s.deps.NATS, nil)
	ids := opsevents.ResourceIDs(ctx, s.deps.Catalog, job.GetWorkspace(), plan.GetTarget())
	ev := opsevents.JobEvent(opsevents.JobResult{
		Workspace: job.GetWorkspace(), EventType: opsevents.EventPopulateViewQueued, JobID: job.GetId(),
		CreatedAt: job.GetCreateTime().AsTime(), DataSourceName: plan.GetTarget(), PipeName: job.GetPipe(),
		DataSourceID: ids[plan.GetTarget()], PipeID: ids[job.GetPipe()],
		Result: opsevents.ResultOK, Options: map[string]string{opsevents.OptionTriggerDataSourceID: plan.GetSource()},
	})
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := pub.Publish(pctx, ev); err != nil {
		s.log.Warn("populateview-queued event not recorded", "job", job.GetId(), "err", err)
	}
}
