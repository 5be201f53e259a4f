package natsx

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func connect(t *testing.T, dir string) *Conn {
	t.Helper()
	c, err := Connect(context.Background(), Config{StoreDir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEmbeddedJetStreamPersistsAndEnsureIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c := connect(t, dir)
	cfg := jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}
	for i := 0; i < 2; i++ {
		if _, err := c.EnsureStream(ctx, cfg); err != nil {
			t.Fatalf("ensure #%d: %v", i, err)
		}
	}
	kv, err := c.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.JS.Publish(ctx, "t.x", []byte("m")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = connect(t, dir)
	defer c.Close()
	kv, err = c.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("kv after restart: %v", err)
	}
	st, err := c.EnsureStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream after restart: %v %+v", err, info)
	}
}

func TestTraceContextCrossesNATS(t *testing.T) {
	c := connect(t, t.TempDir())
	defer c.Close()
	tp := sdktrace.NewTracerProvider()
	prop := propagation.TraceContext{}
	ctx, span := tp.Tracer("test").Start(context.Background(), "publish")
	defer span.End()

	got := make(chan *nats.Msg, 1)
	sub, err := c.NC.Subscribe("trace.test", func(m *nats.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := &nats.Msg{Subject: "trace.test", Header: nats.Header{}}
	InjectTrace(ctx, prop, msg.Header)
	if err := c.NC.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		rctx := ExtractTrace(context.Background(), prop, m.Header)
		if sc := trace.SpanContextFromContext(rctx); sc.TraceID() != span.SpanContext().TraceID() || !sc.IsRemote() {
			t.Fatalf("trace id %s, want %s (remote)", sc.TraceID(), span.SpanContext().TraceID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not received")
	}
}
