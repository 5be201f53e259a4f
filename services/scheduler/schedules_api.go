package scheduler

import (
	"context"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/paging"
)

// The API of copy schedules: pause, resume, list.

// schedule returns a pipe's schedule, reading the workspace from the catalog first.
func (s *Service) copySchedule(ctx context.Context, ws, pipe string) (*copySchedule, error) {
	if err := checkWorkspace(ws); err != nil {
		return nil, err
	}
	if pipe == "" {
		return nil, &InvalidError{Field: "pipe", Msg: "required"}
	}
	c := s.copy.Load()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "copy schedules are not running yet")
	}
	_, node, err := s.copyNode(ctx, ws, pipe)
	if err != nil {
		return nil, err
	}
	spec, err := ParseCopySchedule(node.GetCopySchedule())
	if err != nil || spec == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "pipe %s has no cron COPY_SCHEDULE (it is %q): only scheduled copies can be paused or resumed; run it with `sluice pipe copy run %s`", pipe, node.GetCopySchedule(), pipe)
	}
	if err := c.reconcile(ctx, ws); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sch := c.byKey[scheduleKey(ws, pipe)]
	if sch == nil {
		return nil, status.Errorf(codes.NotFound, "no schedule for pipe %s", pipe)
	}
	cp := *sch
	return &cp, nil
}

func (s *Service) schedulePB(sch *copySchedule, st scheduleState) *schedulerv1.CopySchedule {
	out := &schedulerv1.CopySchedule{Workspace: sch.ws, Pipe: sch.pipe, Cron: sch.cron, Paused: st.Paused}
	last := st.LastTick
	if st.Cron == sch.cron && !last.IsZero() {
		out.LastTick = timestamppb.New(last)
	}
	if last.IsZero() || last.Before(sch.since) {
		last = sch.since
	}
	if !st.Paused {
		next := sch.spec.Next(last)
		if now := s.now(); next.Before(now.Add(-s.cfg.CatchUpWindow)) {
			next = sch.spec.Next(now.Add(-s.cfg.CatchUpWindow))
		}
		out.NextTick = timestamppb.New(next)
	}
	return out
}

func (s *Service) setPaused(ctx context.Context, ws, pipe string, paused bool) (*schedulerv1.CopySchedule, error) {
	sch, err := s.copySchedule(ctx, ws, pipe)
	if err != nil {
		return nil, err
	}
	c := s.copy.Load()
	now := s.now().UTC()
	st, err := c.updateState(ctx, scheduleKey(ws, pipe), func(st *scheduleState) {
		if st.Cron != sch.cron {
			st.Cron, st.LastTick = sch.cron, sch.since
		}
		if st.LastTick.IsZero() {
			st.LastTick = sch.since
		}
		if st.Paused && !paused && st.LastTick.Before(now) {
			// Resume from the next tick: the ticks of the pause are not owed.
			st.LastTick = now
		}
		st.Paused = paused
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if cur := c.byKey[scheduleKey(ws, pipe)]; cur != nil {
		cur.nextDue = time.Time{}
	}
	c.mu.Unlock()
	c.poke()
	s.log.Info("copy schedule", "workspace", ws, "pipe", pipe, "paused", paused)
	return s.schedulePB(sch, st), nil
}

// PauseCopySchedule implements SchedulerService.
func (s *Service) PauseCopySchedule(ctx context.Context, req *schedulerv1.PauseCopyScheduleRequest) (*schedulerv1.PauseCopyScheduleResponse, error) {
	sch, err := s.setPaused(ctx, req.GetWorkspace(), req.GetPipe(), true)
	if err != nil {
		return nil, copyError(err)
	}
	return &schedulerv1.PauseCopyScheduleResponse{Schedule: sch}, nil
}

// ResumeCopySchedule implements SchedulerService.
func (s *Service) ResumeCopySchedule(ctx context.Context, req *schedulerv1.ResumeCopyScheduleRequest) (*schedulerv1.ResumeCopyScheduleResponse, error) {
	sch, err := s.setPaused(ctx, req.GetWorkspace(), req.GetPipe(), false)
	if err != nil {
		return nil, copyError(err)
	}
	return &schedulerv1.ResumeCopyScheduleResponse{Schedule: sch}, nil
}

// ListCopySchedules implements SchedulerService.
func (s *Service) ListCopySchedules(ctx context.Context, req *schedulerv1.ListCopySchedulesRequest) (*schedulerv1.ListCopySchedulesResponse, error) {
	ws := req.GetWorkspace()
	if err := checkWorkspace(ws); err != nil {
		return nil, grpcError(err)
	}
	c := s.copy.Load()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "copy schedules are not running yet")
	}
	if err := c.reconcile(ctx, ws); err != nil {
		return nil, copyError(err)
	}
	c.mu.Lock()
	var list []copySchedule
	for _, sch := range c.byKey {
		if sch.ws == ws {
			list = append(list, *sch)
		}
	}
	c.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].pipe < list[j].pipe })
	list, next, err := paging.ByName(req, req.GetPageSize(), req.GetPageToken(), maxPage, list, func(c copySchedule) string { return c.pipe })
	if err != nil {
		return nil, err
	}
	out := &schedulerv1.ListCopySchedulesResponse{NextPageToken: next}
	for i := range list {
		st, _, err := c.loadState(ctx, scheduleKey(ws, list[i].pipe))
		if err != nil {
			return nil, grpcError(err)
		}
		out.Schedules = append(out.Schedules, s.schedulePB(&list[i], st))
	}
	return out, nil
}
