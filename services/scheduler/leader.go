package scheduler

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/jobs"
)

// The leader. One scheduler replica at a time holds the lease "jobs" in sluice_leases and runs
// the parts of the job system that must not run twice:
//   - admission of limited (copy) jobs: per workspace, in FIFO order (create time, then id),
//     only while fewer than the workspace's limit are admitted and not finished. Executors
//     cannot exceed the limit because only admitted jobs have steps on the queue, and a busy
//     workspace cannot starve the others because each only ever has its limit on the queue;
//   - maximum execution times (executors enforce them too; the leader catches jobs whose
//     executor died);
//   - reconcile: steps of admitted jobs that are neither done nor on the queue (a crash between
//     writing the record and queueing) are queued again; cancelling jobs whose steps all
//     stopped are finished;
//   - retention: finished jobs are removed after -scheduler.job-retention.
//
// The leader keeps an index of every job fed by a watch of the bucket, so that each pass is a
// walk in memory; every write is a compare-and-set on the record, so a write from a stale index
// fails instead of overwriting.
const (
	leaseKey = "jobs"
	// reconcileEvery and staleAfter bound how long a step lost before queueing waits.
	reconcileEvery = 10 * time.Second
	staleAfter     = 10 * time.Second
	// stuckCancelling is how long a cancelling job may wait for its executors before the leader
	// finishes it anyway (their steps are stopped by then: a cancelled step's executor writes
	// within a heartbeat, a dead one's step is redelivered within the ack wait).
	stuckCancelling = 2 * time.Minute
)

type leader struct {
	s    *Service
	ctx  context.Context
	byWS map[string]map[string]*entry
	// limited holds the unfinished limited jobs of each workspace: what admission looks at.
	limited map[string]map[string]*entry
	limits  map[string]int
	// releases brings the jobs of schedule ticks prepared ahead, to be written and admitted
	// (copySchedules.release).
	releases chan *releaseReq
}

type entry struct {
	rec *jobs.Record
	rev uint64
}

// IsLeader reports whether this replica holds the jobs lease now.
func (s *Service) IsLeader() bool { return s.leader.Load() != nil }

// campaign tries to take the lease every second and leads while it holds it.
func (s *Service) campaign(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if rev, err := s.leases.Create(ctx, leaseKey, []byte(s.instance)); err == nil {
			s.log.Info("scheduler leads the job system", "instance", s.instance)
			s.lead(ctx, rev)
			s.log.Info("scheduler no longer leads the job system", "instance", s.instance)
		} else if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			s.log.Warn("lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lead runs while the lease is renewed; it releases the lease when ctx ends.
func (s *Service) lead(ctx context.Context, rev uint64) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan uint64, 1)
	go func() {
		defer close(renewed)
		t := time.NewTicker(LeaseTTL / 5)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				renewed <- rev
				return
			case <-t.C:
				nrev, err := s.leases.Update(lctx, leaseKey, []byte(s.instance), rev)
				if err != nil {
					if lctx.Err() == nil {
						s.log.Warn("lease lost", "err", err)
					}
					cancel()
					renewed <- 0
					return
				}
				rev = nrev
			}
		}
	}()
	l := &leader{s: s, ctx: lctx, byWS: map[string]map[string]*entry{}, limited: map[string]map[string]*entry{}, limits: map[string]int{}, releases: make(chan *releaseReq)}
	s.leader.Store(l)
	s.metrics.leader.Set(1)
	l.run()
	s.metrics.leader.Set(0)
	s.leader.Store(nil)
	cancel()
	if last := <-renewed; last != 0 && ctx.Err() != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.leases.Delete(rctx, leaseKey, jetstream.LastRevision(last))
		rcancel()
	}
}

func (l *leader) run() {
	s := l.s
	w, err := s.store.KV.WatchAll(l.ctx)
	if err != nil {
		s.log.Warn("watch jobs", "err", err)
		return
	}
	defer func() { _ = w.Stop() }()
	lw, err := s.jobs.Limits.WatchAll(l.ctx)
	if err != nil {
		s.log.Warn("watch limits", "err", err)
		return
	}
	defer func() { _ = lw.Stop() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// ready: the jobs' watch has delivered every record there was at start; limitsReady: the
	// limits' watch has too. Admission waits for both: a leader that has just taken over would
	// otherwise admit under the default limit the jobs of a workspace whose own limit it has not
	// read yet.
	ready, limitsReady := false, false
	lastReconcile := time.Now()
	dirty := map[string]bool{}
	for {
		select {
		case <-l.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				ready = true
				l.reconcile(0)
				for ws := range l.limited {
					dirty[ws] = true
				}
				break
			}
			if ws := l.apply(e); ws != "" {
				dirty[ws] = true
			}
		case e, ok := <-lw.Updates():
			if !ok {
				return
			}
			if e == nil {
				limitsReady = true
				break
			}
			l.applyLimits(e)
			dirty[e.Key()] = true
		case r := <-l.releases:
			for _, ws := range l.release(r, ready && limitsReady) {
				dirty[ws] = true
			}
		case <-tick.C:
			if ready {
				l.sweep()
				if time.Since(lastReconcile) >= reconcileEvery {
					lastReconcile = time.Now()
					l.reconcile(staleAfter)
				}
			}
		}
		// Admit after the updates that are already here, not after each one.
		if !ready || !limitsReady || len(w.Updates()) > 0 {
			continue
		}
		for ws := range dirty {
			l.admit(ws)
			delete(dirty, ws)
		}
	}
}

