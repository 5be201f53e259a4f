// Package apierr is the one mapping of Sluice's errors to gRPC statuses with structured details
// (sluice/common/v1/errors.proto says what each carries): an Error names its gRPC code, its
// stable reason (google.rpc.ErrorInfo), and the details that help the caller act on it: field
// violations (BadRequest), datafile diagnostics, the resource (ResourceInfo), and when to retry
// (RetryInfo). Status turns any error a handler returns into such a status; the gRPC server
// applies it to every call.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/natsx"
)

// Domain is google.rpc.ErrorInfo.domain of every Sluice error.
const Domain = "sluice"

// DefaultRetryDelay is the RetryInfo delay of errors that a later retry can get past.
const DefaultRetryDelay = time.Second

// Error is an API error. Build it with the constructors; handlers return it as it is.
type Error struct {
	Code    codes.Code
	Reason  commonv1.ErrorReason
	Message string
	// Fields are the request fields at fault (BadRequest).
	Fields []*errdetails.BadRequest_FieldViolation
	// Diagnostics are datafile problems, each with its place.
	Diagnostics []*commonv1.Diagnostic
	// Metadata goes into ErrorInfo.metadata.
	Metadata map[string]string
	// Resource is what the error is about (ResourceInfo), for NOT_FOUND and ALREADY_EXISTS.
	Resource *errdetails.ResourceInfo
	// RetryDelay, when positive, adds RetryInfo: the same request may succeed after it.
	RetryDelay time.Duration
	cause      error
}

// Error reads as the error of a gRPC call that returned e does.
func (e *Error) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", e.Code, e.Message)
}

// Unwrap returns the error this one was made from, if any.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus makes an Error a gRPC status wherever grpc-go meets it.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	info := &errdetails.ErrorInfo{Reason: ReasonName(e.Reason), Domain: Domain, Metadata: e.Metadata}
	details := []protoadapt.MessageV1{info}
	if len(e.Fields) > 0 {
		details = append(details, &errdetails.BadRequest{FieldViolations: e.Fields})
	}
	for _, d := range e.Diagnostics {
		details = append(details, d)
	}
	if e.Resource != nil {
		details = append(details, e.Resource)
	}
	if e.RetryDelay > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryDelay)})
	}
	out, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return out
}

// With returns a copy of e with metadata added.
func (e *Error) With(key, value string) *Error {
	c := *e
	c.Metadata = maps.Clone(e.Metadata)
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	c.Metadata[key] = value
	return &c
}

// Wrap returns a copy of e that unwraps to cause.
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// ReasonName is the ErrorInfo.reason of a reason: its enum name without ERROR_REASON_.
func ReasonName(r commonv1.ErrorReason) string {
	return strings.TrimPrefix(r.String(), "ERROR_REASON_")
}

// ReasonOf parses an ErrorInfo.reason back (UNSPECIFIED when unknown).
func ReasonOf(name string) commonv1.ErrorReason {
	return commonv1.ErrorReason(commonv1.ErrorReason_value["ERROR_REASON_"+name])
}

// Violation is one bad request field.
func Violation(field, format string, args ...any) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...), Reason: ReasonName(commonv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)}
}

// InvalidArgument is a bad request field (INVALID_ARGUMENT, reason INVALID_ARGUMENT).
func InvalidArgument(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{
		Code: codes.InvalidArgument, Reason: commonv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
		Message: field + ": " + msg, Fields: []*errdetails.BadRequest_FieldViolation{Violation(field, "%s", msg)},
		Metadata: map[string]string{"field": field},
	}
}

// BadRequest is a request refused for several fields at once, with a reason such as
// MISSING_PARAMETER or UNKNOWN_PARAMETER.
func BadRequest(reason commonv1.ErrorReason, msg string, fields ...*errdetails.BadRequest_FieldViolation) *Error {
	for _, f := range fields {
		f.Reason = ReasonName(reason)
	}
	return &Error{Code: codes.InvalidArgument, Reason: reason, Message: msg, Fields: fields}
}

// UnknownName refuses a name that is not one of valid (an undefined enum value, a parameter a
// node does not declare): the violation lists the valid names.
func UnknownName(reason commonv1.ErrorReason, field, what, name string, valid []string) *Error {
	valid = slices.Clone(valid)
	slices.Sort(valid)
	list := strings.Join(valid, ", ")
	if list == "" {
		list = "none"
	}
	msg := fmt.Sprintf("%s %q is not one of: %s", what, name, list)
	e := BadRequest(reason, field+": "+msg, &errdetails.BadRequest_FieldViolation{Field: field, Description: msg})
	e.Metadata = map[string]string{"field": field, "valid": strings.Join(valid, ",")}
	return e
}

