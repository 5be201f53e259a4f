package catalog

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// argError is a bad request field.
type argError struct {
	field string
	msg   string
}

func (e *argError) Error() string { return e.field + ": " + e.msg }

func invalidArg(field, format string, args ...any) error {
	return &argError{field: field, msg: fmt.Sprintf(format, args...)}
}

// notFoundError is something the request names that does not exist.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

func notFound(format string, args ...any) error {
	return &notFoundError{msg: fmt.Sprintf(format, args...)}
}

// preconditionError refuses a request in the current state.
type preconditionError struct{ msg string }

func (e *preconditionError) Error() string { return e.msg }

// grpcError maps domain errors to gRPC status codes: bad requests and refused files are
// InvalidArgument (with field details), missing things NotFound, ClickHouse errors by class.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	var ae *argError
	var nf *notFoundError
	var pe *preconditionError
	var de diagErrors
	switch {
	case errors.As(err, &de):
		st := status.New(codes.InvalidArgument, fmt.Sprintf("%d problem(s) in the files:\n%s", len(de), de.Error()))
		br := &errdetails.BadRequest{}
		for _, d := range de {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: d.pos.File, Description: d.String()})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.As(err, &ae):
		st := status.New(codes.InvalidArgument, ae.Error())
		if withDetails, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: ae.field, Description: ae.msg}}}); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.As(err, &nf):
		return status.Error(codes.NotFound, nf.msg)
	case errors.As(err, &pe):
		return status.Error(codes.FailedPrecondition, pe.msg)
	}
	switch warehouse.ClassOf(err) {
	case warehouse.ClassPermanent:
		return status.Error(codes.InvalidArgument, err.Error())
	case warehouse.ClassTimeout:
		return status.Error(codes.DeadlineExceeded, err.Error())
	case warehouse.ClassCancelled:
		return status.Error(codes.Canceled, err.Error())
	case warehouse.ClassRetryable:
		return status.Error(codes.Unavailable, err.Error())
	case warehouse.ClassMemoryLimit:
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
