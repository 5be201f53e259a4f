// Package grpcserver is the one gRPC server of a Sluice process: every service the process runs
// registers on it, with the standard health service (per service and overall) and server
// reflection (with the API's comments). Every call goes through the auth gate (platform/auth);
// the listener speaks TLS when configured.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/idempotency"
)

// Server wraps grpc.Server with health and reflection.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server

	log      *slog.Logger
	gate     *auth.Gate
	ln       net.Listener
	mu       sync.Mutex
	services []string
	waiting  map[string]string // service → why it takes no calls yet
	done     chan struct{}
	requests atomic.Pointer[idempotency.Store]
}

// Options configure the server.
type Options struct {
	// Addr is host:port; port 0 picks a free one.
	Addr       string
	Log        *slog.Logger
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// Gate checks every call's token against the scope table. Required: there is no
	// unauthenticated mode.
	Gate *auth.Gate
	// TLS, when set, makes the listener speak TLS only.
	TLS *tls.Config
}

// New builds the server and listens. Services register on s.GRPC before Serve.
func New(o Options) (*Server, error) {
	if o.Gate == nil {
		return nil, errors.New("grpc server: no auth gate")
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("grpc listen %s: %w", o.Addr, err)
	}
	s := &Server{log: o.Log, gate: o.Gate, ln: ln, done: make(chan struct{}), waiting: map[string]string{}}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.Tracer), otelgrpc.WithPropagators(o.Propagator))),
		// Recovery first, so a panic anywhere below is caught; then the error mapping, so the
		// gate's refusals carry ErrorInfo too; the gate before anything reads the request; the
		// readiness gate (a service still waiting for its dependencies refuses the call); the
		// enum check before a request id is claimed, so a refused request keeps its id free.
		grpc.ChainUnaryInterceptor(recoverUnary(o.Log), errorsUnary, o.Gate.Unary(), s.readyUnary, validateUnary, s.requestsUnary),
		grpc.ChainStreamInterceptor(recoverStream(o.Log), errorsStream, o.Gate.Stream(), s.readyStream, validateStream, s.requestsStream),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	g := grpc.NewServer(opts...)
	h := health.NewServer()
	// Not serving until every module of the process has started.
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, h)
	if err := registerReflection(g); err != nil {
		_ = ln.Close()
		return nil, err
	}
	s.GRPC, s.Health = g, h
	return s, nil
}

// SetWaiting makes a service refuse calls (Unavailable, with reason) until it is called again
// with reason "": a service that is waiting for its dependencies to start.
func (s *Server) SetWaiting(service, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason == "" {
		delete(s.waiting, service)
		return
	}
	s.waiting[service] = reason
}

// ready refuses a call to a service that waits.
func (s *Server) ready(fullMethod string) error {
	service := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(service, '/'); i >= 0 {
		service = service[:i]
	}
	s.mu.Lock()
	reason, waits := s.waiting[service]
	s.mu.Unlock()
	if waits {
		return status.Errorf(codes.Unavailable, "%s is not ready: %s", service, reason)
	}
	return nil
}

func (s *Server) readyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.ready(info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) readyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.ready(info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
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

// Serve starts serving in the background. It refuses when a registered RPC has no entry in
// the scope table: such a call could only ever be refused, so the mistake is reported now.
func (s *Server) Serve() error {
	if err := s.gate.CheckServices(s.GRPC.GetServiceInfo()); err != nil {
		return err
	}
	go func() {
		defer close(s.done)
		if err := s.GRPC.Serve(s.ln); err != nil {
			s.log.Error("grpc serve", "err", err)
		}
	}()
	return nil
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

// DialOptions configure a connection to another Sluice service.
type DialOptions struct {
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// TLS, when set, connects with TLS; nil connects in plaintext.
	TLS *tls.Config
	// Token is sent with every call (the service credential).
	Token string
}

// Dial opens a client connection to another Sluice service (also used in all-in-one mode,
// over loopback), with trace context propagation and the service credential.
func Dial(addr string, o DialOptions) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(o.Tracer), otelgrpc.WithPropagators(o.Propagator))),
	}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer(o.Token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}
