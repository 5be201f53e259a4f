package opsevents_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
)

func startNATS(t *testing.T) *natsx.Conn {
	t.Helper()
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestPublish: the first publish creates the stream; defaults are filled in; the message id is
// the event id (a second publish is dropped by JetStream); the trace context travels.
func TestPublish(t *testing.T) {
	nc := startNATS(t)
	ctx := context.Background()
	prop := propagation.TraceContext{}
	pub := opsevents.NewPublisher(nc, prop)
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	tctx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))

	ev := &opslogv1.OpsEvent{Workspace: "acme", EventType: opslogv1.EventType_EVENT_TYPE_CREATE, DatasourceName: "sales", Result: opslogv1.Result_RESULT_OK}
	before := time.Now()
	if err := pub.Publish(tctx, ev); err != nil {
		t.Fatalf("publish without a stream: %v", err)
	}
	if ev.GetId() == "" || ev.GetTimestamp().AsTime().Before(before.Add(-time.Second)) {
		t.Fatalf("defaults not filled in: id %q timestamp %v", ev.GetId(), ev.GetTimestamp())
	}
	if err := pub.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	stream, err := nc.JS.Stream(ctx, opsevents.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream has %d messages, want 1 (the second publish is a duplicate)", info.State.Msgs)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "sluice.ops.acme" || msg.Header.Get("Nats-Msg-Id") != ev.GetId() {
		t.Errorf("subject %s, msg id %s", msg.Subject, msg.Header.Get("Nats-Msg-Id"))
	}
	if tp := msg.Header.Get("traceparent"); !strings.Contains(tp, traceID.String()) {
		t.Errorf("traceparent = %q", tp)
	}
	var got opslogv1.OpsEvent
	if err := proto.Unmarshal(msg.Data, &got); err != nil || !proto.Equal(&got, ev) {
		t.Errorf("stored event %v (%v), want %v", &got, err, ev)
	}
}

func TestPublishRefusesInvalidEvents(t *testing.T) {
	nc := startNATS(t)
	pub := opsevents.NewPublisher(nc, nil)
	for _, c := range []struct {
		ev   *opslogv1.OpsEvent
		want string
	}{
		{&opslogv1.OpsEvent{EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "a", Result: opslogv1.Result_RESULT_OK}, "workspace is required"},
		{&opslogv1.OpsEvent{Workspace: "a.b", EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "a", Result: opslogv1.Result_RESULT_OK}, "may not contain"},
		{&opslogv1.OpsEvent{Workspace: "a", EventType: opslogv1.EventType(99), DatasourceName: "a", Result: opslogv1.Result_RESULT_OK}, "event_type"},
		{&opslogv1.OpsEvent{Workspace: "a", EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "a", Result: opslogv1.Result(7)}, "result"},
		{&opslogv1.OpsEvent{Workspace: "a", EventType: opslogv1.EventType_EVENT_TYPE_COPY, Result: opslogv1.Result_RESULT_OK}, "datasource"},
		{&opslogv1.OpsEvent{Workspace: "a", EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "a", Result: opslogv1.Result_RESULT_OK,
			Timestamp: timestamppb.New(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))}, "timestamp"},
	} {
		if err := pub.Publish(context.Background(), c.ev); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one about %s", c.ev, err, c.want)
		}
	}
}

