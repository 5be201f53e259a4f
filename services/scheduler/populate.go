package scheduler

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
)

// Populate implements SchedulerService: a POPULATEVIEW job whose steps are the partitions of the
// view's source Data Source, small ones grouped by size (populateSteps).
//
// The scheduler has no ClickHouse connection and writes no SQL: the catalog, which owns the
// workspace's SQL, plans the populate (PlanPopulate: the node, its target and source, the
// source's partitions with their sizes from system.parts, the checked condition every step
// applies).
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
	if n := req.GetParallelism(); n < 0 || n > maxPopulateParallelism {
		return nil, &InvalidError{Field: "parallelism", Msg: fmt.Sprintf("%d is not between 1 and %d (0: the server's default)", n, maxPopulateParallelism)}
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
	sizing := stepSizing{
		bytes: cmp.Or(s.cfg.PopulateStepBytes, DefaultPopulateStepBytes), budget: req.GetMemoryBudgetBytes(),
		parallelism: int(cmp.Or(req.GetParallelism(), int32(s.cfg.PopulateParallelism))),
	}
	steps := populateSteps(plan, sizing, opts.GetCutoverSnapshot())
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

// maxStepPartitions bounds the partitions of one step. A step costs a fixed amount whatever it
// holds (staging tables created and dropped, its commit record, the statements of its commit),
// so small partitions are grouped into one step until the group reaches the configured bytes
// (Config.PopulateStepBytes; or the memory budget's share, when smaller) or maxStepPartitions
// partitions; a partition at least that large is a step of its own, which splits itself by the
// memory budget when it runs. maxStepPartitions keeps one insert within ClickHouse's
// max_partitions_per_insert_block (100 by default) and a commit record's move plan small.
const maxStepPartitions = 100

// DefaultPopulateStepBytes is Config.PopulateStepBytes's default: a step of grouped partitions
// reads at most 256 MiB of uncompressed data, a few seconds of work for one insert.
const DefaultPopulateStepBytes = 256 << 20

// maxPopulateParallelism bounds PopulateRequest.parallelism.
const maxPopulateParallelism = 256

// stepSizing is how a populate's steps are sized: bytes a step holds at most, the memory budget
// of a step (0: none given) and the steps the data is spread over at least.
type stepSizing struct {
	bytes, budget uint64
	parallelism   int
}

// limit is the uncompressed bytes a step of grouped partitions holds at most: the configured
// bytes, or half the step's memory budget when that is smaller, or the data's share of one of
// parallelism steps when that is smaller still.
func (z stepSizing) limit(parts []*catalogv1.PopulatePartition) uint64 {
	limit := max(z.bytes, 1)
	if z.budget > 0 && z.budget/2 < limit {
		limit = max(z.budget/2, 1)
	}
	if z.parallelism > 1 {
		var total uint64
		for _, p := range parts {
			total += p.GetBytes()
		}
		if share := (total + uint64(z.parallelism) - 1) / uint64(z.parallelism); share > 0 && share < limit {
			limit = share
		}
	}
	return limit
}

// populateSteps are a populate's steps, planned from the source partitions' sizes: a group of
// small partitions or one large partition each, in partition order. An empty source still makes
// a job (with one step reading the whole source), so that truncate and the ops log behave as for
// any other populate. With a snapshot cut-over, step 0 also reads the partitions created
// between the plan and the cut-over.
func populateSteps(plan *catalogv1.PlanPopulateResponse, sizing stepSizing, snapshot bool) []*persistencev1.StepSpec {
	parts := plan.GetPartitions()
	var steps []*persistencev1.StepSpec
	add := func(group []*catalogv1.PopulatePartition) {
		ps := &persistencev1.PopulateStep{Source: plan.GetSource(), MemoryBudget: sizing.budget, Condition: plan.GetCondition()}
		for _, p := range group {
			ps.Rows += p.GetRows()
			ps.Bytes += p.GetBytes()
		}
		if len(group) == 1 {
			ps.Partition = group[0].GetId()
		} else {
			for _, p := range group {
				ps.Partitions = append(ps.Partitions, p.GetId())
			}
		}
		steps = append(steps, &persistencev1.StepSpec{Id: strconv.Itoa(len(steps)), Work: &persistencev1.StepSpec_Populate{Populate: ps}})
	}
	if len(parts) == 0 {
		add([]*catalogv1.PopulatePartition{{}})
	}
	for _, g := range groupPartitions(parts, sizing.limit(parts), maxStepPartitions) {
		add(g)
	}
	if snapshot {
		ps := steps[0].GetPopulate()
		for _, q := range parts {
			ps.JobPartitions = append(ps.JobPartitions, q.GetId())
		}
	}
	return steps
}

// groupPartitions groups partitions in their order: each group holds at most maxParts
// partitions and at most limit bytes, except a partition larger than limit alone. A partition
// whose size is unknown (0 bytes) counts as limit/maxParts.
func groupPartitions(parts []*catalogv1.PopulatePartition, limit uint64, maxParts int) [][]*catalogv1.PopulatePartition {
	var out [][]*catalogv1.PopulatePartition
	var group []*catalogv1.PopulatePartition
	var size uint64
	for _, p := range parts {
		b := p.GetBytes()
		if b == 0 {
			b = limit / uint64(maxParts)
		}
		if len(group) > 0 && (size+b > limit || len(group) >= maxParts) {
			out = append(out, group)
			group, size = nil, 0
		}
		group = append(group, p)
		size += b
	}
	if len(group) > 0 {
		out = append(out, group)
	}
	return out
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
