package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/auth"
)

var wsSeq atomic.Int64

// uniqueWS names a workspace uniquely in the test binary: its systems share one chDB, where a
// workspace's database is named after it.
func uniqueWS(prefix string) string { return fmt.Sprintf("%s%d", prefix, wsSeq.Add(1)) }

// authProject is what the workspace under test holds: Data Sources to read, copy into and drop,
// an on-demand and a scheduled Copy Pipe, a materialized pipe, and a pipe to drop.
var authProject = map[string]string{
	"datasources/events.datasource": `SCHEMA >
    ts DateTime,
    action String,
    amount Int64

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(ts)"
ENGINE_SORTING_KEY "ts"
`,
	"datasources/totals.datasource": "SCHEMA >\n    action String,\n    total Int64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"action\"\n",
	"datasources/agg.datasource":    "SCHEMA >\n    action String,\n    n UInt64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"action\"\n",
	"datasources/spare.datasource":  "SCHEMA >\n    x Int64\n",
	"pipes/copy_totals.pipe":        "NODE t\nSQL >\n    SELECT action, sum(amount) AS total FROM events GROUP BY action\n\nTYPE COPY\nTARGET_DATASOURCE totals\n",
	"pipes/hourly.pipe":             "NODE h\nSQL >\n    SELECT action, sum(amount) AS total FROM events GROUP BY action\n\nTYPE COPY\nTARGET_DATASOURCE totals\nCOPY_SCHEDULE 0 * * * *\n",
	"pipes/mv.pipe":                 mvPipe("m", "SELECT action, count() AS n FROM events GROUP BY action", "agg"),
	"pipes/spare_pipe.pipe":         "NODE s\nSQL >\n    SELECT 1 AS one\n",
}

// authCall calls one RPC. good is true for the call made with the right token: it acts on
// the resources kept for it (a workspace, a Data Source, a pipe, a token, a job made to be
// deleted or cancelled), while the refused calls aim at the real ones.
type authCall func(ctx context.Context, c *sluicetest.Clients, good bool) error

// authCase is one RPC of the table: the scopes of the token that must work and of one just
// short of it (none when no valid token of the workspace is short of it), and the call.
type authCase struct {
	good  []string // scopes of a token of the workspace; "operator" for the operator token
	under []string // scopes of an under-scoped token; "instance" for an instance token
	call  authCall
}

type authFixture struct {
	t *testing.T
	// ws is the workspace under test, rival another one; scratch is deleted by the good call,
	// newcomer created by it (names unique in the test binary, whose systems share chDB).
	ws, rival, scratch, newcomer string
	sys                          *sluicetest.System
	op                           *sluicetest.Clients // the operator token (rotated: the old one is revoked)
	tokens                       map[string]*sluicetest.Clients
	seq                          int
	jobID                        string // a finished job
	longJob                      string // a working job the refused calls try to cancel
	spareJob                     string // a working job the good call cancels
}

func (f *authFixture) clients(scopes ...string) *sluicetest.Clients {
	f.t.Helper()
	key := strings.Join(scopes, " ")
	if c, ok := f.tokens[key]; ok {
		return c
	}
	var c *sluicetest.Clients
	switch key {
	case "operator":
		c = f.op
	case "instance":
		c = f.op.WithToken(f.t, f.op.CreateToken(f.t, "", "prometheus", "METRICS:READ"))
	default:
		f.seq++
		c = f.op.WithToken(f.t, f.op.CreateToken(f.t, f.ws, fmt.Sprintf("t%d", f.seq), scopes...))
	}
	f.tokens[key] = c
	return c
}

// withToken returns clients carrying token text (one connection per token).
func (f *authFixture) withToken(token string) *sluicetest.Clients {
	f.t.Helper()
	key := "text:" + token
	if c, ok := f.tokens[key]; ok {
		return c
	}
	c := f.op.WithToken(f.t, token)
	f.tokens[key] = c
	return c
}

