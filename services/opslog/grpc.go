package opslog

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// QueryEvents implements OpsLogService.
func (s *Service) QueryEvents(ctx context.Context, req *opslogv1.QueryEventsRequest) (*opslogv1.QueryEventsResponse, error) {
	events, err := s.Query(ctx, req.GetFilter(), int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &opslogv1.QueryEventsResponse{Events: events}, nil
}

// TailEvents implements OpsLogService.
func (s *Service) TailEvents(req *opslogv1.TailEventsRequest, stream opslogv1.OpsLogService_TailEventsServer) error {
	err := s.Tail(stream.Context(), req.GetFilter(), req.GetBacklog().AsDuration(), func(ev *opslogv1.OpsEvent) error {
		return stream.Send(&opslogv1.TailEventsResponse{Event: ev})
	})
	if err != nil {
		return toStatus(err)
	}
	return nil
}

func toStatus(err error) error {
	var inv *errInvalid
	if errors.As(err, &inv) {
		st := status.New(codes.InvalidArgument, inv.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: inv.field, Description: inv.msg},
		}}); derr == nil {
			st = d
		}
		return st.Err()
	}
	if errors.Is(err, errStopping) {
		return status.Error(codes.Unavailable, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	switch warehouse.ClassOf(err) {
	case warehouse.ClassRetryable, warehouse.ClassTimeout, warehouse.ClassMemoryLimit:
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
