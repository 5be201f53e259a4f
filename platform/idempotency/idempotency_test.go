package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/natsx"
)

const method = "/sluice.scheduler.v1.SchedulerService/RunCopy"

func newStore(t testing.TB) (*Store, jetstream.JetStream) {
	t.Helper()
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return NewStore(nc.JS), nc.JS
}

var (
	alice = Caller{ID: "scoped/ws/tok1", Secret: []byte("sluice_tok1_secret-of-alice")}
	bob   = Caller{ID: "scoped/ws/tok2", Secret: []byte("sluice_tok2_secret-of-bob")}
)

// runs counts the calls that really ran and answers each with a job named after its run.
type runs struct{ n atomic.Int32 }

func (r *runs) call(ctx context.Context) (proto.Message, error) {
	n := r.n.Add(1)
	req, _ := FromContext(ctx)
	return &schedulerv1.RunCopyResponse{Job: &schedulerv1.Job{Id: fmt.Sprintf("job%d", n), RequestId: req.ID}}, nil
}

func copyReq(id string) *schedulerv1.RunCopyRequest {
	return &schedulerv1.RunCopyRequest{Workspace: "ws", Pipe: "daily", RequestId: id}
}

func TestRetryGetsTheFirstAnswerAndRunsNothing(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	var r runs
	id := "3f1c2b8e-5d3a-4b6e-9a0f-1c2d3e4f5a6b"
	first, err := s.Do(ctx, alice, method, copyReq(id), r.call)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		again, err := s.Do(ctx, alice, method, copyReq(id), r.call)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(first, again) {
			t.Fatalf("retry %d answered %v, want the first answer %v", i, again, first)
		}
	}
	if n := r.n.Load(); n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}
	if got := first.(*schedulerv1.RunCopyResponse).GetJob().GetRequestId(); got != id {
		t.Fatalf("the call saw request id %q, want %q", got, id)
	}

	// The same id for another request is refused, naming the field; nothing runs.
	other := copyReq(id)
	other.Pipe = "hourly"
	_, err = s.Do(ctx, alice, method, other, r.call)
	if apierr.ReasonOfError(err).String() != "ERROR_REASON_REQUEST_ID_REUSED" || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("same id, other request: %v", err)
	}
	// The same id on another method is another request id.
	if _, err := s.Do(ctx, alice, "/sluice.scheduler.v1.SchedulerService/Populate", copyReq(id), r.call); err != nil {
		t.Fatal(err)
	}
	if n := r.n.Load(); n != 2 {
		t.Fatalf("the call ran %d times, want 2 (one per method)", n)
	}
}

func TestRequestIDsBelongToTheirCaller(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	var r runs
	id := "0b9d6f3e-2a41-4c7e-8f10-5e6d7c8b9a01"
	a, err := s.Do(ctx, alice, method, copyReq(id), r.call)
	if err != nil {
		t.Fatal(err)
	}
	// Another token sending the same id (and the same request) makes a request of its own: it
	// neither gets alice's answer nor is refused as a reuse.
	b, err := s.Do(ctx, bob, method, copyReq(id), r.call)
	if err != nil {
		t.Fatal(err)
	}
	if proto.Equal(a, b) || r.n.Load() != 2 {
		t.Fatalf("bob got %v after alice's %v (%d runs): want his own answer", b, a, r.n.Load())
	}
	other := copyReq(id)
	other.Pipe = "hourly"
	if _, err := s.Do(ctx, bob, method, other, r.call); apierr.ReasonOfError(err).String() != "ERROR_REASON_REQUEST_ID_REUSED" {
		t.Fatalf("bob reusing his own id: %v", err)
	}
}

