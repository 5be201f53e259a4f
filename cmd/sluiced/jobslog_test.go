package main_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// TestJobsLogShowsOnlyTheWorkspacesJobs: tinybird.jobs_log of a workspace holds its own jobs
// and none of another's, whatever the query tries; `sluice sql` reads it with JOBS:READ (the
// scope that lists the same jobs through the API) or DATASOURCES:READ:jobs_log, and refuses
// tokens with neither, as it reads datasources_ops_log with OPSLOG:READ.
func TestJobsLogShowsOnlyTheWorkspacesJobs(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	ctx := context.Background()
	acmeWS, rivalWS := uniqueWS("jl_acme"), uniqueWS("jl_rival")
	acme, rival := sys.CreateWorkspace(t, acmeWS), sys.CreateWorkspace(t, rivalWS)
	if _, err := acme.Catalog.Push(ctx, &catalogv1.PushRequest{Files: []*catalogv1.Datafile{{Path: "datasources/events.datasource", Content: authProject["datasources/events.datasource"]}}}); err != nil {
		t.Fatal(err)
	}
	jobs := map[string][]string{}
	for _, w := range []struct {
		ws string
		c  *sluicetest.Clients
		n  int
	}{{acmeWS, acme, 2}, {rivalWS, rival, 3}} {
		for range w.n {
			id := runNoop(t, w.c.Scheduler, w.ws, nil, 0).GetId()
			waitJob(t, w.c.Scheduler, w.ws, id, 30*time.Second, done)
			jobs[w.ws] = append(jobs[w.ws], id)
		}
		sort.Strings(jobs[w.ws])
	}
	ids := func(c *sluicetest.Clients, ws, sql string) (string, error) {
		resp, err := c.Catalog.Query(ctx, &catalogv1.QueryRequest{Workspace: ws, Sql: sql})
		var out []string
		for _, r := range resp.GetRows() {
			out = append(out, r.GetValues()[0].GetStringValue())
		}
		return strings.Join(out, " "), err
	}
	for ws, want := range jobs {
		c := acme
		if ws == rivalWS {
			c = rival
		}
		sluicetest.Eventually(t, 30*time.Second, ws+"'s jobs in tinybird.jobs_log", func() bool {
			got, err := ids(c, ws, "SELECT job_id FROM tinybird.jobs_log WHERE status = 'done' ORDER BY job_id")
			return err == nil && got == strings.Join(want, " ")
		})
	}
	// Whatever the query names, acme's view has no row of rival's: no filter, a filter on the
	// other's job ids, and the shared table behind the views.
	if got, err := ids(acme, acmeWS, "SELECT job_id FROM jobs_log WHERE job_id IN ('"+strings.Join(jobs[rivalWS], "','")+"')"); err != nil || got != "" {
		t.Errorf("rival's job ids read through acme's jobs_log: %q %v", got, err)
	}
	if got, err := ids(acme, acmeWS, "SELECT toString(count()) FROM jobs_log"); err != nil || got != "2" {
		t.Errorf("acme's jobs_log holds %s rows (%v), want 2", got, err)
	}
	for _, hostile := range []string{"SELECT job_id FROM sluice.jobs_log", "SELECT job_id FROM jobs_log WHERE workspace = '" + rivalWS + "'"} {
		if _, err := ids(acme, acmeWS, hostile); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want a refusal", hostile, err)
		}
	}

	// Tokens: JOBS:READ and DATASOURCES:READ:jobs_log read it; OPSLOG:READ reads the ops log but
	// not the jobs; a token for a Data Source reads neither.
	for _, c := range []struct {
		scope         string
		jobs, opsLogs bool
	}{
		{"JOBS:READ", true, false},
		{"DATASOURCES:READ:jobs_log", true, false},
		{"OPSLOG:READ", false, true},
		{"DATASOURCES:READ:events", false, false},
	} {
		tok := acme.WithToken(t, sys.CreateToken(t, acmeWS, "jl_"+strings.NewReplacer(":", "_").Replace(strings.ToLower(c.scope)), c.scope))
		got, err := ids(tok, acmeWS, "SELECT job_id FROM tinybird.jobs_log ORDER BY job_id")
		if c.jobs && (err != nil || got != strings.Join(jobs[acmeWS], " ")) {
			t.Errorf("jobs_log with %s: %q %v, want acme's jobs", c.scope, got, err)
		}
		if !c.jobs && (status.Code(err) != codes.PermissionDenied || got != "") {
			t.Errorf("jobs_log with %s: %q %v, want PERMISSION_DENIED", c.scope, got, err)
		}
		_, err = ids(tok, acmeWS, "SELECT event_type FROM tinybird.datasources_ops_log LIMIT 1")
		if c.opsLogs != (err == nil) || !c.opsLogs && status.Code(err) != codes.PermissionDenied {
			t.Errorf("datasources_ops_log with %s: %v", c.scope, err)
		}
	}
}
