package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog"
	"github.com/sluicehq/sluice/services/scheduler"
	"github.com/sluicehq/sluice/platform/jobs"
)

// The project of the cluster test: events (24 monthly partitions) flow through a materialized
// pipe into daily and on through a second one into country_totals (a cascade); an on-demand
// Copy Pipe writes one batch of per-country totals per job; a Copy Pipe scheduled every minute
// writes one row per tick.
var clusterProject = map[string]string{
	"datasources/events.datasource": `SCHEMA >
    id UInt64,
    ts DateTime,
    country String,
    amount Int64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "id"
`,
	"datasources/daily.datasource": `SCHEMA >
    day Date,
    country String,
    total Int64,
    n UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(day)"
ENGINE_SORTING_KEY "day, country"
`,
	"datasources/country_totals.datasource": `SCHEMA >
    country String,
    total Int64,
    n UInt64

ENGINE "MergeTree"
ENGINE_SORTING_KEY "country"
`,
	"datasources/sales_copy.datasource": `SCHEMA >
    batch UInt32,
    country String,
    total Int64,
    n UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "batch"
ENGINE_SORTING_KEY "batch, country"
`,
	"datasources/ticks.datasource": `SCHEMA >
    tick DateTime,
    n UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMMDD(tick)"
ENGINE_SORTING_KEY "tick"
`,
	"pipes/daily_mv.pipe":   mvPipe("daily_agg", "SELECT toDate(ts) AS day, country, sum(amount) AS total, count() AS n FROM events GROUP BY day, country", "daily"),
	"pipes/country_mv.pipe": mvPipe("country_agg", "SELECT country, sum(total) AS total, sum(n) AS n FROM daily GROUP BY country", "country_totals"),
	"pipes/copy_sales.pipe": `NODE sales
SQL >
    %
    SELECT toUInt32({{UInt32(batch, 0)}}) AS batch, country, sum(amount) AS total, count() AS n
    FROM events
    GROUP BY country

TYPE COPY
TARGET_DATASOURCE sales_copy
`,
	"pipes/tick_copy.pipe": `NODE tick
SQL >
    %
    SELECT toDateTime({{DateTime(job_timestamp)}}) AS tick, count() AS n
    FROM events

TYPE COPY
TARGET_DATASOURCE ticks
COPY_SCHEDULE * * * * *
`,
}

const (
	clusterWS     = "cluster"
	clusterEvents = 20000
)

