package main_test

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/services/executor/step"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// The commit path under faults, on the engine where each fault was seen: clickhouse-server
// 18.16 (no MOVE PARTITION ... TO TABLE: every commit attaches partitions). Each test injects
// its fault for real (a process killed, the server or NATS stopped) and checks every row of
// the target and of the Data Source downstream.

// outageSeconds is how long TestCopyCommitOutlivesClickHouseOutage keeps ClickHouse down
// (SLUICE_OUTAGE_SECONDS; 90 by default).
func outageSeconds(t testing.TB) time.Duration {
	if v := os.Getenv("SLUICE_OUTAGE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SLUICE_OUTAGE_SECONDS=%q is not a positive count", v)
		}
		return time.Duration(n) * time.Second
	}
	return 90 * time.Second
}

// waitCommitRecord polls a copy job's commit record until it holds want (a copy's one step is
// "copy"), and returns it.
func waitCommitRecord(t testing.TB, natsURL, ws, id, want string) string {
	t.Helper()
	var rec string
	sluicetest.Eventually(t, 120*time.Second, "the commit record of job "+id+" to hold "+want, func() bool {
		rec = commitRecordText(natsURL, ws, id, "copy")
		return strings.Contains(rec, want)
	})
	return rec
}

func stagingTables(t testing.TB, wh warehouse.Conn, db string) string {
	t.Helper()
	res, err := wh.Query(context.Background(), "SELECT name FROM system.tables WHERE database = "+warehouse.QuoteString(db)+" AND startsWith(name, '__sluice_stage_') ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res.Rows {
		out = append(out, fmt.Sprint(r[0]))
	}
	return strings.Join(out, ",")
}

// TestCopyCommitOutlivesClickHouseOutage: ClickHouse goes down inside a copy's commit (after
// some partitions were attached) and stays down for 90 s. The copy waits, showing "committing,
// waiting for ClickHouse", and finishes when the server is back: every row once in the target
// and downstream, no staging table left, and the copy's ops events written.
func TestCopyCommitOutlivesClickHouseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and starts a clickhouse-server for minutes")
	}
	srv := warehousetest.NewPrivateServer(t)
	t.Setenv(step.FaultsEnv, "attach.after@4:sleep=3s")
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-clickhouse-addr", srv.Addr()}, fastJobs...)...))
	e := newFaultEnv(t, sys.Catalog, sys.Scheduler, "outage")
	const rows, days = 2_000_000, 24
	id := e.runCopy(1, rows, days)
	waitCommitRecord(t, sys.App.NATSURL(), e.ws, id, `"attach":`)
	srv.Stop(true)
	down := time.Now()
	sluicetest.Eventually(t, 60*time.Second, "the job to show that its commit waits for ClickHouse", func() bool {
		j := getJob(t, sys.Scheduler, e.ws, id)
		return j.GetStatus() == working && strings.Contains(j.GetWaitingReason(), "committing, waiting for ClickHouse")
	})
	time.Sleep(time.Until(down.Add(outageSeconds(t)))) // the outage itself, not a wait for a condition
	if j := getJob(t, sys.Scheduler, e.ws, id); j.GetStatus() != working {
		t.Fatalf("during the outage the job is %v, want working (its commit waits)", j)
	}
	srv.Start(t)
	j := e.waitFinal(id, 180*time.Second)
	if j.GetStatus() != done || j.GetProgress().GetStatistics().GetWrittenRows() != rows {
		t.Fatalf("job after the outage: %v", j)
	}
	if j.GetWaitingReason() != "" {
		t.Errorf("waiting reason left on the finished job: %q", j.GetWaitingReason())
	}
	e.checkCopies()
	wh, err := warehouse.OpenNative(context.Background(), srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wh.Close() }()
	w, err := sys.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	if left := stagingTables(t, wh, w.GetWorkspace().GetDatabase()); left != "" {
		t.Errorf("staging tables left: %s", left)
	}
	var ops map[string]string
	sluicetest.Eventually(t, 60*time.Second, "the copy's ops events", func() bool {
		ops = e.opsWritten(sys.OpsLog, id)
		return len(ops) == 2
	})
	if ops["ft_target/copy/ok"] != strconv.Itoa(rows) || ops["ft_rollup/copy/ok"] == "" {
		t.Errorf("ops events of the copy: %v", ops)
	}
	t.Logf("ClickHouse down %s inside the commit; job done %s after it came back", outageSeconds(t), time.Since(down)-outageSeconds(t))
}

