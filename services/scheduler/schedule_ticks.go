package scheduler

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/jobs"
)

// Firing and preparing ticks: the leader side of the copy schedules (see schedules.go).

// fireDue enqueues the due ticks of every schedule: first, in one batch, the ticks whose jobs
// were prepared (release), then the others one schedule at a time, rendering each tick.
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
	due = c.release(ctx, due, now)
	each(due, func(sch *copySchedule) {
		next, err := c.fire(ctx, sch, now)
		if err != nil {
			if ctx.Err() == nil {
				c.s.log.Warn("copy schedule: enqueueing ticks failed; retrying", "workspace", sch.ws, "pipe", sch.pipe, "err", err)
			}
			next = now.Add(time.Second)
		}
		c.setNextDue(sch, next)
	})
}

// each calls f for every item of list, up to scheduleWorkers at once.
func each[T any](list []T, f func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range min(scheduleWorkers, len(list)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sch := range work {
				f(sch)
			}
		}()
	}
	for _, sch := range list {
		work <- sch
	}
	close(work)
	wg.Wait()
}

func (c *copySchedules) setNextDue(sch *copySchedule, next time.Time) {
	c.mu.Lock()
	if cur := c.byKey[scheduleKey(sch.ws, sch.pipe)]; cur != nil && cur.cron == sch.cron {
		cur.nextDue = next
	}
	c.mu.Unlock()
}

// release creates, in one pipeline of writes, the jobs of the due schedules that owe exactly
// one tick and hold its job prepared (see prepare); it returns the other schedules, and those
// whose prepared job could not be written, for fire. Only the job records are written before
// the leader can admit them; the states move past the tick after that.
func (c *copySchedules) release(ctx context.Context, due []*copySchedule, now time.Time) (rest []*copySchedule) {
	s := c.s
	type out struct {
		sch  *copySchedule
		tick time.Time
		rec  *jobs.Record
	}
	var batch []out
	cutoff := now.Add(-s.cfg.CatchUpWindow)
	created := s.now()
	for _, sch := range due {
		st, _, err := c.loadState(ctx, scheduleKey(sch.ws, sch.pipe))
		if err != nil || st.Paused || st.Cron != sch.cron || st.LastTick.IsZero() {
			rest = append(rest, sch)
			continue
		}
		t := sch.spec.Next(st.LastTick.UTC())
		p := st.preparedFor(sch, t)
		if p == nil || t.IsZero() || t.After(now) || t.Before(cutoff) || !sch.spec.Next(t).After(now) {
			rest = append(rest, sch)
			continue
		}
		if err := s.checkCopyToken(ctx, sch.ws, sch.pipe, p.GetCopyToken()); err != nil {
			rest = append(rest, sch) // fire says why the tick does not run
			continue
		}
		rec := proto.Clone(p.GetRecord()).(*jobs.Record)
		rec.Job.CreateTime, rec.Job.UpdateTime = timestamppb.New(created), timestamppb.New(created)
		batch = append(batch, out{sch: sch, tick: t, rec: rec})
	}
	if len(batch) == 0 {
		return rest
	}
	recs := make([]*jobs.Record, len(batch))
	for i := range batch {
		recs[i] = batch[i].rec
	}
	errs, ok := []error(nil), false
	if l := s.leader.Load(); l != nil {
		// The leader writes them and admits them as it does: their steps are queued at once.
		errs, ok = l.submitRelease(ctx, recs)
	}
	if !ok {
		errs = c.create(ctx, recs)
	}
	var done []out
	for i, o := range batch {
		if errs[i] != nil {
			// Most likely the job exists (another leader, or this one before a crash, wrote
			// it): fire finds it there, and renders the tick only if it does not.
			rest = append(rest, o.sch)
			continue
		}
		s.metrics.created.WithLabelValues("copy").Inc()
		s.log.Debug("copy schedule tick enqueued (prepared)", "workspace", o.sch.ws, "pipe", o.sch.pipe, "tick", o.tick, "job", o.rec.GetJob().GetId(), "late", now.Sub(o.tick))
		c.setNextDue(o.sch, o.sch.spec.Next(o.tick))
		done = append(done, o)
	}
	// The states move past the tick (a crash before that finds the job there: fire).
	each(done, func(o out) {
		if _, err := c.updateState(ctx, scheduleKey(o.sch.ws, o.sch.pipe), func(cur *scheduleState) {
			if cur.Cron == o.sch.cron && o.tick.After(cur.LastTick) {
				cur.LastTick = o.tick
			}
		}); err != nil && ctx.Err() == nil {
			s.log.Warn("copy schedule: recording the tick failed; the next pass finds its job", "workspace", o.sch.ws, "pipe", o.sch.pipe, "err", err)
			c.setNextDue(o.sch, now)
		}
	})
	return rest
}

