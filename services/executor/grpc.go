package executor

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
)

// GetStatus reports the executor's running steps and counters.
func (s *Service) GetStatus(context.Context, *executorv1.GetStatusRequest) (*executorv1.GetStatusResponse, error) {
	resp := &executorv1.GetStatusResponse{
		Instance:    s.instance,
		StepsDone:   s.done.Load(),
		StepsFailed: s.failed.Load(),
		Draining:    s.draining.Load(),
	}
	s.mu.Lock()
	for _, r := range s.running {
		resp.Running = append(resp.Running, &executorv1.RunningStep{
			JobId: r.msg.GetJobId(), StepId: r.msg.GetStep().GetId(), Workspace: r.msg.GetWorkspace(),
			StartTime: timestamppb.New(r.start), Attempt: r.tries,
		})
	}
	s.mu.Unlock()
	return resp, nil
}
