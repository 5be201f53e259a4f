package sluice

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
)

// Error is an error a Sluice call returned, with its structured details (see
// proto/sluice/common/v1/errors.proto).
type Error struct {
	// Code is the gRPC code.
	Code codes.Code
	// Reason is the stable reason (ErrorInfo.reason), for example "NOT_FOUND".
	Reason string
	// Message says what went wrong.
	Message string
	// Metadata is ErrorInfo.metadata (for example "job_id", "clickhouse_code").
	Metadata map[string]string
	// Fields are the request fields at fault (BadRequest).
	Fields []*errdetails.BadRequest_FieldViolation
	// Diagnostics are the datafile problems, each with file, line, column and code.
	Diagnostics []*commonv1.Diagnostic
	// Resource is what was not found, or exists (ResourceInfo).
	Resource *errdetails.ResourceInfo
	// RetryDelay is how long to wait before retrying; 0 when a retry will not help.
	RetryDelay time.Duration
	status     *status.Status
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sluice: %s (%s)", e.Message, e.Reason)
	return b.String()
}

// GRPCStatus is the status the call returned.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// ReasonEnum is Reason as the ErrorReason enum (UNSPECIFIED when this client does not know it).
func (e *Error) ReasonEnum() commonv1.ErrorReason {
	return commonv1.ErrorReason(commonv1.ErrorReason_value["ERROR_REASON_"+e.Reason])
}

// Retryable reports whether the same request may succeed later.
func (e *Error) Retryable() bool {
	return e.RetryDelay > 0 || e.Code == codes.Unavailable
}

// AsError reads the details of an error a Sluice call returned (nil when err is not a status).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	out := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch x := d.(type) {
		case *errdetails.ErrorInfo:
			out.Reason, out.Metadata = x.GetReason(), x.GetMetadata()
		case *errdetails.BadRequest:
			out.Fields = append(out.Fields, x.GetFieldViolations()...)
		case *commonv1.Diagnostic:
			out.Diagnostics = append(out.Diagnostics, x)
		case *errdetails.ResourceInfo:
			out.Resource = x
		case *errdetails.RetryInfo:
			out.RetryDelay = x.GetRetryDelay().AsDuration()
		}
	}
	if out.Reason == "" {
		out.Reason = strings.ToUpper(strings.ReplaceAll(st.Code().String(), " ", "_"))
	}
	return out
}
