package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// soakFaults is the number of faults TestSoak injects, shared by its two modes
// (SLUICE_SOAK_FAULTS; 20 by default, as in CI; `make soak` runs 1,000).
func soakFaults(t testing.TB) int {
	if v := os.Getenv("SLUICE_SOAK_FAULTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("SLUICE_SOAK_FAULTS=%q is not a count of at least 2", v)
		}
		return n
	}
	return 20
}

// soakSystem is Sluice under faults in one mode.
type soakSystem interface {
	// faults are the kinds of fault the mode injects.
	faults() []string
	// inject injects one fault and returns once the system is back (processes serving).
	inject(t *testing.T, kind string, rng *rand.Rand)
	// populateOptions are the options of the soak's populates; rebuilds tells whether they
	// rebuild the target and the Data Source downstream (else each adds the source once more:
	// emptying them by hand is no test of Sluice, and on a server before 19.17 a TRUNCATE of
	// merged parts comes back after a crash).
	populateOptions() (opts *schedulerv1.PopulateOptions, rebuilds bool)
	opsLog() opslogv1.OpsLogServiceClient
}

// soakTally counts what a soak did.
type soakTally struct {
	faults                   map[string]int
	copies, copiesFailed     int
	populates, populatesDone int
	refused                  []string
}

// TestSoak injects random faults — executor, scheduler and ops log processes killed and
// restarted, NATS and ClickHouse killed and restarted — while copies (each cascading into a
// Data Source downstream) and populates (with a cascade) run: in split mode against a
// clickhouse-server process (which commits by attach), and all-in-one on embedded ClickHouse.
// Every copy that is done has each of its rows once in the target and downstream, every copy
// that is not done has none, every populate that is done leaves the target and downstream
// equal to the source, and each done job has exactly one ops event per Data Source with its
// rows.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes and injects faults")
	}
	total := soakFaults(t)
	t.Run("split_server", func(t *testing.T) { runSoak(t, newSplitSoak(t), total/2) })
	t.Run("all_in_one_chdb", func(t *testing.T) { runSoak(t, newAllInOneSoak(t), total-total/2) })
}