// The bucket holds no answer in the clear: a push's answer carries token secrets.
func TestStoredAnswersAreSealed(t *testing.T) {
	s, js := newStore(t)
	ctx := context.Background()
	secret := "sluice_abc_the-secret-a-push-made-0123456789"
	push := func(context.Context) (proto.Message, error) {
		return &catalogv1.PushResponse{Applied: true, NewTokens: []*catalogv1.IssuedToken{{Token: &catalogv1.Token{Name: "reader"}, Secret: secret}}}, nil
	}
	req := &catalogv1.PushRequest{Workspace: "ws", RequestId: "6a1e0c5b-7d2f-4e38-9b4a-0c1d2e3f4a5b"}
	first, err := s.Do(ctx, alice, "/sluice.catalog.v1.CatalogService/Push", req, push)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v (%v), want one", keys, err)
	}
	e, err := kv.Get(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{secret, "reader", req.GetRequestId(), string(alice.Secret), alice.ID} {
		if bytes.Contains(e.Value(), []byte(leak)) || bytes.Contains([]byte(keys[0]), []byte(leak)) {
			t.Fatalf("the bucket holds %q in the clear: %s = %s", leak, keys[0], e.Value())
		}
	}
	// The caller's retry opens it.
	again, err := s.Do(ctx, alice, "/sluice.catalog.v1.CatalogService/Push", req, func(context.Context) (proto.Message, error) {
		t.Fatal("the retry ran the push again")
		return nil, nil
	})
	if err != nil || !proto.Equal(first, again) {
		t.Fatalf("retry: %v %v, want %v", again, err, first)
	}
	// With another secret under the same caller (the token was rotated meanwhile) the answer
	// cannot be opened, and the call runs again instead of answering garbage.
	rotated := Caller{ID: alice.ID, Secret: []byte("sluice_tok1_new-secret")}
	var r runs
	if _, err := s.Do(ctx, rotated, "/sluice.catalog.v1.CatalogService/Push", req, r.call); err != nil || r.n.Load() != 1 {
		t.Fatalf("after rotation: %v, %d runs (want the call to run)", err, r.n.Load())
	}
}

func TestFailedCallReleasesItsID(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := "9c8b7a65-4321-4fed-8cba-987654321000"
	boom := errors.New("clickhouse said no")
	if _, err := s.Do(ctx, alice, method, copyReq(id), func(context.Context) (proto.Message, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("first call: %v", err)
	}
	var r runs
	if _, err := s.Do(ctx, alice, method, copyReq(id), r.call); err != nil || r.n.Load() != 1 {
		t.Fatalf("retry after a failure: %v, %d runs (want it to run)", err, r.n.Load())
	}
}

func TestRetryWhileTheFirstRunsWaitsForItsAnswer(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6"
	release := make(chan struct{})
	started := make(chan struct{})
	var r runs
	var wg sync.WaitGroup
	var first proto.Message
	wg.Add(1)
	go func() {
		defer wg.Done()
		first, _ = s.Do(ctx, alice, method, copyReq(id), func(ctx context.Context) (proto.Message, error) {
			close(started)
			<-release
			return r.call(ctx)
		})
	}()
	<-started
	answered := make(chan proto.Message, 1)
	go func() {
		m, err := s.Do(ctx, alice, method, copyReq(id), func(context.Context) (proto.Message, error) {
			t.Error("the retry ran while the first call was running")
			return nil, nil
		})
		if err != nil {
			t.Error(err)
		}
		answered <- m
	}()
	select {
	case m := <-answered:
		t.Fatalf("the retry answered %v before the first call ended", m)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	got := <-answered
	wg.Wait()
	if !proto.Equal(got, first) || r.n.Load() != 1 {
		t.Fatalf("retry answered %v, first %v, %d runs", got, first, r.n.Load())
	}
}

func TestRetryGivesUpWaitingWithRequestInProgress(t *testing.T) {
	s, _ := newStore(t)
	s.maxWait = 300 * time.Millisecond
	ctx := context.Background()
	id := "2e3f4a5b-6c7d-4e8f-9a01-b2c3d4e5f6a7"
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	go func() {
		_, _ = s.Do(ctx, alice, method, copyReq(id), func(context.Context) (proto.Message, error) {
			close(started)
			<-release
			return &schedulerv1.RunCopyResponse{}, nil
		})
	}()
	<-started
	_, err := s.Do(ctx, alice, method, copyReq(id), func(context.Context) (proto.Message, error) {
		t.Error("the retry ran while the first call was running")
		return nil, nil
	})
	e := apierr.Status(err)
	if e.Code() != codes.Aborted || apierr.Info(err).GetReason() != "REQUEST_IN_PROGRESS" || !hasRetryInfo(e) {
		t.Fatalf("retry of a running call: %v (details %v)", err, e.Details())
	}
}

func hasRetryInfo(st *status.Status) bool {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return true
		}
	}
	return false
}

