package warehouse

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// Class tells a caller what to do about an error.
type Class int

const (
	// ClassUnknown: no rule matched; treat as permanent unless you know better.
	ClassUnknown Class = iota
	// ClassMemoryLimit: the statement ran out of memory (code 241). Retry
	// with fewer threads, smaller blocks or a smaller slice of the data.
	ClassMemoryLimit
	// ClassTimeout: max_execution_time (code 159) or the context deadline.
	ClassTimeout
	// ClassCancelled: the context was cancelled or the query was killed (394).
	ClassCancelled
	// ClassRetryable: the server or the network was unavailable or
	// overloaded; the same statement may succeed later.
	ClassRetryable
	// ClassPermanent: the statement is wrong (syntax, unknown table or
	// column, type mismatch, ...). Retrying cannot help.
	ClassPermanent
)

func (c Class) String() string {
	switch c {
	case ClassMemoryLimit:
		return "memory_limit"
	case ClassTimeout:
		return "timeout"
	case ClassCancelled:
		return "cancelled"
	case ClassRetryable:
		return "retryable"
	case ClassPermanent:
		return "permanent"
	}
	return "unknown"
}

// Error is an error of a warehouse call. Code and Name are ClickHouse's
// (0 and "" when the error did not come from ClickHouse, e.g. a network
// error); Message is the server's message verbatim.
type Error struct {
	Code    int32
	Name    string
	Message string
	Class   Class
	QueryID string
	Err     error // the underlying error (context, network, driver), if any
}

