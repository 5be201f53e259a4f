package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/jobs"
)

// A copy job is one step whose payload is the copy node rendered when the job is received: the
// parameters (or their defaults) and job_timestamp are applied then, so the job is a pure
// function of its request and a retry or a redelivery runs exactly the same SQL.

// copyRun is a request for a copy job, on demand or from a schedule tick.
type copyRun struct {
	Workspace  string
	Pipe       string
	Parameters map[string]string
	// JobTimestamp is the tick, the caller's value, or zero for the time received.
	JobTimestamp     time.Time
	Mode             commonv1.CopyMode
	MaxExecutionTime time.Duration
	ExecutionType    schedulerv1.ExecutionType
	// ID is the job id of a schedule tick (deterministic), empty for a new one.
	ID string
}

// RunCopy implements SchedulerService.
func (s *Service) RunCopy(ctx context.Context, req *schedulerv1.RunCopyRequest) (*schedulerv1.RunCopyResponse, error) {
	if req.GetMaxExecutionTime() != nil && req.GetMaxExecutionTime().AsDuration() < 0 {
		return nil, grpcError(&InvalidError{Field: "max_execution_time", Msg: "must not be negative"})
	}
	r := copyRun{
		Workspace: req.GetWorkspace(), Pipe: req.GetPipe(), Parameters: req.GetParameters(), Mode: req.GetMode(),
		MaxExecutionTime: req.GetMaxExecutionTime().AsDuration(), ExecutionType: schedulerv1.ExecutionType_EXECUTION_TYPE_MANUAL,
	}
	if req.GetJobTimestamp() != nil {
		if err := req.GetJobTimestamp().CheckValid(); err != nil {
			return nil, grpcError(&InvalidError{Field: "job_timestamp", Msg: err.Error()})
		}
		r.JobTimestamp = req.GetJobTimestamp().AsTime()
	}
	job, err := s.startCopy(ctx, r)
	if err != nil {
		return nil, copyError(err)
	}
	return &schedulerv1.RunCopyResponse{Job: job}, nil
}

// copyError passes the catalog's statuses (NotFound, InvalidArgument naming the missing
// parameters) through as it gave them and maps the scheduler's own errors.
func copyError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return grpcError(err)
}

// copyNode returns the pipe's copy node.
func (s *Service) copyNode(ctx context.Context, ws, pipe string) (*catalogv1.Pipe, *catalogv1.Node, error) {
	pr, err := s.deps.Catalog.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: ws, Name: pipe})
	if err != nil {
		return nil, nil, err
	}
	for _, n := range pr.GetPipe().GetNodes() {
		if n.GetType() == catalogv1.NodeType_NODE_TYPE_COPY {
			return pr.GetPipe(), n, nil
		}
	}
	return nil, nil, &InvalidError{Field: "pipe", Msg: fmt.Sprintf("pipe %s is not a Copy Pipe: it has no node of TYPE COPY", pipe)}
}

// startCopy renders the copy node and creates the job.
func (s *Service) startCopy(ctx context.Context, r copyRun) (*schedulerv1.Job, error) {
	nj, err := s.renderCopy(ctx, r)
	if err != nil {
		return nil, err
	}
	return s.createJob(ctx, nj)
}

