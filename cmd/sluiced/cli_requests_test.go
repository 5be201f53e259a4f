package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// rawCodec passes messages through as bytes (a proxy has no need to decode them).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// lossyProxy forwards unary calls to a real sluiced, and loses the answer of the first call of
// one method: the server does the work, the client sees UNAVAILABLE, as when a connection
// drops after the request was sent. It records every request of that method it forwarded.
type lossyProxy struct {
	addr   string
	method string
	mu     sync.Mutex
	seen   [][]byte
}

func startLossyProxy(t *testing.T, target, method string) *lossyProxy {
	t.Helper()
	up, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	p := &lossyProxy{method: method}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		full, _ := grpc.MethodFromServerStream(ss)
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		ctx := metadata.NewOutgoingContext(ss.Context(), metadata.MD{"authorization": md.Get("authorization")})
		var resp []byte
		err := up.Invoke(ctx, full, &req, &resp, grpc.ForceCodec(rawCodec{}))
		if full == p.method {
			p.mu.Lock()
			p.seen = append(p.seen, req)
			first := len(p.seen) == 1
			p.mu.Unlock()
			if first {
				return status.Error(codes.Unavailable, "connection lost (the test's proxy dropped the answer)")
			}
		}
		if err != nil {
			return err
		}
		return ss.SendMsg(&resp)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	p.addr = ln.Addr().String()
	return p
}

var uuidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)

