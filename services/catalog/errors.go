package catalog

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/apierr"
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
type notFoundError struct{ kind, name, msg string }

func (e *notFoundError) Error() string { return e.msg }

// notFound names what is missing; the resource type is read from the message's start (a Data
// Source, a pipe, a workspace...) when the caller does not say.
func notFound(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	kind, name := "resource", ""
	lower := strings.ToLower(msg)
	for _, k := range []struct{ prefix, kind string }{
		{"data source", "datasource"}, {"pipe", "pipe"}, {"workspace", "workspace"}, {"node", "node"},
		{"no file", "file"}, {"no data source or pipe", "resource"}, {"deployed", "resource"},
	} {
		if strings.HasPrefix(lower, k.prefix) {
			kind = k.kind
			break
		}
	}
	switch {
	case strings.HasPrefix(format, "%s %q") && len(args) >= 2:
		kind, name = strings.ReplaceAll(strings.ToLower(fmt.Sprint(args[0])), " ", ""), fmt.Sprint(args[1])
	case len(args) > 0:
		name = fmt.Sprint(args[0])
	}
	return &notFoundError{kind: kind, name: name, msg: msg}
}

// preconditionError refuses a request in the current state.
type preconditionError struct{ msg string }

func (e *preconditionError) Error() string { return e.msg }

// grpcError maps domain errors to API errors (apierr): refused files are INVALID_DATAFILE (or
// NEEDS_FORCE) with one Diagnostic each, bad fields INVALID_ARGUMENT with the field, missing
// things NOT_FOUND with the resource, ClickHouse errors by class.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae
	}
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	var arg *argError
	var nf *notFoundError
	var pe *preconditionError
	var de diagErrors
	switch {
	case errors.As(err, &de):
		diags := make([]*commonv1.Diagnostic, len(de))
		force := len(de) > 0
		for i, d := range de {
			diags[i] = d.proto()
			force = force && d.code == commonv1.DiagnosticCode_DIAGNOSTIC_CODE_NEEDS_FORCE
		}
		e := apierr.Datafile(fmt.Sprintf("%d problem(s) in the files:\n%s", len(de), de.Error()), diags)
		if force {
			e.Reason = commonv1.ErrorReason_ERROR_REASON_NEEDS_FORCE
		}
		return e
	case errors.As(err, &arg):
		e := apierr.InvalidArgument(arg.field, "%s", arg.msg)
		if arg.field == "sql" {
			e.Reason = commonv1.ErrorReason_ERROR_REASON_INVALID_SQL
		}
		return e
	case errors.As(err, &nf):
		return apierr.NotFound(nf.kind, nf.name, "%s", nf.msg)
	case errors.As(err, &pe):
		return apierr.Precondition(commonv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "%s", pe.msg)
	}
	if we := apierr.FromWarehouse(err); we != nil {
		return we
	}
	return err
}