// renderCopy renders the copy node into the job to create.
func (s *Service) renderCopy(ctx context.Context, r copyRun) (jobRequest, error) {
	if err := checkWorkspace(r.Workspace); err != nil {
		return jobRequest{}, err
	}
	if r.Pipe == "" {
		return jobRequest{}, &InvalidError{Field: "pipe", Msg: "required"}
	}
	if s.deps.Catalog == nil {
		return jobRequest{}, status.Error(codes.Unavailable, "copy: no catalog connection")
	}
	_, node, err := s.copyNode(ctx, r.Workspace, r.Pipe)
	if err != nil {
		return jobRequest{}, err
	}
	ts := r.JobTimestamp
	if ts.IsZero() {
		ts = s.now()
	}
	ts = ts.UTC().Truncate(time.Second) // DateTime(job_timestamp) has seconds; the job shows what the SQL used
	rctx := ctx
	if r.ExecutionType == schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED && node.GetCopyToken() != "" {
		// A scheduled copy runs with a token of its own: rendering its pipe needs that token to
		// exist and to hold PIPES:READ on the pipe, so deleting the token (or taking the scope
		// away) stops the copy.
		rctx = auth.ActingFor(ctx, r.Workspace, node.GetCopyToken())
	}
	rendered, err := s.deps.Catalog.RenderNode(rctx, &catalogv1.RenderNodeRequest{
		Workspace: r.Workspace, Pipe: r.Pipe, Node: node.GetName(), Parameters: r.Parameters, JobTimestamp: timestamppb.New(ts),
	})
	if err != nil {
		return jobRequest{}, err
	}
	mode := r.Mode
	if mode == commonv1.CopyMode_COPY_MODE_UNSPECIFIED {
		mode = commonv1.CopyMode_COPY_MODE_APPEND
		if node.GetCopyMode() == commonv1.CopyMode_COPY_MODE_REPLACE {
			mode = commonv1.CopyMode_COPY_MODE_REPLACE
		}
	}
	step := &persistencev1.CopyStep{Target: node.GetTargetDatasource(), Sql: rendered.GetSql(), Mode: mode, FileVersion: rendered.GetFileVersion()}
	if step.GetTarget() == "" {
		return jobRequest{}, &InvalidError{Field: "pipe", Msg: fmt.Sprintf("copy node %s of pipe %s has no TARGET_DATASOURCE", node.GetName(), r.Pipe)}
	}
	for _, c := range rendered.GetColumns() {
		step.Columns = append(step.Columns, c.GetName())
	}
	return jobRequest{
		Workspace: r.Workspace, Kind: schedulerv1.JobKind_JOB_KIND_COPY, Pipe: r.Pipe, Node: node.GetName(),
		TargetDatasource: step.GetTarget(), Parameters: r.Parameters, JobTimestamp: ts, ExecutionType: r.ExecutionType,
		Mode: mode, MaxExecutionTime: r.MaxExecutionTime, Limited: true, ID: r.ID, CopyToken: node.GetCopyToken(),
		Steps: []*persistencev1.StepSpec{{Id: "copy", Work: &persistencev1.StepSpec_Copy{Copy: step}}},
	}, nil
}

// checkCopyToken checks, for a tick prepared ahead of time, that the copy's token still exists
// and still reads the pipe.
func (s *Service) checkCopyToken(ctx context.Context, ws, pipe, token string) error {
	if s.deps.CopyTokens == nil || token == "" {
		return nil
	}
	p, err := s.deps.CopyTokens.Lookup(ctx, ws, token)
	if err != nil {
		return err
	}
	if want := (auth.Scope{Type: auth.PipesRead, Resource: pipe}); !p.Allows(ws, want) {
		return status.Errorf(codes.PermissionDenied, "token %q of the scheduled copy no longer holds %s", token, want)
	}
	return nil
}

// errTickTaken is returned when a tick's job id belongs to another pipe (hash collision).
var errTickTaken = errors.New("tick job id taken by another pipe")

// enqueueTick creates the job of one schedule tick, exactly once whoever calls it how often:
// it reports created=false when the tick's job already exists. prepared, when not nil, is the
// tick's job prepared ahead of it (see copySchedules.prepare); otherwise the tick is rendered.
func (s *Service) enqueueTick(ctx context.Context, ws, pipe string, tick time.Time, maxExec time.Duration, prepared *persistencev1.PreparedTick) (job *schedulerv1.Job, created bool, err error) {
	for salt := 0; salt < 4; salt++ {
		id := jobs.TickID(ws, pipe, tick, salt)
		if prepared != nil && prepared.GetRecord().GetJob().GetId() == id {
			if err := s.checkCopyToken(ctx, ws, pipe, prepared.GetCopyToken()); err != nil {
				return nil, false, err
			}
			rec := proto.Clone(prepared.GetRecord()).(*jobs.Record)
			now := timestamppb.New(s.now())
			rec.Job.CreateTime, rec.Job.UpdateTime = now, now
			if _, err = s.store.Create(ctx, rec); err == nil {
				s.metrics.created.WithLabelValues("copy").Inc()
				return rec.GetJob(), true, nil
			}
		} else {
			nj, rerr := s.renderCopy(ctx, tickRun(ws, pipe, tick, maxExec))
			if rerr != nil {
				return nil, false, rerr
			}
			nj.ID = id
			if job, err = s.createJob(ctx, nj); err == nil {
				return job, true, nil
			}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, false, err
		}
		rec, _, gerr := s.store.Get(ctx, ws, id)
		if gerr != nil {
			return nil, false, gerr
		}
		if rec.GetJob().GetPipe() == pipe && rec.GetJob().GetJobTimestamp().AsTime().Equal(tick) {
			return rec.GetJob(), false, nil
		}
	}
	return nil, false, errTickTaken
}

// tickRun is the request of a schedule tick: parameter defaults, job_timestamp = the tick.
func tickRun(ws, pipe string, tick time.Time, maxExec time.Duration) copyRun {
	return copyRun{
		Workspace: ws, Pipe: pipe, JobTimestamp: tick, MaxExecutionTime: maxExec,
		ExecutionType: schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED,
	}
}
