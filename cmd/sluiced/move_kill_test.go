package main_test

import (
	"context"
	"fmt"
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
	"github.com/sluicehq/sluice/services/executor/step"
)

// TestCopyKilledInsideMoveAllInOne kills the all-in-one process inside a copy's move, at the
// exact moment chDB has committed the moved part in the target and not yet removed the
// partition from staging (the fault point "move.inside"): chDB comes back with the partition
// in both tables. The restarted process finds the moved part in the target from the move plan
// the commit record holds, drops the partition from staging instead of moving it again, and
// every row is in the target and in the Data Source downstream exactly once.
func TestCopyKilledInsideMoveAllInOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	const rows = 100_000
	project := map[string]string{}
	for k, v := range killProject {
		project[k] = strings.ReplaceAll(v, "numbers("+strconv.Itoa(copyKillRows)+")", "numbers("+strconv.Itoa(rows)+")")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", "", "-nats-listen", natsAddr},
		append(sluicetest.EmbeddedLibArgs(), fastJobs...)...)
	faults := []string{step.FaultsEnv + "=move.inside@1:kill"}
	p := sluicetest.StartProcessEnv(t, "sluiced-faulty-0", faults, sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	cl := sluicetest.NewClients(t, addr, token)
	cl.CreateWorkspace(t, "ws")
	if out, stderr, code := sluiceCLI(t, cl, "push", writeProject(t, project)); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, stderr)
	}
	sumV := uint64(rows/1000) * (999 * 1000 / 2)
	var want, wantRollup strings.Builder
	// The kill lands within microseconds of chDB committing the moved part in the target,
	// but chDB may finish the move in that time (a loaded machine): then the round is done
	// again with another copy, up to 5 times.
	for round := 0; ; round++ {
		if round > 0 {
			p = sluicetest.StartProcessEnv(t, fmt.Sprintf("sluiced-faulty-%d", round), faults, sluiced, args...)
			sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
			cl = sluicetest.NewClients(t, addr, token)
		}
		resp, err := cl.Scheduler.RunCopy(context.Background(), &schedulerv1.RunCopyRequest{
			Workspace: "ws", Pipe: "big_copy", Parameters: map[string]string{"iteration": strconv.Itoa(round)}, Mode: commonv1.CopyMode_COPY_MODE_APPEND,
		})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetJob().GetId()
		sluicetest.Eventually(t, 120*time.Second, "sluiced killed at the fault point", func() bool {
			j, err := cl.Scheduler.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: "ws", Id: id})
			if err == nil && jobsFinal(j.GetJob().GetStatus()) && !p.Exited() {
				t.Fatalf("the copy ended without a kill at the fault point: %v\n%s", j.GetJob(), p.Output())
			}
			return p.Exited()
		})
		if code := p.Wait(t, time.Second); code != -1 || !strings.Contains(p.Output(), "point=move.inside") {
			t.Fatalf("sluiced exited with %d, want killed at the fault point inside the move\n%s", code, p.Output())
		}
		p = sluicetest.StartProcess(t, fmt.Sprintf("sluiced-next-%d", round), sluiced, args...)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
		cl = sluicetest.NewClients(t, addr, token)
		if j := waitJob(t, cl.Scheduler, "ws", id, 120*time.Second, done, failed, cancelled); j.GetStatus() != done {
			t.Fatalf("round %d: copy after the kill inside its move: %v", round, j)
		}
		fmt.Fprintf(&want, "%d %d %d %d\n", round, rows, rows, sumV)
		fmt.Fprintf(&wantRollup, "%d %d %d\n", round, rows, sumV)
		if got := queryText(t, cl.Catalog, "SELECT iter, count(), uniqExact(id), sum(v) FROM copy_target GROUP BY iter ORDER BY iter"); got != want.String() {
			t.Fatalf("round %d: copy_target (iter, rows, distinct ids, sum) =\n%swant\n%s", round, got, want.String())
		}
		if got := queryText(t, cl.Catalog, "SELECT iter, sum(n), sum(s) FROM copy_rollup GROUP BY iter ORDER BY iter"); got != wantRollup.String() {
			t.Fatalf("round %d: copy_rollup (iter, rows, sum) =\n%swant\n%s", round, got, wantRollup.String())
		}
		if strings.Contains(p.Output(), "an interrupted move had moved") {
			t.Logf("round %d: the restarted process found the killed move's parts in the target and did not move them again", round)
			break
		}
		if round == 4 {
			// Every round's rows were checked exactly; what did not happen is the window
			// itself, which a loaded machine can close before the kill lands. The decision
			// is proven deterministically by TestMoveKilledInsideIsDecided in dataflow.
			t.Skipf("in 5 rounds the kill never landed inside a move (between its commit in the target and the removal from staging); every round's rows were exact")
		}
		p.Kill()
	}
}

