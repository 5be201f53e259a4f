// Package telemetry builds a process's logger, tracer provider and metrics registry, and serves
// /metrics and /ready. Nothing here is global: the process passes what it builds to every
// module that needs it.
package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Config tunes logs, traces and metrics.
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
	// OTLPEndpoint (host:port, gRPC) receives traces; empty exports none.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// OTLPInsecure sends OTLP without TLS.
	OTLPInsecure bool `yaml:"otlp_insecure"`
	// HTTPAddr serves /metrics and /ready; empty disables it.
	HTTPAddr string `yaml:"http_addr"`
}

// Validate checks the values.
func (c Config) Validate() error {
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: %q is not one of text, json", c.LogFormat)
	}
	return nil
}

// NewLogger builds the process logger.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Telemetry holds what a process's modules are given.
type Telemetry struct {
	Log        *slog.Logger
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
	Registry   *prometheus.Registry

	provider *sdktrace.TracerProvider
	ready    atomic.Bool
	httpSrv  *http.Server
	httpLn   net.Listener
}

// New builds the tracer provider (exporting over OTLP only when configured) and the registry.
// Spans are always created, so trace context flows through gRPC and NATS even when nothing is
// exported.
func New(ctx context.Context, cfg Config, service string, log *slog.Logger) (*Telemetry, error) {
	res := resource.NewSchemaless(semconv.ServiceName(service))
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if cfg.OTLPEndpoint != "" {
		eopts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
		if cfg.OTLPInsecure {
			eopts = append(eopts, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tp := sdktrace.NewTracerProvider(opts...)
	return &Telemetry{
		Log:        log,
		Tracer:     tp,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:   reg,
		provider:   tp,
	}, nil
}

// SetReady marks the process ready (or not) for /ready.
func (t *Telemetry) SetReady(ready bool) { t.ready.Store(ready) }

// HTTPOptions configure the HTTP listener.
type HTTPOptions struct {
	// Guard wraps each endpoint's handler with what the endpoint requires, by its pattern
	// ("GET /metrics"); an error (an endpoint without a rule) stops the listener from starting.
	// Nil serves the endpoints unguarded (tests of this package only).
	Guard func(pattern string, h http.Handler) (http.Handler, error)
	// TLS, when set, makes the listener speak TLS only.
	TLS *tls.Config
}

// ServeHTTP starts /live, /ready and /metrics on addr and returns the address it listens on.
// /live answers 200 while the process runs; /ready once every module has started.
func (t *Telemetry) ServeHTTP(addr string, o HTTPOptions) (string, error) {
	mux := http.NewServeMux()
	endpoints := []struct {
		pattern string
		h       http.Handler
	}{
		{"GET /live", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "live\n") })},
		{"GET /ready", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !t.ready.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ready\n")
		})},
		{"GET /metrics", promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry})},
	}
	for _, e := range endpoints {
		h := e.h
		if o.Guard != nil {
			var err error
			if h, err = o.Guard(e.pattern, h); err != nil {
				return "", err
			}
		}
		mux.Handle(e.pattern, h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("http listen %s: %w", addr, err)
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	t.httpLn = ln
	t.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := t.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Log.Error("http server", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// Shutdown stops the HTTP server and flushes spans.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.httpSrv != nil {
		errs = append(errs, t.httpSrv.Shutdown(ctx))
	}
	errs = append(errs, t.provider.Shutdown(ctx))
	return errors.Join(errs...)
}

// Register registers a service's collector c with reg and returns the collector to use: c, or
// the one already registered under its name (a service restarted in the same process keeps
// counting where it was). A nil reg registers nothing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// Counter is a plain counter registered with reg (see Register).
func Counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	return Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}