// TestClusterSurvivesNodeLoss runs Sluice as a cluster — a 3-node NATS cluster (streams and
// buckets with 3 replicas), 2 catalogs behind one address, 2 schedulers, 3 executors, 2 ops-log
// writers and a clickhouse-server, each its own process in its own network namespace where the
// machine allows it — and, while populates with a cascade, on-demand copies and a copy
// scheduled every minute run, injects per round (SLUICE_CLUSTER_ROUNDS, default 1; make soak
// runs more): a NATS node killed and restarted, a NATS node cut off from the others, a catalog
// replica killed in the middle of a push, and the leading scheduler killed just before a tick.
// Every populate's target and cascade, every copy batch and every tick are checked row by
// row; every minute tick since the schedule began has exactly one job and one row; every copy
// job has one ops-log event.
func TestClusterSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of 14 processes")
	}
	rounds := envInt("SLUICE_CLUSTER_ROUNDS", 1)
	start := time.Now()
	c := sluicetest.StartCluster(t, sluicetest.ClusterOptions{NATSNodes: 3, Catalogs: 2, Schedulers: 2, Executors: 3, OpsLogs: 2,
		// Statements that get no answer (a connection the server dropped) end within 30s. A
		// step's NATS request whose node dies or is cut off gets no answer either and waits for
		// the step's context: the job's maximum execution time bounds that wait.
		Extra: []string{"-executor.ack-wait", "5s", "-opslog.ack-wait", "10s", "-clickhouse-read-timeout", "30s", "-scheduler.max-execution-time", "90s"}})
	r := newClusterRun(t, c)
	t.Logf("cluster up in %s (network namespaces: %v)", time.Since(start).Round(time.Second), c.Namespaces)

	// Events first, then the flow, so that the views see no insert: what they hold comes from
	// the populates only.
	r.push(map[string]string{"datasources/events.datasource": clusterProject["datasources/events.datasource"]})
	r.exec(fmt.Sprintf("INSERT INTO {db}.events SELECT number, toDateTime('2023-01-01 00:00:00') + intDiv(number * 63072000, %d), "+
		"['de', 'fr', 'us', 'jp', 'br'][number %% 5 + 1], toInt64(number %% 100) FROM system.numbers LIMIT %d", clusterEvents, clusterEvents))
	r.push(clusterProject)
	scheduleSince := time.Now()

	for round := 1; round <= rounds; round++ {
		t.Logf("round %d of %d (%s)", round, rounds, time.Since(start).Round(time.Second))
		// A NATS node killed and restarted while a populate and copies run.
		node := (round - 1) % len(c.NATS)
		r.populateDuring(func() {
			c.KillNATS(node)
			t.Logf("killed %s", c.NATS[node].Name)
			time.Sleep(2 * time.Second) // the node stays down a moment
			c.StartNATS(t, node)
		})

		// A NATS node cut off from the others while a populate and copies run.
		node = round % len(c.NATS)
		r.populateDuring(func() {
			if !c.CutOffNATS(t, node) {
				t.Log("partition not injected: it needs network namespaces")
				return
			}
			t.Logf("cut off %s from its peers", c.NATS[node].Name)
			time.Sleep(15 * time.Second) // the partition lasts beyond the lease TTLs
			c.ReconnectNATS(t, node)
		})

		// A catalog replica killed in the middle of a push; the push is then done again through
		// the catalogs' address, and the killed replica comes back.
		t.Logf("populates done (%s)", time.Since(start).Round(time.Second))
		r.pushKilledMidway(round)
		t.Logf("push done (%s)", time.Since(start).Round(time.Second))

		// The leading scheduler killed just before a tick: the other replica takes the lease
		// and enqueues the tick it missed.
		r.killLeaderBeforeTick()
		t.Logf("scheduler kill done (%s)", time.Since(start).Round(time.Second))
	}
	r.waitCopies()
	r.checkCopies()
	r.checkTicks(scheduleSince)
	t.Logf("checked %d populates (24 partitions each, with a cascade), %d copy batches, %d ticks, %d pushes interrupted by a kill; jobs failed by a fault and run again: %d %v",
		r.populatesChecked, len(r.copyJobs), r.ticksChecked, r.killedPushes, len(r.failedJobs), r.failedJobs)
}

// clusterRun drives the cluster test: its clients fail over between replicas like the CLI.
type clusterRun struct {
	t          *testing.T
	c          *sluicetest.Cluster
	catalog    catalogv1.CatalogServiceClient
	schedulers []schedulerv1.SchedulerServiceClient
	wh         warehouse.Conn
	nc         *natsx.Conn
	db         string
	// copyJobs maps the batch of each on-demand copy to its job.
	copyJobs     map[uint32]string
	nextBatch    uint32
	ticksChecked int
	killedPushes int
	project      map[string]string
	// failedJobs are jobs a fault made fail, run again as a user would (a failed copy leaves
	// its target as it was; a failed populate is run again from scratch).
	failedJobs []string
	// populates counts the populates whose cascade country_totals holds.
	populates, populatesChecked int
	// populateJobs are the populate jobs started so far (a retried request must not take one).
	populateJobs map[string]bool
}

