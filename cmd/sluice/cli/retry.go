package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"google.golang.org/grpc"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Commands that start or change something send a request id (AIP-155): the server applies a
// request once per id, and a call sent again with the same id answers what the first did. So
// such a command retries by itself when it cannot know the outcome (the server was
// unreachable, the attempt timed out, the first attempt is still running), and a user whose
// command failed that way runs it again with --request-id to get the answer instead of a
// second copy, push or token.

// callAttempts is how often a command sends its request before it gives up.
const callAttempts = 4

// requestIDFlag registers --request-id on a command that starts or changes something.
func requestIDFlag(fs *flag.FlagSet, id *string) {
	fs.StringVar(id, "request-id", "", "idempotency key (a UUID): the server applies the request once per key, so running the command again with the key of an attempt that timed out cannot apply it twice (default: a new one, which the command's own retries reuse)")
}

// newRequestID is a random UUID (version 4).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// once sends a request that carries request id *id (made when empty) with call, and sends it
// again, with the same id, while the outcome is unknown, at most callAttempts times; timeout
// bounds each attempt (0: none). When the outcome stays unknown, the error says how to find it
// out: run the command again with the same --request-id.
func (e *Env) once(ctx context.Context, id *string, timeout time.Duration, call func(ctx context.Context, requestID string) error) error {
	if *id == "" {
		*id = newRequestID()
	}
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, timeout)
		}
		err = call(actx, *id)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		delay, again := retryAfter(err, timedOut, attempt)
		if !again || attempt == callAttempts || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	cerr := callError(err)
	if _, unknown := retryAfter(err, true, 1); unknown || ctx.Err() != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("%w\nthe request may or may not have been applied: run the command again with --request-id %s to get its outcome (it is applied at most once)", cerr, *id)}
	}
	return cerr
}

// retryAfter says whether a failed attempt leaves the outcome unknown, so that sending the same
// request again is the way forward, and how long to wait first.
func retryAfter(err error, timedOut bool, attempt int) (time.Duration, bool) {
	backoff := time.Duration(250<<min(attempt-1, 4)) * time.Millisecond
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			backoff = ri.GetRetryDelay().AsDuration()
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return backoff, true
	case codes.DeadlineExceeded, codes.Canceled:
		return backoff, timedOut
	case codes.Aborted:
		// REQUEST_IN_PROGRESS: the first attempt still runs; a store conflict: try again.
		return backoff, true
	}
	return 0, false
}

// call makes one call that changes nothing, with the command's --timeout. Calls that change
// something go through once, lists through pages: they apply it per attempt and per page.
func call[Req, Resp any](ctx context.Context, env *Env, method func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	cctx, cancel := context.WithTimeout(ctx, env.Globals.Timeout)
	defer cancel()
	return method(cctx, req)
}

// errNoMore ends a listing early.
var errNoMore = errors.New("no more pages")

// pages calls fetch with each page token in turn, from first ("" for the beginning), until a
// page ends the list, fetch returns errNoMore, or an error; it returns the token of the page
// after the last one read ("" when the list ended). Each call gets the command's --timeout.
func (e *Env) pages(ctx context.Context, first string, fetch func(ctx context.Context, token string) (next string, err error)) (string, error) {
	token := first
	for {
		cctx, cancel := context.WithTimeout(ctx, e.Globals.Timeout)
		next, err := fetch(cctx, token)
		cancel()
		if errors.Is(err, errNoMore) {
			return next, nil
		}
		if err != nil || next == "" {
			return "", err
		}
		token = next
	}
}

// moreHint tells, on stderr, how to read the rest of a listing that --limit cut.
func (e *Env) moreHint(what, next string) {
	if next != "" && e.Globals.Output != "json" {
		fmt.Fprintf(e.Stderr, "more %s: run again with --page-token %s\n", what, next)
	}
}
