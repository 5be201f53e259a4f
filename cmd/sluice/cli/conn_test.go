package cli

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const testService = "sluice.catalog.v1.CatalogService"

// replica serves gRPC health on a loopback socket, reporting st for testService.
func replica(t *testing.T, st healthpb.HealthCheckResponse_ServingStatus) (string, *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus(testService, st)
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), h
}

// closedAddr is a loopback address nothing listens on (a replica that was killed).
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func testEnv(t *testing.T, timeout time.Duration, addrs ...string) *Env {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	return &Env{Globals: Globals{Addr: strings.Join(addrs, ","), Timeout: timeout, Token: "t"}}
}

// A replicated service whose only live replica is not serving for a moment (waiting for NATS)
// is found once it serves, within --timeout: the CLI does not give up on the first answer.
func TestServiceConnWaitsForAServingReplica(t *testing.T) {
	dead := closedAddr(t)
	live, h := replica(t, healthpb.HealthCheckResponse_NOT_SERVING)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		h.SetServingStatus(testService, healthpb.HealthCheckResponse_SERVING)
	}()
	env := testEnv(t, time.Minute, dead, live)
	cc, err := serviceConn(context.Background(), env, testService)
	if err != nil {
		t.Fatalf("serviceConn: %v", err)
	}
	defer func() { _ = cc.Close() }()
	if cc.Target() != live {
		t.Fatalf("connected to %s, want the serving replica %s", cc.Target(), live)
	}
	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: testService})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("the returned connection: %v %v", resp, err)
	}
}

// When no replica serves within --timeout, the error names what each address said.
func TestServiceConnNamesEveryReplicaWhenNoneServes(t *testing.T) {
	dead := closedAddr(t)
	live, _ := replica(t, healthpb.HealthCheckResponse_NOT_SERVING)
	env := testEnv(t, 2*time.Second, dead, live)
	cc, err := serviceConn(context.Background(), env, testService)
	if err == nil {
		_ = cc.Close()
		t.Fatal("serviceConn found a serving replica; none serves")
	}
	msg := err.Error()
	for _, want := range []string{"no address in --addr serves " + testService, "--timeout 2s", dead + ": ", live + ": NOT_SERVING"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}
