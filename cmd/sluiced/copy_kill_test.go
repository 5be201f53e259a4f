package main_test

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/platform/jobs"
	"google.golang.org/protobuf/types/known/durationpb"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/services/executor"
)

// copyKillRows is the size of each copy of the kill test: large enough that a kill lands
// mid-statement, small enough for 20 rounds in CI.
const copyKillRows = 1_000_000

var killProject = map[string]string{
	"datasources/copy_target.datasource": `SCHEMA >
    ` + "`id`" + ` UInt64,
    ` + "`iter`" + ` Int32,
    ` + "`v`" + ` UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "id % 4"
ENGINE_SORTING_KEY "id"
`,
	"datasources/copy_rollup.datasource": `SCHEMA >
    ` + "`iter`" + ` Int32,
    ` + "`n`" + ` UInt64,
    ` + "`s`" + ` UInt64

ENGINE "MergeTree"
ENGINE_SORTING_KEY "iter"
`,
	"pipes/rollup_mv.pipe": `NODE rollup
SQL >
    SELECT iter, count() AS n, sum(v) AS s FROM copy_target GROUP BY iter

TYPE MATERIALIZED
DATASOURCE copy_rollup
`,
	"pipes/big_copy.pipe": `NODE rows
SQL >
    %
    SELECT number AS id, {{Int32(iteration, 0)}} AS iter, number % 1000 AS v FROM numbers(` + strconv.Itoa(copyKillRows) + `)

TYPE COPY
TARGET_DATASOURCE copy_target
`,
}

// copyKills is the number of kill rounds (SLUICE_COPY_KILLS; 20 by default, as in CI).
func copyKills(t testing.TB) int {
	if v := os.Getenv("SLUICE_COPY_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SLUICE_COPY_KILLS=%q is not a positive count", v)
		}
		return n
	}
	return 20
}

func queryText(t testing.TB, c catalogv1.CatalogServiceClient, sql string) string {
	t.Helper()
	return queryTextIn(t, c, "ws", sql)
}