// Datafile refuses files for their problems (INVALID_ARGUMENT, reason INVALID_DATAFILE, one
// Diagnostic each).
func Datafile(msg string, diags []*commonv1.Diagnostic) *Error {
	return &Error{Code: codes.InvalidArgument, Reason: commonv1.ErrorReason_ERROR_REASON_INVALID_DATAFILE, Message: msg, Diagnostics: diags}
}

// NotFound is a missing resource (NOT_FOUND with ResourceInfo). resourceType is one of
// workspace, datasource, pipe, node, job, file, schedule, token.
func NotFound(resourceType, name, format string, args ...any) *Error {
	return &Error{
		Code: codes.NotFound, Reason: commonv1.ErrorReason_ERROR_REASON_NOT_FOUND, Message: fmt.Sprintf(format, args...),
		Resource: &errdetails.ResourceInfo{ResourceType: resourceType, ResourceName: name},
		Metadata: map[string]string{resourceType: name},
	}
}

// AlreadyExists is a resource the request creates that exists (ALREADY_EXISTS with
// ResourceInfo).
func AlreadyExists(resourceType, name, format string, args ...any) *Error {
	return &Error{
		Code: codes.AlreadyExists, Reason: commonv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS, Message: fmt.Sprintf(format, args...),
		Resource: &errdetails.ResourceInfo{ResourceType: resourceType, ResourceName: name},
		Metadata: map[string]string{resourceType: name},
	}
}

