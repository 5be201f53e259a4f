package step

// The view fence orders the commits of steps that cascade through materialized views with
// the cut-overs of those views. A step stages its cascade with the views as the catalog renders
// them when it starts; if a view is cut over before the step's rows reach the Data Sources, the
// step's cascade is the old view's, written after the cut-over: rows the populate writes again.
// So, per workspace (NATS KV bucket sluice_view_fence):
//
//	<workspace>                      {epoch, cutting}: bumped, and marked cutting, by a cut-over
//	<workspace>.<job>.<step>         a step between its check and the end of its commit
//
// A step reads the fence when it resolves its flow (waiting while a cut-over is under way).
// Before it records its commit it registers its key and reads the fence again: a new epoch, or
// a cut-over under way, sends it back to staging with the views as they are now. It removes
// its key when its commit is finished. A cut-over marks the fence cutting (a new epoch) and
// waits until no step is registered before it changes the view, and clears the mark after.
// Either the step registered first (and the cut-over waits for its commit), or it reads the
// new epoch (and stages again): no cascade of an old view lands after a cut-over.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
)

// BucketViewFence holds the view fences; the executors own it.
const BucketViewFence = "sluice_view_fence"

// ErrViewsChanged sends a step back to staging: a view of its flow was cut over meanwhile.
var ErrViewsChanged = errors.New("a materialized view of the step's flow was cut over while it staged: staging again with the views as they are now")

// viewFence is a workspace's fence: its epoch, and the job cutting a view over now.
type viewFence = persistencev1.ViewFence

// Fence is the view fences of every workspace (bucket sluice_view_fence).
type Fence struct {
	kv  jetstream.KeyValue
	log *slog.Logger
	// final reports whether a job is finished (or gone), for marks left by dead attempts.
	final func(ctx context.Context, ws, id string) bool
}

// OpenFence creates the fences' bucket (idempotently); final tells whether a job is finished
// or gone.
func OpenFence(ctx context.Context, nc *natsx.Conn, log *slog.Logger, final func(ctx context.Context, ws, id string) bool) (*Fence, error) {
	kv, err := nc.EnsureKV(ctx, jetstream.KeyValueConfig{
		Bucket: BucketViewFence, Description: "cut-overs of materialized views and the commits they wait for", History: 1, TTL: jobs.CommitRetention,
	})
	if err != nil {
		return nil, err
	}
	return &Fence{kv: kv, log: log, final: final}, nil
}

