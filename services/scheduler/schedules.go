package scheduler

import (
	"context"
	"errors"
	"fmt"
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
// Ticks are prepared: within prepareAhead of a tick the leader renders its job (through the
// catalog, which asks ClickHouse), checks its token, builds its record and stores it in the
// schedule's state. At the tick it writes the prepared records of every due schedule in one
// pipeline (release) — nothing else is between the tick and the leader's admission of the
// jobs — and then moves the states past the tick. A prepared job is used only for the tick,
// cron and pipe version it was prepared from (a pipe changed since is rendered again at the
// tick), a pause drops it, and a removed pipe's state goes with it; it lives in the state, not
// in the job bucket, so nobody sees a job before its tick. Another replica that takes the lead
// between preparation and tick finds the prepared jobs in the states; whichever writes a
// tick's job, its id is the tick's.
//
// Every replica mirrors the states with a watch of the bucket, so that the loop reads them
// without asking NATS, and a pause written through any replica is seen by the leader at once.
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
	// prepareAhead is how long before a tick its job is prepared (rendered through the
	// catalog, which asks ClickHouse for the result columns, and its record built): at the tick
	// only the job record is written, so that many pipes due at once start without waiting for
	// ClickHouse (busy with the copies themselves on an embedded engine) or for a round trip to
	// NATS per pipe.
	prepareAhead = 55 * time.Second
)

// scheduleState is a schedule's stored state (persistencev1.ScheduleState) as the loop uses it.
type scheduleState struct {
	Cron   string
	Paused bool
	// LastTick is the last tick accounted for: enqueued, skipped, or the moment the schedule
	// began (push) or resumed.
	LastTick time.Time
	// Prepared is the job of a tick after LastTick, prepared ahead of it (nil: none).
	Prepared *persistencev1.PreparedTick
}

func decodeScheduleState(b []byte) (scheduleState, error) {
	var m persistencev1.ScheduleState
	if err := proto.Unmarshal(b, &m); err != nil {
		return scheduleState{}, err
	}
	st := scheduleState{Cron: m.GetCron(), Paused: m.GetPaused(), Prepared: m.GetPrepared()}
	if m.GetLastTick() != nil {
		st.LastTick = m.GetLastTick().AsTime()
	}
	return st, nil
}

func (st scheduleState) encode() []byte {
	m := &persistencev1.ScheduleState{Cron: st.Cron, Paused: st.Paused, Prepared: st.Prepared}
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

// preparedFor returns the job prepared for tick t of sch, if the state holds one prepared for
// that tick from the schedule's current cron and pipe version.
func (st scheduleState) preparedFor(sch *copySchedule, t time.Time) *persistencev1.PreparedTick {
	p := st.Prepared
	if p == nil || st.Paused || p.GetCron() != sch.cron || !p.GetTick().AsTime().Equal(t) ||
		!p.GetPipeVersion().AsTime().Equal(sch.version) || p.GetRecord().GetJob() == nil {
		return nil
	}
	return p
}

// normalize drops a prepared job the state no longer owes: its tick is accounted for, or the
// schedule is paused.
func (st *scheduleState) normalize() {
	if st.Prepared != nil && (st.Paused || !st.Prepared.GetTick().AsTime().After(st.LastTick)) {
		st.Prepared = nil
	}
}

// cachedState is a schedule's state as the watch of the bucket last brought it.
type cachedState struct {
	st  scheduleState
	rev uint64
}

type copySchedules struct {
	s  *Service
	kv jetstream.KeyValue

	mu    sync.Mutex
	byKey map[string]*copySchedule
	// states mirrors the bucket (a watch), once statesReady: the loop reads states there
	// instead of asking NATS, and a pause written by any replica reaches it in milliseconds.
	states      map[string]cachedState
	statesReady bool
	// preparing is set while a pass prepares the next ticks' jobs (in the background: the loop
	// never waits for it).
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
	c := &copySchedules{s: s, kv: kv, byKey: map[string]*copySchedule{}, states: map[string]cachedState{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
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
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		c.watchStates(ctx)
	}()
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
			removed = append(removed, k)
		}
	}
	changed := false
	for k, sch := range found {
		if cur := c.byKey[k]; cur != nil && cur.cron == sch.cron {
			// Same schedule; new SQL is rendered again (a job prepared from the old version is
			// not used: preparedFor).
			cur.version = sch.version
			continue
		}
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

// watchStates keeps c.states a mirror of the bucket while ctx lasts (a new watch after a
// failed one; states are read from NATS meanwhile).
func (c *copySchedules) watchStates(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := c.kv.WatchAll(ctx)
		if err == nil {
			c.followStates(ctx, w)
			_ = w.Stop()
		} else if ctx.Err() == nil {
			c.s.log.Warn("copy schedules: watching the states failed; reading them one at a time", "err", err)
		}
		c.mu.Lock()
		c.statesReady = false
		c.states = map[string]cachedState{}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (c *copySchedules) followStates(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			c.mu.Lock()
			if e == nil {
				c.statesReady = true
			} else if e.Operation() != jetstream.KeyValuePut {
				if cur, ok := c.states[e.Key()]; ok && cur.rev <= e.Revision() {
					delete(c.states, e.Key())
				}
			} else if st, err := decodeScheduleState(e.Value()); err != nil {
				c.s.log.Warn("copy schedules: unreadable state", "schedule", e.Key(), "err", err)
			} else if cur, ok := c.states[e.Key()]; !ok || cur.rev < e.Revision() {
				c.states[e.Key()] = cachedState{st: st, rev: e.Revision()}
			}
			c.mu.Unlock()
		}
	}
}

// loadState reads a schedule's state (rev 0: none stored): from the mirror when it is ready,
// else from NATS. The mirror may be behind by a write in flight; every write is a
// compare-and-set, which then fails and reads again (updateState).
func (c *copySchedules) loadState(ctx context.Context, key string) (scheduleState, uint64, error) {
	c.mu.Lock()
	if c.statesReady {
		cur := c.states[key]
		c.mu.Unlock()
		return cur.st, cur.rev, nil
	}
	c.mu.Unlock()
	return c.readState(ctx, key)
}

// readState reads a schedule's state from NATS (rev 0: none stored).
func (c *copySchedules) readState(ctx context.Context, key string) (scheduleState, uint64, error) {
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

// updateState applies mutate to the stored state with compare-and-set (a prepared job the
// result no longer owes is dropped: normalize).
func (c *copySchedules) updateState(ctx context.Context, key string, mutate func(*scheduleState)) (scheduleState, error) {
	load := c.loadState
	for {
		st, rev, err := load(ctx, key)
		if err != nil {
			return st, err
		}
		mutate(&st)
		st.normalize()
		b := st.encode()
		var nrev uint64
		if rev == 0 {
			nrev, err = c.kv.Create(ctx, key, b)
		} else {
			nrev, err = c.kv.Update(ctx, key, b, rev)
		}
		if natsx.IsConflict(err) {
			load = c.readState // the mirror was behind
			continue
		}
		if err != nil {
			return st, fmt.Errorf("schedule state %s: %w", key, err)
		}
		c.mu.Lock()
		if cur, ok := c.states[key]; c.statesReady && (!ok || cur.rev < nrev) {
			c.states[key] = cachedState{st: st, rev: nrev}
		}
		c.mu.Unlock()
		return st, nil
	}
}
