package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	"github.com/sluicehq/sluice/platform/auth"
)

// Append implements IngestService.Append.
func (s *Service) Append(ctx context.Context, req *ingestv1.AppendRequest) (*ingestv1.AppendResponse, error) {
	if err := checkNames(req.GetWorkspace(), req.GetDatasource()); err != nil {
		return nil, err
	}
	if int64(len(req.GetData())) > s.cfg.MaxRequestBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "data: %d bytes, over the limit of %d; use AppendStream (sluice datasource append) for files", len(req.GetData()), s.cfg.MaxRequestBytes)
	}
	res, err := s.accept(ctx, appendRequest{
		workspace: req.GetWorkspace(), datasource: req.GetDatasource(), format: req.GetFormat(), header: req.GetCsvHeader(),
		body: bytes.NewReader(req.GetData()), kind: kindFile, wait: req.GetWait(), maxInput: 10 * s.cfg.MaxRequestBytes,
	})
	if err != nil {
		return nil, grpcError(err)
	}
	return &ingestv1.AppendResponse{Result: result(res)}, nil
}

// AppendStream implements IngestService.AppendStream.
func (s *Service) AppendStream(stream ingestv1.IngestService_AppendStreamServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message must be start")
	}
	ws := start.GetWorkspace()
	if p, ok := auth.FromContext(stream.Context()); ws == "" && ok && p.Workspace != "" {
		ws = p.Workspace // a workspace token need not name its workspace
	}
	if err := checkNames(ws, start.GetDatasource()); err != nil {
		return err
	}
	need := []auth.Scope{{Type: auth.DataSourcesAppend, Resource: start.GetDatasource()}}
	if start.GetMode() == ingestv1.Mode_MODE_REPLACE {
		need = append(need, auth.Scope{Type: auth.DataSourcesDrop, Resource: start.GetDatasource()})
	}
	if err := auth.Require(stream.Context(), ws, need...); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				_ = pw.Close()
				return
			}
			if err != nil {
				_ = pw.CloseWithError(err)
				return
			}
			if m.GetStart() != nil {
				_ = pw.CloseWithError(status.Error(codes.InvalidArgument, "start may only be the first message"))
				return
			}
			if _, err := pw.Write(m.GetChunk()); err != nil {
				return
			}
		}
	}()
	res, err := s.accept(stream.Context(), appendRequest{
		workspace: ws, datasource: start.GetDatasource(), format: start.GetFormat(), header: start.GetCsvHeader(),
		body: pr, kind: kindFile, wait: start.GetWait(), replace: start.GetMode() == ingestv1.Mode_MODE_REPLACE, fileName: start.GetFileName(),
	})
	_ = pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return grpcError(err)
	}
	return stream.SendAndClose(&ingestv1.AppendStreamResponse{Result: result(res)})
}

func result(r appendResult) *ingestv1.AppendResult {
	return &ingestv1.AppendResult{SuccessfulRows: r.rows, QuarantinedRows: r.quarantined, ImportId: r.importID, Bytes: r.bytes}
}

func checkNames(ws, ds string) error {
	if !validName(ws) {
		return status.Errorf(codes.InvalidArgument, "workspace: %q is not a workspace name", ws)
	}
	if !validName(ds) {
		return status.Errorf(codes.InvalidArgument, "datasource: %q is not a Data Source name", ds)
	}
	return nil
}

// grpcError maps the append errors to status codes.
func grpcError(err error) error {
	var fe *formatError
	var le *errLimited
	var ue *errUnavailable
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	switch {
	case isUnknown(err):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &fe):
		return status.Errorf(codes.InvalidArgument, "%s; nothing was written", fe.Error())
	case errors.Is(err, errTooLarge):
		return status.Error(codes.ResourceExhausted, "the data is too large once decompressed")
	case errors.As(err, &le):
		return status.Error(codes.ResourceExhausted, le.Error())
	case errors.As(err, &ue):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, errWaitTimeout):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, fmt.Sprint(err))
}
