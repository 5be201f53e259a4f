package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func testConfig() Config {
	return Config{JobRetention: 48 * time.Hour, CopyConcurrency: 2, CatchUpWindow: time.Hour, MaxExecutionTime: 30 * time.Minute}
}

// embeddedNATS starts a real embedded NATS server with JetStream for the test.
func embeddedNATS(t testing.TB) *natsx.Conn {
	t.Helper()
	c, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func startScheduler(t *testing.T, conn *natsx.Conn, clock func() time.Time) *Service {
	t.Helper()
	s, err := New(testConfig(), Deps{NATS: conn, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// startStoppedLeader starts a scheduler on conn, waits until it leads and stops it: the test
// then drives the leader's parts itself, on what the running scheduler set up.
func startStoppedLeader(t *testing.T, conn *natsx.Conn) *Service {
	t.Helper()
	s := startScheduler(t, conn, time.Now)
	checkfor.Eventually(t, 20*time.Second, "leadership", s.IsLeader)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitSweeps waits until the leader has swept twice more, so that a check after it sees the
// effect of a sweep that read the clock as it is now.
func waitSweeps(t *testing.T, s *Service) {
	t.Helper()
	n := s.sweeps.Load()
	checkfor.Eventually(t, 20*time.Second, "two sweeps", func() bool { return s.sweeps.Load() >= n+2 })
}

func TestRetentionWithInjectedClock(t *testing.T) {
	conn := embeddedNATS(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := &testClock{t: t0}
	s := startScheduler(t, conn, clock.Now)
	ctx := context.Background()
	checkfor.Eventually(t, 20*time.Second, "leadership", s.IsLeader)

	// No executor runs: one job is cancelled while waiting (finished at t0), one stays waiting.
	fin, err := s.runNoopJob(ctx, "ws", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j, err := s.cancelJob(ctx, "ws", fin.GetId()); err != nil || j.GetStatus() != schedulerv1.JobStatus_JOB_STATUS_CANCELLED {
		t.Fatalf("cancel = %v, %v", j, err)
	}
	open, err := s.runNoopJob(ctx, "ws", nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	clock.Set(t0.Add(48*time.Hour - time.Second))
	waitSweeps(t, s)
	if _, err := s.getJob(ctx, "ws", fin.GetId()); err != nil {
		t.Fatalf("finished job gone before 48h: %v", err)
	}
	clock.Set(t0.Add(48 * time.Hour))
	checkfor.Eventually(t, 20*time.Second, "the finished job to be removed at 48h", func() bool {
		_, err := s.getJob(ctx, "ws", fin.GetId())
		return errors.Is(err, jobs.ErrNotFound)
	})
	list, err := s.listJobs(ctx, "ws", ListFilter{})
	if err != nil || len(list) != 1 || list[0].GetId() != open.GetId() {
		t.Fatalf("after retention: %v, %v; want only the waiting job", list, err)
	}
	if list, err := s.listJobs(ctx, "empty", ListFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("jobs of an empty workspace: %v, %v", list, err)
	}
	// Unfinished jobs are never removed, however old.
	clock.Set(t0.Add(1000 * time.Hour))
	waitSweeps(t, s)
	if _, err := s.getJob(ctx, "ws", open.GetId()); err != nil {
		t.Fatalf("waiting job removed: %v", err)
	}
}

// TestOneLeaderAndFailoverOnStop: of two replicas one leads; the leader that stops releases
// its lease (it does not leave it to expire), and the other takes over. How long the takeover
// takes is BenchmarkFailoverOnStop's to report.
func TestOneLeaderAndFailoverOnStop(t *testing.T) {
	conn := embeddedNATS(t)
	a := startScheduler(t, conn, time.Now)
	checkfor.Eventually(t, 20*time.Second, "a leader", a.IsLeader)
	b := startScheduler(t, conn, time.Now)
	waitSweeps(t, a)
	if b.IsLeader() {
		t.Fatal("two leaders")
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.IsLeader() {
		t.Fatal("the stopped replica still leads")
	}
	// Released, not left to its TTL: the lease is gone, or already b's.
	if e, err := a.leases.Get(context.Background(), leaseKey); err == nil && string(e.Value()) == a.instance {
		t.Errorf("the stopped leader's lease is still held by it (revision %d)", e.Revision())
	} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
	checkfor.Eventually(t, LeaseTTL, "failover", b.IsLeader)
	if a.IsLeader() {
		t.Error("two leaders after the failover")
	}
}

// BenchmarkFailoverOnStop reports how long a replica takes to lead after the leader stops
// (failover-s; the target is within the next campaign attempt, 1s).
func BenchmarkFailoverOnStop(b *testing.B) {
	var total time.Duration
	for range b.N {
		conn, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: b.TempDir(), Listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		start := func() *Service {
			s, err := New(testConfig(), Deps{NATS: conn, Now: time.Now})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			return s
		}
		leader, other := start(), start()
		checkfor.Eventually(b, 20*time.Second, "a leader", func() bool { return leader.IsLeader() || other.IsLeader() })
		if other.IsLeader() {
			leader, other = other, leader
		}
		stopped := time.Now()
		_ = leader.Stop(context.Background())
		checkfor.Eventually(b, 20*time.Second, "failover", other.IsLeader)
		total += time.Since(stopped)
		_ = other.Stop(context.Background())
		conn.Close()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
}

func TestLimitedJobsWaitForAdmissionInOrder(t *testing.T) {
	conn := embeddedNATS(t)
	s := startScheduler(t, conn, time.Now)
	ctx := context.Background()
	checkfor.Eventually(t, 20*time.Second, "leadership", s.IsLeader)
	var ids []string
	for range 4 {
		j, err := s.runNoopJob(ctx, "ws", map[string]string{"limited": "true"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.GetId())
	}
	// No executor: the first two are admitted (their steps queued), the others wait and say why.
	checkfor.Eventually(t, 20*time.Second, "admission", func() bool {
		rec, _, err := s.store.Get(ctx, "ws", ids[3])
		return err == nil && rec.GetJob().GetWaitingReason() == "2 copy jobs working in workspace ws, limit 2"
	})
	for i, id := range ids {
		rec, _, err := s.store.Get(ctx, "ws", id)
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 2; rec.GetAdmitted() != want {
			t.Errorf("job %d admitted = %v, want %v", i, rec.GetAdmitted(), want)
		}
	}
	// Cancelling an admitted job frees its slot for the next in line.
	if _, err := s.cancelJob(ctx, "ws", ids[0]); err != nil {
		t.Fatal(err)
	}
	checkfor.Eventually(t, 20*time.Second, "the third job to be admitted", func() bool {
		rec, _, err := s.store.Get(ctx, "ws", ids[2])
		return err == nil && rec.GetAdmitted()
	})
	if rec, _, _ := s.store.Get(ctx, "ws", ids[3]); rec.GetAdmitted() {
		t.Error("fourth job admitted over the limit")
	}
}

// TestReconcileRequeuesLostSteps: a job whose record was written but whose steps never reached
// the queue (the process died in between) is queued by the next leader.
func TestReconcileRequeuesLostSteps(t *testing.T) {
	conn := embeddedNATS(t)
	ctx := context.Background()
	a := startStoppedLeader(t, conn)
	// What createJob writes, without the queueing.
	now := time.Now()
	rec := jobs.Create(jobs.NewJob{
		Job:   &schedulerv1.Job{Id: jobs.NewID(now), Workspace: "ws", Kind: schedulerv1.JobKind_JOB_KIND_NOOP},
		Steps: []*persistencev1.StepSpec{{Id: "0"}, {Id: "1"}},
	}, now)
	if _, err := a.store.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	queued := func() uint64 {
		info, err := a.jobs.Steps.Info(ctx, jetstream.WithSubjectFilter(jobs.JobSubjects("ws", rec.GetJob().GetId())))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	if n := queued(); n != 0 {
		t.Fatalf("%d steps queued before the reconcile", n)
	}
	b := startScheduler(t, conn, time.Now)
	checkfor.Eventually(t, 20*time.Second, "the new leader to queue both steps", func() bool { return b.IsLeader() && queued() == 2 })
	// Queueing again is de-duplicated: a later pass adds nothing.
	waitSweeps(t, b)
	if n := queued(); n != 2 {
		t.Errorf("%d step messages, want 2", n)
	}
}
