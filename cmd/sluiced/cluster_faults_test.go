package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog"
	"github.com/sluicehq/sluice/services/scheduler"
)

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