// queryTextIn runs sql in workspace ws and returns its rows as text, one line per row.
func queryTextIn(t testing.TB, c catalogv1.CatalogServiceClient, ws, sql string) string {
	t.Helper()
	resp, err := c.Query(context.Background(), &catalogv1.QueryRequest{Workspace: ws, Sql: sql, Timeout: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var b strings.Builder
	for _, r := range resp.GetRows() {
		for i, v := range r.GetValues() {
			if i > 0 {
				b.WriteByte(' ')
			}
			if f, ok := v.AsInterface().(float64); ok {
				fmt.Fprint(&b, strconv.FormatFloat(f, 'f', -1, 64))
			} else {
				fmt.Fprint(&b, v.AsInterface())
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestCopyAllInOneKilledMidCopy kills the all-in-one process (executor, embedded NATS and
// chDB together: with chDB one process owns the data, so the executor cannot be a separate
// process sharing it) with SIGKILL at a random moment of a copy, alternating append and
// replace, restarts it on the same data directory, and checks after every round that the
// target and the view downstream hold exactly the rows they must: every appended copy once,
// only the last replace's rows after a replace. (The catalog's Query cannot read
// system.tables, so staging clean-up is checked by the in-process tests.)
func TestCopyAllInOneKilledMidCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", "", "-nats-listen", natsAddr},
		append(sluicetest.EmbeddedLibArgs(), fastJobs...)...)
	p := sluicetest.StartProcess(t, "sluiced-0", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	cl := sluicetest.NewClients(t, addr, token)
	cl.CreateWorkspace(t, "ws")
	if out, stderr, code := sluiceCLI(t, cl, "push", writeProject(t, killProject)); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, stderr)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var present []int // iterations whose rows the target must hold
	kills := copyKills(t)
	killedMid := 0
	const sumV = uint64(copyKillRows/1000) * (999 * 1000 / 2)
	for i := range kills {
		mode := commonv1.CopyMode_COPY_MODE_APPEND
		if i%3 == 2 {
			mode = commonv1.CopyMode_COPY_MODE_REPLACE
		}
		resp, err := cl.Scheduler.RunCopy(context.Background(), &schedulerv1.RunCopyRequest{
			Workspace: "ws", Pipe: "big_copy", Parameters: map[string]string{"iteration": strconv.Itoa(i)}, Mode: mode,
		})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetJob().GetId()
		time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond) // a random moment of the copy, not a wait
		if j, err := cl.Scheduler.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: "ws", Id: id}); err == nil && !jobsFinal(j.GetJob().GetStatus()) {
			killedMid++
		}
		p.Kill()
		p = sluicetest.StartProcess(t, "sluiced-"+strconv.Itoa(i+1), sluiced, args...)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
		cl = sluicetest.NewClients(t, addr, token)
		j := waitJob(t, cl.Scheduler, "ws", id, 120*time.Second, done, failed, cancelled)
		if j.GetStatus() != done {
			t.Fatalf("round %d (%s): job %v", i, mode, j)
		}
		if mode == commonv1.CopyMode_COPY_MODE_REPLACE {
			present = present[:0]
		}
		present = append(present, i)
		var want strings.Builder
		for _, it := range present {
			fmt.Fprintf(&want, "%d %d %d\n", it, copyKillRows, sumV)
		}
		if got := queryText(t, cl.Catalog, "SELECT iter, count(), sum(v) FROM copy_target GROUP BY iter ORDER BY iter"); got != want.String() {
			t.Fatalf("round %d (%s): copy_target (iter, rows, sum):\n%swant\n%s", i, mode, got, want.String())
		}
		if got := queryText(t, cl.Catalog, "SELECT iter, sum(n), sum(s) FROM copy_rollup GROUP BY iter ORDER BY iter"); got != want.String() {
			t.Fatalf("round %d (%s): copy_rollup (iter, rows, sum):\n%swant\n%s", i, mode, got, want.String())
		}
	}
	t.Logf("%d rounds, %d killed while their copy was unfinished", kills, killedMid)
	if killedMid == 0 {
		t.Errorf("no kill landed during a copy")
	}
}

// TestCopyReplaceReadersNeverSeePartial polls the target and the view downstream of it while
// replace copies run one after another: every read must see one whole generation (all its
// rows, one iteration), never an empty, partial or mixed table.
func TestCopyReplaceReadersNeverSeePartial(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	const rows = 200_000
	project := map[string]string{}
	for k, v := range killProject {
		project[k] = strings.ReplaceAll(v, "numbers("+strconv.Itoa(copyKillRows)+")", "numbers("+strconv.Itoa(rows)+")")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	e := newCopyEnv(t, sys, "copy_readers", project)
	run := func(i int, mode commonv1.CopyMode) {
		resp, err := sys.Scheduler.RunCopy(context.Background(), &schedulerv1.RunCopyRequest{
			Workspace: e.ws, Pipe: "big_copy", Parameters: map[string]string{"iteration": strconv.Itoa(i)}, Mode: mode,
		})
		if err != nil {
			t.Fatal(err)
		}
		if j := waitJob(t, sys.Scheduler, e.ws, resp.GetJob().GetId(), 60*time.Second, done, failed, cancelled); j.GetStatus() != done {
			t.Fatalf("copy %d: %v", i, j)
		}
	}
	run(0, commonv1.CopyMode_COPY_MODE_APPEND)
	stop := make(chan struct{})
	result := make(chan error, 1)
	polls := 0
	go func() {
		for {
			select {
			case <-stop:
				result <- nil
				return
			default:
			}
			for _, q := range []string{
				"SELECT count(), uniqExact(iter) FROM " + e.q("copy_target"),
				"SELECT sum(n), uniqExact(iter) FROM " + e.q("copy_rollup"),
			} {
				res, err := e.wh.Query(context.Background(), q)
				if err != nil {
					result <- err
					return
				}
				if got := fmt.Sprint(res.Rows[0]); got != fmt.Sprintf("[%d 1]", rows) {
					result <- fmt.Errorf("poll %d saw %s from %s, want [%d 1]: one whole generation", polls, got, q, rows)
					return
				}
			}
			polls++
		}
	}()
	for i := 1; i <= 5; i++ {
		run(i, commonv1.CopyMode_COPY_MODE_REPLACE)
	}
	close(stop)
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if got := e.rows("SELECT iter, count() FROM " + e.q("copy_target") + " GROUP BY iter"); got != fmt.Sprintf("5 %d\n", rows) {
		t.Fatalf("target after the replaces: %s", got)
	}
	if left := e.stagingLeft(); left != "" {
		t.Errorf("staging tables left: %s", left)
	}
	t.Logf("%d polls during 5 replaces, each saw one whole generation", polls)
}

// TestCopyStagingSweptAtStart: the staging tables an executor killed mid-copy leaves behind
// are dropped when an executor starts if their job is finished (or no longer recorded), and
// kept while it is not.
func TestCopyStagingSweptAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	e := newCopyEnv(t, sys, "copy_sweep", benchCopyProject(10))
	finished := runNoop(t, sys.Scheduler, e.ws, nil, 0).GetId()
	waitJob(t, sys.Scheduler, e.ws, finished, 30*time.Second, done)
	running := runNoop(t, sys.Scheduler, e.ws, map[string]string{"sleep": "30s"}, 0).GetId()
	waitJob(t, sys.Scheduler, e.ws, running, 30*time.Second, working)
	for _, job := range []string{finished, running, "01a20160000000000bad"} {
		e.exec("CREATE TABLE " + e.q("__sluice_stage_j"+job+"_0123456789ab_0") + " AS " + e.q("copy_target"))
	}
	nc, err := natsx.Connect(context.Background(), natsx.Config{URL: sys.App.NATSURL()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sys2, err := jobs.Open(context.Background(), nc, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := executor.SweepStaging(context.Background(), e.wh, sys2, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if got, want := e.stagingLeft(), "__sluice_stage_j"+running+"_0123456789ab_0\n"; got != want {
		t.Errorf("staging tables after the sweep:\n%swant\n%s", got, want)
	}
}