func newClusterRun(t *testing.T, c *sluicetest.Cluster) *clusterRun {
	r := &clusterRun{t: t, c: c, catalog: sluicetest.NewClients(t, c.CatalogAddr, c.Token).Catalog, wh: c.Warehouse(t), nc: c.NATSConn(t),
		copyJobs: map[uint32]string{}, project: map[string]string{}, populateJobs: map[string]bool{}}
	for _, s := range c.Of("scheduler") {
		r.schedulers = append(r.schedulers, sluicetest.NewClients(t, s.Addr, c.Token).Scheduler)
	}
	if _, err := r.catalog.CreateWorkspace(context.Background(), &catalogv1.CreateWorkspaceRequest{Name: clusterWS}); err != nil {
		t.Fatalf("create workspace: %v", err)
	}
	resp, err := r.catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: clusterWS})
	if err != nil {
		t.Fatal(err)
	}
	r.db = warehouse.QuoteIdent(resp.GetWorkspace().GetDatabase())
	return r
}

// retryable errors are those of a replica or a NATS node going away.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Aborted, codes.Unknown:
		return true
	}
	return false
}

// scheduler calls f on a scheduler replica that answers, within two minutes.
func (r *clusterRun) scheduler(what string, f func(ctx context.Context, s schedulerv1.SchedulerServiceClient) error) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := f(ctx, r.schedulers[i%len(r.schedulers)])
		cancel()
		if err == nil {
			return
		}
		if !retryable(err) || time.Now().After(deadline) {
			r.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *clusterRun) exec(sql string) {
	r.t.Helper()
	sql = strings.ReplaceAll(sql, "{db}", r.db)
	if _, err := r.wh.Exec(context.Background(), sql); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

func (r *clusterRun) rows(sql string) []string {
	r.t.Helper()
	sql = strings.ReplaceAll(sql, "{db}", r.db)
	res, err := r.wh.Query(context.Background(), sql)
	if err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	out := make([]string, 0, len(res.Rows))
	for _, row := range res.Rows {
		var cols []string
		for _, v := range row {
			cols = append(cols, fmt.Sprint(v))
		}
		out = append(out, strings.Join(cols, "|"))
	}
	return out
}

// push pushes files (added to the project pushed so far) with the real CLI, through the
// catalogs' address.
func (r *clusterRun) push(files map[string]string) {
	r.t.Helper()
	if out, stderr, code := r.cliPush(files); code != 0 {
		r.t.Fatalf("sluice push: exit %d\n%s\n%s", code, out, stderr)
	}
}

func (r *clusterRun) cliPush(files map[string]string) (string, string, int) {
	r.t.Helper()
	for p, content := range files {
		r.project[p] = content
	}
	dir := r.t.TempDir()
	for p, content := range r.project {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	return cli(r.t, r.c.CLI, r.c, "push", "--workspace", clusterWS, dir)
}

// populate starts a populate of daily_mv (emptying daily first; the cascade into
// country_totals adds up) and returns its job id. A retried request first looks for the job
// the failed attempt may have created.
func (r *clusterRun) populate() string {
	r.t.Helper()
	since := time.Now()
	var id string
	r.scheduler("populate daily_mv", func(ctx context.Context, s schedulerv1.SchedulerServiceClient) error {
		if j := r.findJob(ctx, s, "daily_mv", schedulerv1.JobKind_JOB_KIND_POPULATEVIEW, since, nil); j != nil && !r.populateJobs[j.GetId()] {
			id = j.GetId()
			r.populateJobs[id] = true
			return nil
		}
		resp, err := s.Populate(ctx, &schedulerv1.PopulateRequest{Workspace: clusterWS, Pipe: "daily_mv", Options: &schedulerv1.PopulateOptions{Truncate: true}})
		if err != nil {
			return err
		}
		id = resp.GetJob().GetId()
		r.populateJobs[id] = true
		return nil
	})
	return id
}

// copies starts n on-demand copies, each with a batch number of its own.
func (r *clusterRun) copies(n int) {
	r.t.Helper()
	for range n {
		r.nextBatch++
		r.runCopy(r.nextBatch, nil)
	}
}

// runCopy starts a copy of copy_sales for batch (or, with tick set, of tick_copy with that
// job_timestamp) and records its job.
func (r *clusterRun) runCopy(batch uint32, tick *time.Time) string {
	r.t.Helper()
	since := time.Now()
	pipe, params := "copy_sales", map[string]string{"batch": fmt.Sprint(batch)}
	req := &schedulerv1.RunCopyRequest{Workspace: clusterWS, Pipe: pipe, Parameters: params}
	if tick != nil {
		pipe, params = "tick_copy", nil
		req = &schedulerv1.RunCopyRequest{Workspace: clusterWS, Pipe: pipe, JobTimestamp: timestamppb.New(*tick)}
	}
	var id string
	r.scheduler("copy "+pipe, func(ctx context.Context, s schedulerv1.SchedulerServiceClient) error {
		if j := r.findJob(ctx, s, pipe, schedulerv1.JobKind_JOB_KIND_COPY, since, params); j != nil && (tick == nil || j.GetJobTimestamp().AsTime().Equal(*tick)) {
			id = j.GetId()
			return nil
		}
		resp, err := s.RunCopy(ctx, req)
		if err != nil {
			return err
		}
		id = resp.GetJob().GetId()
		return nil
	})
	if tick == nil {
		r.copyJobs[batch] = id
	}
	return id
}

// findJob returns a job of pipe created since with the parameters, or nil.
func (r *clusterRun) findJob(ctx context.Context, s schedulerv1.SchedulerServiceClient, pipe string, kind schedulerv1.JobKind, since time.Time, params map[string]string) *schedulerv1.Job {
	resp, err := s.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: clusterWS, Pipe: pipe, Kinds: []schedulerv1.JobKind{kind}, Since: timestamppb.New(since), PageSize: 1000})
	if err != nil {
		return nil
	}
	for _, j := range resp.GetJobs() {
		match := true
		for k, v := range params {
			match = match && j.GetParameters()[k] == v
		}
		if match {
			return j
		}
	}
	return nil
}

