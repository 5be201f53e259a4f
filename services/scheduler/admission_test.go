package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/jobs"
)

// waitingLimited writes n limited jobs that wait for admission, one step each, created one
// millisecond apart (their FIFO order is the order of the returned ids), as CreateJob writes
// them, without a leader to admit them.
func waitingLimited(t *testing.T, s *Service, ws string, n int) []string {
	t.Helper()
	ctx := context.Background()
	t0 := time.Now()
	ids := make([]string, n)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		rec := &persistencev1.JobRecord{
			Job: &schedulerv1.Job{
				Id: jobs.NewID(at), Workspace: ws, Kind: schedulerv1.JobKind_JOB_KIND_NOOP,
				Status: schedulerv1.JobStatus_JOB_STATUS_WAITING, CreateTime: timestamppb.New(at), UpdateTime: timestamppb.New(at),
			},
			Steps:   []*persistencev1.StepSpec{{Id: "0"}},
			Limited: true,
		}
		if _, err := s.store.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		ids[i] = rec.GetJob().GetId()
	}
	return ids
}

// queuedSteps counts the step messages on the queue for each job of ws.
func queuedSteps(t *testing.T, s *Service, ws string) map[string]uint64 {
	t.Helper()
	info, err := s.jobs.Steps.Info(context.Background(), jetstream.WithSubjectFilter(jobs.SubjectSteps+"."+ws+".>"))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]uint64{}
	for subj, c := range info.State.Subjects {
		id, _, _ := strings.Cut(strings.TrimPrefix(subj, jobs.SubjectSteps+"."+ws+"."), ".")
		n[id] += c
	}
	return n
}

// TestAdmissionInBatches: 700 jobs waiting when a leader starts, with a limit of 450, are
// admitted in batches of pipelined writes: exactly the oldest 450, each with its one step queued
// once, and the other 250 told why they wait.
func TestAdmissionInBatches(t *testing.T) {
	conn := embeddedNATS(t)
	ctx := context.Background()
	a := startStoppedLeader(t, conn)
	const jobsN, limit = 700, 450
	if _, err := a.setWorkspaceLimits(ctx, "ws", &schedulerv1.WorkspaceLimits{CopyConcurrency: limit}); err != nil {
		t.Fatal(err)
	}
	ids := waitingLimited(t, a, "ws", jobsN)
	b := startScheduler(t, conn, time.Now)
	reason := fmt.Sprintf("%d copy jobs working in workspace ws, limit %d", limit, limit)
	checkfor.Eventually(t, 20*time.Second, "the last job to be told why it waits", func() bool {
		rec, _, err := b.store.Get(ctx, "ws", ids[jobsN-1])
		return err == nil && rec.GetJob().GetWaitingReason() == reason
	})
	queued := queuedSteps(t, b, "ws")
	for i, id := range ids {
		rec, _, err := b.store.Get(ctx, "ws", id)
		if err != nil {
			t.Fatal(err)
		}
		admitted := i < limit
		if rec.GetAdmitted() != admitted {
			t.Errorf("job %d admitted = %v, want %v", i, rec.GetAdmitted(), admitted)
		}
		switch {
		case admitted && rec.GetJob().GetWaitingReason() != "":
			t.Errorf("admitted job %d still says it waits: %q", i, rec.GetJob().GetWaitingReason())
		case !admitted && rec.GetJob().GetWaitingReason() != reason:
			t.Errorf("job %d waits with reason %q, want %q", i, rec.GetJob().GetWaitingReason(), reason)
		}
		want := uint64(0)
		if admitted {
			want = 1
		}
		if queued[id] != want {
			t.Errorf("job %d has %d step messages on the queue, want %d", i, queued[id], want)
		}
	}
	if len(queued) != limit {
		t.Errorf("%d jobs have steps on the queue, want %d", len(queued), limit)
	}
}

// TestAdmissionSkipsAJobChangedMeanwhile: a job cancelled after the leader indexed it fails the
// compare-and-set of its admission; the jobs after it in the same batch are still written, the
// cancelled one is neither admitted nor queued, and when the change arrives its slot goes to the
// next in line and the limit holds.
func TestAdmissionSkipsAJobChangedMeanwhile(t *testing.T) {
	conn := embeddedNATS(t)
	ctx := context.Background()
	s := startStoppedLeader(t, conn)
	ids := waitingLimited(t, s, "ws", 4) // the test configuration's limit is 2
	l := &leader{s: s, ctx: ctx, byWS: map[string]map[string]*entry{}, limited: map[string]map[string]*entry{}, limits: map[string]int{}}
	for _, id := range ids {
		e, err := s.store.KV.Get(ctx, jobs.Key("ws", id))
		if err != nil {
			t.Fatal(err)
		}
		l.apply(e)
	}
	// Cancelled behind the leader's index.
	if _, err := s.cancelJob(ctx, "ws", ids[0]); err != nil {
		t.Fatal(err)
	}
	l.admit("ws")
	type state struct {
		status   schedulerv1.JobStatus
		admitted bool
		reason   string
		queued   uint64
	}
	waiting, cancelled := schedulerv1.JobStatus_JOB_STATUS_WAITING, schedulerv1.JobStatus_JOB_STATUS_CANCELLED
	full := "2 copy jobs working in workspace ws, limit 2"
	// The batch counted a slot for the cancelled job: one is admitted, the others wait.
	want := []state{{cancelled, false, "", 0}, {waiting, true, "", 1}, {waiting, false, full, 0}, {waiting, false, full, 0}}
	check := func(when string) {
		t.Helper()
		queued := queuedSteps(t, s, "ws")
		for i, id := range ids {
			rec, rev, err := s.store.Get(ctx, "ws", id)
			if err != nil {
				t.Fatal(err)
			}
			j := rec.GetJob()
			if j.GetStatus() != want[i].status || rec.GetAdmitted() != want[i].admitted || j.GetWaitingReason() != want[i].reason || queued[id] != want[i].queued {
				t.Errorf("%s: job %d is %s admitted=%v reason=%q with %d steps queued, want %+v",
					when, i, j.GetStatus(), rec.GetAdmitted(), j.GetWaitingReason(), queued[id], want[i])
			}
			// The index holds what was written (or, for the refused write, what it knew).
			if e := l.byWS["ws"][jobs.Key("ws", id)]; i > 0 && (e == nil || e.rev != rev) {
				t.Errorf("%s: the index has job %d at %v, the bucket at revision %d", when, i, e, rev)
			}
		}
	}
	check("after the batch")
	// The watch brings the cancel; admission runs again and admits nobody over the limit.
	e, err := s.store.KV.Get(ctx, jobs.Key("ws", ids[0]))
	if err != nil {
		t.Fatal(err)
	}
	if ws := l.apply(e); ws != "ws" {
		t.Fatalf("the cancel's change is for workspace %q", ws)
	}
	l.admit("ws")
	// Its slot goes to the next in line, and no further.
	want[2] = state{waiting, true, "", 1}
	check("after the cancel arrived")
}