func (e *Error) Error() string {
	switch {
	case e.Code != 0 && e.Name != "":
		return fmt.Sprintf("clickhouse: code %d (%s), query %s: %s", e.Code, e.Name, e.QueryID, e.Message)
	case e.Code != 0:
		return fmt.Sprintf("clickhouse: code %d, query %s: %s", e.Code, e.QueryID, e.Message)
	}
	return fmt.Sprintf("clickhouse: query %s: %s", e.QueryID, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// ClickHouseCode is the server's error code (0 when the error did not come from ClickHouse).
func (e *Error) ClickHouseCode() int32 { return e.Code }

// ErrorClass is the error's Class as a word (Class.String): what callers that must not link
// this package (and its drivers) read, such as the API's error mapping.
func (e *Error) ErrorClass() string { return e.Class.String() }

// ClassOf classifies err; errors that are not *Error are classified by
// their kind (context, network).
func ClassOf(err error) Class {
	if err == nil {
		return ClassUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return classifyCause(err)
}

// CodeOf returns the ClickHouse error code in err, or 0.
func CodeOf(err error) int32 {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// Error codes Sluice acts on, from ClickHouse's ErrorCodes.cpp.
const (
	codeUnknownIdentifier         = 47
	codeTypeMismatch              = 53
	codeUnknownTable              = 60
	codeSyntaxError               = 62
	codeUnknownDatabase           = 81
	codeTimeoutExceeded           = 159
	codeTooManySimultaneous       = 202
	codeNetworkError              = 210
	codeMemoryLimitExceeded       = 241
	codeTooManyParts              = 252
	codeQueryWasCancelled         = 394
	codeQueryWasCancelledByClient = 734
)

// codeNames names the codes an old server (18.16 sends no names) may send
// and that classification or logs care about. chDB and modern servers put
// the name in the message; that one wins.
var codeNames = map[int32]string{
	1: "UNSUPPORTED_METHOD", 6: "CANNOT_PARSE_TEXT", 16: "NO_SUCH_COLUMN_IN_TABLE",
	20: "NUMBER_OF_COLUMNS_DOESNT_MATCH", 27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	32: "ATTEMPT_TO_READ_AFTER_EOF", 36: "BAD_ARGUMENTS", 38: "CANNOT_PARSE_DATE",
	41: "CANNOT_PARSE_DATETIME", 42: "NUMBER_OF_ARGUMENTS_DOESNT_MATCH", 43: "ILLEGAL_TYPE_OF_ARGUMENT",
	44: "ILLEGAL_COLUMN", 46: "UNKNOWN_FUNCTION", 47: "UNKNOWN_IDENTIFIER", 48: "NOT_IMPLEMENTED",
	50: "UNKNOWN_TYPE", 53: "TYPE_MISMATCH", 57: "TABLE_ALREADY_EXISTS", 60: "UNKNOWN_TABLE",
	62: "SYNTAX_ERROR", 70: "CANNOT_CONVERT_TYPE", 81: "UNKNOWN_DATABASE", 82: "DATABASE_ALREADY_EXISTS",
	115: "UNKNOWN_SETTING", 158: "TOO_MANY_ROWS", 159: "TIMEOUT_EXCEEDED", 160: "TOO_SLOW",
	164: "READONLY", 173: "CANNOT_ALLOCATE_MEMORY", 192: "UNKNOWN_USER", 193: "WRONG_PASSWORD",
	202: "TOO_MANY_SIMULTANEOUS_QUERIES", 203: "NO_FREE_CONNECTION", 209: "SOCKET_TIMEOUT",
	210: "NETWORK_ERROR", 215: "NOT_AN_AGGREGATE", 225: "NO_ZOOKEEPER", 236: "ABORTED",
	241: "MEMORY_LIMIT_EXCEEDED", 242: "TABLE_IS_READ_ONLY", 248: "INVALID_PARTITION_VALUE",
	252: "TOO_MANY_PARTS", 279: "ALL_CONNECTION_TRIES_FAILED", 285: "TOO_FEW_LIVE_REPLICAS",
	307: "TOO_MANY_BYTES", 319: "UNKNOWN_STATUS_OF_INSERT", 344: "SUPPORT_IS_DISABLED",
	386: "NO_COMMON_TYPE", 394: "QUERY_WAS_CANCELLED", 396: "TOO_MANY_ROWS_OR_BYTES",
	439: "CANNOT_SCHEDULE_TASK", 473: "DEADLOCK_AVOIDED", 497: "ACCESS_DENIED",
	516: "AUTHENTICATION_FAILED", 734: "QUERY_WAS_CANCELLED_BY_CLIENT", 999: "KEEPER_EXCEPTION",
}

var codeClasses = map[int32]Class{
	codeMemoryLimitExceeded: ClassMemoryLimit,
	173:                     ClassMemoryLimit,

	codeTimeoutExceeded: ClassTimeout,

	codeQueryWasCancelled:         ClassCancelled,
	codeQueryWasCancelledByClient: ClassCancelled,

	codeTooManySimultaneous: ClassRetryable,
	codeTooManyParts:        ClassRetryable,
	codeNetworkError:        ClassRetryable,
	203:                     ClassRetryable, // NO_FREE_CONNECTION
	209:                     ClassRetryable, // SOCKET_TIMEOUT
	225:                     ClassRetryable, // NO_ZOOKEEPER
	236:                     ClassRetryable, // ABORTED
	242:                     ClassRetryable, // TABLE_IS_READ_ONLY (replica lost keeper)
	279:                     ClassRetryable, // ALL_CONNECTION_TRIES_FAILED
	285:                     ClassRetryable, // TOO_FEW_LIVE_REPLICAS
	319:                     ClassRetryable, // UNKNOWN_STATUS_OF_INSERT
	439:                     ClassRetryable, // CANNOT_SCHEDULE_TASK
	473:                     ClassRetryable, // DEADLOCK_AVOIDED
	999:                     ClassRetryable, // KEEPER_EXCEPTION

	1: ClassPermanent, 6: ClassPermanent, 16: ClassPermanent, 20: ClassPermanent,
	27: ClassPermanent, 36: ClassPermanent, 38: ClassPermanent, 41: ClassPermanent,
	42: ClassPermanent, 43: ClassPermanent, 44: ClassPermanent, 46: ClassPermanent,
	codeUnknownIdentifier: ClassPermanent, 48: ClassPermanent, 50: ClassPermanent,
	codeTypeMismatch: ClassPermanent, 57: ClassPermanent, codeUnknownTable: ClassPermanent,
	codeSyntaxError: ClassPermanent, 70: ClassPermanent, codeUnknownDatabase: ClassPermanent,
	82: ClassPermanent, 115: ClassPermanent, 158: ClassPermanent, 160: ClassPermanent,
	164: ClassPermanent, 192: ClassPermanent, 193: ClassPermanent, 215: ClassPermanent,
	248: ClassPermanent, 307: ClassPermanent, 344: ClassPermanent, 386: ClassPermanent,
	396: ClassPermanent, 497: ClassPermanent, 516: ClassPermanent,
}

// serverError builds the *Error for a ClickHouse exception.
func serverError(code int32, name, message, queryID string, cause error) *Error {
	if name == "" {
		name = codeNames[code]
	}
	return &Error{Code: code, Name: name, Message: message, Class: codeClasses[code], QueryID: queryID, Err: cause}
}

var (
	// "Code: 241. DB::Exception: ... (MEMORY_LIMIT_EXCEEDED) (version 26.7.2.1)"
	reCode = regexp.MustCompile(`^Code: (\d+)\.`)
	reName = regexp.MustCompile(`\(([A-Z][A-Z0-9_]+)\)`)
)

// parseMessageError turns an exception message as chDB reports it into an
// *Error. The name is the first "(NAME)" after the code: ClickHouse puts it
// right after the message, before any nested context.
func parseMessageError(msg, queryID string) *Error {
	m := reCode.FindStringSubmatch(msg)
	if m == nil {
		return &Error{Message: msg, Class: ClassUnknown, QueryID: queryID}
	}
	code, _ := strconv.ParseInt(m[1], 10, 32)
	var name string
	if n := reName.FindStringSubmatch(msg); n != nil {
		name = n[1]
	}
	if want := codeNames[int32(code)]; want != "" && name != want {
		name = want
	}
	return serverError(int32(code), name, msg, queryID, nil)
}

// contextError wraps the context's error (which caused a call to fail or
// not to start) so that errors.Is(err, context.Canceled) still holds.
func contextError(ctx context.Context, queryID string) *Error {
	err := ctx.Err()
	if err == nil {
		// The deadline passed but the context's timer has not fired yet.
		err = context.DeadlineExceeded
	}
	msg := err.Error()
	if cause := context.Cause(ctx); cause != nil {
		msg = cause.Error()
	}
	return &Error{Message: msg, Class: classifyCause(err), QueryID: queryID, Err: err}
}

// expired reports whether ctx is done or past its deadline. A network
// deadline set from ctx can fire before the context's own timer does.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// causeError wraps a non-ClickHouse error (network, driver).
func causeError(err error, queryID string) *Error {
	return &Error{Message: err.Error(), Class: classifyCause(err), QueryID: queryID, Err: err}
}

func classifyCause(err error) Class {
	switch {
	case errors.Is(err, context.Canceled):
		return ClassCancelled
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return ClassRetryable
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return ClassRetryable
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return ClassRetryable
	}
	return ClassUnknown
}

// newQueryID returns a random (version 4) UUID.
func newQueryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