// apply puts a watched change into the index and returns the job's workspace when admission
// there may have to run.
func (l *leader) apply(e jetstream.KeyValueEntry) string {
	ws, _, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return ""
	}
	m := l.byWS[ws]
	if e.Operation() != jetstream.KeyValuePut {
		if m != nil {
			delete(m, e.Key())
		}
		if lm := l.limited[ws]; lm != nil && lm[e.Key()] != nil {
			delete(lm, e.Key())
			return ws
		}
		return ""
	}
	if cur := m[e.Key()]; cur != nil && cur.rev >= e.Revision() {
		return ""
	}
	rec, err := jobs.Decode(e.Value())
	if err != nil {
		l.s.log.Warn("skipping unreadable job record", "key", e.Key(), "err", err)
		return ""
	}
	l.put(e.Key(), rec, e.Revision())
	if !rec.GetLimited() {
		return ""
	}
	return ws
}

func (l *leader) put(key string, rec *jobs.Record, rev uint64) {
	ws := rec.GetJob().GetWorkspace()
	e := &entry{rec: rec, rev: rev}
	set(l.byWS, ws, key, e)
	switch {
	case rec.GetLimited() && !jobs.Final(rec.GetJob().GetStatus()):
		set(l.limited, ws, key, e)
	case l.limited[ws] != nil:
		delete(l.limited[ws], key)
	}
}

func set(m map[string]map[string]*entry, ws, key string, e *entry) {
	if m[ws] == nil {
		m[ws] = map[string]*entry{}
	}
	m[ws][key] = e
}

func (l *leader) applyLimits(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		delete(l.limits, e.Key())
		return
	}
	lim := &schedulerv1.WorkspaceLimits{}
	if err := proto.Unmarshal(e.Value(), lim); err != nil || lim.GetCopyConcurrency() <= 0 {
		delete(l.limits, e.Key())
		return
	}
	l.limits[e.Key()] = int(lim.GetCopyConcurrency())
}

func (l *leader) limit(ws string) int {
	if n, ok := l.limits[ws]; ok {
		return n
	}
	return l.s.cfg.CopyConcurrency
}

// admitBatch bounds the writes (and then the publishes) admission has in flight at once.
const admitBatch = 256

// admitAckWait bounds how long admission waits for the acknowledgements of one batch; a write
// whose outcome is not known by then is left to the watch (it brings the record whichever way
// it went) and to reconcile (it queues the steps of admitted jobs that are not on the queue).
const admitAckWait = 10 * time.Second

// admit releases waiting limited jobs of a workspace, oldest first, while the workspace is
// under its limit, and tells the others why they wait (jobs.Admit).
//
// The writes go out in batches: every record of a batch is written with compare-and-set in one
// pipeline of asynchronous publishes (jobs.Store.ApplyMsg) whose acknowledgements are awaited
// together, then the steps of the jobs admitted are queued the same way, so 500 jobs due at
// one tick cost a few round trips to NATS instead of a thousand. A write refused because the
// record changed meanwhile (a job cancelled while it waited) is skipped; the watch brings the
// change and admission runs again, so a slot counted for a job that was not admitted is given
// to the next one then. The jobs after it in the batch may be admitted before it, which is what
// the next pass would have done: the only writer of a waiting job besides the leader is a
// cancel.
func (l *leader) admit(ws string) {
	var active int
	var waiting []*entry
	for _, e := range l.limited[ws] {
		if e.rec.GetAdmitted() {
			active++
		} else if e.rec.GetJob().GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WAITING {
			waiting = append(waiting, e)
		}
	}
	if len(waiting) == 0 {
		return
	}
	sort.Slice(waiting, func(i, j int) bool { return fifoLess(waiting[i].rec.GetJob(), waiting[j].rec.GetJob()) })
	limit := l.limit(ws)
	var writes []admission
	for _, e := range waiting {
		rec, msg, err := l.s.store.ApplyMsg(e.rec, e.rev, jobs.Admit(ws, active, limit))
		if errors.Is(err, jobs.ErrNoChange) {
			continue // it says why it waits already
		}
		if err != nil {
			l.s.log.Warn("admission", "job", e.rec.GetJob().GetId(), "err", err)
			continue
		}
		if rec.GetAdmitted() {
			active++
		}
		writes = append(writes, admission{rec: rec, msg: msg})
	}
	for len(writes) > 0 && l.ctx.Err() == nil {
		n := min(admitBatch, len(writes))
		l.writeBatch(writes[:n])
		writes = writes[n:]
	}
}