// TestPopulateKilledInsideMoveAllInOne is TestCopyKilledInsideMoveAllInOne for a populate with
// a cascade: the all-in-one process is killed inside the first move of a populate step, and
// after the restart the target and the Data Source downstream hold every source row exactly
// once (the populate truncates the target; the cascade adds the rows to the downstream sums).
// With a parallelism of 1, one step groups all 24 small source partitions; its commit moves
// the target's 4 partitions in one ALTER: the kill lands inside a grouped commit, with
// partitions moved, half moved and not moved yet.
func TestPopulateKilledInsideMoveAllInOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", "", "-nats-listen", natsAddr, "-scheduler.populate-parallelism", "1"},
		append(sluicetest.EmbeddedLibArgs(), fastJobs...)...)
	p := sluicetest.StartProcess(t, "sluiced-setup", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	cl := sluicetest.NewClients(t, addr, token)
	cl.CreateWorkspace(t, "kill")
	req := &catalogv1.PushRequest{Workspace: "kill"}
	for path, content := range map[string]string{
		"datasources/src.datasource":    killSource,
		"datasources/dst.datasource":    killTarget,
		"datasources/groups.datasource": killGroups,
		"pipes/to_dst.pipe":             mvPipe("mv", "SELECT id, name FROM src", "dst"),
		"pipes/to_groups.pipe":          mvPipe("mv", "SELECT id % 10 AS g, count() AS n, sum(id) AS ids FROM dst GROUP BY g", "groups"),
	} {
		req.Files = append(req.Files, &catalogv1.Datafile{Path: path, Content: content})
	}
	if _, err := cl.Catalog.Push(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// The source rows go in through chDB while sluiced is stopped (see
	// TestPopulateAllInOneKilledRepeatedly); the live views give dst and groups the rows once.
	p.Signal(os.Interrupt)
	p.Wait(t, 30*time.Second)
	var inserts []string
	for i := range 24 {
		inserts = append(inserts, fmt.Sprintf("INSERT INTO ws_kill.src SELECT number * 24 + %d, toString(number * 24 + %d) FROM numbers(120)", i, i))
	}
	runHelperSQL(t, filepath.Join(dataDir, "clickhouse"), inserts...)
	const wantDst = "2880 4145760 2880\n"
	faults := []string{step.FaultsEnv + "=move.inside@1:kill"}
	for round := 1; ; round++ {
		p = sluicetest.StartProcessEnv(t, fmt.Sprintf("sluiced-faulty-%d", round), faults, sluiced, args...)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
		cl = sluicetest.NewClients(t, addr, token)
		resp, err := cl.Scheduler.Populate(context.Background(), &schedulerv1.PopulateRequest{Workspace: "kill", Pipe: "to_dst", Options: &schedulerv1.PopulateOptions{Truncate: true}})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetJob().GetId()
		sluicetest.Eventually(t, 120*time.Second, "sluiced killed at the fault point", func() bool {
			j, err := cl.Scheduler.GetJob(context.Background(), &schedulerv1.GetJobRequest{Workspace: "kill", Id: id})
			if err == nil && jobsFinal(j.GetJob().GetStatus()) && !p.Exited() {
				t.Fatalf("the populate ended without a kill at the fault point: %v\n%s", j.GetJob(), p.Output())
			}
			return p.Exited()
		})
		if code := p.Wait(t, time.Second); code != -1 || !strings.Contains(p.Output(), "point=move.inside") {
			t.Fatalf("sluiced exited with %d, want killed at the fault point inside the move\n%s", code, p.Output())
		}
		p = sluicetest.StartProcess(t, fmt.Sprintf("sluiced-next-%d", round), sluiced, args...)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
		cl = sluicetest.NewClients(t, addr, token)
		j := waitJob(t, cl.Scheduler, "kill", id, 120*time.Second, done, failed, cancelled)
		if p := j.GetProgress(); j.GetStatus() != done || p.GetStatistics().GetWrittenRows() != 2880 || p.GetPartitionsDone() != 24 || p.GetStepsDone() != 1 {
			t.Fatalf("round %d: populate after the kill inside a move: %v, want done, 2880 rows, 24 partitions in one step", round, j)
		}
		if got := queryTextIn(t, cl.Catalog, "kill", "SELECT count(), sum(id), uniqExact(id) FROM dst"); got != wantDst {
			t.Fatalf("round %d: dst (rows, sum, distinct) = %swant %s", round, got, wantDst)
		}
		// groups: the live views' rows once, and once more per populate.
		want := queryTextIn(t, cl.Catalog, "kill", fmt.Sprintf("SELECT id %% 10 AS g, count() * %d, sum(id) * %d FROM src GROUP BY g ORDER BY g", round+1, round+1))
		if got := queryTextIn(t, cl.Catalog, "kill", "SELECT g, sum(n), sum(ids) FROM groups GROUP BY g ORDER BY g"); got != want {
			t.Fatalf("round %d: groups (g, rows, sum) =\n%swant\n%s", round, got, want)
		}
		if strings.Contains(p.Output(), "an interrupted move had moved") {
			t.Logf("round %d: the restarted process found the killed move's parts and did not move them again", round)
			break
		}
		if round == 5 {
			// Every round's rows were checked exactly; what did not happen is the window
			// itself, which a loaded machine can close before the kill lands. The decision
			// is proven deterministically by TestMoveKilledInsideIsDecided in dataflow.
			t.Skipf("in 5 rounds the kill never landed inside a move (between its commit in the target and the removal from staging); every round's rows were exact")
		}
		p.Kill()
	}
}
