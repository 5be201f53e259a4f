package scheduler

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/services/scheduler/client/jobs"
)

// grpcError maps domain errors to gRPC status codes.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	var inv *InvalidError
	var nc *NotCancellableError
	switch {
	case errors.As(err, &inv):
		st := status.New(codes.InvalidArgument, inv.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: inv.Field, Description: inv.Msg},
		}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, jobs.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &nc):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// RunNoopJob implements SchedulerService.
func (s *Service) RunNoopJob(ctx context.Context, req *schedulerv1.RunNoopJobRequest) (*schedulerv1.RunNoopJobResponse, error) {
	job, err := s.runNoopJob(ctx, req.GetWorkspace(), req.GetParameters(), req.GetMaxExecutionTime().AsDuration())
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.RunNoopJobResponse{Job: job}, nil
}

// GetJob implements SchedulerService.
func (s *Service) GetJob(ctx context.Context, req *schedulerv1.GetJobRequest) (*schedulerv1.GetJobResponse, error) {
	job, err := s.getJob(ctx, req.GetWorkspace(), req.GetId())
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.GetJobResponse{Job: job}, nil
}

// ListJobs implements SchedulerService.
func (s *Service) ListJobs(ctx context.Context, req *schedulerv1.ListJobsRequest) (*schedulerv1.ListJobsResponse, error) {
	if req.GetPageSize() < 0 {
		return nil, grpcError(&InvalidError{Field: "page_size", Msg: "must not be negative"})
	}
	f := ListFilter{Statuses: req.GetStatuses(), Kinds: req.GetKinds(), Pipe: req.GetPipe(), Limit: int(req.GetPageSize())}
	if req.GetSince() != nil {
		f.Since = req.GetSince().AsTime()
	}
	out, err := s.listJobs(ctx, req.GetWorkspace(), f)
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.ListJobsResponse{Jobs: out}, nil
}

// CancelJob implements SchedulerService.
func (s *Service) CancelJob(ctx context.Context, req *schedulerv1.CancelJobRequest) (*schedulerv1.CancelJobResponse, error) {
	job, err := s.cancelJob(ctx, req.GetWorkspace(), req.GetId())
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.CancelJobResponse{Job: job}, nil
}

// WatchJob implements SchedulerService.
func (s *Service) WatchJob(req *schedulerv1.WatchJobRequest, stream schedulerv1.SchedulerService_WatchJobServer) error {
	return grpcError(s.watchJob(stream.Context(), req.GetWorkspace(), req.GetId(), func(j *schedulerv1.Job) error {
		return stream.Send(&schedulerv1.WatchJobResponse{Job: j})
	}))
}

// GetWorkspaceLimits implements SchedulerService.
func (s *Service) GetWorkspaceLimits(ctx context.Context, req *schedulerv1.GetWorkspaceLimitsRequest) (*schedulerv1.GetWorkspaceLimitsResponse, error) {
	if err := checkWorkspace(req.GetWorkspace()); err != nil {
		return nil, grpcError(err)
	}
	l, _, err := s.workspaceLimits(ctx, req.GetWorkspace())
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.GetWorkspaceLimitsResponse{Limits: l}, nil
}

// SetWorkspaceLimits implements SchedulerService.
func (s *Service) SetWorkspaceLimits(ctx context.Context, req *schedulerv1.SetWorkspaceLimitsRequest) (*schedulerv1.SetWorkspaceLimitsResponse, error) {
	l, err := s.setWorkspaceLimits(ctx, req.GetWorkspace(), req.GetLimits())
	if err != nil {
		return nil, grpcError(err)
	}
	return &schedulerv1.SetWorkspaceLimitsResponse{Limits: l}, nil
}