// Precondition refuses a request in the resource's current state (FAILED_PRECONDITION).
func Precondition(reason commonv1.ErrorReason, format string, args ...any) *Error {
	return &Error{Code: codes.FailedPrecondition, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Unavailable is a dependency that cannot be reached now (UNAVAILABLE with RetryInfo).
func Unavailable(reason commonv1.ErrorReason, format string, args ...any) *Error {
	return &Error{Code: codes.Unavailable, Reason: reason, Message: fmt.Sprintf(format, args...), RetryDelay: DefaultRetryDelay}
}

// codeReasons is the reason of a status made without one (by grpc-go itself, or by code that
// predates this package).
var codeReasons = map[codes.Code]commonv1.ErrorReason{
	codes.InvalidArgument:    commonv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.NotFound:           commonv1.ErrorReason_ERROR_REASON_NOT_FOUND,
	codes.AlreadyExists:      commonv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
	codes.FailedPrecondition: commonv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
	codes.OutOfRange:         commonv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.Unavailable:        commonv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
	codes.ResourceExhausted:  commonv1.ErrorReason_ERROR_REASON_MEMORY_LIMIT,
	codes.DeadlineExceeded:   commonv1.ErrorReason_ERROR_REASON_QUERY_TIMEOUT,
	codes.Canceled:           commonv1.ErrorReason_ERROR_REASON_CANCELLED,
	codes.Aborted:            commonv1.ErrorReason_ERROR_REASON_REQUEST_IN_PROGRESS,
	codes.Unauthenticated:    commonv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
	codes.PermissionDenied:   commonv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
	codes.Unimplemented:      commonv1.ErrorReason_ERROR_REASON_UNSUPPORTED,
	codes.Internal:           commonv1.ErrorReason_ERROR_REASON_INTERNAL,
	codes.Unknown:            commonv1.ErrorReason_ERROR_REASON_INTERNAL,
	codes.DataLoss:           commonv1.ErrorReason_ERROR_REASON_INTERNAL,
}

// retryable codes get RetryInfo when a status has none.
var retryable = map[codes.Code]bool{codes.Unavailable: true, codes.Aborted: true, codes.ResourceExhausted: true}

// Status is the status of any error a handler returns, with ErrorInfo always and the other
// details where they apply. A status that already carries ErrorInfo (an Error, or a status a
// peer Sluice service returned) passes unchanged.
func Status(err error) *status.Status {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.GRPCStatus()
	}
	if st, ok := status.FromError(err); ok {
		return withInfo(st)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return (&Error{Code: codes.Canceled, Reason: commonv1.ErrorReason_ERROR_REASON_CANCELLED, Message: err.Error()}).GRPCStatus()
	case natsx.Unreachable(err) && !errors.Is(err, context.DeadlineExceeded):
		return Unavailable(commonv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "%v", err).GRPCStatus()
	case errors.Is(err, context.DeadlineExceeded):
		return (&Error{Code: codes.DeadlineExceeded, Reason: commonv1.ErrorReason_ERROR_REASON_QUERY_TIMEOUT, Message: err.Error()}).GRPCStatus()
	}
	if we := FromWarehouse(err); we != nil {
		return we.GRPCStatus()
	}
	return (&Error{Code: codes.Internal, Reason: commonv1.ErrorReason_ERROR_REASON_INTERNAL, Message: err.Error()}).GRPCStatus()
}

// FromWarehouse maps a ClickHouse error by its class (nil when err is none): refused statements
// are CLICKHOUSE_ERROR with the server's code, timeouts QUERY_TIMEOUT, memory MEMORY_LIMIT,
// unreachable servers CLICKHOUSE_UNAVAILABLE.
func FromWarehouse(err error) *Error {
	var we clickHouseError
	if !errors.As(err, &we) {
		return nil
	}
	e := &Error{Message: err.Error(), cause: err, Metadata: map[string]string{}}
	if code := we.ClickHouseCode(); code != 0 {
		e.Metadata["clickhouse_code"] = strconv.Itoa(int(code))
	}
	switch we.ErrorClass() {
	case "timeout":
		e.Code, e.Reason = codes.DeadlineExceeded, commonv1.ErrorReason_ERROR_REASON_QUERY_TIMEOUT
	case "cancelled":
		e.Code, e.Reason = codes.Canceled, commonv1.ErrorReason_ERROR_REASON_CANCELLED
	case "retryable":
		e.Code, e.Reason, e.RetryDelay = codes.Unavailable, commonv1.ErrorReason_ERROR_REASON_CLICKHOUSE_UNAVAILABLE, DefaultRetryDelay
	case "memory_limit":
		e.Code, e.Reason, e.RetryDelay = codes.ResourceExhausted, commonv1.ErrorReason_ERROR_REASON_MEMORY_LIMIT, DefaultRetryDelay
	default:
		e.Code, e.Reason = codes.InvalidArgument, commonv1.ErrorReason_ERROR_REASON_CLICKHOUSE_ERROR
	}
	return e
}

// clickHouseError is what FromWarehouse reads of an error of a ClickHouse call
// (warehouse.Error): read through methods, so that the error mapping, which every service
// links, links no ClickHouse driver (the scheduler has none).
type clickHouseError interface {
	error
	ClickHouseCode() int32
	ErrorClass() string
}

// withInfo adds ErrorInfo (and RetryInfo where retrying helps) to a status that has none.
func withInfo(st *status.Status) *status.Status {
	hasRetry := false
	for _, d := range st.Details() {
		switch d.(type) {
		case *errdetails.ErrorInfo:
			return st
		case *errdetails.RetryInfo:
			hasRetry = true
		}
	}
	if st.Code() == codes.OK {
		return st
	}
	reason, ok := codeReasons[st.Code()]
	if !ok {
		reason = commonv1.ErrorReason_ERROR_REASON_INTERNAL
	}
	e := &Error{Code: st.Code(), Reason: reason, Message: st.Message()}
	if retryable[st.Code()] && !hasRetry {
		e.RetryDelay = DefaultRetryDelay
	}
	p := st.Proto()
	extra := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: ReasonName(reason), Domain: Domain}}
	if e.RetryDelay > 0 {
		extra = append(extra, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryDelay)})
	}
	out := status.FromProto(p)
	// Keep the details the status had (BadRequest, ...) after the ErrorInfo.
	with, err := status.New(st.Code(), st.Message()).WithDetails(extra...)
	if err != nil {
		return out
	}
	wp := with.Proto()
	wp.Details = append(wp.Details, p.GetDetails()...)
	return status.FromProto(wp)
}

// Info returns the ErrorInfo of an error a Sluice call returned (nil when it has none).
func Info(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// ReasonOfError is the reason of an error a Sluice call returned (UNSPECIFIED when none).
func ReasonOfError(err error) commonv1.ErrorReason {
	if info := Info(err); info != nil {
		return ReasonOf(info.GetReason())
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return commonv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}
