package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
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