func (r *clusterRun) job(id string) *schedulerv1.Job {
	r.t.Helper()
	var job *schedulerv1.Job
	r.scheduler("job "+id, func(ctx context.Context, s schedulerv1.SchedulerServiceClient) error {
		resp, err := s.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: clusterWS, Id: id})
		job = resp.GetJob()
		return err
	})
	return job
}

// waitWorking waits until the job runs, so that the fault that follows hits running steps.
func (r *clusterRun) waitWorking(id string) {
	r.t.Helper()
	sluicetest.Eventually(r.t, 2*time.Minute, "job "+id+" working", func() bool {
		s := r.job(id).GetStatus()
		return s == working || s == done
	})
}

// waitEnd waits until the job has ended (done, error or cancelled).
func (r *clusterRun) waitEnd(id string) *schedulerv1.Job {
	r.t.Helper()
	var job *schedulerv1.Job
	defer func() {
		if r.t.Failed() {
			r.describeJob(id)
		}
	}()
	// A step whose NATS request was in flight when its node died waits for its context: for a
	// populate's commit, up to 5 minutes.
	sluicetest.Eventually(r.t, 7*time.Minute, "job "+id+" to end", func() bool {
		job = r.job(id)
		s := job.GetStatus()
		return s == done || s == failed || s == cancelled
	})
	return job
}

// describeJob logs what a job that did not end is waiting for: its record (steps done and
// running where) and the statements ClickHouse runs.
func (r *clusterRun) describeJob(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if kv, err := r.nc.JS.KeyValue(ctx, jobs.BucketJobs); err == nil {
		if e, err := kv.Get(ctx, jobs.Key(clusterWS, id)); err == nil {
			if rec, err := jobs.Decode(e.Value()); err == nil {
				r.t.Logf("job %s record (revision %d): %s, steps done %v, running %v, failures %v", id, e.Revision(),
					rec.GetJob().GetStatus(), rec.GetDoneSteps(), rec.GetRunning(), rec.GetStepFailures())
				// The processes still running its steps, and the catalogs they call, print
				// their goroutines into their logs (SIGQUIT).
				for _, instance := range rec.GetRunning() {
					for _, svc := range r.c.Services {
						if strings.Contains(instance, fmt.Sprintf("-%d-", svc.PID())) || svc.Target == "catalog" {
							svc.Proc.Signal(syscall.SIGQUIT)
						}
					}
				}
			}
		}
	}
	if res, err := r.wh.Query(ctx, "SELECT elapsed, query FROM system.processes"); err == nil {
		for _, row := range res.Rows {
			r.t.Logf("ClickHouse runs (%vs): %v", row[0], row[1])
		}
	}
}

