package main_test

import (
	"context"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/jobs"
)

// startExecutorProcess runs `sluiced -target=executor` against the system's NATS and waits
// until it serves.
func startExecutorProcess(t testing.TB, sys *sluicetest.System, name string, extra ...string) (*sluicetest.Process, string) {
	t.Helper()
	sluiced, _ := sluicetest.Binaries(t)
	addr := sluicetest.FreeAddr(t)
	args := append([]string{
		"-target", "executor", "-grpc-addr", addr, "-http-addr", "", "-events-addr", "",
		"-nats-url", sys.App.NATSURL(), "-catalog-addr", sys.Addr, "-data-dir", t.TempDir(),
		"-auth.service-token-file", sys.ServiceTokenFile,
		"-executor.concurrency", "2",
	}, append(sluicetest.EmbeddedLibArgs(), fastJobs...)...)
	p := sluicetest.StartProcess(t, name, sluiced, append(args, extra...)...)
	sluicetest.WaitServing(t, addr, "", 30*time.Second, p)
	return p, addr
}

// commitRecords reads the commit records of a job's steps.
func commitRecords(t testing.TB, natsURL, ws, id string, steps int) []*persistencev1.StepCommit {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), jobs.BucketCommits)
	if err != nil {
		t.Fatal(err)
	}
	var out []*persistencev1.StepCommit
	for i := range steps {
		e, err := kv.Get(context.Background(), jobs.CommitKey(ws, id, strconv.Itoa(i)))
		if err != nil {
			t.Errorf("job %s step %d: no commit record: %v", id, i, err)
			continue
		}
		c := &persistencev1.StepCommit{}
		if err := proto.Unmarshal(e.Value(), c); err != nil {
			t.Fatal(err)
		}
		if e.Revision() == 0 || e.Delta() != 0 {
			t.Errorf("commit record %s: %v", e.Key(), e)
		}
		out = append(out, c)
	}
	return out
}

// soakKills is how many executors TestJobExecutorKilledRepeatedly kills (SLUICE_SOAK_KILLS;
// 20 by default, as in CI; `make soak` runs 1,000).
func soakKills(t testing.TB) int {
	if v := os.Getenv("SLUICE_SOAK_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SLUICE_SOAK_KILLS=%q is not a positive count", v)
		}
		return n
	}
	return 20
}

// TestJobExecutorKilledRepeatedly kills executor processes with SIGKILL at random moments of
// their steps while new jobs keep coming: every step is redelivered and committed exactly once
// (one commit record each, written by one attempt), and every job ends done with all its rows.
func TestJobExecutorKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(withoutExecutor...))
	c := sys.Scheduler
	kills := soakKills(t)
	const steps = 2
	var ids []string
	addJobs := func(n int) {
		for range n {
			ids = append(ids, runNoop(t, c, "ws", map[string]string{"steps": strconv.Itoa(steps), "sleep": "800ms", "commit": "true"}, 0).GetId())
		}
	}
	addJobs(4)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	cur, curAddr := startExecutorProcess(t, sys, "executor-0")
	for i := range kills {
		// The next executor starts first, so that each kill costs only the moment it waits for.
		next, nextAddr := startExecutorProcess(t, sys, "executor-"+strconv.Itoa(i+1))
		addJobs(2)
		ex := sluicetest.NewClients(t, curAddr, sys.Token).Executor
		sluicetest.Eventually(t, 30*time.Second, "executor "+strconv.Itoa(i)+" to run a step", func() bool {
			st, err := ex.GetStatus(context.Background(), &executorv1.GetStatusRequest{})
			return err == nil && len(st.GetRunning()) > 0
		})
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond) // a random moment of the step, not a wait
		cur.Kill()
		cur, curAddr = next, nextAddr
	}
	redelivered := 0
	for _, id := range ids {
		j := waitJob(t, c, "ws", id, 120*time.Second, done, failed, cancelled)
		if j.GetStatus() != done || j.GetProgress().GetStepsDone() != steps || j.GetProgress().GetStatistics().GetWrittenRows() != steps {
			t.Errorf("job %s = %v, want done with %d steps and %d rows", id, j, steps, steps)
		}
		for _, cr := range commitRecords(t, sys.App.NATSURL(), "ws", id, steps) {
			if cr.GetAttempt() > 1 {
				redelivered++
			}
		}
	}
	if redelivered == 0 {
		t.Errorf("no step committed on a redelivery: the kills did not exercise redelivery")
	}
	t.Logf("%d kills, %d jobs, %d steps committed after a redelivery", kills, len(ids), redelivered)
}

// TestJobAllInOneKilledMidJob kills the all-in-one process (embedded NATS included) while jobs
// work and wait, restarts it on the same data directory, and checks that every job ends and
// none is left working.
func TestJobAllInOneKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", "", "-nats-listen", natsAddr},
		append(sluicetest.EmbeddedLibArgs(), fastJobs...)...)
	p := sluicetest.StartProcess(t, "sluiced-1", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	c := sluicetest.NewClients(t, addr, token).Scheduler
	if _, err := c.SetWorkspaceLimits(context.Background(), &schedulerv1.SetWorkspaceLimitsRequest{Workspace: "ws", Limits: &schedulerv1.WorkspaceLimits{CopyConcurrency: 1}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 {
		ids = append(ids, runNoop(t, c, "ws", map[string]string{"steps": "3", "sleep": "700ms", "commit": "true"}, 0).GetId())
	}
	for range 2 {
		ids = append(ids, runNoop(t, c, "ws", map[string]string{"limited": "true", "sleep": "500ms"}, 0).GetId())
	}
	waitJob(t, c, "ws", ids[0], 20*time.Second, working)
	p.Kill()

	p = sluicetest.StartProcess(t, "sluiced-2", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	for _, id := range ids {
		j := waitJob(t, c, "ws", id, 60*time.Second, done, failed, cancelled)
		if j.GetStatus() != done {
			t.Errorf("job %s after the restart = %v", id, j)
		}
	}
	for _, id := range ids[:2] {
		if got := len(commitRecords(t, sluicetest.EmbeddedNATSURL(t, dataDir), "ws", id, 3)); got != 3 {
			t.Errorf("job %s: %d commit records, want 3", id, got)
		}
	}
	resp, err := c.ListJobs(context.Background(), &schedulerv1.ListJobsRequest{Workspace: "ws", Statuses: []schedulerv1.JobStatus{waiting, working, cancelling}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetJobs()) != 0 {
		t.Errorf("jobs left unfinished after the restart: %v", resp.GetJobs())
	}
}
