package opslog

import (
	"context"
	"errors"
	"strconv"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/paging"
)

// QueryEvents implements OpsLogService.
func (s *Service) QueryEvents(ctx context.Context, req *opslogv1.QueryEventsRequest) (*opslogv1.QueryEventsResponse, error) {
	size, err := paging.Size(req.GetPageSize(), MaxLimit)
	if err != nil {
		return nil, err
	}
	key, err := paging.Start(req, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var after *Cursor
	if key != nil {
		ns, perr := strconv.ParseInt(key[0], 10, 64)
		if perr != nil || len(key) != 2 {
			return nil, apierr.InvalidArgument("page_token", "not a page token of QueryEvents")
		}
		after = &Cursor{TimestampNS: ns, ID: key[1]}
	}
	events, err := s.Query(ctx, req.GetFilter(), size+1, after)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &opslogv1.QueryEventsResponse{Events: events}
	if len(events) > size {
		resp.Events = events[:size]
		last := resp.Events[size-1]
		resp.NextPageToken = paging.Next(req, strconv.FormatInt(last.GetTimestamp().AsTime().UnixNano(), 10), last.GetId())
	}
	return resp, nil
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

// toStatus maps the service's errors to API errors; others (ClickHouse, context) are mapped by
// the gRPC server (apierr.Status).
func toStatus(err error) error {
	var inv *errInvalid
	if errors.As(err, &inv) {
		return apierr.InvalidArgument(inv.field, "%s", inv.msg)
	}
	if errors.Is(err, errStopping) {
		return apierr.Unavailable(commonv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "%v", err)
	}
	return err
}