// populateDuring runs a populate (and copies beside it) with a fault injected once its steps
// run, then checks the rows. A populate the fault made fail is run again from scratch, its
// partial cascade emptied first, at most twice.
func (r *clusterRun) populateDuring(fault func()) {
	r.t.Helper()
	job := r.populate()
	r.copies(3)
	r.waitWorking(job)
	fault()
	for attempt := 1; ; attempt++ {
		j := r.waitEnd(job)
		if j.GetStatus() == done {
			break
		}
		r.failedJobs = append(r.failedJobs, fmt.Sprintf("populate %s: %s %s", job, j.GetStatus(), j.GetError().GetMessage()))
		r.t.Logf("populate %s ended %s (%s): running it again", job, j.GetStatus(), j.GetError().GetMessage())
		if attempt == 3 {
			r.t.Fatalf("populate failed %d times", attempt)
		}
		r.exec("TRUNCATE TABLE {db}.country_totals")
		r.populates = 0
		job = r.populate()
	}
	r.populates++
	r.populatesChecked++
	r.checkPopulate(r.populates)
}

// checkPopulate checks daily (populated from scratch) and country_totals (fed by every
// populate's cascade so far) against the events, row by row.
func (r *clusterRun) checkPopulate(populates int) {
	r.t.Helper()
	want := r.rows("SELECT toDate(ts) AS day, country, sum(amount), count() FROM {db}.events GROUP BY day, country ORDER BY day, country")
	got := r.rows("SELECT day, country, sum(total), sum(n) FROM {db}.daily GROUP BY day, country ORDER BY day, country")
	// A step loads one month of events into the month's partition of daily.
	r.checkRows(fmt.Sprintf("populate %d: daily", populates), want, got)
	want = r.rows(fmt.Sprintf("SELECT country, sum(amount) * %d, count() * %d FROM {db}.events GROUP BY country ORDER BY country", populates, populates))
	got = r.rows("SELECT country, sum(total), sum(n) FROM {db}.country_totals GROUP BY country ORDER BY country")
	if diff := diffRows(want, got); diff != "" {
		r.t.Fatalf("after %d populates, country_totals (the cascade) differs:\n%s", populates, diff)
	}
}

// checkRows compares rows with the rows they must be: exactly, on every engine.
func (r *clusterRun) checkRows(what string, want, got []string) {
	r.t.Helper()
	if diff := diffRows(want, got); diff != "" {
		r.t.Fatalf("%s differs:\n%s", what, diff)
	}
}

func diffRows(want, got []string) string {
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "want %d rows, got %d\n", len(want), len(got))
	for i := 0; i < max(len(want), len(got)) && b.Len() < 2000; i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			fmt.Fprintf(&b, "  row %d: want %q got %q\n", i, w, g)
		}
	}
	return b.String()
}

