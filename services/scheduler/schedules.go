package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	catalogclient "github.com/sluicehq/sluice/services/catalog/client"
)

// Copy schedules.
//
// Every replica keeps the set of cron-scheduled Copy Pipes: it reads them from the catalog at
// start, again for a workspace whenever the catalog announces a change there, and for all
// workspaces every scheduleReconcileEvery (announcements are best effort). Only the replica
// holding the leader lease enqueues ticks.
//
// A schedule's state (sluice_schedules, key "<workspace>.<pipe>", a ScheduleState) is its
// pause flag and the last tick it accounted for. The leader enqueues every tick after that one
// up to now, each with job_timestamp = the tick (however late it runs), skipping (and logging)
// ticks older than the catch-up window, then records the last tick. A tick's job has a
// deterministic id (jobs.TickID), so creating it twice — two leaders for a moment, a crash before the state was
// written, a retry — fails on the existing job record instead of running the tick again.
//
// The clock is Deps.Now: the loop wakes at the next tick (real clock) and at least every
// schedulePoll, so a test that moves an injected clock sees ticks within that.

const (
	scheduleReconcileEvery = 30 * time.Second
	schedulePoll           = 100 * time.Millisecond
	// scheduleWorkers bound the ticks being enqueued at once (each renders through the catalog).
	scheduleWorkers = 64
	// maxScheduledExecution bounds the default maximum execution time of scheduled copies.
	maxScheduledExecution = 30 * time.Minute
	// prepareAhead is how long before a tick its job is rendered (through the catalog, which
	// asks ClickHouse for the result columns): at the tick only the job record is written, so
	// that many pipes due at once start without waiting for ClickHouse (busy with the copies
	// themselves on an embedded engine).
	prepareAhead = 55 * time.Second
)

// scheduleState is a schedule's stored state (persistencev1.ScheduleState) as the loop uses it.
type scheduleState struct {
	Cron   string
	Paused bool
	// LastTick is the last tick accounted for: enqueued, skipped, or the moment the schedule
	// began (push) or resumed.
	LastTick time.Time
}

func decodeScheduleState(b []byte) (scheduleState, error) {
	var m persistencev1.ScheduleState
	if err := proto.Unmarshal(b, &m); err != nil {
		return scheduleState{}, err
	}
	st := scheduleState{Cron: m.GetCron(), Paused: m.GetPaused()}
	if m.GetLastTick() != nil {
		st.LastTick = m.GetLastTick().AsTime()
	}
	return st, nil
}

func (st scheduleState) encode() []byte {
	m := &persistencev1.ScheduleState{Cron: st.Cron, Paused: st.Paused}
	if !st.LastTick.IsZero() {
		m.LastTick = timestamppb.New(st.LastTick)
	}
	b, _ := proto.Marshal(m)
	return b
}

type copySchedule struct {
	ws, pipe string
	cron     string
	spec     cron.Schedule
	// since is when the pipe got this schedule (its update time in the catalog).
	since time.Time
	// version is the pipe's update time: a tick rendered ahead is used only for it.
	version time.Time
	// nextDue caches the next tick to enqueue (zero: read the state).
	nextDue time.Time
}

type preparedTick struct {
	tick    time.Time
	version time.Time
	job     jobRequest
}

type copySchedules struct {
	s  *Service
	kv jetstream.KeyValue

	mu    sync.Mutex
	byKey map[string]*copySchedule
	// prepared holds ticks' jobs rendered ahead, by schedule key; preparing is set while a
	// pass renders them (in the background: the loop never waits for it).
	prepared  map[string]preparedTick
	preparing atomic.Bool
	bg        sync.WaitGroup
	dirty     map[string]bool
	kick      chan struct{}
	leader    bool
}

func scheduleKey(ws, pipe string) string { return ws + "." + pipe }