// snapshot is everything a refused call could change, read with the operator token.
func (f *authFixture) snapshot() string {
	f.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	add := func(what string, v any, err error) {
		if err != nil {
			f.t.Fatalf("snapshot %s: %v", what, err)
		}
		fmt.Fprintf(&b, "%s: %v\n", what, v)
	}
	wss, err := f.op.Catalog.ListWorkspaces(ctx, &catalogv1.ListWorkspacesRequest{})
	var names []string
	for _, w := range wss.GetWorkspaces() {
		names = append(names, w.GetName())
	}
	add("workspaces", names, err)
	for _, ws := range []string{f.ws, f.rival} {
		ds, err := f.op.Catalog.ListDataSources(ctx, &catalogv1.ListDataSourcesRequest{Workspace: ws})
		var dn []string
		for _, d := range ds.GetDatasources() {
			dn = append(dn, fmt.Sprintf("%s@%d", d.GetName(), d.GetFileVersion()))
		}
		add(ws+" data sources", dn, err)
		ps, err := f.op.Catalog.ListPipes(ctx, &catalogv1.ListPipesRequest{Workspace: ws})
		var pn []string
		for _, p := range ps.GetPipes() {
			pn = append(pn, fmt.Sprintf("%s@%d", p.GetName(), p.GetFileVersion()))
		}
		add(ws+" pipes", pn, err)
		ts, err := f.op.Tokens.ListTokens(ctx, &catalogv1.ListTokensRequest{Workspace: ws})
		var tn []string
		for _, t := range ts.GetTokens() {
			tn = append(tn, fmt.Sprintf("%s%v@%s", t.GetName(), t.GetScopes(), t.GetUpdateTime().AsTime().Format(time.RFC3339Nano)))
		}
		add(ws+" tokens", tn, err)
		js, err := f.op.Scheduler.ListJobs(ctx, &schedulerv1.ListJobsRequest{Workspace: ws, PageSize: 1000})
		var jn []string
		for _, j := range js.GetJobs() {
			if j.GetExecutionType() == schedulerv1.ExecutionType_EXECUTION_TYPE_SCHEDULED {
				continue // the hourly copy's tick may come while the test runs
			}
			st := j.GetStatus().String()
			if j.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WORKING || j.GetStatus() == schedulerv1.JobStatus_JOB_STATUS_WAITING {
				st = "live" // a waiting job may start meanwhile; cancelling is what a refused call must not do
			}
			jn = append(jn, j.GetId()+":"+st)
		}
		sort.Strings(jn)
		add(ws+" jobs", jn, err)
		lim, err := f.op.Scheduler.GetWorkspaceLimits(ctx, &schedulerv1.GetWorkspaceLimitsRequest{Workspace: ws})
		add(ws+" limits", lim.GetLimits().GetCopyConcurrency(), err)
	}
	sch, err := f.op.Scheduler.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: f.ws})
	var sn []string
	for _, s := range sch.GetSchedules() {
		sn = append(sn, fmt.Sprintf("%s paused=%v", s.GetPipe(), s.GetPaused()))
	}
	add("acme schedules", sn, err)
	for _, table := range []string{"events", "totals", "agg", "spare"} {
		add("rows of "+table, queryTextIn(f.t, f.op.Catalog, f.ws, "SELECT count() FROM "+table), nil)
	}
	ins, err := f.op.Tokens.ListTokens(ctx, &catalogv1.ListTokensRequest{})
	var in []string
	for _, t := range ins.GetTokens() {
		in = append(in, t.GetName()+"@"+t.GetUpdateTime().AsTime().Format(time.RFC3339Nano))
	}
	add("instance tokens", in, err)
	return b.String()
}

