package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// rowsPerRequest is how many rows one load-generator request carries: ids req*rowsPerRequest
// up to the next request's first.
const rowsPerRequest = 20

var killIngestProject = map[string]string{
	"datasources/kill_events.datasource": "SCHEMA >\n    `id` UInt64 `json:$.id`,\n    `req` UInt64 `json:$.req`,\n    `payload` String `json:$.p`\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"req % 4\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/kill_view.datasource": "SCHEMA >\n    req UInt64,\n    n UInt64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"req\"\n",
	"pipes/kill_mv.pipe":               mvPipe("mv", "SELECT req, count() AS n FROM kill_events GROUP BY req", "kill_view"),
}

// loadGenerator sends Events API requests from several clients until stopped, each request
// with rowsPerRequest rows of a new request number, and records which requests were
// acknowledged (a 2xx).
type loadGenerator struct {
	urls    []string
	token   string
	next    atomic.Uint64
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   map[uint64]bool
	refused atomic.Int64
}

// startLoad starts clients sending to url; with several URLs (replicas), requests go to each in
// turn.
func startLoad(t *testing.T, token, url string, clients int, more ...string) *loadGenerator {
	g := &loadGenerator{urls: append([]string{url}, more...), token: token, stop: make(chan struct{}), acked: map[uint64]bool{}}
	client := &http.Client{Timeout: 5 * time.Second}
	for range clients {
		g.wg.Go(func() {
			for {
				select {
				case <-g.stop:
					return
				default:
				}
				req := g.next.Add(1)
				var b strings.Builder
				for i := range uint64(rowsPerRequest) {
					fmt.Fprintf(&b, `{"id":%d,"req":%d,"p":"row %d of request %d"}`+"\n", req*rowsPerRequest+i, req, i, req)
				}
				hreq, _ := http.NewRequest(http.MethodPost, g.urls[int(req)%len(g.urls)], strings.NewReader(b.String()))
				hreq.Header.Set("Authorization", "Bearer "+g.token)
				resp, err := client.Do(hreq)
				if err != nil {
					g.refused.Add(1)
					time.Sleep(20 * time.Millisecond) // the process is down: try again soon
					continue
				}
				_ = resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					g.mu.Lock()
					g.acked[req] = true
					g.mu.Unlock()
				} else {
					g.refused.Add(1)
				}
			}
		})
	}
	t.Cleanup(g.end)
	return g
}

func (g *loadGenerator) end() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.wg.Wait()
}

func (g *loadGenerator) ackedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acked)
}

func ingestKills(t testing.TB) int {
	if v := os.Getenv("SLUICE_INGEST_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SLUICE_INGEST_KILLS=%q is not a positive count", v)
		}
		return n
	}
	return 6
}

// TestEventsAPIKilledRepeatedly is TARGETS.md R13 in all-in-one mode: a load generator sends
// Events API requests from four clients the whole time and records every acknowledged one,
// while the all-in-one process (ingest, its writer, embedded NATS and chDB) is killed with
// SIGKILL at random moments and restarted on the same data. Afterwards every acknowledged
// request's rows are in the Data Source exactly once, no request is there partly or twice,
// and the materialized view downstream counted every row once.
func TestEventsAPIKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr, eventsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", eventsAddr, "-nats-listen", natsAddr,
		"-ingest.flush-interval", "50ms", "-ingest.lease-ttl", "1s", "-ingest.requests-per-second", "0", "-ingest.bytes-per-second", "0"},
		sluicetest.EmbeddedLibArgs()...)
	p := sluicetest.StartProcess(t, "sluiced-0", sluiced, args...)
	procs := []*sluicetest.Process{p}
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	cl := sluicetest.NewClients(t, addr, token)
	cl.CreateWorkspace(t, "ws")
	if out, stderr, code := sluiceCLI(t, cl, "push", writeProject(t, killIngestProject)); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, stderr)
	}
	url := "http://" + eventsAddr + "/v0/events?name=kill_events&workspace=ws"
	load := startLoad(t, token, url, 4)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	kills := ingestKills(t)
	for i := range kills {
		before := load.ackedCount()
		// A random moment of the load, not a wait for anything.
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		if load.ackedCount() == before {
			t.Logf("kill %d: no request was acknowledged since the last restart yet", i)
		}
		p.Kill()
		p = sluicetest.StartProcess(t, "sluiced-"+strconv.Itoa(i+1), sluiced, args...)
		procs = append(procs, p)
		sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	}
	time.Sleep(500 * time.Millisecond)
	load.end()
	// One last request with wait=true: once it is visible, everything before it is.
	sluicetest.Eventually(t, 60*time.Second, "a wait=true request to be answered 200", func() bool {
		r := postEvents(t, eventsAPI{"http://" + eventsAddr, token}, "ws", "kill_events", []byte(`{"id":0,"req":0,"p":"last"}`+"\n"), "wait=true", false)
		return r.code == http.StatusOK
	})
	cl = sluicetest.NewClients(t, addr, token)
	rows := checkAcknowledged(t, cl.Catalog, "ws", load)
	redone, repaired := 0, 0
	for _, pr := range procs {
		redone += strings.Count(pr.Output(), "finishing a batch a writer left pending")
		repaired += strings.Count(pr.Output(), "insert deduplication records of parts that were never written dropped")
	}
	t.Logf("%d kills, %d of them while a batch was being written (redone after the restart), %d deduplication logs repaired at a start (a kill between an insert's record and its part); %d requests acknowledged, %d in the Data Source (unacknowledged ones may be there once), %d refused or cut off",
		kills, redone, repaired, len(load.acked), len(rows), load.refused.Load())
	if len(load.acked) < 10*kills {
		t.Errorf("only %d requests were acknowledged over %d kills: the load did not run the whole time", len(load.acked), kills)
	}
}

