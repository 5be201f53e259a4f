package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// killSource has 24 partitions (id % 24) of 120 rows (about 2 KB each); the view sleeps 2 ms a
// row. The kill tests plan steps of 6,000 bytes (-scheduler.populate-step-bytes), so a step
// groups three partitions, takes about three quarters of a second, and kills land inside
// grouped steps and their commits as well as between steps.
const killSource = `SCHEMA >
    id UInt64,
    name String

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "id % 24"
ENGINE_SORTING_KEY "id"
`

const killTarget = `SCHEMA >
    id UInt64,
    name String

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "id % 4"
ENGINE_SORTING_KEY "id"
`

const killGroups = `SCHEMA >
    g UInt64,
    n UInt64,
    ids UInt64

ENGINE "SummingMergeTree"
ENGINE_SORTING_KEY "g"
`

// TestPopulateAllInOneKilledRepeatedly kills the process that runs the executor (the all-in-one
// process, whose chDB holds the data: a separate executor process could not share it) with
// SIGKILL at random moments of 24-partition populates, restarts it on the same data directory,
// and checks after every populate that the target and the Data Source downstream of it hold
// every source row exactly once. SLUICE_SOAK_KILLS sets the number of kills (20 by default).
func TestPopulateAllInOneKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", "", "-nats-listen", natsAddr},
		append(sluicetest.EmbeddedLibArgs(), append([]string{"-scheduler.populate-step-bytes", "6000"}, fastJobs...)...)...)
	n := 0
	start := func() *sluicetest.Process {
		n++
		p := sluicetest.StartProcess(t, fmt.Sprintf("sluiced-%d", n), sluiced, args...)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
		return p
	}
	p := start()
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	c := sluicetest.NewClients(t, addr, token)
	c.CreateWorkspace(t, "kill")
	ctx := context.Background()
	files := map[string]string{
		"datasources/src.datasource":    killSource,
		"datasources/dst.datasource":    killTarget,
		"datasources/groups.datasource": killGroups,
		"pipes/to_dst.pipe":             mvPipe("mv", "SELECT id, name FROM src WHERE sleepEachRow(0.002) = 0", "dst"),
		"pipes/to_groups.pipe":          mvPipe("mv", "SELECT id % 10 AS g, count() AS n, sum(id) AS ids FROM dst GROUP BY g", "groups"),
	}
	req := &catalogv1.PushRequest{Workspace: "kill"}
	for path, content := range files {
		req.Files = append(req.Files, &catalogv1.Datafile{Path: path, Content: content})
	}
	if _, err := c.Catalog.Push(ctx, req); err != nil {
		t.Fatal(err)
	}
	sql := func(q string) string {
		t.Helper()
		resp, err := c.Catalog.Query(ctx, &catalogv1.QueryRequest{Workspace: "kill", Sql: q})
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var out []string
		for _, r := range resp.GetRows() {
			var cells []string
			for _, v := range r.GetValues() {
				if f, ok := v.AsInterface().(float64); ok {
					cells = append(cells, strconv.FormatFloat(f, 'f', -1, 64))
				} else {
					cells = append(cells, fmt.Sprint(v.AsInterface()))
				}
			}
			out = append(out, strings.Join(cells, "|"))
		}
		return strings.Join(out, "\n")
	}
	// The rows go in through chDB while sluiced is stopped (Sluice has no ingestion API, and
	// chDB opens a data directory in one process at a time): a helper process (this test binary)
	// inserts them, then sluiced starts again. The live views fire on that insert, so dst and
	// groups already hold the rows once; each populate truncates dst and rebuilds it, and its
	// cascade adds the rows to groups once more.
	p.Signal(os.Interrupt)
	p.Wait(t, 30*time.Second)
	db := "ws_kill"
	var inserts []string
	for i := range 24 { // one partition per insert: the view's sleep stays under 3 s a block
		inserts = append(inserts, fmt.Sprintf("INSERT INTO %s.src SELECT number * 24 + %d, toString(number * 24 + %d) FROM numbers(120)", db, i, i))
	}
	runHelperSQL(t, filepath.Join(dataDir, "clickhouse"), inserts...)
	p = start()
	c = sluicetest.NewClients(t, addr, token)
	const wantDst = "2880|4145760|2880"
	if got := sql("SELECT count(), sum(id), uniqExact(id) FROM src"); got != wantDst {
		t.Fatalf("src = %s", got)
	}
	base := sql("SELECT g, count(), sum(id) FROM (SELECT id % 10 AS g, id FROM src) GROUP BY g ORDER BY g")
	groupsAfter := func(times int) string {
		var out []string
		for _, line := range strings.Split(base, "\n") {
			var g, n, ids uint64
			_, _ = fmt.Sscanf(strings.ReplaceAll(line, "|", " "), "%d %d %d", &g, &n, &ids)
			out = append(out, fmt.Sprintf("%d|%d|%d", g, n*uint64(times), ids*uint64(times)))
		}
		return strings.Join(out, "\n")
	}
	kills, maxKills := 0, soakKills(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	populates := 0
	for kills < maxKills {
		populates++
		resp, err := c.Scheduler.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: "kill", Pipe: "to_dst", Options: &schedulerv1.PopulateOptions{Truncate: true}})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetJob().GetId()
		for kills < maxKills {
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond) // a random moment, not a wait
			if j := getJob(t, c.Scheduler, "kill", id); j.GetStatus() == done {
				break
			}
			p.Kill()
			kills++
			p = start()
			c = sluicetest.NewClients(t, addr, token)
		}
		j := waitJob(t, c.Scheduler, "kill", id, 120*time.Second, done, failed, cancelled)
		if j.GetStatus() != done || j.GetProgress().GetPartitionsDone() != 24 || j.GetProgress().GetStepsTotal() >= 24 || j.GetProgress().GetStatistics().GetWrittenRows() != 2880 {
			t.Fatalf("populate %s after %d kills: %v", id, kills, j)
		}
		if got := sql("SELECT count(), sum(id), uniqExact(id) FROM dst"); got != wantDst {
			t.Fatalf("after populate %d (%d kills): dst = %s, want %s", populates, kills, got, wantDst)
		}
		if got, want := sql("SELECT g, sum(n), sum(ids) FROM groups GROUP BY g ORDER BY g"), groupsAfter(populates+1); got != want {
			t.Fatalf("after populate %d (%d kills): groups =\n%s\nwant\n%s", populates, kills, got, want)
		}
	}
	t.Logf("%d kills over %d populates of 24 partitions", kills, populates)
}

// runHelperSQL runs statements on a chDB data directory in a helper process (this test binary,
// running TestPopulateHelperSQL).
func runHelperSQL(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPopulateHelperSQL$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SLUICE_HELPER_CHDB="+dir, "SLUICE_HELPER_SQL="+strings.Join(stmts, ";\n"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper SQL: %v\n%s", err, out)
	}
}

// TestPopulateHelperSQL is the helper process of runHelperSQL; it does nothing in a test run.
func TestPopulateHelperSQL(t *testing.T) {
	dir := os.Getenv("SLUICE_HELPER_CHDB")
	if dir == "" {
		t.Skip("helper process of the populate kill test")
	}
	conn, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: warehousetest.LibPath(), DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	for _, stmt := range strings.Split(os.Getenv("SLUICE_HELPER_SQL"), ";\n") {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}