// startCopySchedules starts the schedule loop on the schedules' bucket; the returned channel
// closes when it ends (ctx).
func (s *Service) startCopySchedules(ctx context.Context, kv jetstream.KeyValue) <-chan struct{} {
	done := make(chan struct{})
	if s.deps.Catalog == nil {
		close(done)
		return done
	}
	c := &copySchedules{s: s, kv: kv, byKey: map[string]*copySchedule{}, prepared: map[string]preparedTick{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
	s.copy.Store(c)
	go func() {
		defer close(done)
		c.run(ctx)
	}()
	return done
}

func (c *copySchedules) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *copySchedules) run(ctx context.Context) {
	s := c.s
	defer c.bg.Wait()
	sub, err := s.deps.NATS.NC.Subscribe(catalogclient.ChangedSubjectAll, func(m *nats.Msg) {
		ws := strings.TrimPrefix(m.Subject, strings.TrimSuffix(catalogclient.ChangedSubjectAll, "*"))
		c.mu.Lock()
		c.dirty[ws] = true
		c.mu.Unlock()
		c.poke()
	})
	if err != nil {
		s.log.Warn("copy schedules: catalog announcements unavailable; reconciling periodically only", "err", err)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	var lastFull time.Time
	for {
		if time.Since(lastFull) >= scheduleReconcileEvery {
			if err := c.reconcileAll(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("copy schedules: reconcile", "err", err)
			} else {
				lastFull = time.Now()
			}
		}
		c.mu.Lock()
		dirty := c.dirty
		c.dirty = map[string]bool{}
		c.mu.Unlock()
		for ws := range dirty {
			if err := c.reconcile(ctx, ws); err != nil && ctx.Err() == nil {
				s.log.Warn("copy schedules: reconcile workspace", "workspace", ws, "err", err)
			}
		}
		leader := s.IsLeader()
		c.mu.Lock()
		if leader && !c.leader {
			for _, sch := range c.byKey {
				sch.nextDue = time.Time{} // another leader may have moved the states
			}
		}
		c.leader = leader
		c.mu.Unlock()
		if leader {
			c.fireDue(ctx)
			if c.preparing.CompareAndSwap(false, true) {
				c.bg.Add(1)
				go func() {
					defer c.bg.Done()
					defer c.preparing.Store(false)
					c.prepare(ctx)
				}()
			}
		}
		wait := schedulePoll
		if next := c.nextDue(); !next.IsZero() {
			if d := next.Sub(s.now()); d < wait {
				wait = max(d, 0)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

func (c *copySchedules) nextDue() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, sch := range c.byKey {
		if !sch.nextDue.IsZero() && (next.IsZero() || sch.nextDue.Before(next)) {
			next = sch.nextDue
		}
	}
	return next
}

// catalogPage is the page size the schedules read the catalog's lists with (its most).
const catalogPage = 1000

// reconcileAll reads every workspace's copy schedules.
func (c *copySchedules) reconcileAll(ctx context.Context) error {
	// Every page: a workspace missing from the list loses its schedules below.
	var workspaces []*catalogv1.Workspace
	for token := ""; ; {
		resp, err := c.s.deps.Catalog.ListWorkspaces(ctx, &catalogv1.ListWorkspacesRequest{PageSize: catalogPage, PageToken: token})
		if err != nil {
			return err
		}
		workspaces = append(workspaces, resp.GetWorkspaces()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	seen := map[string]bool{}
	var errs []error
	for _, w := range workspaces {
		seen[w.GetName()] = true
		if err := c.reconcile(ctx, w.GetName()); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	for k, sch := range c.byKey {
		if !seen[sch.ws] {
			delete(c.byKey, k)
		}
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}

// reconcile reads a workspace's copy schedules from the catalog: new ones start, changed ones
// restart from their change, removed ones stop (and lose their state).
func (c *copySchedules) reconcile(ctx context.Context, ws string) error {
	// Every page: a pipe missing from the list would lose its schedule below.
	var pipes []*catalogv1.Pipe
	for token := ""; ; {
		resp, err := c.s.deps.Catalog.ListPipes(ctx, &catalogv1.ListPipesRequest{Workspace: ws, PageSize: catalogPage, PageToken: token})
		if status.Code(err) == codes.NotFound {
			break
		}
		if err != nil {
			return fmt.Errorf("pipes of %s: %w", ws, err)
		}
		pipes = append(pipes, resp.GetPipes()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	found := map[string]*copySchedule{}
	for _, p := range pipes {
		for _, n := range p.GetNodes() {
			if n.GetType() != catalogv1.NodeType_NODE_TYPE_COPY {
				continue
			}
			spec, err := ParseCopySchedule(n.GetCopySchedule())
			if err != nil {
				c.s.log.Warn("copy schedule not understood; pipe not scheduled", "workspace", ws, "pipe", p.GetName(), "cron", n.GetCopySchedule(), "err", err)
				continue
			}
			if spec == nil {
				continue
			}
			since := p.GetUpdateTime().AsTime()
			if p.GetUpdateTime() == nil {
				since = c.s.now()
			}
			found[scheduleKey(ws, p.GetName())] = &copySchedule{ws: ws, pipe: p.GetName(), cron: strings.TrimSpace(n.GetCopySchedule()), spec: spec, since: since.UTC(), version: since.UTC()}
		}
	}
	var removed []string
	c.mu.Lock()
	for k, sch := range c.byKey {
		if sch.ws == ws && found[k] == nil {
			delete(c.byKey, k)
			delete(c.prepared, k)
			removed = append(removed, k)
		}
	}
	changed := false
	for k, sch := range found {
		if cur := c.byKey[k]; cur != nil && cur.cron == sch.cron {
			if !cur.version.Equal(sch.version) {
				cur.version = sch.version // same schedule, new SQL: render again
				delete(c.prepared, k)
			}
			continue
		}
		delete(c.prepared, k)
		c.byKey[k] = sch
		changed = true
	}
	c.mu.Unlock()
	for _, k := range removed {
		c.s.log.Info("copy schedule stopped: pipe removed or no longer scheduled", "schedule", k)
		if err := c.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			c.s.log.Warn("copy schedules: forget state", "schedule", k, "err", err)
		}
	}
	if changed {
		c.poke()
	}
	return nil
}

// loadState reads a schedule's state (rev 0: none stored).
func (c *copySchedules) loadState(ctx context.Context, key string) (scheduleState, uint64, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return scheduleState{}, 0, nil
	}
	if err != nil {
		return scheduleState{}, 0, fmt.Errorf("schedule state %s: %w", key, err)
	}
	st, err := decodeScheduleState(e.Value())
	if err != nil {
		return scheduleState{}, 0, fmt.Errorf("schedule state %s: %w", key, err)
	}
	return st, e.Revision(), nil
}

// updateState applies mutate to the stored state with compare-and-set.
func (c *copySchedules) updateState(ctx context.Context, key string, mutate func(*scheduleState)) (scheduleState, error) {
	for {
		st, rev, err := c.loadState(ctx, key)
		if err != nil {
			return st, err
		}
		mutate(&st)
		b := st.encode()
		if rev == 0 {
			_, err = c.kv.Create(ctx, key, b)
		} else {
			_, err = c.kv.Update(ctx, key, b, rev)
		}
		if natsx.IsConflict(err) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("schedule state %s: %w", key, err)
		}
		return st, nil
	}
}

// fireDue enqueues the due ticks of every schedule.
func (c *copySchedules) fireDue(ctx context.Context) {
	now := c.s.now().UTC()
	c.mu.Lock()
	var due []*copySchedule
	for _, sch := range c.byKey {
		if sch.nextDue.IsZero() || !sch.nextDue.After(now) {
			cp := *sch
			due = append(due, &cp)
		}
	}
	c.mu.Unlock()
	if len(due) == 0 {
		return
	}
	sort.Slice(due, func(i, j int) bool { return due[i].nextDue.Before(due[j].nextDue) })
	work := make(chan *copySchedule)
	var wg sync.WaitGroup
	for range min(scheduleWorkers, len(due)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sch := range work {
				next, err := c.fire(ctx, sch, now)
				if err != nil {
					if ctx.Err() == nil {
						c.s.log.Warn("copy schedule: enqueueing ticks failed; retrying", "workspace", sch.ws, "pipe", sch.pipe, "err", err)
					}
					next = now.Add(time.Second)
				}
				c.mu.Lock()
				if cur := c.byKey[scheduleKey(sch.ws, sch.pipe)]; cur != nil && cur.cron == sch.cron {
					cur.nextDue = next
				}
				c.mu.Unlock()
			}
		}()
	}
	for _, sch := range due {
		work <- sch
	}
	close(work)
	wg.Wait()
}

// fire enqueues a schedule's ticks up to now and returns its next tick.
func (c *copySchedules) fire(ctx context.Context, sch *copySchedule, now time.Time) (time.Time, error) {
	s := c.s
	key := scheduleKey(sch.ws, sch.pipe)
	st, _, err := c.loadState(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	last := st.LastTick
	if st.Cron != sch.cron || last.IsZero() {
		// A new or changed schedule owes the ticks from when the pipe got it.
		if last.IsZero() || last.Before(sch.since) {
			last = sch.since
		}
	}
	if st.Paused {
		return sch.spec.Next(now), nil
	}
	cutoff := now.Add(-s.cfg.CatchUpWindow)
	var skipped int
	var firstSkipped time.Time
	var enqErr error
	for t := sch.spec.Next(last.UTC()); !t.IsZero() && !t.After(now); t = sch.spec.Next(t) {
		if t.Before(cutoff) {
			if skipped == 0 {
				firstSkipped = t
			}
			skipped++
			last = t
			continue
		}
		var prepared *jobRequest
		c.mu.Lock()
		if p, ok := c.prepared[key]; ok && p.tick.Equal(t) && p.version.Equal(sch.version) {
			prepared = &p.job
			delete(c.prepared, key)
		}
		c.mu.Unlock()
		job, created, err := s.enqueueTick(ctx, sch.ws, sch.pipe, t, ScheduledMaxExecutionTime(sch.spec, t), prepared)
		if err != nil {
			if st := status.Convert(err); st.Code() == codes.InvalidArgument || st.Code() == codes.NotFound {
				// The pipe cannot run with its defaults (or is gone): the tick cannot be run
				// by retrying; say so and move on.
				s.log.Error("copy schedule tick not run: the pipe cannot be rendered with its defaults", "workspace", sch.ws, "pipe", sch.pipe, "tick", t, "err", err)
				last = t
				continue
			} else if st.Code() == codes.PermissionDenied || st.Code() == codes.Unauthenticated {
				// The copy's own token is gone or lost its scope: the copy must not run.
				s.log.Error("copy schedule tick not run: the copy's token does not allow it", "workspace", sch.ws, "pipe", sch.pipe, "tick", t, "err", err)
				last = t
				continue
			}
			enqErr = err
			break
		}
		if created {
			s.log.Debug("copy schedule tick enqueued", "workspace", sch.ws, "pipe", sch.pipe, "tick", t, "job", job.GetId(), "late", now.Sub(t))
		}
		last = t
	}
	if skipped > 0 {
		s.log.Warn("copy schedule ticks skipped: older than the catch-up window", "workspace", sch.ws, "pipe", sch.pipe,
			"ticks", skipped, "first", firstSkipped, "last", last, "catch_up_window", s.cfg.CatchUpWindow)
	}
	if _, err := c.updateState(ctx, key, func(cur *scheduleState) {
		if cur.Cron != sch.cron {
			cur.Cron = sch.cron
			cur.LastTick = time.Time{}
		}
		if last.After(cur.LastTick) {
			cur.LastTick = last
		}
	}); err != nil {
		return time.Time{}, errors.Join(enqErr, err)
	}
	if enqErr != nil {
		return time.Time{}, enqErr
	}
	return sch.spec.Next(last), nil
}

// prepare renders the jobs of the ticks due within prepareAhead.
func (c *copySchedules) prepare(ctx context.Context) {
	now := c.s.now().UTC()
	c.mu.Lock()
	var todo []copySchedule
	for k, sch := range c.byKey {
		if sch.nextDue.IsZero() || !sch.nextDue.After(now) || sch.nextDue.Sub(now) > prepareAhead {
			continue
		}
		if p, ok := c.prepared[k]; ok && p.tick.Equal(sch.nextDue) && p.version.Equal(sch.version) {
			continue
		}
		todo = append(todo, *sch)
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	work := make(chan copySchedule)
	var wg sync.WaitGroup
	for range min(scheduleWorkers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sch := range work {
				t := sch.nextDue
				nj, err := c.s.renderCopy(ctx, tickRun(sch.ws, sch.pipe, t, ScheduledMaxExecutionTime(sch.spec, t)))
				if err != nil {
					continue // rendered again at the tick, which reports the error
				}
				c.mu.Lock()
				c.prepared[scheduleKey(sch.ws, sch.pipe)] = preparedTick{tick: t, version: sch.version, job: nj}
				c.mu.Unlock()
			}
		}()
	}
	for _, sch := range todo {
		work <- sch
	}
	close(work)
	wg.Wait()
}