// checkAcknowledged checks kill_events and kill_view after a kill test: every acknowledged
// request's rows once, no request partly or twice, the view agreeing with the Data Source. It
// returns the row count of each request found.
func checkAcknowledged(t *testing.T, catalog catalogv1.CatalogServiceClient, ws string, load *loadGenerator) map[uint64]uint64 {
	t.Helper()
	counts := func(sql string) map[uint64]uint64 {
		resp, err := catalog.Query(context.Background(), &catalogv1.QueryRequest{Workspace: ws, Sql: sql, MaxRows: 1_000_000, Timeout: durationpb.New(time.Minute)})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out := map[uint64]uint64{}
		for _, r := range resp.GetRows() {
			v := r.GetValues()
			req, _ := strconv.ParseUint(fmt.Sprint(v[0].AsInterface()), 10, 64)
			n, _ := strconv.ParseUint(fmt.Sprint(v[1].AsInterface()), 10, 64)
			out[req] = n
		}
		return out
	}
	// Every request in the Data Source, with its row count, read in pages (the catalog's Query
	// returns at most 10,000 rows).
	rows := map[uint64]uint64{}
	for last := uint64(0); ; {
		page := counts(fmt.Sprintf("SELECT req, count() FROM kill_events WHERE req > %d GROUP BY req ORDER BY req LIMIT 5000", last))
		if len(page) == 0 {
			break
		}
		for req, n := range page {
			rows[req] = n
			last = max(last, req)
		}
	}
	ids := counts("SELECT 1, count() - uniqExact(id) FROM kill_events")
	viewDiff := counts("SELECT 1, count() FROM (SELECT req, count() AS c FROM kill_events GROUP BY req) AS a " +
		"FULL OUTER JOIN (SELECT req, sum(n) AS s FROM kill_view GROUP BY req) AS b USING (req) WHERE a.c != b.s")
	missing, partial := 0, 0
	for req := range load.acked {
		if rows[req] != rowsPerRequest {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged request %d has %d rows in kill_events, want %d", req, rows[req], rowsPerRequest)
			}
		}
	}
	for req, n := range rows {
		if req > 0 && n != rowsPerRequest {
			partial++
			if partial <= 5 {
				t.Errorf("request %d has %d rows in kill_events: written partly or twice", req, n)
			}
		}
	}
	if viewDiff[1] != 0 {
		t.Errorf("%d requests whose row count in the view differs from the Data Source's", viewDiff[1])
	}
	if ids[1] != 0 {
		t.Errorf("%d duplicate ids in kill_events", ids[1])
	}
	if missing > 0 || partial > 0 {
		t.Fatalf("%d acknowledged requests missing, %d requests partly or twice written", missing, partial)
	}
	return rows
}

