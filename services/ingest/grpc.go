package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/idempotency"
)

// Append implements IngestService.Append.
func (s *Service) Append(ctx context.Context, req *ingestv1.AppendRequest) (*ingestv1.AppendResponse, error) {
	if err := checkNames(req.GetWorkspace(), req.GetDatasource()); err != nil {
		return nil, err
	}
	if int64(len(req.GetData())) > s.cfg.MaxRequestBytes {
		return nil, &apierr.Error{Code: codes.ResourceExhausted, Reason: commonv1.ErrorReason_ERROR_REASON_REQUEST_TOO_LARGE,
			Message: fmt.Sprintf("data: %d bytes, over the limit of %d; use AppendStream (sluice datasource append) for files", len(req.GetData()), s.cfg.MaxRequestBytes)}
	}
	res, err := s.accept(ctx, appendRequest{
		workspace: req.GetWorkspace(), datasource: req.GetDatasource(), format: req.GetFormat(), header: req.GetCsvHeader(),
		body: bytes.NewReader(req.GetData()), kind: kindFile, wait: req.GetWait(), maxInput: 10 * s.cfg.MaxRequestBytes,
		importID: importID(ctx, req.GetWorkspace(), req.GetDatasource()),
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
		return apierr.InvalidArgument("start", "the first message must be start")
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
				_ = pw.CloseWithError(apierr.InvalidArgument("start", "start may only be the first message"))
				return
			}
			if _, err := pw.Write(m.GetChunk()); err != nil {
				return
			}
		}
	}()
	res, err := s.accept(stream.Context(), appendRequest{
		workspace: ws, datasource: start.GetDatasource(), format: formatOf(start.GetFormat(), start.GetFileName()), header: start.GetCsvHeader(),
		body: pr, kind: kindFile, wait: start.GetWait(), replace: start.GetMode() == ingestv1.Mode_MODE_REPLACE, fileName: start.GetFileName(),
		importID: importID(stream.Context(), ws, start.GetDatasource()),
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

// formatOf is the format of a file: the one given, else the file name's (`.csv`, `.parquet`,
// either also `.gz`), else NDJSON, as the API documents.
func formatOf(f ingestv1.Format, fileName string) ingestv1.Format {
	if f != ingestv1.Format_FORMAT_UNSPECIFIED {
		return f
	}
	name := strings.TrimSuffix(strings.ToLower(fileName), ".gz")
	switch {
	case strings.HasSuffix(name, ".csv"):
		return ingestv1.Format_FORMAT_CSV
	case strings.HasSuffix(name, ".parquet"):
		return ingestv1.Format_FORMAT_PARQUET
	}
	return ingestv1.Format_FORMAT_NDJSON
}

// importID is the import id of a call that carries a request id: the same for every retry of
// it (by its caller), so that parts stored again are dropped as duplicates; "" without one.
func importID(ctx context.Context, ws, ds string) string {
	r, ok := idempotency.FromContext(ctx)
	if !ok {
		return ""
	}
	sum := sha256.Sum256([]byte("ingest\x00" + r.Caller + "\x00" + ws + "\x00" + ds + "\x00" + r.ID))
	return hex.EncodeToString(sum[:16])
}

func checkNames(ws, ds string) error {
	if !validName(ws) {
		return apierr.InvalidArgument("workspace", "%q is not a workspace name", ws)
	}
	if !validName(ds) {
		return apierr.InvalidArgument("datasource", "%q is not a Data Source name", ds)
	}
	return nil
}

// grpcError maps the append errors to API errors with their reasons.
func grpcError(err error) error {
	var fe *formatError
	var le *errLimited
	var ue *errUnavailable
	var u *errUnknownDataSource
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	switch {
	case errors.As(err, &u):
		return apierr.NotFound("datasource", u.name, "%s", err)
	case errors.As(err, &fe):
		return apierr.InvalidArgument("data", "%s; nothing was written", fe.Error())
	case errors.Is(err, errTooLarge):
		return &apierr.Error{Code: codes.ResourceExhausted, Reason: commonv1.ErrorReason_ERROR_REASON_REQUEST_TOO_LARGE, Message: "the data is too large once decompressed"}
	case errors.As(err, &le):
		return &apierr.Error{Code: codes.ResourceExhausted, Reason: commonv1.ErrorReason_ERROR_REASON_RATE_LIMITED, Message: le.Error(), RetryDelay: max(le.retryAfter, time.Millisecond)}
	case errors.As(err, &ue):
		return apierr.Unavailable(commonv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "%s", err)
	case errors.Is(err, errWaitTimeout):
		// The rows are stored and will be written: a retry must not store them again.
		return idempotency.Applied(&apierr.Error{Code: codes.DeadlineExceeded, Reason: commonv1.ErrorReason_ERROR_REASON_QUERY_TIMEOUT, Message: err.Error()})
	}
	// The rest (ClickHouse by class, NATS away, contexts, bugs) is mapped by the gRPC server's
	// one error interceptor (apierr.Status).
	return err
}