// pushKilledMidway pushes new Data Sources and kills the catalog holding the workspace's lease
// as soon as the push's journal shows it applying; then pushes again through the catalogs'
// address (the surviving replica repairs what the killed one left, then applies), checks that
// ClickHouse and the catalog hold exactly the project, and restarts the killed replica.
func (r *clusterRun) pushKilledMidway(round int) {
	r.t.Helper()
	ctx := context.Background()
	files := map[string]string{}
	var names []string
	for i := range 8 {
		name := fmt.Sprintf("extra_%d_%d", round, i)
		names = append(names, name)
		files["datasources/"+name+".datasource"] = "SCHEMA >\n    id UInt64,\n    note String\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"id\"\n"
	}
	var w jetstream.KeyWatcher
	r.retryNATS("watch the push journal", func(ctx context.Context) error {
		kv, err := r.nc.JS.KeyValue(ctx, catalog.BucketCatalog)
		if err == nil {
			w, err = kv.Watch(context.Background(), "journal."+clusterWS, jetstream.UpdatesOnly())
		}
		return err
	})
	defer func() { _ = w.Stop() }()
	type result struct {
		out, stderr string
		code        int
	}
	pushed := make(chan result, 1)
	go func() {
		out, stderr, code := r.cliPush(files)
		pushed <- result{out, stderr, code}
	}()
	// Where the push dies, by round: in the middle of its DDL, before its first statement, at
	// its last statement, while recording it.
	type moment struct {
		phase string
		step  int
	}
	at := []moment{{"applying", 3}, {"applying", -1}, {"applying", 7}, {"recording", 0}}[(round-1)%4]
	var killed *sluicetest.Service
	deadline := time.After(2 * time.Minute)
wait:
	for {
		select {
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var head struct {
				Phase string `json:"phase"`
				Step  int    `json:"step"`
			}
			if err := json.Unmarshal(e.Value(), &head); err != nil {
				r.t.Fatalf("push journal %q: %v", e.Value(), err)
			}
			if head.Phase != at.phase || head.Step < at.step {
				continue
			}
			r.retryNATS("the catalog applying the push", func(ctx context.Context) (err error) {
				killed, err = r.c.LeaseHolder(ctx, r.nc, catalog.BucketLeases, "ws."+clusterWS)
				return err
			})
			r.c.Kill(killed)
			r.t.Logf("killed %s while its push was %s (step %d)", killed.Name, head.Phase, head.Step)
			break wait
		case res := <-pushed:
			pushed <- res
			break wait
		case <-deadline:
			r.t.Fatal("the push did not reach its journal's moment within 2 minutes")
		}
	}
	res := <-pushed
	if killed == nil {
		r.t.Logf("the push finished before a kill could land (exit %d)", res.code)
	} else {
		r.killedPushes++
		r.t.Logf("the interrupted push exited %d: %s", res.code, strings.TrimSpace(res.stderr))
	}
	// Pushed again through the catalogs' address, as a user would: the other replica waits for
	// the dead one's lease, repairs, and applies.
	if out, stderr, code := r.cliPush(nil); code != 0 {
		r.t.Fatalf("push after the kill: exit %d\n%s\n%s", code, out, stderr)
	}
	tables := r.rows("SELECT name FROM system.tables WHERE database = " + warehouse.QuoteString(strings.Trim(r.db, "`")) + " AND NOT startsWith(name, '__sluice_stage_') ORDER BY name")
	var want []string
	for p := range r.project {
		if strings.HasPrefix(p, "datasources/") {
			// Every Data Source has its quarantine table.
			name := strings.TrimSuffix(strings.TrimPrefix(p, "datasources/"), ".datasource")
			want = append(want, name, name+"_quarantine")
		}
	}
	for p := range r.project {
		if strings.HasPrefix(p, "pipes/") && strings.Contains(r.project[p], "TYPE materialized") {
			want = append(want, "__sluice_mv_"+strings.TrimSuffix(strings.TrimPrefix(p, "pipes/"), ".pipe"))
		}
	}
	want = append(want, "datasources_ops_log", "jobs_log") // the workspace's service Data Sources
	sort.Strings(want)
	sort.Strings(tables)
	if diff := diffRows(want, tables); diff != "" {
		r.t.Fatalf("after the interrupted push and its retry, the workspace's tables differ from the project:\n%s", diff)
	}
	list, err := r.catalog.ListDataSources(ctx, &catalogv1.ListDataSourcesRequest{Workspace: clusterWS})
	if err != nil {
		r.t.Fatal(err)
	}
	for _, name := range names {
		found := false
		for _, ds := range list.GetDatasources() {
			found = found || ds.GetName() == name
		}
		if !found {
			r.t.Errorf("the catalog does not list Data Source %s after the retried push", name)
		}
	}
	var keys []string
	r.retryNATS("list the push journal", func(ctx context.Context) (err error) {
		keys, err = r.catalogKeys(ctx, "journal.>")
		return err
	})
	if len(keys) != 0 {
		r.t.Errorf("push journal left behind: %v", keys)
	}
	if killed != nil {
		r.c.Restart(r.t, killed)
	}
}