// create writes new job records in one pipeline (the leader admits them), returning each
// write's error.
func (c *copySchedules) create(ctx context.Context, recs []*jobs.Record) []error {
	s := c.s
	errs := make([]error, len(recs))
	acks := make([]jetstream.PubAckFuture, len(recs))
	for i, rec := range recs {
		msg, err := s.store.CreateMsg(rec)
		if err == nil {
			acks[i], err = s.deps.NATS.JS.PublishMsgAsync(msg)
		}
		errs[i] = err
	}
	actx, cancel := context.WithTimeout(ctx, admitAckWait)
	defer cancel()
	for i, f := range acks {
		if f != nil {
			_, errs[i] = awaitAck(actx, f)
		}
	}
	return errs
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
		job, created, err := s.enqueueTick(ctx, sch.ws, sch.pipe, t, ScheduledMaxExecutionTime(sch.spec, t), st.preparedFor(sch, t))
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

// prepare prepares the jobs of the ticks due within prepareAhead: each is rendered (through
// the catalog, which asks ClickHouse for the result columns), its record built and kept in the
// schedule's state, so that at the tick only the record is written (release), also by another
// replica should this one stop leading meanwhile. A tick whose preparation fails is rendered
// at the tick, which reports the error.
func (c *copySchedules) prepare(ctx context.Context) {
	now := c.s.now().UTC()
	c.mu.Lock()
	var todo []*copySchedule
	for k, sch := range c.byKey {
		if sch.nextDue.IsZero() || !sch.nextDue.After(now) || sch.nextDue.Sub(now) > prepareAhead {
			continue
		}
		if cur, ok := c.states[k]; c.statesReady && ok && (cur.st.Paused || cur.st.preparedFor(sch, sch.nextDue) != nil) {
			continue
		}
		cp := *sch
		todo = append(todo, &cp)
	}
	c.mu.Unlock()
	each(todo, func(sch *copySchedule) {
		if err := c.prepareTick(ctx, sch, sch.nextDue); err != nil && ctx.Err() == nil {
			c.s.log.Debug("copy schedule: preparing a tick failed; it is rendered at the tick", "workspace", sch.ws, "pipe", sch.pipe, "tick", sch.nextDue, "err", err)
		}
	})
}

// prepareTick prepares the job of tick t of sch and stores it in the schedule's state, unless
// the state says t is accounted for, or the schedule is paused or changed meanwhile.
func (c *copySchedules) prepareTick(ctx context.Context, sch *copySchedule, t time.Time) error {
	s := c.s
	key := scheduleKey(sch.ws, sch.pipe)
	if st, _, err := c.loadState(ctx, key); err != nil || st.Paused || st.Cron != sch.cron || !t.After(st.LastTick) || st.preparedFor(sch, t) != nil {
		return err
	}
	nj, err := s.renderCopy(ctx, tickRun(sch.ws, sch.pipe, t, ScheduledMaxExecutionTime(sch.spec, t)))
	if err != nil {
		return err
	}
	if err := checkJob(nj); err != nil {
		return err
	}
	p := &persistencev1.PreparedTick{
		Tick: timestamppb.New(t), Cron: sch.cron, PipeVersion: timestamppb.New(sch.version),
		Record: s.newRecord(nj, jobs.TickID(sch.ws, sch.pipe, t, 0), s.now()), CopyToken: nj.CopyToken,
	}
	_, err = c.updateState(ctx, key, func(cur *scheduleState) {
		if cur.Paused || cur.Cron != sch.cron || !t.After(cur.LastTick) {
			return
		}
		c.mu.Lock()
		live := c.byKey[key]
		current := live != nil && live.cron == sch.cron && live.version.Equal(sch.version)
		c.mu.Unlock()
		if current {
			cur.Prepared = p
		}
	})
	return err
}
