package step

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/jobs"
)

// StartOnce does a job's start work once, before any of its steps loads: the first step to
// get here records the job's start marker (commits bucket, jobs.StartKey) as its owner and
// runs work; the others wait until the marker says it is done and get what work returned. A
// redelivery of the owning step (same idempotency key) runs work again, which must be harmless
// then: no step has loaded, let alone committed, anything before the marker is done.
func (c *Context) StartOnce(ctx context.Context, work func(ctx context.Context) (*persistencev1.JobStart, error)) (*persistencev1.JobStart, error) {
	key := jobs.StartKey(c.Job.GetWorkspace(), c.Job.GetId())
	mine, _ := proto.Marshal(&persistencev1.JobStart{Owner: c.IdempotencyKey})
	for {
		var rev uint64
		e, err := c.env.Commits.Get(ctx, key)
		js := &persistencev1.JobStart{}
		if err == nil {
			if uerr := proto.Unmarshal(e.Value(), js); uerr != nil {
				return nil, Permanent(fmt.Errorf("job start marker: %w", uerr))
			}
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err = c.env.Commits.Create(ctx, key, mine)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return nil, Transient(fmt.Errorf("job start marker: %w", err))
			}
		case err != nil:
			return nil, Transient(fmt.Errorf("job start marker: %w", err))
		case js.GetDone():
			return js, nil
		case js.GetOwner() == c.IdempotencyKey:
			rev = e.Revision()
		default:
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		done, err := work(ctx)
		if err != nil {
			return nil, err
		}
		done.Owner, done.Done = "", true
		b, _ := proto.Marshal(done)
		if _, err := c.env.Commits.Update(ctx, key, b, rev); err != nil {
			return nil, Transient(fmt.Errorf("job start marker: %w", err))
		}
		return done, nil
	}
}