// startFaultyExecutor runs `sluiced -target=executor` against the system's NATS and catalog
// and clickhouse-server chAddr, with fault points armed by faults (may be empty); extra flags
// come last (and win).
func startFaultyExecutor(t testing.TB, sys *sluicetest.System, name, chAddr, faults string, extra ...string) *sluicetest.Process {
	t.Helper()
	sluiced, _ := sluicetest.Binaries(t)
	addr := sluicetest.FreeAddr(t)
	args := append([]string{
		"-target", "executor", "-grpc-addr", addr, "-http-addr", "",
		"-nats-url", sys.App.NATSURL(), "-catalog-addr", sys.Addr, "-data-dir", t.TempDir(),
		"-auth.service-token-file", sys.ServiceTokenFile,
		"-clickhouse-addr", chAddr, "-executor.concurrency", "2",
	}, fastJobs...)
	args = append(args, extra...)
	var env []string
	if faults != "" {
		env = []string{step.FaultsEnv + "=" + faults}
	}
	p := sluicetest.StartProcessEnv(t, name, env, sluiced, args...)
	if faults == "" {
		// (An armed one may be dead before it is seen serving.)
		sluicetest.WaitServing(t, addr, "", 30*time.Second, p)
	}
	return p
}

// TestAttachFallbackExecutorKilledAtTheAttach kills the executor (SIGKILL, from inside, at the
// exact line) just before and just after an ATTACH PARTITION of a copy's and of a populate's
// commit, on a server without MOVE PARTITION ... TO TABLE. The next executor finds the attach
// intent in the commit record, asks the server whether that statement ran, and attaches each
// partition exactly once.
func TestAttachFallbackExecutorKilledAtTheAttach(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	cfg := warehousetest.Server(t)
	chAddr := strings.Join(cfg.Addrs, ",")
	// One step per populate (parallelism 1): its commit attaches 10 partitions.
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-clickhouse-addr", chAddr, "-scheduler.populate-parallelism", "1"}, withoutExecutor...)...))
	e := newFaultEnv(t, sys.Catalog, sys.Scheduler, fmt.Sprintf("attach_kill_%d", time.Now().UnixNano()%1e6))
	wh := warehousetest.Native(t)
	w, err := sys.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	db := w.GetWorkspace().GetDatabase()
	for i, point := range []string{"attach.after@1", "attach.after@3", "attach.before@2", "attach.after@7"} {
		id := e.runCopy(i, 30_000, 6)
		p := startFaultyExecutor(t, sys, "executor-copy-"+strconv.Itoa(i), chAddr, point+":kill")
		if code := p.Wait(t, 120*time.Second); code != -1 {
			t.Fatalf("%s: the executor exited with %d, want killed at the fault point\n%s", point, code, p.Output())
		}
		next := startFaultyExecutor(t, sys, "executor-copy-next-"+strconv.Itoa(i), chAddr, "")
		if j := e.waitFinal(id, 120*time.Second); j.GetStatus() != done {
			t.Fatalf("copy killed at %s: job %v", point, j)
		}
		next.Kill()
		e.checkCopies()
		if t.Failed() {
			t.Fatalf("after the kill at %s of the copy", point)
		}
	}
	e.loadSource(wh, db, 40_000, 10)
	for i, point := range []string{"attach.after@2", "attach.before@5"} {
		id := e.populate(i == 0)
		p := startFaultyExecutor(t, sys, "executor-pop-"+strconv.Itoa(i), chAddr, point+":kill")
		if code := p.Wait(t, 120*time.Second); code != -1 {
			t.Fatalf("%s: the executor exited with %d, want killed at the fault point\n%s", point, code, p.Output())
		}
		next := startFaultyExecutor(t, sys, "executor-pop-next-"+strconv.Itoa(i), chAddr, "")
		// The 10 small days are one step: the kill lands inside a commit of 10 partitions.
		if j := e.waitFinal(id, 120*time.Second); j.GetStatus() != done || j.GetProgress().GetPartitionsDone() != 10 || j.GetProgress().GetStepsDone() != 1 {
			t.Fatalf("populate killed at %s: job %v, want done, 10 partitions in one step", point, j)
		}
		next.Kill()
		if i == 1 {
			// The second populate (no truncate) adds every source row a second time.
			if got := e.mustQuery("SELECT count(), uniqExact(id) FROM ft_pop"); got != "80000 40000\n" {
				t.Errorf("after two populates, ft_pop (rows, distinct ids) = %s", got)
			}
			continue
		}
		e.checkPopulated()
	}
	if left := stagingTables(t, wh, db); left != "" {
		t.Errorf("staging tables left: %s", left)
	}
}