// releaseReq is a batch of new job records for the leader to write, admitting them as it
// writes them; errs holds each write's error once done is closed.
type releaseReq struct {
	recs []*jobs.Record
	errs []error
	done chan struct{}
}

// submitRelease has the leader write new limited job records (the jobs of schedule ticks
// prepared ahead) and admit those it can at once: their steps are queued in the same pass, so
// a tick's jobs cost one pipeline of creates and one of publishes. ok is false when this
// replica no longer leads (nothing was written). Each record is changed (admitted or not).
func (l *leader) submitRelease(ctx context.Context, recs []*jobs.Record) (errs []error, ok bool) {
	r := &releaseReq{recs: recs, errs: make([]error, len(recs)), done: make(chan struct{})}
	select {
	case l.releases <- r:
	case <-l.ctx.Done():
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
	<-r.done
	return r.errs, true
}

// release writes a releaseReq's records. A record is admitted as it is created when its
// workspace is under its limit and has no job waiting for admission (which would be older:
// FIFO); the others are created waiting and admission takes them in turn. It returns the
// workspaces where admission has to run again (a create refused: the slot counted for it is
// free).
func (l *leader) release(r *releaseReq, ready bool) (again []string) {
	defer close(r.done)
	order := make([]int, len(r.recs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return fifoLess(r.recs[order[i]].GetJob(), r.recs[order[j]].GetJob()) })
	active := map[string]int{}
	blocked := map[string]bool{}
	for _, rec := range r.recs {
		ws := rec.GetJob().GetWorkspace()
		if _, ok := active[ws]; ok {
			continue
		}
		active[ws] = 0
		for _, e := range l.limited[ws] {
			if e.rec.GetAdmitted() {
				active[ws]++
			} else if e.rec.GetJob().GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WAITING {
				blocked[ws] = true
			}
		}
	}
	batch := make([]admission, 0, len(r.recs))
	index := make([]int, 0, len(r.recs))
	for _, i := range order {
		rec := r.recs[i]
		ws := rec.GetJob().GetWorkspace()
		if ready && !blocked[ws] {
			if _, err := jobs.Admit(ws, active[ws], l.limit(ws))(rec); err == nil && rec.GetAdmitted() {
				active[ws]++
			}
		}
		msg, err := l.s.store.CreateMsg(rec)
		if err != nil {
			r.errs[i] = err
			continue
		}
		batch = append(batch, admission{rec: rec, msg: msg})
		index = append(index, i)
	}
	failed := map[string]bool{}
	for len(batch) > 0 {
		n := min(admitBatch, len(batch))
		for k, err := range l.writeBatch(batch[:n]) {
			if err != nil {
				r.errs[index[k]] = err
				failed[batch[k].rec.GetJob().GetWorkspace()] = true
			}
		}
		batch, index = batch[n:], index[n:]
	}
	for ws := range failed {
		again = append(again, ws)
	}
	return again
}

// admission is one record admission writes: rec, by the compare-and-set write msg.
type admission struct {
	rec *jobs.Record
	msg *nats.Msg
}

// writeBatch writes a batch of records (admission's compare-and-set writes, or the creates of
// a release), then queues the steps of those admitted. It returns each write's error.
func (l *leader) writeBatch(batch []admission) []error {
	s := l.s
	errs := make([]error, len(batch))
	js := s.deps.NATS.JS
	ctx, cancel := context.WithTimeout(l.ctx, admitAckWait)
	defer cancel()
	writes := make([]jetstream.PubAckFuture, len(batch))
	for i, a := range batch {
		var err error
		if writes[i], err = js.PublishMsgAsync(a.msg); err != nil {
			s.log.Warn("admission", "job", a.rec.GetJob().GetId(), "err", err)
			errs[i] = err
		}
	}
	var steps []jetstream.PubAckFuture
	var queued []string
	for i, a := range batch {
		if writes[i] == nil {
			continue
		}
		id := a.rec.GetJob().GetId()
		ack, err := awaitAck(ctx, writes[i])
		if err != nil {
			if !jobs.IsRevisionMismatch(err) && l.ctx.Err() == nil {
				s.log.Warn("admission", "job", id, "err", err)
			}
			errs[i] = err
			continue
		}
		l.put(jobs.Key(a.rec.GetJob().GetWorkspace(), id), a.rec, ack.Sequence)
		if !a.rec.GetAdmitted() {
			continue
		}
		s.metrics.admitted.Inc()
		msgs, err := jobs.StepMsgs(a.rec, ack.Sequence)
		for _, m := range msgs {
			var f jetstream.PubAckFuture
			if err == nil {
				f, err = js.PublishMsgAsync(m)
			}
			if err != nil {
				break
			}
			steps = append(steps, f)
			queued = append(queued, id)
		}
		if err != nil {
			s.log.Warn("queueing an admitted job failed; reconcile queues it", "job", id, "err", err)
		}
	}
	for i, f := range steps {
		if _, err := awaitAck(ctx, f); err != nil && l.ctx.Err() == nil {
			s.log.Warn("queueing an admitted job failed; reconcile queues it", "job", queued[i], "err", err)
		}
	}
	return errs
}

// awaitAck waits for an asynchronous publish's acknowledgement.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func fifoLess(a, b *schedulerv1.Job) bool {
	ta, tb := a.GetCreateTime().AsTime(), b.GetCreateTime().AsTime()
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.GetId() < b.GetId()
}

