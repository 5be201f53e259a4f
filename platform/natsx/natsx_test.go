package natsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
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

// TestEmbeddedServerTakesOnlyItsOwnClients checks that the embedded server listens on loopback
// only, and takes a client only with the password it made at start.
func TestEmbeddedServerTakesOnlyItsOwnClients(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := Connect(context.Background(), Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if nc, err := nats.Connect(c.ClientURL(), nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatal("the embedded server took a client without credentials")
	}
	if nc, err := nats.Connect(c.ClientURL(), nats.UserInfo("sluice", "guess"), nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatal("the embedded server took a wrong password")
	}
	nc, err := nats.Connect(c.EmbeddedURL(), nats.Timeout(time.Second))
	if err != nil {
		t.Fatalf("the embedded URL with its password: %v", err)
	}
	nc.Close()
	if strings.Contains(c.ClientURL(), "@") {
		t.Fatalf("ClientURL carries credentials: %s", c.ClientURL())
	}
	for _, listen := range []string{"0.0.0.0:4222", "10.0.0.1:4222", ":4222"} {
		if err := (Config{Listen: listen}).Validate(true); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Validate(listen %q) = %v, want a refusal naming loopback", listen, err)
		}
	}
	for _, listen := range []string{"127.0.0.1:0", "[::1]:4222", "localhost:4222", ""} {
		if err := (Config{Listen: listen}).Validate(true); err != nil {
			t.Errorf("Validate(listen %q) = %v", listen, err)
		}
	}
	if err := (Config{User: "u", CredsFile: "f"}).Validate(false); err == nil {
		t.Error("two kinds of credentials accepted")
	}
}

// TestExternalServerCredentials connects to a NATS server that requires a user and password.
func TestExternalServerCredentials(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "svc", Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := Connect(context.Background(), Config{URL: srv.ClientURL()}, log); err == nil {
		t.Fatal("connected without credentials")
	}
	c, err := Connect(context.Background(), Config{URL: srv.ClientURL(), User: "svc", Password: "s3cret"}, log)
	if err != nil {
		t.Fatalf("with -nats-user/-nats-password: %v", err)
	}
	c.Close()
}

// TestExternalServerNKey connects with an nkey seed file to a server that authenticates users
// by nkey.
func TestExternalServerNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := Connect(context.Background(), Config{URL: srv.ClientURL()}, log); err == nil {
		t.Fatal("connected without the nkey")
	}
	c, err := Connect(context.Background(), Config{URL: srv.ClientURL(), NKeyFile: seedFile}, log)
	if err != nil {
		t.Fatalf("with -nats-nkey: %v", err)
	}
	c.Close()
}

// TestExternalServerNotThereYet: a process starts while its NATS server is down: Connect
// returns a connection that is not ready (ErrUnreachable), and it becomes ready, with
// JetStream, once the server is up; refused credentials, by contrast, fail at once (above).
func TestExternalServerNotThereYet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := Connect(context.Background(), Config{URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}, log)
	if err != nil {
		t.Fatalf("connect while the server is down: %v", err)
	}
	defer c.Close()
	if err := c.Ready(context.Background()); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatalf("ready while the server is down: %v, want unreachable, naming the server", err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Ready(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 30s after the server started: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