// TestEventsAPISplitModeKilled is TARGETS.md R13 in split mode, against a clickhouse-server
// process (18.16, which has no insert_deduplication_token: batches a dead writer may have
// committed are looked up in the server's query log): the load generator runs the whole time
// while the ingest process is killed with SIGKILL and restarted, and every other round the
// executor too. Every acknowledged request must be there exactly once.
func TestEventsAPISplitModeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	cfg := warehousetest.Server(t)
	split := sluicetest.StartSplit(t, "-clickhouse-addr", strings.Join(cfg.Addrs, ","), "-ingest.flush-interval", "50ms", "-ingest.lease-ttl", "1s",
		"-ingest.requests-per-second", "0", "-ingest.bytes-per-second", "0")
	ws := fmt.Sprintf("split_ingest_%d", time.Now().UnixNano()%1_000_000)
	clients := sluicetest.NewClients(t, split.Addrs["catalog"], split.Token)
	clients.CreateWorkspace(t, ws)
	catalog := clients.Catalog
	if _, err := catalog.Push(context.Background(), pushRequest(ws, killIngestProject)); err != nil {
		t.Fatalf("push: %v", err)
	}
	load := startLoad(t, split.Token, "http://"+split.EventsAddr+"/v0/events?name=kill_events&workspace="+ws, 4)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))
	kills := ingestKills(t)
	ingests := []*sluicetest.Process{split.Procs["ingest"]}
	for i := range kills {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond) // a random moment, not a wait
		ingests = append(ingests, split.Restart(t, "ingest", i+1))
		if i%2 == 1 {
			split.Restart(t, "executor", i+1)
		}
	}
	time.Sleep(500 * time.Millisecond)
	load.end()
	sluicetest.Eventually(t, 60*time.Second, "a wait=true request to be answered 200", func() bool {
		r := postEvents(t, eventsAPI{"http://" + split.EventsAddr, split.Token}, ws, "kill_events", []byte(`{"id":0,"req":0,"p":"last"}`+"\n"), "wait=true", false)
		return r.code == http.StatusOK
	})
	rows := checkAcknowledged(t, catalog, ws, load)
	redone, lookedUp := 0, 0
	for _, p := range ingests {
		redone += strings.Count(p.Output(), "finishing a batch a writer left pending")
		lookedUp += strings.Count(p.Output(), "already committed by an earlier writer")
	}
	t.Logf("%d kills of the ingest process, %d of them while a batch was pending, whose redo found %d inserts committed in the query log; %d requests acknowledged, %d in the Data Source, %d refused or cut off",
		kills, redone, lookedUp, len(load.acked), len(rows), load.refused.Load())
	if len(load.acked) < 10*kills {
		t.Errorf("only %d requests were acknowledged over %d kills: the load did not run the whole time", len(load.acked), kills)
	}
}

// TestEventsAPITwoIngestReplicas runs two ingest processes in split mode against a
// clickhouse-server process: the load generator sends to both; one of them holds the writer's
// lease at a time. The replicas are killed in turn (the lease holder among them), so requests
// are accepted by one replica and written by the other, and the writing moves between them.
// Every acknowledged request must be there exactly once.
func TestEventsAPITwoIngestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	cfg := warehousetest.Server(t)
	split := sluicetest.StartSplit(t, "-clickhouse-addr", strings.Join(cfg.Addrs, ","), "-ingest.flush-interval", "50ms", "-ingest.lease-ttl", "1s",
		"-ingest.requests-per-second", "0", "-ingest.bytes-per-second", "0")
	second := split.AddIngest(t, 1)
	ws := fmt.Sprintf("replicas_%d", time.Now().UnixNano()%1_000_000)
	clients := sluicetest.NewClients(t, split.Addrs["catalog"], split.Token)
	clients.CreateWorkspace(t, ws)
	catalog := clients.Catalog
	if _, err := catalog.Push(context.Background(), pushRequest(ws, killIngestProject)); err != nil {
		t.Fatalf("push: %v", err)
	}
	path := "/v0/events?name=kill_events&workspace=" + ws
	load := startLoad(t, split.Token, "http://"+split.EventsAddr+path, 4, "http://"+second.EventsAddr+path)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	kills := ingestKills(t)
	for i := range kills {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond) // a random moment, not a wait
		if i%2 == 0 {
			split.Restart(t, "ingest", i+1)
		} else {
			split.RestartIngest(t, second, i+1)
		}
	}
	time.Sleep(500 * time.Millisecond)
	load.end()
	sluicetest.Eventually(t, 60*time.Second, "a wait=true request to be answered 200", func() bool {
		r := postEvents(t, eventsAPI{"http://" + second.EventsAddr, split.Token}, ws, "kill_events", []byte(`{"id":0,"req":0,"p":"last"}`+"\n"), "wait=true", false)
		return r.code == http.StatusOK
	})
	rows := checkAcknowledged(t, catalog, ws, load)
	t.Logf("%d kills alternating between two ingest replicas; %d requests acknowledged, %d in the Data Source, %d refused or cut off",
		kills, len(load.acked), len(rows), load.refused.Load())
	if len(load.acked) < 10*kills {
		t.Errorf("only %d requests were acknowledged over %d kills", len(load.acked), kills)
	}
}