// TestCLIRetriesWithItsRequestID: the CLI sends every command that starts or changes something
// with a request id it makes (or --request-id), and when the answer is lost it sends the same
// request again: the copy whose answer was dropped runs once. Running a command again with
// --request-id answers what the first run did (the same job, the same pushed secrets); a bad id
// is refused naming the field; and when the server cannot be reached the error gives the id to
// retry with.
func TestCLIRetriesWithItsRequestID(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWS("clireq")
	admin := sys.CreateWorkspace(t, ws)
	env := []string{"SLUICE_ADDR=" + sys.Addr, "SLUICE_TOKEN=" + admin.Token}
	dir := writeProject(t, retryProject)

	// push --request-id, twice: the second run answers the first (the same new token secret).
	pushID := "5b0e7c1d-2f3a-4b5c-8d6e-7f8091a2b3c4"
	out1, stderr, code := runCLI(t, env, "", "push", dir, "--request-id", pushID)
	if code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out1, stderr)
	}
	out2, stderr, code := runCLI(t, env, "", "push", dir, "--request-id", pushID)
	if code != 0 || out2 != out1 || !strings.Contains(out1, `new token "reader"`) {
		t.Fatalf("push run again with its request id: exit %d\n%s%s\nwant the first answer:\n%s", code, out2, stderr, out1)
	}
	w, err := sys.Catalog.GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws})
	if err != nil {
		t.Fatal(err)
	}
	db := w.GetWorkspace().GetDatabase()
	if _, err := sys.App.Warehouse().Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, "events")+" SELECT number, 'k' FROM numbers(100)"); err != nil {
		t.Fatal(err)
	}

	// The answer of the first RunCopy is lost: the CLI sends the same request again, and the
	// copy runs once.
	proxy := startLossyProxy(t, sys.Addr, schedulerv1.SchedulerService_RunCopy_FullMethodName)
	viaProxy := []string{"SLUICE_ADDR=" + proxy.addr, "SLUICE_TOKEN=" + admin.Token}
	out, stderr, code := runCLI(t, viaProxy, "", "pipe", "copy", "run", "copy_all")
	if code != 0 {
		t.Fatalf("copy through a connection that lost the answer: exit %d\n%s%s", code, out, stderr)
	}
	waitJob(t, admin.Scheduler, ws, strings.TrimSpace(out), 2*time.Minute, schedulerv1.JobStatus_JOB_STATUS_DONE)
	proxy.mu.Lock()
	seen := proxy.seen
	proxy.mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the proxy forwarded %d RunCopy requests, want 2 (the lost one and the retry)", len(seen))
	}
	var sent [2]*schedulerv1.RunCopyRequest
	for i, b := range seen {
		sent[i] = &schedulerv1.RunCopyRequest{}
		if err := proto.Unmarshal(b, sent[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !uuidPattern.MatchString(sent[0].GetRequestId()) || sent[1].GetRequestId() != sent[0].GetRequestId() {
		t.Fatalf("request ids %q then %q: want one UUID, sent again", sent[0].GetRequestId(), sent[1].GetRequestId())
	}
	jobs, err := admin.Scheduler.ListJobs(ctx, &schedulerv1.ListJobsRequest{Kinds: []schedulerv1.JobKind{schedulerv1.JobKind_JOB_KIND_COPY}})
	if err != nil || len(jobs.GetJobs()) != 1 || jobs.GetJobs()[0].GetRequestId() != sent[0].GetRequestId() {
		t.Fatalf("copy jobs %v (%v): want one, with the CLI's request id", jobs.GetJobs(), err)
	}
	res, err := sys.App.Warehouse().Query(ctx, "SELECT count() FROM "+warehouse.QualifiedName(db, "copied"))
	if err != nil || len(res.Rows) != 1 || fmt.Sprint(res.Rows[0][0]) != "100" {
		t.Fatalf("copied rows %v (%v), want 100: one write", res, err)
	}
	// The same id given by hand answers the same job, and starts nothing.
	again, stderr, code := runCLI(t, env, "", "pipe", "copy", "run", "copy_all", "--request-id", sent[0].GetRequestId())
	if code != 0 || strings.TrimSpace(again) != jobs.GetJobs()[0].GetId() {
		t.Fatalf("copy run with the first request id: exit %d, %q %s; want job %s", code, again, stderr, jobs.GetJobs()[0].GetId())
	}

	// A malformed id is refused, naming the field.
	if out, stderr, code := runCLI(t, env, "", "pipe", "copy", "run", "copy_all", "--request-id", "again-please"); code != 1 || !strings.Contains(stderr, "request_id") || !strings.Contains(stderr, "UUID") {
		t.Fatalf("--request-id again-please: exit %d\n%s%s", code, out, stderr)
	}
	// Nobody listening: after its retries, the CLI says which id to run the command again with.
	closed := sluicetest.FreeAddr(t)
	_, stderr, code = runCLI(t, []string{"SLUICE_ADDR=" + closed, "SLUICE_TOKEN=" + admin.Token}, "", "job", "cancel", "0123", "--timeout", "2s")
	m := uuidPattern.FindString(stderr)
	if code != 1 || m == "" || !strings.Contains(stderr, "--request-id "+m) {
		t.Fatalf("cancel with no server: exit %d, stderr %q; want the request id to retry with", code, stderr)
	}
}

// TestCLIListsPage: `job ls` and `ops-log` read as many pages as --limit asks, say how to go
// on (--page-token; JSON: next_page_token), and going on shows the rest once each; the
// listings without --limit (datasource ls) show everything, however many pages it takes.
func TestCLIListsPage(t *testing.T) {
	sys := sluicetest.Start(t)
	ctx := context.Background()
	ws := uniqueWS("clipage")
	admin := sys.CreateWorkspace(t, ws)
	env := []string{"SLUICE_ADDR=" + sys.Addr, "SLUICE_TOKEN=" + admin.Token}
	want := map[string]bool{}
	for range 12 {
		resp, err := admin.Scheduler.RunNoopJob(ctx, &schedulerv1.RunNoopJobRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want[resp.GetJob().GetId()] = true
	}
	type jobsJSON struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
		Next string `json:"next_page_token"`
	}
	seen := map[string]int{}
	token := ""
	for page := 0; ; page++ {
		args := []string{"job", "ls", "--limit", "5", "--output", "json"}
		if token != "" {
			args = append(args, "--page-token", token)
		}
		out, stderr, code := runCLI(t, env, "", args...)
		if code != 0 {
			t.Fatalf("job ls page %d: exit %d\n%s%s", page, code, out, stderr)
		}
		var got jobsJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("job ls: %v\n%s", err, out)
		}
		if n := len(got.Jobs); n != min(5, 12-5*page) {
			t.Fatalf("page %d holds %d jobs", page, n)
		}
		for _, j := range got.Jobs {
			seen[j.ID]++
		}
		if token = got.Next; token == "" {
			break
		}
	}
	if len(seen) != 12 {
		t.Fatalf("paged %d jobs, want 12", len(seen))
	}
	for id, n := range seen {
		if n != 1 || !want[id] {
			t.Fatalf("job %s seen %d times (one of ours: %v)", id, n, want[id])
		}
	}
	// Text: the hint names the token, and --limit 0 lists every job.
	out, stderr, code := runCLI(t, env, "", "job", "ls", "--limit", "3")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(stderr, "more jobs: run again with --page-token ") {
		t.Fatalf("job ls --limit 3: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runCLI(t, env, "", "job", "ls", "--limit", "0"); code != 0 || strings.Count(out, "\n") != 13 || stderr != "" {
		t.Fatalf("job ls --limit 0: exit %d\n%s%s", code, out, stderr)
	}

	// More Data Sources than one page holds: datasource ls shows them all.
	push := &catalogv1.PushRequest{}
	for i := range 105 {
		push.Files = append(push.Files, &catalogv1.Datafile{Path: fmt.Sprintf("datasources/ds_%03d.datasource", i), Content: "SCHEMA >\n    x Int64\n"})
	}
	if _, err := admin.Catalog.Push(ctx, push); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := runCLI(t, env, "", "datasource", "ls"); code != 0 || strings.Count(out, "\nds_") != 105 {
		t.Fatalf("datasource ls of 105: exit %d, %d rows\n%s", code, strings.Count(out, "\nds_"), stderr)
	}

	// The ops log: the 105 creations, 40 a listing, going on from each one's token (which
	// carries the listing's --since) until none is left.
	sluicetest.Eventually(t, time.Minute, "105 create events", func() bool {
		out, _, code := runCLI(t, env, "", "ops-log", "--event-type", "create", "--limit", "1000", "--output", "json")
		var got struct {
			Events []json.RawMessage `json:"events"`
		}
		return code == 0 && json.Unmarshal([]byte(out), &got) == nil && len(got.Events) == 105
	})
	events := map[string]int{}
	args := []string{"ops-log", "--event-type", "create", "--limit", "40", "--since", "1h"}
	for listing := 0; ; listing++ {
		out, stderr, code := runCLI(t, env, "", args...)
		if code != 0 {
			t.Fatalf("ops-log listing %d: exit %d\n%s%s", listing, code, out, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			events[strings.Fields(line)[3]]++ // the Data Source of a create event
		}
		_, more, ok := strings.Cut(strings.TrimSpace(stderr), "more events: run again with ")
		if !ok {
			break
		}
		args = append([]string{"ops-log", "--event-type", "create", "--limit", "40"}, strings.Fields(more)...)
	}
	if len(events) != 105 {
		t.Fatalf("%d Data Sources in the paged ops log, want 105", len(events))
	}
	for ds, n := range events {
		if n != 1 {
			t.Fatalf("%s created %d times in the listing", ds, n)
		}
	}
}
