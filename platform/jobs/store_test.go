package jobs

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestIsRevisionMismatch: the refusal of a write published with an expected revision is a
// conflict from a single server (10071) and from a replicated bucket (10164), bare or wrapped,
// and nothing else is.
func TestIsRevisionMismatch(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, true},
		{fmt.Errorf("admission: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}), true},
		{jetstream.ErrKeyExists, true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, false},
		{context.DeadlineExceeded, false},
		{nil, false},
	} {
		if got := IsRevisionMismatch(c.err); got != c.want {
			t.Errorf("IsRevisionMismatch(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