// retryNATS runs f until it succeeds, within a minute: the test's own NATS connection may
// be on a node that is rejoining.
func (r *clusterRun) retryNATS(what string, f func(ctx context.Context) error) {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *clusterRun) catalogKeys(ctx context.Context, filter string) ([]string, error) {
	kv, err := r.nc.JS.KeyValue(ctx, catalog.BucketCatalog)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// killLeaderBeforeTick waits until a few seconds before the next minute, kills the scheduler
// leading the job system, waits until the other replica leads, and restarts the killed one.
func (r *clusterRun) killLeaderBeforeTick() {
	r.t.Helper()
	ctx := context.Background()
	next := time.Now().Truncate(time.Minute).Add(time.Minute)
	if time.Until(next) < 8*time.Second {
		next = next.Add(time.Minute)
	}
	time.Sleep(time.Until(next.Add(-5 * time.Second)))
	var leader *sluicetest.Service
	r.retryNATS("the leading scheduler", func(ctx context.Context) (err error) {
		leader, err = r.c.LeaseHolder(ctx, r.nc, scheduler.BucketLeases, "jobs")
		return err
	})
	r.c.Kill(leader)
	r.t.Logf("killed the leading scheduler %s 5s before the %s tick", leader.Name, next.Format("15:04"))
	sluicetest.Eventually(r.t, time.Minute, "another scheduler to lead", func() bool {
		s, err := r.c.LeaseHolder(ctx, r.nc, scheduler.BucketLeases, "jobs")
		return err == nil && s != leader
	})
	r.c.Restart(r.t, leader)
	// The tick passed while no scheduler led: its job must come (checkTicks counts it).
	sluicetest.Eventually(r.t, 2*time.Minute, "the job of the "+next.Format("15:04")+" tick", func() bool {
		return len(r.tickJobs(next, next)) > 0
	})
}

// tickJobs returns the scheduled jobs of tick_copy with job_timestamp in [from, to].
func (r *clusterRun) tickJobs(from, to time.Time) []*schedulerv1.Job {
	r.t.Helper()
	var jobs []*schedulerv1.Job
	r.scheduler("tick jobs", func(ctx context.Context, s schedulerv1.SchedulerServiceClient) error {
		resp, err := s.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: clusterWS, Pipe: "tick_copy", PageSize: 1000})
		if err != nil {
			return err
		}
		jobs = jobs[:0]
		for _, j := range resp.GetJobs() {
			ts := j.GetJobTimestamp().AsTime()
			if j.GetExecutionType() == schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED && !ts.Before(from) && !ts.After(to) {
				jobs = append(jobs, j)
			}
		}
		return nil
	})
	return jobs
}

// waitCopies waits for every on-demand copy to be done; a copy a fault made fail is run again
// (a failed copy leaves its target as it was: the batch must then be there once).
func (r *clusterRun) waitCopies() {
	r.t.Helper()
	for batch := uint32(1); batch <= r.nextBatch; batch++ {
		for attempt := 1; ; attempt++ {
			id := r.copyJobs[batch]
			j := r.waitEnd(id)
			if j.GetStatus() == done {
				break
			}
			r.failedJobs = append(r.failedJobs, fmt.Sprintf("copy %s (batch %d): %s %s", id, batch, j.GetStatus(), j.GetError().GetMessage()))
			if attempt == 3 {
				r.t.Fatalf("copy of batch %d failed %d times", batch, attempt)
			}
			r.runCopy(batch, nil)
		}
	}
}

