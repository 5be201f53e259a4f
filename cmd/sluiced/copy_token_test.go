package main_test

import (
	"context"
	"fmt"
	"github.com/sluicehq/sluice/platform/jobs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

var tokenProject = map[string]string{
	"datasources/events.datasource": `TOKEN "dash" READ
TOKEN "ingest" APPEND

SCHEMA >
    ts DateTime,
    amount UInt64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "ts"
`,
	"datasources/hourly_sales.datasource": "SCHEMA >\n    hour DateTime,\n    total UInt64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"hour\"\n",
	"pipes/hourly.pipe": `NODE h
SQL >
    %
    SELECT toStartOfHour(ts) AS hour, sum(amount) AS total
    FROM events
    WHERE ts >= toStartOfHour(toDateTime({{DateTime(job_timestamp)}})) - interval 1 hour
        AND ts < toStartOfHour(toDateTime({{DateTime(job_timestamp)}}))
    GROUP BY hour

TYPE COPY
TARGET_DATASOURCE hourly_sales
COPY_SCHEDULE 0 * * * *
`,
	"pipes/report.pipe": "TOKEN \"dash\" READ\n\nNODE r\nSQL >\n    SELECT sum(amount) AS s FROM events\n",
}

func pushProject(t *testing.T, c *sluicetest.Clients, project map[string]string) (*catalogv1.PushResponse, error) {
	t.Helper()
	req := &catalogv1.PushRequest{}
	for p, content := range project {
		req.Files = append(req.Files, &catalogv1.Datafile{Path: p, Content: content})
	}
	return c.Catalog.Push(context.Background(), req)
}

// TestDatafileTokensAndScheduledCopyToken checks what datafile TOKEN lines do (the tokens they
// name are made once, with their secrets shown once, and grant exactly what the lines say,
// in step with the files) and that a scheduled copy runs with a token of its own: deleting it
// stops the copy's ticks, pushing again makes it anew and the copy goes on. The scheduler
// calls the catalog with the service credential, as in a real installation.
func TestDatafileTokensAndScheduledCopyToken(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-target", "catalog,opslog"}, fastJobs...)...))
	ctx := context.Background()
	now := time.Now().UTC()
	t1 := now.Truncate(time.Hour).Add(time.Hour) // the first tick after the push
	clock := &fakeClock{t: now}
	startClockExecutor(t, sys, clock, 2)
	credential, err := os.ReadFile(sys.ServiceTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	service := sys.WithToken(t, strings.TrimSpace(string(credential)))
	sch, _ := startClockSchedulerOn(t, sys, service.Conn, clock, "scheduler")

	ws := uniqueWS("dtok")
	admin := sys.CreateWorkspace(t, ws)
	resp, err := pushProject(t, admin, tokenProject)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, nt := range resp.GetNewTokens() {
		secrets[nt.GetToken().GetName()] = nt.GetSecret()
	}
	if len(secrets) != 2 || secrets["dash"] == "" || secrets["ingest"] == "" {
		t.Fatalf("push made tokens %v; want dash and ingest, with secrets (and not the scheduled copy's)", resp.GetNewTokens())
	}
	scopesOf := func() map[string][]string {
		t.Helper()
		ls, err := admin.Tokens.ListTokens(ctx, &catalogv1.ListTokensRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, tk := range ls.GetTokens() {
			out[tk.GetName()] = tk.GetScopes()
		}
		return out
	}
	want := map[string][]string{
		"admin": {"ADMIN"}, "dash": {"DATASOURCES:READ:events", "PIPES:READ:report"}, "ingest": {"DATASOURCES:APPEND:events"},
		"scheduled_copy_hourly": {"PIPES:READ:hourly"},
	}
	if got := scopesOf(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tokens after the push:\n%v\nwant\n%v", got, want)
	}
	p, err := admin.Catalog.GetPipe(ctx, &catalogv1.GetPipeRequest{Name: "hourly"})
	if err != nil || p.GetPipe().GetNodes()[0].GetCopyToken() != "scheduled_copy_hourly" {
		t.Fatalf("copy node's token: %v %v", p, err)
	}
	// Pushing the same files again makes nothing and shows no secret again.
	if again, err := pushProject(t, admin, tokenProject); err != nil || len(again.GetNewTokens()) != 0 || again.GetApplied() {
		t.Fatalf("re-push: %v %v", again, err)
	}

	// The tokens grant what the lines say, and nothing more.
	dash := admin.WithToken(t, secrets["dash"])
	ingest := admin.WithToken(t, secrets["ingest"])
	db := admin.DatabaseOf(t, ws)
	hour := func(h time.Time, total int) string {
		return fmt.Sprintf("SELECT toDateTime(%d) + number * 60, %d FROM numbers(%d)", h.Unix(), 1, total)
	}
	for i, h := range []time.Time{t1.Add(-time.Hour), t1, t1.Add(time.Hour)} {
		if _, err := sys.App.Warehouse().Exec(ctx, "INSERT INTO "+db+".events "+hour(h, 10*(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if got := queryTextIn(t, dash.Catalog, ws, "SELECT count() FROM events"); got != "60\n" {
		t.Fatalf("dash reads events: %q", got)
	}
	if got := queryTextIn(t, dash.Catalog, ws, "SELECT s FROM report"); got != "60\n" {
		t.Fatalf("dash reads report: %q", got)
	}
	for _, c := range []struct {
		who *sluicetest.Clients
		sql string
	}{{dash, "SELECT * FROM hourly_sales"}, {ingest, "SELECT count() FROM events"}, {dash, "SELECT * FROM hourly"}} {
		if _, err := c.who.Catalog.Query(ctx, &catalogv1.QueryRequest{Sql: c.sql}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", c.sql, err)
		}
	}

	tickJob := func(tick time.Time) (*schedulerv1.Job, error) {
		r, err := sch.GetJob(ctx, &schedulerv1.GetJobRequest{Workspace: ws, Id: jobs.TickID(ws, "hourly", tick, 0)})
		return r.GetJob(), err
	}
	waitTickDone := func(tick time.Time) {
		t.Helper()
		sluicetest.Eventually(t, 60*time.Second, "the job of tick "+tick.Format(time.RFC3339), func() bool {
			j, err := tickJob(tick)
			if err == nil && jobsFinal(j.GetStatus()) && j.GetStatus() != schedulerv1.JobStatus_JOB_STATUS_DONE {
				t.Fatalf("tick %s: %v", tick, j)
			}
			return err == nil && j.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_DONE
		})
	}
	target := func() string {
		return queryTextIn(t, admin.Catalog, ws, "SELECT toUnixTimestamp(hour), total FROM hourly_sales ORDER BY hour")
	}
	sluicetest.Eventually(t, 20*time.Second, "the schedule to be known", func() bool {
		s, err := sch.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: ws})
		return err == nil && len(s.GetSchedules()) == 1
	})

	// Tick 1 runs with the copy's token.
	clock.Set(t1.Add(time.Minute))
	waitTickDone(t1)
	if got, want := target(), fmt.Sprintf("%d 10\n", t1.Add(-time.Hour).Unix()); got != want {
		t.Fatalf("target after tick 1: %q, want %q", got, want)
	}

	// The copy's token is deleted (rendered ahead or not, the tick must not run).
	clock.Set(t1.Add(time.Hour - 30*time.Second))
	if _, err := admin.Tokens.DeleteToken(ctx, &catalogv1.DeleteTokenRequest{Name: "scheduled_copy_hourly"}); err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(time.Hour)
	clock.Set(t2.Add(time.Minute))
	sluicetest.Eventually(t, 30*time.Second, "tick 2 to be accounted for", func() bool {
		s, err := sch.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: ws})
		return err == nil && len(s.GetSchedules()) == 1 && !s.GetSchedules()[0].GetLastTick().AsTime().Before(t2)
	})
	if j, err := tickJob(t2); status.Code(err) != codes.NotFound {
		t.Fatalf("tick 2 ran without the copy's token: %v %v", j, err)
	}

	// Pushing again makes the token anew (its secret not shown), and the copy goes on.
	again, err := pushProject(t, admin, tokenProject)
	if err != nil || len(again.GetNewTokens()) != 0 {
		t.Fatalf("re-push after the deletion: %v %v", again, err)
	}
	if got := scopesOf(); !slices.Equal(got["scheduled_copy_hourly"], []string{"PIPES:READ:hourly"}) {
		t.Fatalf("tokens after the re-push: %v", got)
	}
	t3 := t2.Add(time.Hour)
	clock.Set(t3.Add(time.Minute))
	waitTickDone(t3)
	if got, want := target(), fmt.Sprintf("%d 10\n%d 30\n", t1.Add(-time.Hour).Unix(), t2.Unix()); got != want {
		t.Fatalf("target after tick 3: %q, want %q (hour %d, tick 2's, must be missing)", got, want, t1.Unix())
	}

	// Without TOKENS, a push may not grant anything new: refused, and nothing changes.
	deployer := admin.WithToken(t, admin.CreateToken(t, "", "deployer", "DATASOURCES:CREATE", "PIPES:CREATE"))
	before := scopesOf()
	grant := map[string]string{"pipes/report.pipe": "TOKEN \"dash\" READ\nTOKEN \"sneaky\" READ\n\nNODE r\nSQL >\n    SELECT sum(amount) AS s FROM events\n"}
	if _, err := pushProject(t, deployer, grant); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "TOKENS") {
		t.Fatalf("a push granting a new token without TOKENS: %v", err)
	}
	if got := scopesOf(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("a refused push changed the tokens: %v", got)
	}

	// Removing the TOKEN lines takes the grants away; dash, made by push, goes with them.
	trimmed := map[string]string{}
	for k, v := range tokenProject {
		trimmed[k] = strings.ReplaceAll(v, "TOKEN \"dash\" READ\n", "")
	}
	if _, err := pushProject(t, admin, trimmed); err != nil {
		t.Fatal(err)
	}
	if got := scopesOf(); got["dash"] != nil || !slices.Equal(got["ingest"], []string{"DATASOURCES:APPEND:events"}) {
		t.Fatalf("tokens after the TOKEN lines were removed: %v", got)
	}
	sluicetest.Eventually(t, 10*time.Second, "dash to be refused", func() bool {
		_, err := dash.Catalog.Query(ctx, &catalogv1.QueryRequest{Sql: "SELECT count() FROM events"})
		return status.Code(err) == codes.Unauthenticated
	})
}
