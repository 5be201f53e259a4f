package scheduler

import (
	"context"
	"errors"
	"strconv"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/paging"
)

// grpcError maps the scheduler's own errors to API errors (apierr); the gRPC server adds the
// details.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	var inv *InvalidError
	var nc *jobs.NotCancellableError
	switch {
	case errors.As(err, &inv):
		if len(inv.Valid) > 0 {
			return apierr.UnknownName(commonv1.ErrorReason_ERROR_REASON_UNKNOWN_PARAMETER, inv.Field, "parameter", inv.Name, inv.Valid)
		}
		return apierr.InvalidArgument(inv.Field, "%s", inv.Msg)
	case errors.Is(err, jobs.ErrNotFound):
		return apierr.NotFound("job", "", "%v", err)
	case errors.As(err, &nc):
		return apierr.Precondition(commonv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "%v", err)
	}
	// The rest (the catalog's answers, NATS not answering, contexts, bugs) is mapped by the
	// gRPC server's one error interceptor (apierr.Status): NATS away is UNAVAILABLE, a bug
	// INTERNAL, never retryable by accident.
	return err
}

// maxPage bounds the page size of the scheduler's lists.
const maxPage = 1000

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
	f := ListFilter{Statuses: req.GetStatuses(), Kinds: req.GetKinds(), Pipe: req.GetPipe()}
	if req.GetSince() != nil {
		f.Since = req.GetSince().AsTime()
	}
	out, err := s.listJobs(ctx, req.GetWorkspace(), f)
	if err != nil {
		return nil, grpcError(err)
	}
	// Newest first by (create time, id): a page starts after the last job of the previous one,
	// so jobs created while paging never shift what is left.
	key := func(j *schedulerv1.Job) []string {
		return []string{strconv.FormatInt(j.GetCreateTime().AsTime().UnixNano(), 10), j.GetId()}
	}
	after := func(j *schedulerv1.Job, k []string) bool {
		ns, _ := strconv.ParseInt(k[0], 10, 64)
		t := j.GetCreateTime().AsTime().UnixNano()
		return t < ns || (t == ns && j.GetId() < k[1])
	}
	page, next, err := paging.Page(req, req.GetPageSize(), req.GetPageToken(), maxPage, out, key, after)
	if err != nil {
		return nil, err
	}
	return &schedulerv1.ListJobsResponse{Jobs: page, NextPageToken: next}, nil
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