func TestJobEvent(t *testing.T) {
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	r := opsevents.JobResult{
		Workspace: "acme", EventType: opsevents.EventCopy, JobID: "j1", CreatedAt: created,
		FinishedAt: created.Add(90 * time.Second), DataSourceID: "t_x", DataSourceName: "x", PipeName: "p",
		Result: opsevents.ResultError, Error: "boom", Mode: "replace", ExecutionType: opsevents.ExecutionManual,
		Stats: &commonv1.Statistics{ReadRows: 10, ReadBytes: 100, WrittenRows: 3, WrittenBytes: 30, CpuTime: durationpb.New(500 * time.Millisecond)},
	}
	ev := opsevents.JobEvent(r)
	if err := opsevents.Validate(ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetElapsedTime().AsDuration() != 90*time.Second || !ev.GetTimestamp().AsTime().Equal(created) || ev.GetRows() != 3 || ev.GetWrittenRows() != 3 ||
		ev.GetReadBytes() != 100 || ev.GetRequestId() != "j1" || ev.GetImportId() != "j1" || ev.GetOperationId() != "j1" ||
		ev.GetCpuTime().AsDuration() != 500*time.Millisecond || ev.GetError() != "boom" ||
		ev.GetOptions()["mode"] != "replace" || ev.GetOptions()["execution_type"] != "manual" || ev.GetOptions()["job"] != "j1" {
		t.Errorf("event %v", ev)
	}
	if again := opsevents.JobEvent(r); again.GetId() != ev.GetId() {
		t.Errorf("ids differ for the same job result: %s, %s", ev.GetId(), again.GetId())
	}
	r.DataSourceID, r.DataSourceName = "t_y", "y"
	if other := opsevents.JobEvent(r); other.GetId() == ev.GetId() {
		t.Errorf("same id for another Data Source of the job")
	}
	// The id follows the name: a report that could not look the id up writes the same row.
	r.DataSourceID, r.DataSourceName = "", "x"
	if again := opsevents.JobEvent(r); again.GetId() != ev.GetId() || again.GetDatasourceId() != "x" {
		t.Errorf("a report without the Data Source's id: id %s (want %s), datasource_id %q", again.GetId(), ev.GetId(), again.GetDatasourceId())
	}
	// Figures the engine did not report stay unset (NULL), not 0.
	r.Stats = &commonv1.Statistics{WrittenRows: 3}
	if e := opsevents.JobEvent(r); e.CpuTime != nil || e.MemoryUsage != nil {
		t.Errorf("unreported cpu_time/memory_usage: %v %v", e.CpuTime, e.MemoryUsage)
	}
	r.EventType = opsevents.EventPopulateViewQueued
	if q := opsevents.JobEvent(r); q.GetElapsedTime() != nil {
		t.Errorf("populateview-queued elapsed = %v", q.GetElapsedTime())
	}
}

// TestPublishWaitsForNATS: an event published while its NATS server is down (restarting, or a
// stream electing its leader) is stored once NATS is back, exactly once, instead of lost.
func TestPublishWaitsForNATS(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	start := func() *server.Server {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		return s
	}
	srv := start()
	nc, err := natsx.Connect(context.Background(), natsx.Config{URL: srv.ClientURL()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	pub := opsevents.NewPublisher(nc, nil)
	if err := pub.Publish(ctx, &opslogv1.OpsEvent{Workspace: "acme", EventType: opslogv1.EventType_EVENT_TYPE_CREATE, DatasourceName: "a", Result: opslogv1.Result_RESULT_OK}); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	published := make(chan error, 1)
	ev := &opslogv1.OpsEvent{Workspace: "acme", EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "b", Result: opslogv1.Result_RESULT_OK}
	go func() { published <- pub.Publish(ctx, ev) }()
	select {
	case err := <-published:
		t.Fatalf("publish returned while NATS was down: %v", err)
	case <-time.After(time.Second): // still trying: it must not give up
	}
	srv = start()
	t.Cleanup(srv.Shutdown)
	if err := <-published; err != nil {
		t.Fatalf("publish across the restart: %v", err)
	}
	stream, err := nc.JS.Stream(ctx, opsevents.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("%d events stored, want 2", info.State.Msgs)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, opsevents.Subject("acme"))
	if err != nil {
		t.Fatal(err)
	}
	got := &opslogv1.OpsEvent{}
	if err := proto.Unmarshal(msg.Data, got); err != nil || got.GetId() != ev.GetId() || got.GetDatasourceName() != "b" {
		t.Fatalf("last event %v (%v), want %s", got, err, ev.GetId())
	}
}