// TestEventsAPIKilledBeforePartRename aims a kill at the engine's window between an insert's
// deduplication record and the rename of its part, which a random kill hits about once in a
// hundred. The all-in-one process dies (fault point ingest.inserted) right after the writer's
// insert of a batch spanning the Data Source's four partitions, with the batch still pending;
// one partition's part is then renamed back to tmp_insert_* with its deduplication record left,
// as a kill inside the insert leaves it. After the restart, the writer finishes the pending batch
// with the same token: every row of the batch is in the Data Source exactly once and the view
// downstream agrees.
func TestEventsAPIKilledBeforePartRename(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	dataDir, addr, natsAddr, eventsAddr := t.TempDir(), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dataDir, "-grpc-addr", addr, "-http-addr", "", "-events-addr", eventsAddr, "-nats-listen", natsAddr,
		"-ingest.flush-interval", "50ms", "-ingest.requests-per-second", "0", "-ingest.bytes-per-second", "0"},
		sluicetest.EmbeddedLibArgs()...)
	p := sluicetest.StartProcessEnv(t, "sluiced-0", []string{"SLUICE_TEST_FAULTS=ingest.inserted@1:kill"}, sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	token := sluicetest.ReadOperatorToken(t, filepath.Join(dataDir, "token"), p)
	cl := sluicetest.NewClients(t, addr, token)
	cl.CreateWorkspace(t, "ws")
	if out, stderr, code := sluiceCLI(t, cl, "push", writeProject(t, killIngestProject)); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, stderr)
	}

	// One request, requests 1..8 of the load generator's shape: two per partition (req % 4).
	load := &loadGenerator{acked: map[uint64]bool{}}
	var body strings.Builder
	for req := uint64(1); req <= 8; req++ {
		load.acked[req] = true
		for i := range uint64(rowsPerRequest) {
			fmt.Fprintf(&body, `{"id":%d,"req":%d,"p":"row %d of request %d"}`+"\n", req*rowsPerRequest+i, req, i, req)
		}
	}
	// The process kills itself once the batch is inserted, so the rows were in the stream then
	// whether or not the answer got out first.
	hreq, err := http.NewRequest(http.MethodPost, "http://"+eventsAddr+"/v0/events?name=kill_events&workspace=ws", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(hreq); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("the request was refused: %s", resp.Status)
		}
	}
	if code := p.Wait(t, 60*time.Second); code != -1 {
		t.Fatalf("sluiced exited with %d, want killed at the fault point\n%s", code, p.Output())
	}

	// The Data Source's parts as the kill left them; the last one written loses its rename.
	links, _ := filepath.Glob(filepath.Join(dataDir, "clickhouse", "data", "*", "kill_events"))
	if len(links) != 1 {
		t.Fatalf("kill_events in the data directory: %q", links)
	}
	table, err := filepath.EvalSymlinks(links[0])
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(table)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, e := range entries {
		if f := strings.Split(e.Name(), "_"); e.IsDir() && len(f) == 4 && f[0] >= "0" && f[0] <= "3" {
			parts = append(parts, e.Name())
		}
	}
	if len(parts) != 4 {
		t.Fatalf("kill_events has parts %q after the kill, want one per partition", parts)
	}
	blockOf := func(part string) int { n, _ := strconv.Atoi(strings.Split(part, "_")[1]); return n }
	last := parts[0]
	for _, part := range parts {
		if blockOf(part) > blockOf(last) {
			last = part
		}
	}
	logs, _ := filepath.Glob(filepath.Join(table, "deduplication_logs", "*"))
	recorded := false
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		recorded = recorded || strings.Contains(string(b), "1\t"+last+"\t")
	}
	if !recorded {
		t.Fatalf("no deduplication record for %s in %q: the window is not reproduced", last, logs)
	}
	if err := os.Rename(filepath.Join(table, last), filepath.Join(table, "tmp_insert_"+last)); err != nil {
		t.Fatal(err)
	}

	p = sluicetest.StartProcess(t, "sluiced-1", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	sluicetest.Eventually(t, 60*time.Second, "a wait=true request to be answered 200", func() bool {
		r := postEvents(t, eventsAPI{"http://" + eventsAddr, token}, "ws", "kill_events", []byte(`{"id":0,"req":0,"p":"last"}`+"\n"), "wait=true", false)
		return r.code == http.StatusOK
	})
	for _, want := range []string{"finishing a batch a writer left pending", "insert deduplication records of parts that were never written dropped"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("the restarted process did not log %q", want)
		}
	}
	rows := checkAcknowledged(t, sluicetest.NewClients(t, addr, token).Catalog, "ws", load)
	if len(rows) != len(load.acked) {
		t.Errorf("kill_events holds requests %v, want 1..8 (and the last one)", rows)
	}
}