func runSoak(t *testing.T, sys soakSystem, faults int) {
	e := sysEnv(sys)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 31))
	tally := &soakTally{faults: map[string]int{}}
	copies := map[string]int{} // job id → iteration
	var pops []string
	iter := 0
	startCopy := func() {
		iter++
		copies[e.runCopy(iter, 20_000+rng.IntN(200_000), 3+rng.IntN(10))] = iter
		tally.copies++
	}
	popRunning := func() bool {
		if len(pops) == 0 {
			return false
		}
		j := getJobRetry(t, e, pops[len(pops)-1])
		return !jobsFinal(j.GetStatus())
	}
	for f := 0; f < faults; f++ {
		// Work in flight when the fault comes: new copies, and a populate now and then.
		for range 1 + rng.IntN(2) {
			startCopy()
		}
		if f%4 == 0 && !popRunning() {
			opts, _ := sys.populateOptions()
			pops = append(pops, e.populateWith(opts))
			tally.populates++
		}
		time.Sleep(time.Duration(100+rng.IntN(1200)) * time.Millisecond) // a random moment of the work, not a wait
		kinds := sys.faults()
		kind := kinds[rng.IntN(len(kinds))]
		sys.inject(t, kind, rng)
		tally.faults[kind]++
	}
	// Let everything finish (however long it takes while the jobs make progress), then check
	// every row.
	ids := make([]string, 0, len(copies))
	for id := range copies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	final := waitSettled(t, e, append(append([]string(nil), ids...), pops...), soakStall)
	doneCopies := map[string]int{}
	for _, id := range ids {
		j := final[id]
		if j.GetStatus() != done {
			tally.copiesFailed++
			if refusedAttach(j) {
				tally.refused = append(tally.refused, id)
				e.refuseCopy(copies[id])
			} else {
				e.forgetCopy(copies[id])
			}
			t.Logf("copy %s (iteration %d) ended %s: %s", id, copies[id], j.GetStatus(), j.GetError().GetMessage())
			continue
		}
		doneCopies[id] = copies[id]
	}
	e.checkCopies()
	var lastPop *schedulerv1.Job
	_, rebuilds := sys.populateOptions()
	popRefused := false
	partial := 0 // populates that did not finish since the last rebuild: each may have left some of its partitions
	for _, id := range pops {
		lastPop = final[id]
		if lastPop.GetStatus() == done {
			tally.populatesDone++
			if rebuilds {
				e.popTimes, partial = 1, 0
			} else {
				e.popTimes++
			}
		} else {
			partial++
			if refusedAttach(lastPop) {
				tally.refused = append(tally.refused, id)
				popRefused = true
			}
			t.Logf("populate %s ended %s: %s", id, lastPop.GetStatus(), lastPop.GetError().GetMessage())
		}
	}
	if lastPop == nil || lastPop.GetStatus() != done {
		// The last populate did not finish (or none ran): one more, without faults.
		opts, _ := sys.populateOptions()
		id := e.populateWith(opts)
		if j := waitSettled(t, e, []string{id}, soakStall)[id]; j.GetStatus() != done {
			t.Fatalf("populate after the faults: %v", j)
		}
		pops = append(pops, id)
		tally.populates++
		tally.populatesDone++
		if rebuilds {
			e.popTimes, partial = 1, 0
		} else {
			e.popTimes++
		}
	}
	if partial > 0 {
		e.checkPopulatedPartly(partial, popRefused)
	} else {
		e.checkPopulated()
	}
	// Ops events: one per Data Source of each done job, with its rows.
	for id, it := range doneCopies {
		rows := e.copies[it][0]
		counts := waitOpsCounts(t, e, sys.opsLog(), id, 2)
		if counts["ft_target/copy/ok"] != fmt.Sprintf("1x%d", rows) || !strings.HasPrefix(counts["ft_rollup/copy/ok"], "1x") {
			t.Errorf("ops events of copy %s (iteration %d, %d rows): %v; want one ok event per Data Source", id, it, rows, counts)
		}
	}
	last := pops[len(pops)-1]
	counts := waitOpsCounts(t, e, sys.opsLog(), last, 2)
	if counts["ft_pop/populateview/ok"] != fmt.Sprintf("1x%d", e.source) {
		t.Errorf("ops events of populate %s: %v; want one ok event for ft_pop with %d rows", last, counts, e.source)
	}
	target, refusedRows := 0, 0
	for _, c := range e.copies {
		target += c[0]
	}
	for _, c := range e.refused {
		refusedRows += c[0]
	}
	t.Logf("faults %v; %d copies (%d not done), %d populates (%d done); %d jobs refused an undecidable attach; every row checked: "+
		"%d rows of %d done copies in ft_target and downstream, %d rows of refused copies, %d source rows populated %d times over into ft_pop and downstream",
		tally.faults, tally.copies, tally.copiesFailed, tally.populates, tally.populatesDone, len(tally.refused),
		target, len(e.copies), refusedRows, e.source, max(e.popTimes, 1))
	if len(tally.refused) > 0 {
		t.Logf("jobs refused rather than risk a duplicate: %v", tally.refused)
	}
}

// soakStall is how long the soak waits for its jobs to end while none of them changes (status,
// progress, waiting reason, update time): with the faults over, that long without a change is a
// stall of Sluice, not a slow machine. The wait itself has no limit while the jobs progress.
const soakStall = 5 * time.Minute

// refusedAttach tells whether a job ended with the documented refusal of an attach whose
// outcome cannot be decided (servers without MOVE PARTITION ... TO TABLE).
func refusedAttach(j *schedulerv1.Job) bool {
	return j.GetStatus() == failed && strings.Contains(j.GetError().GetMessage(), "cannot tell whether partition")
}