// TestPopulateLateAttemptCannotJoinACommit: an attempt of a populate step that started before
// another attempt recorded the step's commit stages after that commit was recorded. The first
// attempt is frozen (SIGSTOP) just before it stages, as a process cut off from NATS keeps running
// without its acknowledgements; its step is redelivered to another executor, which stages,
// records the commit and is killed after attaching both partitions (the target's, dropped from
// staging, and the downstream one's, not yet dropped). The frozen attempt then resumes, stages
// and loses the race to record; the next attempt finishes the recorded commit. The late
// attempt's rows must not be attached: every source row once in the target and downstream.
func TestPopulateLateAttemptCannotJoinACommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sys, e, wh, db, chAddr, id := startOnePartitionPopulate(t, "late_attempt")
	// One step at a time: the late attempt's retry runs only after it lost the race.
	late := startFaultyExecutor(t, sys, "executor-late", chAddr, "stage.begin@1:sleep=10s", "-executor.concurrency", "1")
	sluicetest.Eventually(t, 120*time.Second, "the first attempt to reach stage.begin", func() bool {
		return strings.Contains(late.Output(), "stage.begin")
	})
	late.Signal(syscall.SIGSTOP)
	other := startFaultyExecutor(t, sys, "executor-other", chAddr, "attach.after@2:kill")
	if code := other.Wait(t, 120*time.Second); code != -1 {
		late.Signal(syscall.SIGCONT)
		t.Fatalf("the other executor exited with %d, want killed after its second attach\n%s", code, other.Output())
	}
	late.Signal(syscall.SIGCONT)
	if j := e.waitFinal(id, 180*time.Second); j.GetStatus() != done {
		t.Fatalf("populate: job %v\n%s", j, late.Output())
	}
	// Losing the race, the late attempt follows the record that won (its log says so).
	if !strings.Contains(late.Output(), "another attempt recorded the commit first") {
		t.Errorf("the late attempt did not stage and lose the race to record (the fault did not happen as meant):\n%s", late.Output())
	}
	e.checkPopulated()
	sluicetest.Eventually(t, 60*time.Second, "no staging table left", func() bool {
		return stagingTables(t, wh, db) == ""
	})
	late.Kill()
}

// TestAttachNotSentAfterItsIntentWasTakenOver: an attempt records its attach intent and then
// stalls (frozen by SIGSTOP right after the record, as an attempt whose intent write NATS
// applied but answered late) for longer than other attempts watch an intent. Its step is
// redelivered to another executor, which judges the intent never sent, records its own, attaches
// the target's partition and is killed before dropping it from staging. The stalled attempt
// then resumes: it must not send its attach, which would copy the partition a second time.
func TestAttachNotSentAfterItsIntentWasTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sys, e, wh, db, chAddr, id := startOnePartitionPopulate(t, "late_attach")
	stalled := startFaultyExecutor(t, sys, "executor-stalled", chAddr, "attach.before@1:sleep=20s", "-executor.concurrency", "1")
	sluicetest.Eventually(t, 120*time.Second, "the first attempt to record its attach intent", func() bool {
		return strings.Contains(stalled.Output(), "attach.before")
	})
	stalled.Signal(syscall.SIGSTOP)
	other := startFaultyExecutor(t, sys, "executor-other", chAddr, "attach.after@1:kill")
	if code := other.Wait(t, 120*time.Second); code != -1 {
		stalled.Signal(syscall.SIGCONT)
		t.Fatalf("the other executor exited with %d, want killed after its first attach\n%s", code, other.Output())
	}
	stalled.Signal(syscall.SIGCONT)
	if j := e.waitFinal(id, 180*time.Second); j.GetStatus() != done {
		t.Fatalf("populate: job %v\n%s", j, stalled.Output())
	}
	e.checkPopulated()
	sluicetest.Eventually(t, 60*time.Second, "no staging table left", func() bool {
		return stagingTables(t, wh, db) == ""
	})
	stalled.Kill()
}

