package catalog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Workspace leases. Pushes, deletes and workspace creation change a workspace's ClickHouse
// database and its catalog records together, so they must not overlap — also when several
// catalog replicas serve the same workspaces. Each such operation holds the workspace's lease:
// the key ws.<workspace> in the bucket sluice_catalog_leases, created by its holder and renewed
// every LeaseTTL/5. A replica that dies stops renewing and its lease expires after LeaseTTL;
// a replica that cannot renew (cut off from NATS) stops its operation within LeaseTTL/5 (the
// operation's context is cancelled, a failing apply rolls back), before the lease can expire
// and another replica take it. The next holder first finishes or undoes what a dead holder left
// half done (see journal.go).
const (
	BucketLeases = "sluice_catalog_leases"
	// LeaseTTL is how long a lease outlives its last renewal.
	LeaseTTL = 10 * time.Second
)

func leaseKey(ws string) string { return "ws." + ws }

// instanceName names this replica in its leases: host, process id and a random suffix.
func instanceName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32())
}

// lock serialises the operations on a workspace: first within this process, then across
// replicas through the workspace's lease, waiting for it while ctx allows. Once held, what a
// replica that died holding it left behind is completed or undone. The returned context ends
// when ctx does or when the lease is lost; unlock releases the lease.
func (s *Service) lock(ctx context.Context, ws string) (context.Context, func(), error) {
	m, _ := s.locks.LoadOrStore(ws, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	if !lockCtx(ctx, mu) {
		return nil, nil, busyError(ws, "", ctx.Err())
	}
	lctx, release, err := s.acquire(ctx, ws)
	if err != nil {
		mu.Unlock()
		return nil, nil, err
	}
	unlock := func() { release(); mu.Unlock() }
	if err := s.recoverJournal(lctx, ws); err != nil {
		unlock()
		return nil, nil, err
	}
	return lctx, unlock, nil
}

// lockCtx locks mu unless ctx ends first.
func lockCtx(ctx context.Context, mu *sync.Mutex) bool {
	for !mu.TryLock() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

func busyError(ws, holder string, err error) error {
	msg := fmt.Sprintf("workspace %s is busy with another push or delete", ws)
	if holder != "" {
		msg += " (on catalog " + holder + ")"
	}
	return status.Errorf(codes.Unavailable, "%s; try again: %v", msg, err)
}

// acquire takes the workspace's lease, polling while another replica holds it.
func (s *Service) acquire(ctx context.Context, ws string) (context.Context, func(), error) {
	key := leaseKey(ws)
	wait := 50 * time.Millisecond
	for {
		rev, err := s.leases.Create(ctx, key, []byte(s.instance))
		if err == nil {
			return s.hold(ctx, ws, rev)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if ctx.Err() != nil {
				return nil, nil, busyError(ws, "", ctx.Err())
			}
			s.log.Warn("workspace lease", "workspace", ws, "err", err)
		}
		select {
		case <-ctx.Done():
			holder := ""
			if e, gerr := s.leases.Get(context.WithoutCancel(ctx), key); gerr == nil {
				holder = string(e.Value())
			}
			return nil, nil, busyError(ws, holder, ctx.Err())
		case <-time.After(wait + rand.N(wait)):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// hold renews the lease until released; the returned context ends if a renewal fails.
func (s *Service) hold(ctx context.Context, ws string, rev uint64) (context.Context, func(), error) {
	lctx, cancel := context.WithCancelCause(ctx)
	key := leaseKey(ws)
	stop := make(chan struct{})
	stopped := make(chan uint64)
	go func() {
		t := time.NewTicker(LeaseTTL / 5)
		defer t.Stop()
		last := rev
		defer func() { stopped <- last }()
		for {
			select {
			case <-stop:
				return
			case <-lctx.Done():
				return
			case <-t.C:
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(lctx), LeaseTTL/5)
				nrev, err := s.leases.Update(rctx, key, []byte(s.instance), last)
				rcancel()
				if err != nil {
					s.log.Warn("workspace lease lost: stopping the operation", "workspace", ws, "err", err)
					cancel(fmt.Errorf("the lease of workspace %s was lost: %w", ws, err))
					last = 0
					return
				}
				last = nrev
			}
		}
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			last := <-stopped
			cancel(nil)
			if last == 0 {
				return
			}
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), LeaseTTL/5)
			defer dcancel()
			if err := s.leases.Delete(dctx, key, jetstream.LastRevision(last)); err != nil {
				// It expires within LeaseTTL anyway.
				s.log.Warn("releasing the workspace lease", "workspace", ws, "err", err)
			}
		})
	}
	return lctx, release, nil
}
