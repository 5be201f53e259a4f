package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/idempotency"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
)

var retryProject = map[string]string{
	"datasources/events.datasource": "TOKEN \"reader\" READ\n\nSCHEMA >\n    id UInt64,\n    kind String\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/copied.datasource": "SCHEMA >\n    id UInt64,\n    kind String\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"id\"\n",
	"pipes/copy_all.pipe":           "NODE c\nSQL >\n    SELECT id, kind FROM events\n\nTYPE COPY\nTARGET_DATASOURCE copied\n",
}

// TestRetriedCallsRunOnce sends each kind of call that starts or changes something twice with
// one request_id, as a client retrying after a timeout does: the retry gets the first answer
// (the same secrets included) and changes nothing more; a copy runs one job and writes once.
// The same id from another token is that token's own request; the same id with another
// request is refused. The answers, secrets and all, are not readable in NATS.
func TestRetriedCallsRunOnce(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWS("retry")
	var secrets []string

	// A workspace: one admin token, the same in both answers, and it works.
	cw := &catalogv1.CreateWorkspaceRequest{Name: ws, RequestId: uuid.NewString()}
	first, err := sys.Catalog.CreateWorkspace(ctx, cw)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sys.Catalog.CreateWorkspace(ctx, cw)
	if err != nil || again.GetAdminToken() != first.GetAdminToken() || !again.GetCreated() || first.GetAdminToken() == "" {
		t.Fatalf("retried CreateWorkspace: %v (%v), first %v", again, err, first)
	}
	secrets = append(secrets, first.GetAdminToken())
	admin := sys.WithToken(t, first.GetAdminToken())
	if _, err := admin.Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{}); err != nil {
		t.Fatalf("the admin token of the retried answer: %v", err)
	}

	// A push that makes a token: the retry answers the same secret, and the token works.
	push := &catalogv1.PushRequest{RequestId: uuid.NewString()}
	for p, content := range retryProject {
		push.Files = append(push.Files, &catalogv1.Datafile{Path: p, Content: content})
	}
	p1, err := admin.Catalog.Push(ctx, push)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := admin.Catalog.Push(ctx, push)
	if err != nil || len(p1.GetNewTokens()) != 1 || len(p2.GetNewTokens()) != 1 || p2.GetNewTokens()[0].GetSecret() != p1.GetNewTokens()[0].GetSecret() || !p2.GetApplied() {
		t.Fatalf("retried push: %v (%v), first %v", p2, err, p1)
	}
	secrets = append(secrets, p1.GetNewTokens()[0].GetSecret())
	reader := sys.WithToken(t, p1.GetNewTokens()[0].GetSecret())
	if _, err := reader.Catalog.GetDataSource(ctx, &catalogv1.GetDataSourceRequest{Name: "events"}); err != nil {
		t.Fatalf("the pushed token of the retried answer: %v", err)
	}
	wsResp, err := sys.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws})
	if err != nil {
		t.Fatal(err)
	}
	db := wsResp.GetWorkspace().GetDatabase()
	if _, err := sys.App.Warehouse().Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "events")+" SELECT number, 'k' FROM numbers(1000)"); err != nil {
		t.Fatal(err)
	}

	// A copy sent twice: one job, one write.
	run := &schedulerv1.RunCopyRequest{Pipe: "copy_all", RequestId: uuid.NewString()}
	j1, err := admin.Scheduler.RunCopy(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := admin.Scheduler.RunCopy(ctx, run)
	if err != nil || j2.GetJob().GetId() != j1.GetJob().GetId() {
		t.Fatalf("retried RunCopy: job %s (%v), want the first job %s", j2.GetJob().GetId(), err, j1.GetJob().GetId())
	}
	waitJob(t, admin.Scheduler, ws, j1.GetJob().GetId(), 2*time.Minute, schedulerv1.JobStatus_JOB_STATUS_DONE)
	// A retry after the job ended still finds it, and starts nothing.
	if j3, err := admin.Scheduler.RunCopy(ctx, run); err != nil || j3.GetJob().GetId() != j1.GetJob().GetId() {
		t.Fatalf("RunCopy retried after the job ended: %v (%v)", j3, err)
	}
	copies := func() []string {
		resp, err := admin.Scheduler.ListJobs(ctx, &schedulerv1.ListJobsRequest{Kinds: []schedulerv1.JobKind{schedulerv1.JobKind_JOB_KIND_COPY}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range resp.GetJobs() {
			ids = append(ids, j.GetId())
		}
		return ids
	}
	count := func() string {
		res, err := sys.App.Warehouse().Query(ctx, "SELECT count(), sum(id) FROM "+warehouse.QualifiedName(db, "copied"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 1 {
			t.Fatalf("count: %v", res.Rows)
		}
		return fmt.Sprint(res.Rows[0]...)
	}
	if ids := copies(); len(ids) != 1 || j1.GetJob().GetRequestId() != run.GetRequestId() {
		t.Fatalf("copy jobs %v after three calls with one request id (job request id %q)", ids, j1.GetJob().GetRequestId())
	}
	if got := count(); got != "1000 499500" {
		t.Fatalf("copied after one copy sent three times: %s, want 1000 499500 (one write)", got)
	}

	// A parameter the copy node does not read is refused as UNKNOWN_PARAMETER, listing the
	// valid names (like a NOOP job's), and starts nothing.
	_, err = admin.Scheduler.RunCopy(ctx, &schedulerv1.RunCopyRequest{Pipe: "copy_all", Parameters: map[string]string{"x": "1"}})
	if info := apierr.Info(err); status.Code(err) != codes.InvalidArgument || info.GetReason() != "UNKNOWN_PARAMETER" || info.GetMetadata()["valid"] != "job_timestamp" || badField(err) != "parameters" {
		t.Fatalf("RunCopy with an unknown parameter: %v (%v), want UNKNOWN_PARAMETER on parameters listing job_timestamp", err, info)
	}
	if ids := copies(); len(ids) != 1 {
		t.Fatalf("copy jobs %v after a refused copy", ids)
	}

	// The same id with another request is refused, naming the field, and starts nothing.
	other := &schedulerv1.RunCopyRequest{Pipe: "copy_all", RequestId: run.GetRequestId(), Parameters: map[string]string{"x": "1"}}
	_, err = admin.Scheduler.RunCopy(ctx, other)
	if status.Code(err) != codes.InvalidArgument || apierr.Info(err).GetReason() != "REQUEST_ID_REUSED" || badField(err) != "request_id" {
		t.Fatalf("same request id, another request: %v", err)
	}

	// Another token of the workspace sending the same id makes a request of its own.
	runner := sys.WithToken(t, sys.CreateToken(t, ws, "runner", "PIPES:RUN:copy_all", "JOBS:READ"))
	j4, err := runner.Scheduler.RunCopy(ctx, run)
	if err != nil || j4.GetJob().GetId() == j1.GetJob().GetId() {
		t.Fatalf("the same id from another token: %v (%v), want a job of its own", j4, err)
	}
	waitJob(t, admin.Scheduler, ws, j4.GetJob().GetId(), 2*time.Minute, schedulerv1.JobStatus_JOB_STATUS_DONE)
	if ids := copies(); len(ids) != 2 {
		t.Fatalf("copy jobs %v, want 2 (one per token)", ids)
	}

	// Tokens: a retried CreateToken answers the same secret (one token); a retried RotateToken
	// the same new secret (rotated once: that secret works, the old one does not).
	ct := &catalogv1.CreateTokenRequest{Name: "dash", Scopes: []string{"JOBS:READ"}, RequestId: uuid.NewString()}
	c1, err := admin.Tokens.CreateToken(ctx, ct)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := admin.Tokens.CreateToken(ctx, ct)
	if err != nil || c2.GetIssued().GetSecret() != c1.GetIssued().GetSecret() {
		t.Fatalf("retried CreateToken: %v (%v)", c2, err)
	}
	rt := &catalogv1.RotateTokenRequest{Name: "dash", RequestId: uuid.NewString()}
	r1, err := admin.Tokens.RotateToken(ctx, rt)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := admin.Tokens.RotateToken(ctx, rt)
	if err != nil || r2.GetIssued().GetSecret() != r1.GetIssued().GetSecret() || r1.GetIssued().GetSecret() == c1.GetIssued().GetSecret() {
		t.Fatalf("retried RotateToken: %v (%v), first %v", r2, err, r1)
	}
	if _, err := sys.WithToken(t, r1.GetIssued().GetSecret()).Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{}); err != nil {
		t.Fatalf("the rotated secret: %v", err)
	}
	sluicetest.Eventually(t, 30*time.Second, "the secret before rotation refused", func() bool {
		_, err := sys.WithToken(t, c1.GetIssued().GetSecret()).Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{})
		return status.Code(err) == codes.Unauthenticated
	})
	dt := &catalogv1.DeleteTokenRequest{Name: "dash", RequestId: uuid.NewString()}
	for i := 0; i < 2; i++ {
		if _, err := admin.Tokens.DeleteToken(ctx, dt); err != nil {
			t.Fatalf("DeleteToken #%d: %v (a retry answers the first call's success)", i+1, err)
		}
	}
	secrets = append(secrets, c1.GetIssued().GetSecret(), r1.GetIssued().GetSecret())

	// What NATS keeps of all this holds none of the secrets.
	nc, err := natsx.Connect(ctx, natsx.Config{URL: sys.App.NATSURL()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	kv, err := nc.JS.KeyValue(ctx, idempotency.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 7 {
		t.Fatalf("%d request ids kept (%v), want 7 (one per request made with an id)", len(keys), err)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if e != nil && bytes.Contains(e.Value(), []byte(s)) {
				t.Fatalf("request %s keeps a token secret in the clear", k)
			}
		}
	}
}

// TestRetriedAppendsWriteOnce sends appends again with their request ids, as a client that lost
// the answers does: the rows are written once. A streamed append is the same request when its
// start is (its chunks are not read again: a retry that sends other bytes still gets the first
// answer); the same id with other rows in a unary append is refused.
func TestRetriedAppendsWriteOnce(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWS("retryingest")
	admin := sys.CreateWorkspace(t, ws)
	push := &catalogv1.PushRequest{Files: []*catalogv1.Datafile{{Path: "events.datasource", Content: retryProject["datasources/copied.datasource"]}}}
	if _, err := admin.Catalog.Push(ctx, push); err != nil {
		t.Fatal(err)
	}
	count := func() string {
		resp, err := admin.Catalog.Query(ctx, &catalogv1.QueryRequest{Sql: "SELECT count(), sum(id) FROM events"})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(resp.GetRows()[0].GetValues()[0].AsInterface(), " ", resp.GetRows()[0].GetValues()[1].AsInterface())
	}

	rows := []byte(`{"id": 1, "kind": "a"}` + "\n" + `{"id": 2, "kind": "b"}` + "\n")
	req := &ingestv1.AppendRequest{Datasource: "events", Format: ingestv1.Format_FORMAT_NDJSON, Data: rows, Wait: true, RequestId: uuid.NewString()}
	a1, err := admin.Ingest.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := admin.Ingest.Append(ctx, req)
	if err != nil || a2.GetResult().GetImportId() != a1.GetResult().GetImportId() || a2.GetResult().GetSuccessfulRows() != 2 {
		t.Fatalf("retried Append: %v (%v), first %v", a2, err, a1)
	}
	if got := count(); got != "2 3" {
		t.Fatalf("after an append sent twice: %s, want 2 3", got)
	}
	other := &ingestv1.AppendRequest{Datasource: "events", Format: ingestv1.Format_FORMAT_NDJSON, Data: []byte(`{"id": 9, "kind": "z"}` + "\n"), Wait: true, RequestId: req.GetRequestId()}
	if _, err := admin.Ingest.Append(ctx, other); apierr.Info(err).GetReason() != "REQUEST_ID_REUSED" {
		t.Fatalf("the same id with other rows: %v", err)
	}

	send := func(start *ingestv1.AppendStart, chunks ...string) (*ingestv1.AppendStreamResponse, error) {
		st, err := admin.Ingest.AppendStream(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Start{Start: start}}); err != nil {
			return st.CloseAndRecv()
		}
		for _, c := range chunks {
			if err := st.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Chunk{Chunk: []byte(c)}}); err != nil {
				return st.CloseAndRecv()
			}
		}
		return st.CloseAndRecv()
	}
	start := &ingestv1.AppendStart{Datasource: "events", Format: ingestv1.Format_FORMAT_CSV, Wait: true, FileName: "more.csv", RequestId: uuid.NewString()}
	s1, err := send(start, "10,c\n", "20,d\n30,e\n")
	if err != nil || s1.GetResult().GetSuccessfulRows() != 3 {
		t.Fatalf("streamed append: %v (%v)", s1, err)
	}
	s2, err := send(start, "999,x\n")
	if err != nil || s2.GetResult().GetImportId() != s1.GetResult().GetImportId() || s2.GetResult().GetSuccessfulRows() != 3 {
		t.Fatalf("streamed append retried: %v (%v), first %v", s2, err, s1)
	}
	if got := count(); got != "5 63" {
		t.Fatalf("after a streamed append sent twice: %s, want 5 63", got)
	}
}