// TestEveryEndpointRefusesWrongTokens calls every RPC of every service the process serves, and
// every HTTP endpoint, with no token, a bogus token, a revoked token, another workspace's token
// and an under-scoped token: each is refused (UNAUTHENTICATED or PERMISSION_DENIED, 401 or
// 403) with nothing returned, and nothing changed (workspaces, resources, tokens, jobs,
// schedules, limits, rows); then the right token works. An RPC the process serves without a
// case here fails the test, as one without an entry in the scope table stops the server.
func TestEveryEndpointRefusesWrongTokens(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))
	ctx := context.Background()
	// The operator token is rotated: the old secret is a revoked operator token.
	revokedOperator := sys.Token
	rot, err := sys.Tokens.RotateToken(ctx, &catalogv1.RotateTokenRequest{Name: auth.OperatorTokenName})
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{t: t, sys: sys, op: sys.WithToken(t, rot.GetIssued().GetSecret()), tokens: map[string]*sluicetest.Clients{},
		ws: uniqueWS("acme"), rival: uniqueWS("rival"), scratch: uniqueWS("scratch"), newcomer: uniqueWS("newcomer")}
	if b, err := os.ReadFile(filepath.Join(sys.DataDir, "token")); err != nil || strings.TrimSpace(string(b)) != rot.GetIssued().GetSecret() {
		t.Fatalf("the operator token file does not hold the rotated token (%v)", err)
	}
	acme := f.op.CreateWorkspace(t, f.ws)
	rival := f.op.CreateWorkspace(t, f.rival)
	f.op.EnsureWorkspace(t, f.scratch)
	var files []*catalogv1.Datafile
	for p, c := range authProject {
		files = append(files, &catalogv1.Datafile{Path: p, Content: c})
	}
	if _, err := acme.Catalog.Push(ctx, &catalogv1.PushRequest{Files: files}); err != nil {
		t.Fatal(err)
	}
	if _, err := rival.Catalog.Push(ctx, &catalogv1.PushRequest{Files: []*catalogv1.Datafile{{Path: "datasources/events.datasource", Content: authProject["datasources/events.datasource"]}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.App.Warehouse().Exec(ctx, "INSERT INTO "+f.op.DatabaseOf(t, f.ws)+".events SELECT toDateTime('2024-01-01 00:00:00') + number, if(number % 2 = 0, 'buy', 'view'), number FROM numbers(10)"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"victim", "spare_token", "spare_token2"} {
		f.op.CreateToken(t, f.ws, name, "JOBS:READ")
	}
	f.jobID = runNoop(t, f.op.Scheduler, f.ws, nil, 0).GetId()
	waitJob(t, f.op.Scheduler, f.ws, f.jobID, 30*time.Second, done)
	f.longJob = runNoop(t, f.op.Scheduler, f.ws, map[string]string{"sleep": "120s"}, 0).GetId()
	f.spareJob = runNoop(t, f.op.Scheduler, f.ws, map[string]string{"sleep": "120s"}, 0).GetId()
	// The schedule of the hourly copy is known, and the push's ops events are written.
	sluicetest.Eventually(t, 30*time.Second, "the schedule and the ops events", func() bool {
		s, err := f.op.Scheduler.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: f.ws})
		e, err2 := f.op.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: f.ws}})
		return err == nil && len(s.GetSchedules()) == 1 && err2 == nil && len(e.GetEvents()) > 0
	})
	// A revoked workspace token (it held ADMIN) and a revoked instance token.
	revokedAdmin := f.op.CreateToken(t, f.ws, "gone", "ADMIN")
	revokedMetrics := f.op.CreateToken(t, "", "gone_metrics", "METRICS:READ")
	for _, n := range []struct{ ws, name string }{{f.ws, "gone"}, {"", "gone_metrics"}} {
		if _, err := f.op.Tokens.DeleteToken(ctx, &catalogv1.DeleteTokenRequest{Workspace: n.ws, Name: n.name}); err != nil {
			t.Fatal(err)
		}
	}
	sluicetest.Eventually(t, 10*time.Second, "the revoked tokens to be refused", func() bool {
		_, e1 := f.op.WithToken(t, revokedAdmin).Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{})
		_, e2 := f.op.WithToken(t, revokedOperator).Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{})
		return status.Code(e1) == codes.Unauthenticated && status.Code(e2) == codes.Unauthenticated
	})

	cases := authCases(f)
	// Every RPC the process serves has a case, or an open rule checked below.
	var open []string
	for svc, info := range sys.App.GRPCServices() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			rule, ok := auth.Rules[name]
			switch {
			case !ok:
				t.Errorf("%s is served without an entry in the scope table", name)
			case rule.Access == auth.Open:
				open = append(open, name)
			default:
				if _, ok := cases[name]; !ok {
					t.Errorf("%s has no case in TestEveryEndpointRefusesWrongTokens: add one (right token, under-scoped token, call)", name)
				}
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	bogus := "sluice_0123456789abcdef_" + strings.Repeat("A", 43)
	bad := func(c authCase) []struct {
		name, token string
		want        codes.Code
	} {
		revoked := revokedAdmin
		if c.good[0] == "operator" {
			revoked = revokedOperator
		}
		out := []struct {
			name, token string
			want        codes.Code
		}{
			{"no token", "", codes.Unauthenticated},
			{"bogus token", bogus, codes.Unauthenticated},
			{"revoked token", revoked, codes.Unauthenticated},
			{"another workspace's token", rival.Token, codes.PermissionDenied},
		}
		if c.under != nil {
			out = append(out, struct {
				name, token string
				want        codes.Code
			}{"under-scoped token " + strings.Join(c.under, ","), f.clients(c.under...).Token, codes.PermissionDenied})
		}
		return out
	}
	methods := make([]string, 0, len(cases))
	for m := range cases {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	// Another workspace's token describes itself: GetCurrentToken is about the caller.
	selfOnly := catalogv1.TokenService_GetCurrentToken_FullMethodName

	// Every token the calls use exists before the snapshot.
	for _, m := range methods {
		f.clients(cases[m].good...)
		if cases[m].under != nil {
			f.clients(cases[m].under...)
		}
	}
	f.clients("instance")
	before := f.snapshot()
	for _, m := range methods {
		c := cases[m]
		for _, b := range bad(c) {
			if m == selfOnly && b.name == "another workspace's token" {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := c.call(cctx, f.withToken(b.token), false)
			cancel()
			if status.Code(err) != b.want {
				t.Errorf("%s with %s: %v, want %s", m, b.name, err, b.want)
			}
		}
	}
	if after := f.snapshot(); after != before {
		t.Fatalf("refused calls changed something:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// HTTP: /metrics needs METRICS:READ; liveness and readiness stay open for probes.
	httpGet := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+sys.App.HTTPAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, b := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized}, {"bogus token", bogus, http.StatusUnauthorized},
		{"revoked token", revokedMetrics, http.StatusUnauthorized}, {"a workspace's admin token", acme.Token, http.StatusForbidden},
		{"another workspace's token", rival.Token, http.StatusForbidden},
	} {
		if code, body := httpGet("/metrics", b.token); code != b.want || strings.Contains(body, "go_goroutines") {
			t.Errorf("GET /metrics with %s: %d, want %d, and no metrics", b.name, code, b.want)
		}
	}
	for _, tok := range []string{f.clients("instance").Token, f.op.Token} {
		if code, body := httpGet("/metrics", tok); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("GET /metrics with a METRICS:READ token: %d", code)
		}
	}
	// The Events API: DATASOURCES:APPEND:<name>, in the workspace the token belongs to.
	rowsBefore := queryTextIn(t, f.op.Catalog, f.ws, "SELECT count() FROM events")
	row := []byte(`{"ts":"2024-03-01 00:00:00","action":"view","amount":3}` + "\n")
	for _, b := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized}, {"bogus token", bogus, http.StatusUnauthorized},
		{"revoked token", revokedAdmin, http.StatusUnauthorized}, {"another workspace's token", rival.Token, http.StatusForbidden},
		{"under-scoped token DATASOURCES:APPEND:totals", f.clients("DATASOURCES:APPEND:totals").Token, http.StatusForbidden},
		{"an instance token", f.clients("instance").Token, http.StatusForbidden},
	} {
		if r := postEvents(t, eventsAPI{sys.EventsURL, b.token}, f.ws, "events", row, "wait=true", false); r.code != b.want {
			t.Errorf("POST /v0/events with %s: %d %s, want %d", b.name, r.code, r.body, b.want)
		}
	}
	if after := queryTextIn(t, f.op.Catalog, f.ws, "SELECT count() FROM events"); after != rowsBefore {
		t.Errorf("refused Events API requests wrote rows: %s before, %s after", rowsBefore, after)
	}
	// A workspace token needs no workspace parameter.
	if r := postEvents(t, eventsAPI{sys.EventsURL, f.clients("DATASOURCES:APPEND:events").Token}, "", "events", row, "wait=true", false); r.code != http.StatusOK || r.ok.SuccessfulRows != 1 {
		t.Errorf("POST /v0/events with DATASOURCES:APPEND:events: %d %s", r.code, r.body)
	}
	for _, p := range []string{"/live", "/ready"} {
		if code, _ := httpGet(p, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200 (probes send none)", p, code)
		}
	}
	// Open RPCs: health and reflection answer without a token.
	anon := f.op.WithToken(t, "")
	for _, m := range open {
		switch m {
		case "/grpc.health.v1.Health/Check":
			if _, err := anon.Health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("health without a token: %v", err)
			}
		case "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":
			st, err := reflectionpb.NewServerReflectionClient(anon.Conn).ServerReflectionInfo(ctx)
			if err == nil {
				err = st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			}
			if err == nil {
				_, err = st.Recv()
			}
			if err != nil {
				t.Errorf("reflection without a token: %v", err)
			}
		}
	}

	// The right token works, for every RPC.
	for _, m := range methods {
		c := cases[m]
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.call(cctx, f.clients(c.good...), true)
		cancel()
		if err != nil {
			t.Errorf("%s with a token holding %v: %v", m, c.good, err)
		}
	}
	// What the good calls did, they did: the spare resources are gone, the new ones there.
	if _, err := f.op.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: f.scratch}); status.Code(err) != codes.NotFound {
		t.Errorf("workspace scratch after DeleteWorkspace: %v", err)
	}
	if _, err := f.op.Catalog.GetDataSource(ctx, &catalogv1.GetDataSourceRequest{Workspace: f.ws, Name: "intruder"}); err != nil {
		t.Errorf("the good push did not deploy: %v", err)
	}
	// The good Events API request and the two good appends (Append, AppendStream) wrote one row
	// each.
	if got := queryTextIn(t, f.op.Catalog, f.ws, "SELECT count() FROM events"); got != "13\n" {
		t.Errorf("events hold %q rows, want 10 and the good appends' 3", got)
	}
}