// checkCopies checks every batch: one row per country with the events' totals, and one copy
// event in the ops log for its job.
func (r *clusterRun) checkCopies() {
	r.t.Helper()
	perCountry := r.rows("SELECT country, sum(amount), count(), 1 FROM {db}.events GROUP BY country ORDER BY country")
	var want []string
	for b := uint32(1); b <= r.nextBatch; b++ {
		for _, row := range perCountry {
			want = append(want, fmt.Sprintf("%d|%s", b, row))
		}
	}
	got := r.rows("SELECT batch, country, sum(total), sum(n), count() FROM {db}.sales_copy GROUP BY batch, country ORDER BY batch, country")
	r.checkRows("the copy batches", want, got)
	var ids []string
	for _, id := range r.copyJobs {
		ids = append(ids, warehouse.QuoteString(id))
	}
	// An event whose writer lost its NATS node is delivered again after -opslog.ack-wait.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		events := r.rows("SELECT job_id, count() FROM {db}.datasources_ops_log WHERE event_type = 'copy' AND result = 'ok' AND job_id IN (" + strings.Join(ids, ", ") + ") GROUP BY job_id ORDER BY job_id")
		seen := map[string]bool{}
		for _, e := range events {
			id, n, _ := strings.Cut(e, "|")
			if n != "1" {
				r.t.Fatalf("ops log: copy job %s has %s copy events, want 1", id, n)
			}
			seen[id] = true
		}
		if len(events) == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			var missing []string
			for _, id := range r.copyJobs {
				if !seen[id] {
					missing = append(missing, id)
				}
			}
			r.t.Fatalf("ops log: no copy event for jobs %v after 2 minutes", missing)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkTicks checks every minute since the schedule began up to the last tick that had time
// to run: exactly one job with that job_timestamp, done, and exactly one row for it.
func (r *clusterRun) checkTicks(since time.Time) {
	r.t.Helper()
	first := since.UTC().Truncate(time.Minute).Add(time.Minute)
	last := time.Now().UTC().Add(-20 * time.Second).Truncate(time.Minute)
	if last.Before(first) {
		r.t.Fatalf("no tick between %s and now", since)
	}
	var ticks []time.Time
	for tk := first; !tk.After(last); tk = tk.Add(time.Minute) {
		ticks = append(ticks, tk)
	}
	var jobs []*schedulerv1.Job
	sluicetest.Eventually(r.t, 3*time.Minute, "a job for every tick", func() bool {
		jobs = r.tickJobs(first, last)
		return len(jobs) >= len(ticks)
	})
	byTick := map[int64][]string{} // by Unix time
	for _, j := range jobs {
		ts := j.GetJobTimestamp().AsTime().Unix()
		byTick[ts] = append(byTick[ts], j.GetId())
	}
	for _, tk := range ticks {
		if ids := byTick[tk.Unix()]; len(ids) != 1 {
			r.t.Errorf("tick %s has %d jobs %v, want 1", tk.Format(time.RFC3339), len(ids), ids)
			continue
		}
		// A tick whose job a fault made fail is run again by hand with its job_timestamp, as
		// a user backfills one (a failed copy leaves the target as it was).
		id := byTick[tk.Unix()][0]
		for attempt := 1; ; attempt++ {
			j := r.waitEnd(id)
			if j.GetStatus() == done {
				break
			}
			r.failedJobs = append(r.failedJobs, fmt.Sprintf("tick %s %s: %s %s", tk.Format("15:04"), id, j.GetStatus(), j.GetError().GetMessage()))
			if attempt == 3 {
				r.t.Fatalf("the copy of tick %s failed %d times", tk, attempt)
			}
			id = r.runCopy(0, &tk)
		}
	}
	if len(byTick) != len(ticks) {
		r.t.Errorf("jobs for %d ticks between %s and %s, want %d: %v", len(byTick), first, last, len(ticks), byTick)
	}
	var want []string
	for _, tk := range ticks {
		want = append(want, fmt.Sprintf("%s|%d|1", tk.UTC().Format("2006-01-02 15:04:05"), clusterEvents))
	}
	got := r.rows(fmt.Sprintf("SELECT toString(tick), sum(n), count() FROM {db}.ticks WHERE tick >= toDateTime(%d) AND tick <= toDateTime(%d) GROUP BY tick ORDER BY tick", first.Unix(), last.Unix()))
	r.checkRows("the ticks", want, got)
	r.ticksChecked = len(ticks)
}
