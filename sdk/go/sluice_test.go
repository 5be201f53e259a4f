package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	sluice "github.com/sluicehq/sluice/sdk/go"
)

// workspace creates a workspace with the operator token and returns a client that carries its
// admin token (and names no workspace: the token's is used).
func workspace(t *testing.T, ctx context.Context, addr, operatorToken, name string) *sluice.Client {
	t.Helper()
	op, err := sluice.Dial(addr, sluice.WithToken(operatorToken))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = op.Close() }()
	ws, err := op.CreateWorkspace(ctx, name)
	if err != nil || ws.GetAdminToken() == "" || !ws.GetCreated() {
		t.Fatalf("create workspace %s: %v (%v)", name, ws, err)
	}
	c, err := sluice.Dial(addr, sluice.WithToken(ws.GetAdminToken()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestAgainstServer runs what programs do with the SDK against one real sluiced.
func TestAgainstServer(t *testing.T) {
	addr, operator := startServer(t)
	t.Run("WholeFlow", func(t *testing.T) { wholeFlow(t, addr, operator) })
	t.Run("Tokens", func(t *testing.T) { tokens(t, addr, operator) })
	t.Run("Quickstart", func(t *testing.T) { quickstart(t, addr, operator) })
	t.Run("Ingest", func(t *testing.T) { ingest(t, addr, operator) })
}

// ingest appends rows (the call sent twice with one request id: written once), streams a file,
// replaces the content with another, and reads a malformed request's refusal.
func ingest(t *testing.T, addr, operator string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := workspace(t, ctx, addr, operator, "sdk_go_ingest")
	if _, err := c.PushDir(ctx, "../testdata/project", sluice.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	rows := []byte("{\"id\": 1, \"kind\": \"a\", \"ts\": \"2024-01-01 00:00:00\"}\n{\"id\": 2, \"kind\": \"b\", \"ts\": \"2024-01-01 00:00:01\"}\n")
	res, err := c.Append(ctx, "events", rows, sluice.AppendOptions{})
	if err != nil || res.GetSuccessfulRows() != 2 || res.GetImportId() == "" {
		t.Fatalf("append: %v (%v)", res, err)
	}
	// The same request sent twice, as the SDK's retries send it: the rows once.
	req := &ingestv1.AppendRequest{Datasource: "events", Data: []byte("{\"id\": 3, \"kind\": \"a\", \"ts\": \"2024-01-01 00:00:02\"}\n"), Wait: true, RequestId: sluice.NewRequestID()}
	for i := 0; i < 2; i++ {
		if _, err := c.Ingest.Append(ctx, req); err != nil {
			t.Fatalf("append #%d: %v", i+1, err)
		}
	}
	if got := scalar(t, c, ctx, "SELECT count(), sum(id) FROM events"); got != "3|6" {
		t.Fatalf("events after two appends, one sent twice: %s, want 3|6", got)
	}
	if got := scalar(t, c, ctx, "SELECT sum(n) FROM by_kind"); got != "3" {
		t.Fatalf("by_kind after the appends: %s, want 3 (the view sees each row once)", got)
	}

	file := filepath.Join(t.TempDir(), "more.csv")
	if err := os.WriteFile(file, []byte("id,kind,ts\n10,b,2024-01-02 00:00:00\n11,b,2024-01-02 00:00:01\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = c.AppendFile(ctx, "events", file, false, sluice.AppendOptions{})
	if err != nil || res.GetSuccessfulRows() != 2 {
		t.Fatalf("append file: %v (%v)", res, err)
	}
	if got := scalar(t, c, ctx, "SELECT count(), sum(id) FROM events"); got != "5|27" {
		t.Fatalf("events after the file: %s, want 5|27", got)
	}
	res, err = c.AppendFile(ctx, "events", file, true, sluice.AppendOptions{})
	if err != nil || res.GetSuccessfulRows() != 2 {
		t.Fatalf("replace with the file: %v (%v)", res, err)
	}
	if got := scalar(t, c, ctx, "SELECT count(), sum(id) FROM events"); got != "2|21" {
		t.Fatalf("events after the replace: %s, want 2|21", got)
	}

	_, err = c.Append(ctx, "events", []byte("{\"id\": 20, \"kind\": \"a\"}\n{\"id\": \n"), sluice.AppendOptions{})
	e := sluice.AsError(err)
	if e == nil || e.Reason != "INVALID_ARGUMENT" || len(e.Fields) != 1 || e.Fields[0].GetField() != "data" || !strings.Contains(e.Fields[0].GetDescription(), "line 2") {
		t.Fatalf("malformed rows: %v", err)
	}
	if _, err := c.Append(ctx, "nosuch", rows, sluice.AppendOptions{}); sluice.AsError(err).Resource.GetResourceName() != "nosuch" {
		t.Fatalf("append to a missing Data Source: %v", err)
	}
	if got := scalar(t, c, ctx, "SELECT count() FROM events"); got != "2" {
		t.Fatalf("events after refused appends: %s, want 2", got)
	}
}

// quickstart runs the README's program (examples/quickstart) as a user would, with the admin
// token of a new workspace in SLUICE_TOKEN.
func quickstart(t *testing.T, addr, operator string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	op, err := sluice.Dial(addr, sluice.WithToken(operator))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = op.Close() }()
	ws, err := op.CreateWorkspace(ctx, "sdk_go_quickstart")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "run", "./examples/quickstart", "../testdata/project", "seed")
	cmd.Env = append(os.Environ(), "SLUICE_ADDR="+addr, "SLUICE_TOKEN="+ws.GetAdminToken())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	// The job's states, the rows, then the latest events (as many as the ops log holds yet:
	// events are written moments after the operations).
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	copied := slices.Index(lines, "copied 100 rows")
	if copied < 1 || !strings.HasSuffix(lines[copied-1], ": JOB_STATUS_DONE, 1/1 steps") {
		t.Fatalf("quickstart printed:\n%s", out)
	}
	event := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} EVENT_TYPE_[A-Z_]+ \w* RESULT_[A-Z]+$`)
	for _, l := range lines[copied+1:] {
		if !event.MatchString(l) {
			t.Fatalf("quickstart printed %q as an event:\n%s", l, out)
		}
	}
}

// wholeFlow: push a folder, copy with progress (retried with the same request id: one job, one
// write), populate, page through the ops log, and read the diagnostics of a refused push.
func wholeFlow(t *testing.T, addr, operator string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := workspace(t, ctx, addr, operator, "sdk_go")
	// Without a token nothing is served.
	anon, err := sluice.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = anon.Close() }()
	if _, err := anon.Query(ctx, "SELECT 1"); sluice.AsError(err).Reason != "UNAUTHENTICATED" {
		t.Fatalf("a call without a token: %v", err)
	}

	push, err := c.PushDir(ctx, "../testdata/project", sluice.PushOptions{})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if !push.GetApplied() || len(push.GetActions()) != 4 {
		t.Fatalf("push applied=%v actions=%v", push.GetApplied(), push.GetActions())
	}

	// The copy, then the same request again as a client retrying after a timeout would.
	req := &schedulerv1.RunCopyRequest{Pipe: "seed", Parameters: map[string]string{"rows": "100"}, RequestId: sluice.NewRequestID()}
	job, err := c.RunCopy(ctx, req)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	again, err := c.RunCopy(ctx, req)
	if err != nil || again.GetId() != job.GetId() {
		t.Fatalf("retried copy: job %s (%v), want the first job %s", again.GetId(), err, job.GetId())
	}
	var states []schedulerv1.JobStatus
	done, err := c.Wait(ctx, job, func(j *schedulerv1.Job) { states = append(states, j.GetStatus()) })
	if err != nil {
		t.Fatalf("copy job: %v", err)
	}
	if len(states) == 0 || states[len(states)-1] != schedulerv1.JobStatus_JOB_STATUS_DONE || done.GetProgress().GetStepsDone() != 1 {
		t.Fatalf("copy progress %v, final %v", states, done)
	}
	n := 0
	for j, err := range c.Jobs(ctx, &schedulerv1.ListJobsRequest{Kinds: []schedulerv1.JobKind{schedulerv1.JobKind_JOB_KIND_COPY}, PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if j.GetRequestId() != req.GetRequestId() {
			t.Errorf("copy job %s has request id %q, want %q", j.GetId(), j.GetRequestId(), req.GetRequestId())
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d copy jobs, want 1", n)
	}
	if got := scalar(t, c, ctx, "SELECT count(), sum(id) FROM events"); got != "100|4950" {
		t.Fatalf("events after one copy retried once = %s, want 100|4950 (one write)", got)
	}
	if got := scalar(t, c, ctx, "SELECT sum(n) FROM by_kind"); got != "100" {
		t.Fatalf("by_kind after the copy = %s, want 100", got)
	}

	// A populate with truncate recomputes the view's target from the source.
	pop, err := c.Populate(ctx, &schedulerv1.PopulateRequest{Pipe: "by_kind_mv", Options: &schedulerv1.PopulateOptions{Truncate: true}})
	if err != nil {
		t.Fatalf("populate: %v", err)
	}
	if _, err := c.Wait(ctx, pop, nil); err != nil {
		t.Fatalf("populate job: %v", err)
	}
	if got := scalar(t, c, ctx, "SELECT kind, sum(n) FROM by_kind GROUP BY kind ORDER BY kind"); got != "a|50" {
		t.Fatalf("by_kind after populate = %s", got)
	}

	// The ops log, two events a page: every event once, newest first.
	var events []*opslogv1.OpsEvent
	deadline := time.Now().Add(time.Minute)
	for {
		events = events[:0]
		all := &opslogv1.QueryEventsRequest{PageSize: 1000}
		for ev, err := range c.Events(ctx, all) {
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		if hasEvent(events, opslogv1.EventType_EVENT_TYPE_COPY) && hasEvent(events, opslogv1.EventType_EVENT_TYPE_POPULATEVIEW) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := map[string]bool{}
	var prev time.Time
	for ev, err := range c.Events(ctx, &opslogv1.QueryEventsRequest{PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[ev.GetId()] {
			t.Fatalf("event %s twice", ev.GetId())
		}
		ts := ev.GetTimestamp().AsTime()
		if !prev.IsZero() && ts.After(prev) {
			t.Fatalf("event %s at %s after a newer one", ev.GetId(), ts)
		}
		seen[ev.GetId()], prev = true, ts
	}
	if len(seen) != len(events) || len(events) < 3 {
		t.Fatalf("paged %d events, one page held %d", len(seen), len(events))
	}

	// A refused push: each problem with its place and code, nothing changed.
	_, err = c.PushDir(ctx, "../testdata/invalid", sluice.PushOptions{})
	var e *sluice.Error
	if !errors.As(err, &e) || e.Reason != "INVALID_DATAFILE" || len(e.Diagnostics) == 0 {
		t.Fatalf("invalid push: %v", err)
	}
	d := e.Diagnostics[0]
	if d.GetPosition().GetFile() != "broken.pipe" || d.GetPosition().GetLine() < 1 || d.GetPosition().GetColumn() < 1 ||
		d.GetCode() == commonv1.DiagnosticCode_DIAGNOSTIC_CODE_UNSPECIFIED {
		t.Fatalf("diagnostic %v", d)
	}
	if _, err := c.Catalog.GetPipe(ctx, &catalogv1.GetPipeRequest{Workspace: "sdk_go", Name: "broken"}); sluice.AsError(err).Reason != "NOT_FOUND" {
		t.Fatalf("the refused pipe: %v", err)
	}
	// An undefined enum value is refused with the valid ones.
	_, err = c.RunCopy(ctx, &schedulerv1.RunCopyRequest{Pipe: "seed", Mode: commonv1.CopyMode(99)})
	if e := sluice.AsError(err); e == nil || e.Reason != "INVALID_ARGUMENT" || len(e.Fields) != 1 || e.Fields[0].GetField() != "mode" {
		t.Fatalf("mode 99: %v", err)
	}
}

// tokens: create a token (the call retried with its request id: one token, one secret), use
// it, rotate it (retried: rotated once; the old secret stops working), list, and revoke it.
func tokens(t *testing.T, addr, operator string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := workspace(t, ctx, addr, operator, "sdk_go_tokens")
	if _, err := admin.PushDir(ctx, "../testdata/project", sluice.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	issued, err := admin.CreateToken(ctx, "dashboard", []string{"JOBS:READ", "DATASOURCES:READ:events"}, "reads events")
	if err != nil {
		t.Fatal(err)
	}
	// The same request sent again, as the SDK's retries send it: the same secret, one token.
	again, err := admin.Tokens.CreateToken(ctx, &catalogv1.CreateTokenRequest{Name: "dashboard", Scopes: []string{"JOBS:READ", "DATASOURCES:READ:events"}, Description: "reads events", RequestId: "6f1d2c3b-4a59-4e7f-8a1b-2c3d4e5f6a7b"})
	if sluice.AsError(err).Reason != "ALREADY_EXISTS" || sluice.AsError(err).Resource.GetResourceName() != "dashboard" {
		t.Fatalf("a second CreateToken with another request id: %v %v", again, err)
	}
	retried := &catalogv1.CreateTokenRequest{Name: "kiosk", Scopes: []string{"JOBS:READ"}, RequestId: sluice.NewRequestID()}
	k1, err := admin.Tokens.CreateToken(ctx, retried)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := admin.Tokens.CreateToken(ctx, retried)
	if err != nil || k2.GetIssued().GetSecret() != k1.GetIssued().GetSecret() {
		t.Fatalf("CreateToken retried with its request id: %v (%v), want the first secret", k2, err)
	}

	dash, err := sluice.Dial(addr, sluice.WithToken(issued.GetSecret()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dash.Close() }()
	me, err := dash.CurrentToken(ctx)
	if err != nil || me.GetName() != "dashboard" || me.GetWorkspace() != "sdk_go_tokens" || len(me.GetScopes()) != 2 {
		t.Fatalf("current token: %v (%v)", me, err)
	}
	if got := scalar(t, dash, ctx, "SELECT count() FROM events"); got != "0" {
		t.Fatalf("the token reads events: %s", got)
	}
	if _, err := dash.Query(ctx, "SELECT count() FROM by_kind"); sluice.AsError(err).Reason != "PERMISSION_DENIED" {
		t.Fatalf("the token read a Data Source it was not given: %v", err)
	}

	rotated, err := admin.RotateToken(ctx, "dashboard")
	if err != nil || rotated.GetSecret() == issued.GetSecret() {
		t.Fatalf("rotate: %v (%v)", rotated, err)
	}
	rr := &catalogv1.RotateTokenRequest{Name: "kiosk", RequestId: sluice.NewRequestID()}
	r1, err := admin.Tokens.RotateToken(ctx, rr)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := admin.Tokens.RotateToken(ctx, rr)
	if err != nil || r2.GetIssued().GetSecret() != r1.GetIssued().GetSecret() {
		t.Fatalf("RotateToken retried with its request id: %v (%v), want the first new secret", r2, err)
	}
	waitRefused(t, ctx, addr, issued.GetSecret())
	fresh, err := sluice.Dial(addr, sluice.WithToken(rotated.GetSecret()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fresh.Close() }()
	if _, err := fresh.CurrentToken(ctx); err != nil {
		t.Fatalf("the rotated secret: %v", err)
	}

	var names []string
	for tok, err := range admin.ListTokens(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.GetName())
	}
	if fmt.Sprint(names) != "[admin dashboard kiosk]" {
		t.Fatalf("tokens %v", names)
	}
	if err := admin.RevokeToken(ctx, "dashboard"); err != nil {
		t.Fatal(err)
	}
	waitRefused(t, ctx, addr, rotated.GetSecret())
	if err := admin.RevokeToken(ctx, "dashboard"); sluice.AsError(err).Reason != "NOT_FOUND" {
		t.Fatalf("revoking it again: %v", err)
	}
}

// waitRefused waits until secret is refused (a rotated or revoked secret stops working within
// moments in every process).
func waitRefused(t *testing.T, ctx context.Context, addr, secret string) {
	t.Helper()
	c, err := sluice.Dial(addr, sluice.WithToken(secret), sluice.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.CurrentToken(ctx)
		if e := sluice.AsError(err); e != nil && e.Reason == "UNAUTHENTICATED" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("secret still accepted 30s after rotation or revocation: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasEvent(evs []*opslogv1.OpsEvent, t opslogv1.EventType) bool {
	for _, ev := range evs {
		if ev.GetEventType() == t {
			return true
		}
	}
	return false
}

// scalar runs a query and joins its first row's values with "|".
func scalar(t *testing.T, c *sluice.Client, ctx context.Context, sql string) string {
	t.Helper()
	resp, err := c.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(resp.GetRows()) == 0 {
		return ""
	}
	out := ""
	for i, v := range resp.GetRows()[0].GetValues() {
		if i > 0 {
			out += "|"
		}
		out += fmt.Sprint(v.AsInterface())
	}
	return out
}