// TestEveryRPCHasARule enumerates the services a process registers (all of them, all-in-one)
// and checks that each method has an entry in the scope table and a row in docs/security.md,
// and that the table names no method that does not exist.
func TestEveryRPCHasARule(t *testing.T) {
	sys := sluicetest.Start(t)
	doc, err := os.ReadFile(filepath.Join(sluicetest.RepoRoot(t), "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for svc, info := range sys.App.GRPCServices() {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			served[name] = true
			if _, ok := auth.Rules[name]; !ok {
				t.Errorf("%s has no entry in the scope table (platform/auth/rules.go)", name)
			}
		}
	}
	for _, key := range auth.RuleKeys() {
		if strings.HasPrefix(key, "/") && !served[key] && !strings.Contains(key, "v1alpha") && !strings.HasSuffix(key, "Health/List") {
			t.Errorf("the scope table names %s, which no service registers", key)
		}
		if !strings.Contains(string(doc), "`"+strings.TrimPrefix(key, "/")+"`") {
			t.Errorf("docs/security.md has no row for %s", key)
		}
	}
}

// TestRevokedTokenEndsItsStream follows the ops log with a token, deletes the token, and checks
// that the stream ends UNAUTHENTICATED: a revoked token stops working also for calls it
// already opened.
func TestRevokedTokenEndsItsStream(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWS("tail")
	sys.EnsureWorkspace(t, ws)
	follower := sys.WithToken(t, sys.CreateToken(t, ws, "follower", "OPSLOG:READ"))
	stream, err := follower.OpsLog.TailEvents(ctx, &opslogv1.TailEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Tokens.DeleteToken(ctx, &catalogv1.DeleteTokenRequest{Workspace: ws, Name: "follower"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("stream ended with %v, want UNAUTHENTICATED naming the revocation", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream of a deleted token still runs after 20s")
	}
	if _, err := follower.OpsLog.QueryEvents(ctx, &opslogv1.QueryEventsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a new call with the deleted token: %v", err)
	}
}