// A claim left by a process that died is taken over once its lease ends, keeping the first
// call's FirstSeen (from which services derive job ids, so the retry finds the job).
func TestAbandonedClaimIsTakenOverWithItsFirstSeen(t *testing.T) {
	s, _ := newStore(t)
	s.lease = 300 * time.Millisecond
	ctx := context.Background()
	id := "3f4a5b6c-7d8e-4f90-a1b2-c3d4e5f6a7b8"
	kv, err := s.bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := recordKey(alice, method, id)
	firstSeen := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if _, err := kv.Create(ctx, sum, encode(record{Fingerprint: fingerprint(copyReq(id)), FirstSeen: firstSeen.UnixNano(), Heartbeat: firstSeen.UnixNano()})); err != nil {
		t.Fatal(err)
	}
	var seen Request
	resp, err := s.Do(ctx, alice, method, copyReq(id), func(ctx context.Context) (proto.Message, error) {
		seen, _ = FromContext(ctx)
		return &schedulerv1.RunCopyResponse{Job: &schedulerv1.Job{Id: "taken-over"}}, nil
	})
	if err != nil || resp.(*schedulerv1.RunCopyResponse).GetJob().GetId() != "taken-over" {
		t.Fatalf("take-over: %v %v", resp, err)
	}
	if !seen.FirstSeen.Equal(firstSeen) || seen.ID != id {
		t.Fatalf("the take-over ran with %+v, want the first call's FirstSeen %s", seen, firstSeen)
	}
}

func TestRequestIDMustBeAUUIDAndHaveACaller(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	var r runs
	for _, bad := range []string{"retry-1", "00000000-0000-0000-0000-000000000000", "3f1c2b8e5d3a4b6e9a0f1c2d3e4f5a6b", "'; DROP TABLE x; --"} {
		_, err := s.Do(ctx, alice, method, copyReq(bad), r.call)
		if status.Code(err) != codes.InvalidArgument || apierr.Info(err).GetReason() != "INVALID_ARGUMENT" {
			t.Errorf("request_id %q: %v", bad, err)
		}
	}
	if _, err := s.Do(ctx, Caller{}, method, copyReq("4a5b6c7d-8e9f-4a01-b2c3-d4e5f6a7b8c9"), r.call); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no caller: %v", err)
	}
	if r.n.Load() != 0 {
		t.Fatalf("%d refused calls ran", r.n.Load())
	}
	// Without a request id the call just runs, every time.
	for i := 0; i < 2; i++ {
		if _, err := s.Do(ctx, alice, method, copyReq(""), r.call); err != nil {
			t.Fatal(err)
		}
	}
	if r.n.Load() != 2 {
		t.Fatalf("%d runs without a request id, want 2", r.n.Load())
	}
}

// A call that changed something before it failed keeps its error as its answer: the retry gets
// the same error and does not run the call again (it would, say, store an append's rows twice).
func TestAppliedErrorIsTheAnswer(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
	var runs atomic.Int32
	call := func(context.Context) (proto.Message, error) {
		runs.Add(1)
		return nil, Applied(&apierr.Error{Code: codes.DeadlineExceeded, Reason: commonv1.ErrorReason_ERROR_REASON_QUERY_TIMEOUT,
			Message: "the rows are stored but were not visible in time"})
	}
	for i := 0; i < 3; i++ {
		_, err := s.Do(ctx, alice, method, copyReq(id), call)
		if status.Code(err) != codes.DeadlineExceeded || apierr.Info(err).GetReason() != "QUERY_TIMEOUT" || !strings.Contains(status.Convert(err).Message(), "not visible in time") {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}
}