func (f *Fence) read(ctx context.Context, ws string) (*viewFence, uint64, error) {
	var e jetstream.KeyValueEntry
	err := RetryNATS(ctx, f.log, "read view fence "+ws, func(ctx context.Context) error {
		var err error
		e, err = f.kv.Get(ctx, ws)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &viewFence{}, 0, nil
	}
	if err != nil {
		return &viewFence{}, 0, err
	}
	v := &viewFence{}
	if err := proto.Unmarshal(e.Value(), v); err != nil {
		return &viewFence{}, 0, fmt.Errorf("view fence %s: %w", ws, err)
	}
	return v, e.Revision(), nil
}

func (f *Fence) write(ctx context.Context, ws string, v *viewFence, rev uint64) error {
	b, _ := proto.Marshal(v)
	return RetryNATS(ctx, f.log, "write view fence "+ws, func(ctx context.Context) error {
		var err error
		if rev == 0 {
			_, err = f.kv.Create(ctx, ws, b)
		} else {
			_, err = f.kv.Update(ctx, ws, b, rev)
		}
		return err
	})
}

// settled returns the workspace's fence once no cut-over is under way (a mark left by a job
// that is finished is cleared).
func (f *Fence) settled(ctx context.Context, ws string) (*viewFence, error) {
	for n := int32(1); ; n++ {
		v, rev, err := f.read(ctx, ws)
		if err != nil || v.GetCutting() == "" {
			return v, err
		}
		if f.final != nil && f.final(ctx, ws, v.GetCutting()) {
			cleared := &viewFence{Epoch: v.GetEpoch()}
			if err := f.write(ctx, ws, cleared, rev); err == nil {
				f.log.Info("cleared the view fence of a finished job", "workspace", ws, "job", v.GetCutting())
			}
			continue
		}
		t := time.NewTimer(min(Backoff(n), 2*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
	}
}

// enter registers a step about to record its commit, and reports whether the fence is still
// at (unchanged since the step resolved its flow). On false the step is not registered.
func (f *Fence) enter(ctx context.Context, ws, key string, at *viewFence) (bool, error) {
	b, _ := proto.Marshal(at)
	if err := RetryNATS(ctx, f.log, "register commit "+key, func(ctx context.Context) error {
		_, err := f.kv.Put(ctx, key, b)
		return err
	}); err != nil {
		return false, err
	}
	now, _, err := f.read(ctx, ws)
	if err == nil && now.GetEpoch() == at.GetEpoch() && now.GetCutting() == "" {
		return true, nil
	}
	f.leave(ctx, key)
	return false, err
}

// leave removes a step's registration (its commit is finished, or it will stage again).
func (f *Fence) leave(ctx context.Context, key string) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := RetryNATS(lctx, f.log, "unregister commit "+key, func(ctx context.Context) error {
		return f.kv.Purge(ctx, key)
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		f.log.Warn("a commit's registration in the view fence was not removed; cut-overs of its workspace wait until its job ends", "key", key, "err", err)
	}
}

// beginCut marks the workspace's fence cutting for job (a new epoch), once no other cut-over
// is under way, then waits until no step is registered.
func (f *Fence) beginCut(ctx context.Context, ws, job string) error {
	for n := int32(1); ; n++ {
		v, rev, err := f.read(ctx, ws)
		if err != nil {
			return err
		}
		if v.GetCutting() == job {
			break
		}
		if v.GetCutting() == "" {
			err := f.write(ctx, ws, &viewFence{Epoch: v.GetEpoch() + 1, Cutting: job}, rev)
			if err == nil {
				break
			}
			if !natsx.IsConflict(err) {
				return err
			}
			continue
		}
		if _, err := f.settled(ctx, ws); err != nil {
			return err
		}
	}
	for n := int32(1); ; n++ {
		var keys []string
		err := RetryNATS(ctx, f.log, "list commits of "+ws, func(ctx context.Context) error {
			lister, err := f.kv.ListKeysFiltered(ctx, ws+".*.*")
			if err != nil {
				return err
			}
			keys = keys[:0]
			for k := range lister.Keys() {
				keys = append(keys, k)
			}
			return nil
		})
		if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
			return err
		}
		open := 0
		for _, k := range keys {
			parts := strings.Split(k, ".")
			if f.final != nil && len(parts) == 3 && f.final(ctx, ws, parts[1]) {
				f.leave(ctx, k) // left by an attempt of a job that has ended
				continue
			}
			open++
		}
		if open == 0 {
			return nil
		}
		if n == 1 || n%20 == 0 {
			f.log.Info("cut-over waits for commits that cascade through the views", "workspace", ws, "commits", open)
		}
		t := time.NewTimer(min(Backoff(n), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// endCut clears the cutting mark of job.
func (f *Fence) endCut(ctx context.Context, ws, job string) error {
	for {
		v, rev, err := f.read(ctx, ws)
		if err != nil {
			return err
		}
		if v.GetCutting() != job {
			return nil
		}
		err = f.write(ctx, ws, &viewFence{Epoch: v.GetEpoch()}, rev)
		if !natsx.IsConflict(err) {
			return err
		}
	}
}

// Fenced is where a step stands in its workspace's view fence: the fence it resolved its flow
// under (see SettledFence).
type Fenced struct{ at *viewFence }

// Epoch is the fence's epoch: a flow resolved under another epoch saw other views.
func (f Fenced) Epoch() uint64 { return f.at.GetEpoch() }

// SettledFence is the step's workspace fence once no cut-over is under way (the zero fence
// without a fence).
func (c *Context) SettledFence(ctx context.Context) (Fenced, error) {
	if c.env.Fence == nil {
		return Fenced{at: &viewFence{}}, nil
	}
	v, err := c.env.Fence.settled(ctx, c.Job.GetWorkspace())
	return Fenced{at: v}, err
}

// EnterFence registers the step before it records its commit; ErrViewsChanged when a cut-over
// happened since at (the fence it resolved its flow under).
func (c *Context) EnterFence(ctx context.Context, at Fenced) error {
	if c.env.Fence == nil {
		return nil
	}
	ok, err := c.env.Fence.enter(ctx, c.Job.GetWorkspace(), c.IdempotencyKey, at.at)
	if err != nil {
		return err
	}
	if !ok {
		return ErrViewsChanged
	}
	return nil
}

// LeaveFence removes the step's registration once its commit is finished.
func (c *Context) LeaveFence(ctx context.Context) {
	if c.env.Fence != nil {
		c.env.Fence.leave(ctx, c.IdempotencyKey)
	}
}

// BeginCut marks the step's workspace fence cutting for its job (a new epoch) and waits until
// no commit that cascades through the views is under way: no commit staged with a view as it
// was lands after the view is cut over (see the top of this file).
func (c *Context) BeginCut(ctx context.Context) error {
	if c.env.Fence == nil {
		return nil
	}
	return c.env.Fence.beginCut(ctx, c.Job.GetWorkspace(), c.Job.GetId())
}

// EndCut clears the job's cutting mark: commits cascade again, through the views as they are.
func (c *Context) EndCut(ctx context.Context) error {
	if c.env.Fence == nil {
		return nil
	}
	return c.env.Fence.endCut(ctx, c.Job.GetWorkspace(), c.Job.GetId())
}