// waitSettled waits until every job of ids is final and returns them by id. It waits as long as
// the workspace's unfinished jobs change, and fails, listing each of them with its state, once
// none has changed for stall.
func waitSettled(t *testing.T, e *faultEnv, ids []string, stall time.Duration) map[string]*schedulerv1.Job {
	t.Helper()
	final := map[string]*schedulerv1.Job{}
	lastChange, last := time.Now(), ""
	for {
		open := map[string]*schedulerv1.Job{}
		var states []string
		ok := true
		for _, id := range ids {
			if final[id] != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := e.sch.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: e.ws, Id: id})
			cancel()
			if err != nil {
				ok = false // the system is recovering: no state, no progress
				break
			}
			j := resp.GetJob()
			if jobsFinal(j.GetStatus()) {
				final[id] = j
				continue
			}
			open[id] = j
			states = append(states, jobState(j))
		}
		if ok && len(open) == 0 {
			return final
		}
		if now := strings.Join(states, "\n"); ok && now != last {
			last, lastChange = now, time.Now()
		}
		if time.Since(lastChange) > stall {
			t.Fatalf("%d jobs not final, none of them changed for %s:\n%s", len(open), stall, last)
		}
		time.Sleep(time.Second)
	}
}

// jobState is a job as one line: everything that changes while it progresses.
func jobState(j *schedulerv1.Job) string {
	return fmt.Sprintf("%s %s %s steps %d/%d rows %d updated %s waiting %q error %q", j.GetKind(), j.GetId(), j.GetStatus(),
		j.GetProgress().GetStepsDone(), j.GetProgress().GetStepsTotal(), j.GetProgress().GetStatistics().GetWrittenRows(),
		j.GetUpdateTime().AsTime().Format(time.RFC3339Nano), j.GetWaitingReason(), j.GetError().GetMessage())
}

// getJobRetry reads a job, retrying while the system recovers.
func getJobRetry(t *testing.T, e *faultEnv, id string) *schedulerv1.Job {
	t.Helper()
	var j *schedulerv1.Job
	sluicetest.Eventually(t, 2*time.Minute, "job "+id, func() bool {
		resp, err := e.sch.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: e.ws, Id: id})
		j = resp.GetJob()
		return err == nil
	})
	return j
}

// waitOpsCounts waits until a job's ops events cover want Data Sources, and returns for each
// (Data Source/type/result) "<events>x<written rows>".
func waitOpsCounts(t *testing.T, e *faultEnv, ol opslogv1.OpsLogServiceClient, jobID string, want int) map[string]string {
	t.Helper()
	var out map[string]string
	sluicetest.Eventually(t, 2*time.Minute, "the ops events of job "+jobID, func() bool {
		resp, err := ol.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: e.ws, JobId: jobID}, PageSize: 1000})
		if err != nil {
			return false
		}
		n, rows := map[string]int{}, map[string]uint64{}
		for _, ev := range resp.GetEvents() {
			k := ev.GetDatasourceName() + "/" + opsevents.EventTypeName(ev.GetEventType()) + "/" + opsevents.ResultName(ev.GetResult())
			n[k]++
			rows[k] = ev.GetWrittenRows()
		}
		out = map[string]string{}
		for k, c := range n {
			out[k] = fmt.Sprintf("%dx%d", c, rows[k])
		}
		return len(out) >= want
	})
	return out
}

// sysEnv returns the fault env of a soak system.
func sysEnv(sys soakSystem) *faultEnv {
	switch s := sys.(type) {
	case *splitSoak:
		return s.env
	case *allInOneSoak:
		return s.env
	}
	return nil
}

// splitSoak is split mode (one process per service, two executors) on a nats-server and a
// clickhouse-server, both of which the soak kills.
type splitSoak struct {
	sp       *sluicetest.Split
	restarts int
	ns       *sluicetest.NATS
	srv      *warehousetest.PrivateServer
	env      *faultEnv
	ol       opslogv1.OpsLogServiceClient
}

func newSplitSoak(t *testing.T) *splitSoak {
	srv := warehousetest.NewPrivateServer(t)
	ns := sluicetest.StartNATS(t, false)
	sp := sluicetest.StartSplitWith(t, sluicetest.SplitOptions{NATS: ns, Extra: append([]string{"-clickhouse-addr", srv.Addr(), "-executor.concurrency", "2"}, fastJobs...)})
	sp.AddExecutor(t)
	s := &splitSoak{sp: sp, ns: ns, srv: srv}
	s.env = newFaultEnv(t, sp.Clients(t, "catalog").Catalog, sp.Clients(t, "scheduler").Scheduler, "soak_split")
	s.ol = sp.Clients(t, "opslog").OpsLog
	// The source is loaded by a copy, whose cascade fills the populate's target and the Data
	// Source downstream once; every populate adds the source once more.
	if j := s.env.waitFinal(s.env.loadSourceByCopy(300_000, 20), 2*time.Minute); j.GetStatus() != done {
		t.Fatalf("loading the source: %v", j)
	}
	s.env.popTimes = 1
	return s
}