// sweep enforces maximum execution times, finishes cancelling jobs whose steps have stopped,
// and removes finished jobs older than the retention.
func (l *leader) sweep() {
	s := l.s
	defer s.sweeps.Add(1)
	now := s.now()
	for ws, m := range l.byWS {
		for key, e := range m {
			job := e.rec.GetJob()
			switch {
			case jobs.Final(job.GetStatus()):
				if !now.Before(job.GetFinishTime().AsTime().Add(s.cfg.JobRetention)) {
					if err := s.store.Remove(l.ctx, ws, job.GetId()); err != nil {
						s.log.Warn("removing an expired job", "job", job.GetId(), "err", err)
						continue
					}
					delete(m, key)
					if lm := l.limited[ws]; lm != nil {
						delete(lm, key)
					}
				}
			case job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING &&
				(len(e.rec.GetRunning()) == 0 || now.Sub(job.GetUpdateTime().AsTime()) > stuckCancelling):
				l.forceFinish(ws, job.GetId())
			case job.GetStartTime() != nil && job.GetMaxExecutionTime().AsDuration() > 0 &&
				!now.Before(job.GetStartTime().AsTime().Add(job.GetMaxExecutionTime().AsDuration())):
				if _, err := s.requestCancel(l.ctx, ws, job.GetId(), jobs.MaxExecutionTimeError(job.GetMaxExecutionTime().AsDuration()), false); err != nil {
					s.log.Warn("cancelling a job past its maximum execution time", "job", job.GetId(), "err", err)
				}
			}
		}
	}
}

// forceFinish ends a job stuck cancelling, unless a step of it recorded a commit it has not
// finished: its executor, or the redelivery of its step, finishes it, and the job ends then.
func (l *leader) forceFinish(ws, id string) {
	s := l.s
	a, err := s.store.Apply(l.ctx, ws, id, func(rec *jobs.Record) (jobs.Effects, error) {
		return jobs.ForceFinish(s.now(), s.jobs.OpenCommits(l.ctx, rec, s.log))(rec)
	})
	if err != nil {
		if !errors.Is(err, jobs.ErrNotFound) {
			s.log.Warn("finishing a cancelled job", "job", id, "err", err)
		}
		return
	}
	s.jobs.Carry(l.ctx, a.Record, a.Effects, s.log)
}

// reconcile queues again the steps of admitted, unfinished jobs unchanged for minAge that are
// neither done nor on the queue. Queueing is idempotent (Nats-Msg-Id) and executors skip steps
// already done, so a race with a step finishing at this moment is harmless.
func (l *leader) reconcile(minAge time.Duration) {
	s := l.s
	now := s.now()
	for _, m := range l.byWS {
		for _, e := range m {
			job := e.rec.GetJob()
			if !e.rec.GetAdmitted() || jobs.Final(job.GetStatus()) || job.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_CANCELLING {
				continue
			}
			if now.Sub(job.GetUpdateTime().AsTime()) < minAge {
				continue
			}
			for _, st := range e.rec.GetSteps() {
				if jobs.StepDone(e.rec, st.GetId()) {
					continue
				}
				queued, err := s.jobs.Queued(l.ctx, job.GetWorkspace(), job.GetId(), st.GetId())
				if err == nil && !queued {
					s.log.Info("re-queueing a lost step", "job", job.GetId(), "step", st.GetId())
					s.metrics.requeued.Inc()
					err = s.jobs.PublishStep(l.ctx, job, st, nil, 0)
				}
				if err != nil && l.ctx.Err() == nil {
					s.log.Warn("reconcile", "job", job.GetId(), "step", st.GetId(), "err", err)
				}
			}
		}
	}
}