// TestCommitSurvivesNATSRestart restarts the nats-server (killed, back after 5 s) while a
// copy's commit attaches partitions on the server: the commit record's writes wait for NATS
// in short, retried calls and the commit goes on, each partition attached once.
func TestCommitSurvivesNATSRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	cfg := warehousetest.Server(t)
	ns := sluicetest.StartNATS(t, false)
	t.Setenv(step.FaultsEnv, "attach.after@3:sleep=2s")
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-clickhouse-addr", strings.Join(cfg.Addrs, ","), "-nats-url", ns.URL}, fastJobs...)...))
	e := newFaultEnv(t, sys.Catalog, sys.Scheduler, fmt.Sprintf("nats_restart_%d", time.Now().UnixNano()%1e6))
	const rows, days = 300_000, 12
	id := e.runCopy(1, rows, days)
	waitCommitRecord(t, ns.URL, e.ws, id, `"attach":`)
	ns.Kill()
	restarted := time.Now()
	time.Sleep(5 * time.Second) // NATS stays down: the fault itself
	ns.Start(t)
	j := e.waitFinal(id, 120*time.Second)
	if j.GetStatus() != done {
		t.Fatalf("job after the NATS restart: %v", j)
	}
	e.checkCopies()
	t.Logf("job done %s after NATS was killed (down 5s)", time.Since(restarted))
}

// TestPopulateOnServerKilledRepeatedly runs a 46-partition populate with a cascade in split mode
// against the server while executor processes are killed six times and the scheduler once, at
// random moments: every source row ends once in the target, every day's rows once in the
// Data Source downstream, and the ops log reports exactly the rows written. Steps of 8 MB
// group about ten days each, so kills land inside grouped steps and their commits too.
func TestPopulateOnServerKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	cfg := warehousetest.Server(t)
	sp := sluicetest.StartSplit(t, append([]string{"-clickhouse-addr", strings.Join(cfg.Addrs, ","), "-executor.concurrency", "2", "-scheduler.populate-step-bytes", "8000000"}, fastJobs...)...)
	cl := sp.Clients(t, "catalog")
	sch := sp.Clients(t, "scheduler")
	ol := sp.Clients(t, "opslog")
	e := newFaultEnv(t, cl.Catalog, sch.Scheduler, fmt.Sprintf("pop_kills_%d", time.Now().UnixNano()%1e6))
	w, err := cl.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	wh := warehousetest.Native(t)
	const rows, days = 2_000_000, 46
	e.loadSource(wh, w.GetWorkspace().GetDatabase(), rows, days)
	id := e.populate(false)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kills := []string{"executor", "executor", "executor", "scheduler", "executor", "executor", "executor"}
	killedMid := 0
	for n, svc := range kills {
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond) // a random moment of the populate, not a wait
		if j := getJob(t, sch.Scheduler, e.ws, id); j.GetStatus() == working {
			killedMid++
		}
		sp.Restart(t, svc, n+1)
	}
	j := e.waitFinal(id, 300*time.Second)
	if p := j.GetProgress(); j.GetStatus() != done || p.GetPartitionsDone() != days || p.GetStepsDone() < 2 || p.GetStepsDone() >= days {
		t.Fatalf("populate after the kills: %v", j)
	}
	e.checkPopulated()
	var ops map[string]string
	sluicetest.Eventually(t, 60*time.Second, "the populate's ops events", func() bool {
		ops = e.opsWritten(ol.OpsLog, id)
		return ops["ft_pop/populateview/ok"] != "" && ops["ft_pop_daily/populateview/ok"] != ""
	})
	if ops["ft_pop/populateview/ok"] != strconv.Itoa(rows) {
		t.Errorf("ops log: the populate wrote %s rows into ft_pop, want %d (%v)", ops["ft_pop/populateview/ok"], rows, ops)
	}
	if left := stagingTables(t, wh, w.GetWorkspace().GetDatabase()); left != "" {
		t.Errorf("staging tables left: %s", left)
	}
	t.Logf("%d kills (%d while the populate worked)", len(kills), killedMid)
}

// startOnePartitionPopulate starts a system on a clickhouse-server without an executor, loads a
// source of one partition (one populate step) into a new workspace named after prefix, and
// starts its populate; the caller adds the executors whose faults it tests.
func startOnePartitionPopulate(t *testing.T, prefix string) (*sluicetest.System, *faultEnv, warehouse.Conn, string, string, string) {
	t.Helper()
	cfg := warehousetest.Server(t)
	chAddr := strings.Join(cfg.Addrs, ",")
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-clickhouse-addr", chAddr}, withoutExecutor...)...))
	e := newFaultEnv(t, sys.Catalog, sys.Scheduler, fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e6))
	wh := warehousetest.Native(t)
	w, err := sys.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	db := w.GetWorkspace().GetDatabase()
	e.loadSource(wh, db, 20_000, 1) // one partition: one step
	return sys, e, wh, db, chAddr, e.populate(false)
}
