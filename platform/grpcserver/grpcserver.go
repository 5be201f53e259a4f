// Package grpcserver is the one gRPC server of a Sluice process: every service the process runs
// registers on it, with the standard health service (per service and overall) and server
// reflection.
package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Server wraps grpc.Server with health and reflection.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server

	log      *slog.Logger
	ln       net.Listener
	mu       sync.Mutex
	services []string
	done     chan struct{}
}

// New builds the server and listens on addr (host:port; port 0 picks a free one). Services
// register on s.GRPC before Serve.
func New(addr string, log *slog.Logger, tp trace.TracerProvider, prop propagation.TextMapPropagator) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpc listen %s: %w", addr, err)
	}
	g := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))),
		grpc.ChainUnaryInterceptor(recoverUnary(log)),
		grpc.ChainStreamInterceptor(recoverStream(log)),
	)
	h := health.NewServer()
	// Not serving until every module of the process has started.
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return &Server{GRPC: g, Health: h, log: log, ln: ln, done: make(chan struct{})}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddService records a service name for health reporting; it starts NOT_SERVING.
func (s *Server) AddService(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services = append(s.services, name)
	s.Health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
}

// SetServing sets one service's health.
func (s *Server) SetServing(name string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.Health.SetServingStatus(name, st)
}

// SetOverall sets the health of the empty service name, which stands for the whole process.
func (s *Server) SetOverall(serving bool) { s.SetServing("", serving) }

// Serve starts serving in the background.
func (s *Server) Serve() {
	go func() {
		defer close(s.done)
		if err := s.GRPC.Serve(s.ln); err != nil {
			s.log.Error("grpc serve", "err", err)
		}
	}()
}

// Stop marks everything NOT_SERVING, lets in-flight calls finish until ctx ends, then stops.
func (s *Server) Stop(ctx context.Context) error {
	s.Health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.GRPC.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.GRPC.Stop()
		<-stopped
	}
	select {
	case <-s.done:
	case <-time.After(time.Second):
	}
	return nil
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in grpc handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in grpc stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(srv, ss)
	}
}

// Dial opens a client connection to another Sluice service (also used in all-in-one mode,
// over loopback), with trace context propagation.
func Dial(addr string, tp trace.TracerProvider, prop propagation.TextMapPropagator) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecureCreds()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}
