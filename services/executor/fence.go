package executor

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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/services/scheduler/client/jobs"
)

// BucketViewFence holds the view fences.
const BucketViewFence = "sluice_view_fence"

// ViewFenceBucketConfig is the sluice_view_fence bucket.
func ViewFenceBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketViewFence, Description: "cut-overs of materialized views and the commits they wait for", History: 1, TTL: jobs.CommitRetention}
}

// errViewsChanged sends a step back to staging: a view of its flow was cut over meanwhile.
var errViewsChanged = errors.New("a materialized view of the step's flow was cut over while it staged: staging again with the views as they are now")

type viewFence struct {
	Epoch   uint64 `json:"epoch"`
	Cutting string `json:"cutting,omitempty"` // the job cutting a view over now
}

type fenceStore struct {
	kv  jetstream.KeyValue
	log *slog.Logger
	// final reports whether a job is finished (or gone), for marks left by dead attempts.
	final func(ctx context.Context, ws, id string) bool
}

func (f *fenceStore) read(ctx context.Context, ws string) (viewFence, uint64, error) {
	var e jetstream.KeyValueEntry
	err := retryNATS(ctx, f.log, "read view fence "+ws, func(ctx context.Context) error {
		var err error
		e, err = f.kv.Get(ctx, ws)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return viewFence{}, 0, nil
	}
	if err != nil {
		return viewFence{}, 0, err
	}
	var v viewFence
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return viewFence{}, 0, fmt.Errorf("view fence %s: %w", ws, err)
	}
	return v, e.Revision(), nil
}

func (f *fenceStore) write(ctx context.Context, ws string, v viewFence, rev uint64) error {
	b, _ := json.Marshal(v)
	return retryNATS(ctx, f.log, "write view fence "+ws, func(ctx context.Context) error {
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
func (f *fenceStore) settled(ctx context.Context, ws string) (viewFence, error) {
	for n := int32(1); ; n++ {
		v, rev, err := f.read(ctx, ws)
		if err != nil || v.Cutting == "" {
			return v, err
		}
		if f.final != nil && f.final(ctx, ws, v.Cutting) {
			cleared := v
			cleared.Cutting = ""
			if err := f.write(ctx, ws, cleared, rev); err == nil {
				f.log.Info("cleared the view fence of a finished job", "workspace", ws, "job", v.Cutting)
			}
			continue
		}
		t := time.NewTimer(min(backoff(n), 2*time.Second))
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
func (f *fenceStore) enter(ctx context.Context, ws, key string, at viewFence) (bool, error) {
	b, _ := json.Marshal(at)
	if err := retryNATS(ctx, f.log, "register commit "+key, func(ctx context.Context) error {
		_, err := f.kv.Put(ctx, key, b)
		return err
	}); err != nil {
		return false, err
	}
	now, _, err := f.read(ctx, ws)
	if err == nil && now.Epoch == at.Epoch && now.Cutting == "" {
		return true, nil
	}
	f.leave(ctx, key)
	return false, err
}

// leave removes a step's registration (its commit is finished, or it will stage again).
func (f *fenceStore) leave(ctx context.Context, key string) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := retryNATS(lctx, f.log, "unregister commit "+key, func(ctx context.Context) error {
		return f.kv.Purge(ctx, key)
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		f.log.Warn("a commit's registration in the view fence was not removed; cut-overs of its workspace wait until its job ends", "key", key, "err", err)
	}
}

// beginCut marks the workspace's fence cutting for job (a new epoch), once no other cut-over
// is under way, then waits until no step is registered.
func (f *fenceStore) beginCut(ctx context.Context, ws, job string) error {
	for n := int32(1); ; n++ {
		v, rev, err := f.read(ctx, ws)
		if err != nil {
			return err
		}
		if v.Cutting == job {
			break
		}
		if v.Cutting == "" {
			err := f.write(ctx, ws, viewFence{Epoch: v.Epoch + 1, Cutting: job}, rev)
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
		err := retryNATS(ctx, f.log, "list commits of "+ws, func(ctx context.Context) error {
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
		t := time.NewTimer(min(backoff(n), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// endCut clears the cutting mark of job.
func (f *fenceStore) endCut(ctx context.Context, ws, job string) error {
	for {
		v, rev, err := f.read(ctx, ws)
		if err != nil {
			return err
		}
		if v.Cutting != job {
			return nil
		}
		v.Cutting = ""
		err = f.write(ctx, ws, v, rev)
		if !natsx.IsConflict(err) {
			return err
		}
	}
}

// settledFence is the step's workspace fence once no cut-over is under way (the zero fence
// without a fence store).
func (s *StepContext) settledFence(ctx context.Context) (viewFence, error) {
	if s.fence == nil {
		return viewFence{}, nil
	}
	return s.fence.settled(ctx, s.Job.GetWorkspace())
}

// enterFence registers the step before it records its commit; errViewsChanged when a cut-over
// happened since at (the fence it resolved its flow under).
func (s *StepContext) enterFence(ctx context.Context, at viewFence) error {
	if s.fence == nil {
		return nil
	}
	ok, err := s.fence.enter(ctx, s.Job.GetWorkspace(), s.IdempotencyKey, at)
	if err != nil {
		return err
	}
	if !ok {
		return errViewsChanged
	}
	return nil
}

// leaveFence removes the step's registration once its commit is finished.
func (s *StepContext) leaveFence(ctx context.Context) {
	if s.fence != nil {
		s.fence.leave(ctx, s.IdempotencyKey)
	}
}
