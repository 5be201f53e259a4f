package grpcserver

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natsx"
)

type unlisted interface{ Extra() }

type unlistedServer struct{}

func (unlistedServer) Extra() {}

// TestServeRefusesAnRPCWithoutARule registers a service whose method is not in the scope
// table: the server must refuse to serve, naming it, rather than run an RPC nobody decided
// the access of.
func TestServeRefusesAnRPCWithoutARule(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	v, err := auth.NewVerifier(auth.Config{MaxStaleness: time.Minute}, nc, "", log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Addr: "127.0.0.1:0", Log: log, Tracer: noop.NewTracerProvider(), Propagator: propagation.TraceContext{}, Gate: auth.NewGate(v, log)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	if err := s.gate.CheckServices(s.GRPC.GetServiceInfo()); err != nil {
		t.Fatalf("health and reflection alone: %v", err)
	}
	s.GRPC.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Unlisted", HandlerType: (*unlisted)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Extra", Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) { return nil, nil }}},
	}, unlistedServer{})
	err = s.Serve()
	if err == nil || !strings.Contains(err.Error(), "/test.Unlisted/Extra") || !strings.Contains(err.Error(), "rules.go") {
		t.Fatalf("Serve with an unlisted RPC: %v", err)
	}
	if _, err := New(Options{Addr: "127.0.0.1:0", Log: log}); err == nil {
		t.Fatal("a server without an auth gate was built")
	}
}