func (s *splitSoak) faults() []string {
	return []string{"executor", "executor", "scheduler", "opslog", "nats", "clickhouse"}
}

func (s *splitSoak) inject(t *testing.T, kind string, rng *rand.Rand) {
	switch kind {
	case "executor":
		// Either executor: the first through Restart, the second killed and started again.
		s.restarts++
		if rng.IntN(2) == 0 {
			s.sp.Restart(t, "executor", s.restarts)
		} else {
			s.sp.Executors[1].Kill()
			s.sp.Executors = s.sp.Executors[:1]
			s.sp.AddExecutor(t)
		}
	case "scheduler", "opslog":
		s.restarts++
		s.sp.Restart(t, kind, s.restarts)
	case "nats":
		s.ns.Kill()
		time.Sleep(time.Duration(500+rng.IntN(3500)) * time.Millisecond) // the outage itself
		s.ns.Start(t)
	case "clickhouse":
		s.srv.Stop(rng.IntN(2) == 0)
		time.Sleep(time.Duration(500+rng.IntN(4500)) * time.Millisecond) // the outage itself
		s.srv.Start(t)
	}
}

func (s *splitSoak) populateOptions() (*schedulerv1.PopulateOptions, bool) { return nil, false }

func (s *splitSoak) opsLog() opslogv1.OpsLogServiceClient { return s.ol }

// allInOneSoak is one all-in-one process (embedded NATS and ClickHouse) that the soak kills
// (SIGKILL, or SIGTERM for a clean stop) and starts again on the same data directory: every
// service, NATS and ClickHouse at once.
type allInOneSoak struct {
	bin  string
	args []string
	addr string
	p    *sluicetest.Process
	n    int
	env  *faultEnv
	ol   opslogv1.OpsLogServiceClient
}

func newAllInOneSoak(t *testing.T) *allInOneSoak {
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	s := &allInOneSoak{bin: sluiced, addr: addr, args: append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", "", "-nats-listen", natsAddr},
		append(sluicetest.EmbeddedLibArgs(), fastJobs...)...)}
	s.start(t)
	cl := sluicetest.NewClients(t, addr, sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), s.p))
	s.env = newFaultEnv(t, cl.Catalog, cl.Scheduler, "soak_aio")
	s.ol = cl.OpsLog
	// The source is loaded by a copy (this process owns its ClickHouse): its cascade fills the
	// populate's target and downstream, which every populate then rebuilds.
	id := s.env.loadSourceByCopy(300_000, 20)
	if j := s.env.waitFinal(id, 2*time.Minute); j.GetStatus() != done {
		t.Fatalf("loading the source: %v", j)
	}
	return s
}

func (s *allInOneSoak) start(t *testing.T) {
	s.n++
	s.p = sluicetest.StartProcess(t, fmt.Sprintf("sluiced-%d", s.n), s.bin, s.args...)
	sluicetest.WaitServing(t, s.addr, "", 90*time.Second, s.p)
}

func (s *allInOneSoak) faults() []string { return []string{"kill", "kill", "kill", "term"} }

func (s *allInOneSoak) inject(t *testing.T, kind string, _ *rand.Rand) {
	if kind == "term" {
		s.p.Signal(syscall.SIGTERM)
		if code := s.p.Wait(t, 90*time.Second); code != 0 {
			t.Fatalf("sluiced stopped with %d on SIGTERM:\n%s", code, s.p.Output())
		}
	} else {
		s.p.Kill()
	}
	s.start(t)
}

// populateOptions: the populate cuts over by snapshot, which empties the target and the Data
// Source downstream and rebuilds both.
func (s *allInOneSoak) populateOptions() (*schedulerv1.PopulateOptions, bool) {
	return &schedulerv1.PopulateOptions{CutoverSnapshot: true}, true
}

func (s *allInOneSoak) opsLog() opslogv1.OpsLogServiceClient { return s.ol }