// limitedRecord is a new limited job's record with one step, created at at.
func limitedRecord(ws string, at time.Time) *jobs.Record {
	return &persistencev1.JobRecord{
		Job: &schedulerv1.Job{
			Id: jobs.NewID(at), Workspace: ws, Kind: schedulerv1.JobKind_JOB_KIND_NOOP,
			Status: schedulerv1.JobStatus_JOB_STATUS_WAITING, CreateTime: timestamppb.New(at), UpdateTime: timestamppb.New(at),
		},
		Steps:   []*persistencev1.StepSpec{{Id: "0"}},
		Limited: true,
	}
}

// TestReleaseAdmitsAsItCreates: new limited jobs handed to the leader (a tick's prepared jobs)
// are created already admitted, oldest first, up to the workspace's limit, with their steps
// queued once; the rest are created waiting. In a workspace where older jobs wait, none of the
// new ones jumps the queue. Creating a job again is refused and queues nothing.
func TestReleaseAdmitsAsItCreates(t *testing.T) {
	conn := embeddedNATS(t)
	ctx := context.Background()
	// The limits and the waiting jobs are written while no leader runs: a running leader
	// learns limits through a watch, and jobs it saw first would be admitted under the default.
	a := startScheduler(t, conn, time.Now)
	checkfor.Eventually(t, 20*time.Second, "leadership", a.IsLeader)
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for ws, limit := range map[string]int32{"free": 3, "busy": 1} {
		if _, err := a.setWorkspaceLimits(ctx, ws, &schedulerv1.WorkspaceLimits{CopyConcurrency: limit}); err != nil {
			t.Fatal(err)
		}
	}
	older := waitingLimited(t, a, "busy", 2)
	s := startScheduler(t, conn, time.Now)
	checkfor.Eventually(t, 20*time.Second, "leadership", s.IsLeader)
	checkfor.Eventually(t, 20*time.Second, "the busy workspace's second job told why it waits", func() bool {
		rec, _, err := s.store.Get(ctx, "busy", older[1])
		return err == nil && !rec.GetAdmitted() && rec.GetJob().GetWaitingReason() != ""
	})
	t0 := time.Now()
	var recs []*jobs.Record
	for i := range 5 {
		recs = append(recs, limitedRecord("free", t0.Add(time.Duration(4-i)*time.Millisecond))) // newest first
	}
	recs = append(recs, limitedRecord("busy", t0))
	l := s.leader.Load()
	errs, ok := l.submitRelease(ctx, recs)
	if !ok {
		t.Fatal("the leader did not take the release")
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	queued := queuedSteps(t, s, "free")
	for i, rec := range recs[:5] {
		stored, _, err := s.store.Get(ctx, "free", rec.GetJob().GetId())
		if err != nil {
			t.Fatal(err)
		}
		admitted := i >= 2 // the three oldest
		if stored.GetAdmitted() != admitted || queued[rec.GetJob().GetId()] != map[bool]uint64{true: 1, false: 0}[admitted] {
			t.Errorf("free job %d (age rank %d): admitted %v with %d steps queued, want admitted %v", i, 4-i, stored.GetAdmitted(), queued[rec.GetJob().GetId()], admitted)
		}
	}
	busy, _, err := s.store.Get(ctx, "busy", recs[5].GetJob().GetId())
	if err != nil {
		t.Fatal(err)
	}
	if busy.GetAdmitted() || queuedSteps(t, s, "busy")[recs[5].GetJob().GetId()] != 0 {
		t.Errorf("a new job was admitted before the older waiting one: %v", busy)
	}

	again := []*jobs.Record{limitedRecord("free", t0)}
	again[0].Job.Id = recs[4].GetJob().GetId()
	errs, ok = l.submitRelease(ctx, again)
	if !ok || !jobs.IsRevisionMismatch(errs[0]) {
		t.Fatalf("creating a job again: %v (ok %v), want a refusal", errs, ok)
	}
	if n := queuedSteps(t, s, "free")[recs[4].GetJob().GetId()]; n != 1 {
		t.Errorf("the job created again has %d steps on the queue, want 1", n)
	}
}
