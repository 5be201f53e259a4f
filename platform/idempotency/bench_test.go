package idempotency

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// BenchmarkRequestIDs measures what a request id adds to a call on embedded JetStream: the first
// call claims the id and stores its sealed answer (two KV writes, one read), a retry reads and
// opens the answer. The call itself does nothing, so the figures are the whole cost.
func BenchmarkRequestIDs(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	resp := &schedulerv1.RunCopyResponse{Job: &schedulerv1.Job{Id: "01j", Workspace: "ws", Pipe: "daily"}}
	call := func(context.Context) (proto.Message, error) { return resp, nil }
	if _, err := s.Do(ctx, alice, method, copyReq(uuid.NewString()), call); err != nil { // the bucket
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	b.ResetTimer()
	start := time.Now()
	for _, id := range ids {
		if _, err := s.Do(ctx, alice, method, copyReq(id), call); err != nil {
			b.Fatal(err)
		}
	}
	first := time.Since(start)
	start = time.Now()
	for _, id := range ids {
		if _, err := s.Do(ctx, alice, method, copyReq(id), call); err != nil {
			b.Fatal(err)
		}
	}
	retry := time.Since(start)
	b.ReportMetric(float64(first.Microseconds())/float64(b.N), "first-us/call")
	b.ReportMetric(float64(retry.Microseconds())/float64(b.N), "retry-us/call")
}
