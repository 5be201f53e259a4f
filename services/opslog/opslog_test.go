package opslog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestMain(m *testing.M) { warehousetest.Main(m) }

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() || os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNATS runs an embedded NATS server for one test.
func startNATS(t testing.TB) *natsx.Conn {
	t.Helper()
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, testLogger(t))
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func testConfig() Config {
	return Config{BatchSize: 1000, FlushInterval: 50 * time.Millisecond, Retention: 3650 * 24 * time.Hour, AckWait: 2 * time.Second}
}

// startService starts the ops log on nc and wh with its table in db; it stops at the end of
// the test unless the test stops it first.
func startService(t testing.TB, cfg Config, nc *natsx.Conn, wh warehouse.Conn, db string, h hooks) *Service {
	t.Helper()
	s, err := New(cfg, Deps{Log: testLogger(t), NATS: nc, Warehouse: wh, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	s.hooks = h
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start opslog: %v", err)
	}
	t.Cleanup(func() { stopService(t, s) })
	return s
}

func stopService(t testing.TB, s *Service) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Errorf("stop opslog: %v", err)
	}
}

type engine struct {
	name string
	open func(t testing.TB) warehouse.Conn
}

var engines = []engine{
	{"chdb", func(t testing.TB) warehouse.Conn { return warehousetest.Embedded(t) }},
	{"native", func(t testing.TB) warehouse.Conn { return warehousetest.Native(t) }},
}

// counts returns the rows and distinct event ids in the table.
func counts(t testing.TB, wh warehouse.Conn, db string) (rows, ids uint64) {
	t.Helper()
	res, err := wh.Query(context.Background(), "SELECT count(), uniqExact(event_id) FROM "+warehouse.QualifiedName(db, TableName))
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	return res.Rows[0][0].(uint64), res.Rows[0][1].(uint64)
}

// waitWritten waits until the table has want rows, all distinct, and the consumer has
// nothing pending or unacknowledged; then it checks that nothing more arrives.
func waitWritten(t testing.TB, s *Service, wh warehouse.Conn, want uint64) {
	t.Helper()
	checkfor.State(t, 60*time.Second, fmt.Sprintf("%d rows", want), func() (bool, string) {
		rows, ids := counts(t, wh, s.db)
		info := consumerInfo(t, s)
		state := fmt.Sprintf("rows=%d ids=%d pending=%d ack_pending=%d", rows, ids, info.NumPending, info.NumAckPending)
		return rows == want && info.NumPending == 0 && info.NumAckPending == 0, state
	})
	rows, ids := counts(t, wh, s.db)
	if rows != want || ids != want {
		t.Fatalf("table has %d rows with %d distinct ids, want %d of each", rows, ids, want)
	}
}

func consumerInfo(t testing.TB, s *Service) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := context.Background()
	c, err := s.deps.NATS.JS.Consumer(ctx, StreamEvents, ConsumerName)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// testEvent is a valid event of workspace ws about Data Source ds.
func testEvent(ws, ds string, i int) *opslogv1.OpsEvent {
	return &opslogv1.OpsEvent{
		Workspace: ws, EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceId: "t_" + ds, DatasourceName: ds,
		Result: opslogv1.Result_RESULT_OK, ReadRows: uint64(i), ReadBytes: uint64(10 * i), WrittenRows: uint64(i),
		WrittenBytes: uint64(8 * i), Rows: uint64(i), JobId: fmt.Sprintf("job-%d", i),
	}
}

func publish(t testing.TB, p opsevents.Publisher, events ...*opslogv1.OpsEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ev := range events {
		if err := p.Publish(ctx, ev); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// TestEventsWrittenOnce publishes events (some of them twice, one with the same id after
// JetStream's duplicate window would have passed, i.e. as a new message) and checks that each
// is a row exactly once, with its figures.
func TestEventsWrittenOnce(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			db := warehousetest.NewDatabase(t, wh)
			nc := startNATS(t)
			s := startService(t, testConfig(), nc, wh, db, hooks{})
			pub := opsevents.NewPublisher(nc, nil)

			created := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
			job := opsevents.JobEvent(opsevents.JobResult{
				Workspace: "acme", EventType: opsevents.EventCopy, JobID: "j1", CreatedAt: created,
				FinishedAt: created.Add(2500 * time.Millisecond), DataSourceID: "t_sales", DataSourceName: "sales",
				PipeID: "p1", PipeName: "copy_sales", Result: opsevents.ResultOK, Mode: "append",
				ExecutionType: opsevents.ExecutionScheduled,
				Stats:         &commonv1.Statistics{ReadRows: 1000, ReadBytes: 64000, WrittenRows: 900, WrittenBytes: 7200, MemoryUsage: 4096},
			})
			publish(t, pub, job)
			again := opsevents.JobEvent(opsevents.JobResult{ // the same result reported twice
				Workspace: "acme", EventType: opsevents.EventCopy, JobID: "j1", CreatedAt: created,
				DataSourceID: "t_sales", DataSourceName: "sales", Result: opsevents.ResultOK,
			})
			publish(t, pub, again)
			var events []*opslogv1.OpsEvent
			for i := range 300 {
				events = append(events, testEvent("acme", fmt.Sprintf("ds%d", i%7), i))
			}
			publish(t, pub, events...)
			// The same event id as a new message (beyond JetStream's duplicate window, which a
			// different message id simulates): the writer's look-up drops it.
			dup := testEvent("acme", "ds0", 0)
			dup.Id = events[0].GetId()
			publishRaw(t, nc, dup, "other-msg-id")
			waitWritten(t, s, wh, 301)
			got, err := s.Query(context.Background(), &opslogv1.EventFilter{Workspace: "acme", JobId: "j1"}, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("job j1: %d events, want 1", len(got))
			}
			ev := got[0]
			checks := []struct {
				name      string
				got, want any
			}{
				{"timestamp", ev.GetTimestamp().AsTime(), created},
				{"event_type", ev.GetEventType(), opslogv1.EventType_EVENT_TYPE_COPY},
				{"datasource", ev.GetDatasourceName(), "sales"},
				{"rows", ev.GetRows(), uint64(900)},
				{"read_rows", ev.GetReadRows(), uint64(1000)},
				{"read_bytes", ev.GetReadBytes(), uint64(64000)},
				{"written_rows", ev.GetWrittenRows(), uint64(900)},
				{"written_bytes", ev.GetWrittenBytes(), uint64(7200)},
				{"memory_usage", ev.GetMemoryUsage(), uint64(4096)},
				{"elapsed_time", ev.GetElapsedTime().AsDuration(), 2500 * time.Millisecond},
				{"request_id", ev.GetRequestId(), "j1"},
				{"import_id", ev.GetImportId(), "j1"},
				{"operation_id", ev.GetOperationId(), "j1"},
				{"pipe", ev.GetPipeName() + "/" + ev.GetPipeId(), "copy_sales/p1"},
				{"error", ev.GetError(), ""},
				{"options", fmt.Sprint(ev.GetOptions()), "map[execution_type:scheduled job:j1 mode:append]"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
			res, err := wh.Query(context.Background(), "SELECT error IS NULL, `Options.Names`, `Options.Values` FROM "+
				warehouse.QualifiedName(db, TableName)+" WHERE job_id = 'j1'")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.Rows[0]) != "[1 [execution_type job mode] [scheduled j1 append]]" {
				t.Errorf("stored row = %v", res.Rows[0])
			}
		})
	}
}

// publishRaw publishes ev with an explicit message id, bypassing the publisher's defaults.
func publishRaw(t testing.TB, nc *natsx.Conn, ev *opslogv1.OpsEvent, msgID string) {
	t.Helper()
	if ev.Timestamp == nil {
		ev.Timestamp = timestamppb.Now()
	}
	data := mustMarshal(t, ev)
	if _, err := nc.JS.Publish(context.Background(), opsevents.Subject(ev.GetWorkspace()), data, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

// TestWriterKilledMidBatch kills the writer between the insert and the ack (and, in the
// other case, before the insert): a second writer gets the batch again and the table ends with
// every event exactly once.
func TestWriterKilledMidBatch(t *testing.T) {
	for _, point := range []string{"after-insert", "before-insert"} {
		t.Run(point, func(t *testing.T) {
			wh := warehousetest.Embedded(t)
			db := warehousetest.NewDatabase(t, wh)
			nc := startNATS(t)
			cfg := testConfig()
			cfg.AckWait = time.Second
			crashed := make(chan int, 1)
			crash := func(n int) error {
				select {
				case crashed <- n:
				default:
				}
				return errCrash
			}
			h := hooks{afterInsert: crash}
			if point == "before-insert" {
				h = hooks{beforeInsert: crash}
			}
			first := startService(t, cfg, nc, wh, db, h)
			pub := opsevents.NewPublisher(nc, nil)
			var events []*opslogv1.OpsEvent
			for i := range 500 {
				events = append(events, testEvent("acme", "sales", i))
			}
			publish(t, pub, events...)
			var n int
			select {
			case n = <-crashed:
			case <-time.After(30 * time.Second):
				t.Fatal("the writer never reached the crash point")
			}
			stopService(t, first)
			rows, _ := counts(t, wh, db)
			if point == "after-insert" && rows != uint64(n) {
				t.Fatalf("after the crash the table has %d rows, want the %d of the crashed batch", rows, n)
			}
			if point == "before-insert" && rows != 0 {
				t.Fatalf("after a crash before the insert the table has %d rows", rows)
			}
			if info := consumerInfo(t, first); info.NumAckPending == 0 {
				t.Fatalf("the crashed batch was acknowledged")
			}
			second := startService(t, cfg, nc, wh, db, hooks{})
			waitWritten(t, second, wh, 500)
			// Every event id published is there once.
			got, err := second.Query(context.Background(), &opslogv1.EventFilter{Workspace: "acme"}, MaxLimit, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]int{}
			for _, ev := range got {
				ids[ev.GetId()]++
			}
			for _, ev := range events {
				if ids[ev.GetId()] != 1 {
					t.Fatalf("event %s is in the table %d times", ev.GetId(), ids[ev.GetId()])
				}
			}
		})
	}
}

// flakyConn fails every call while down is set, as an unreachable server does.
type flakyConn struct {
	warehouse.Conn
	down  *atomic.Bool
	fails *atomic.Int64
}

func (c flakyConn) err() error {
	c.fails.Add(1)
	return &warehouse.Error{Message: "dial tcp 127.0.0.1:9000: connection refused", Class: warehouse.ClassRetryable}
}

func (c flakyConn) Query(ctx context.Context, sql string, opts ...warehouse.Option) (*warehouse.Result, error) {
	if c.down.Load() {
		return nil, c.err()
	}
	return c.Conn.Query(ctx, sql, opts...)
}

func (c flakyConn) InsertRows(ctx context.Context, table string, columns []string, rows [][]any, opts ...warehouse.Option) (warehouse.Stats, error) {
	if c.down.Load() {
		return warehouse.Stats{}, c.err()
	}
	return c.Conn.InsertRows(ctx, table, columns, rows, opts...)
}

// TestClickHouseUnavailableInjected: while every ClickHouse call fails, events wait in the
// stream; when it answers again they are all written, once.
func TestClickHouseUnavailableInjected(t *testing.T) {
	wh := warehousetest.Embedded(t)
	db := warehousetest.NewDatabase(t, wh)
	nc := startNATS(t)
	var down atomic.Bool
	var fails atomic.Int64
	down.Store(true)
	s := startService(t, testConfig(), nc, wh, db, hooks{wrap: func(c warehouse.Conn) warehouse.Conn {
		return flakyConn{Conn: c, down: &down, fails: &fails}
	}})
	pub := opsevents.NewPublisher(nc, nil)
	var events []*opslogv1.OpsEvent
	for i := range 2500 {
		events = append(events, testEvent("acme", fmt.Sprintf("ds%d", i%3), i))
	}
	publish(t, pub, events...)
	checkfor.State(t, 30*time.Second, "failed attempts with backoff", func() (bool, string) {
		return fails.Load() >= 4, fmt.Sprint(fails.Load())
	})
	if rows, _ := counts(t, wh, db); rows != 0 {
		t.Fatalf("%d rows written while ClickHouse was down", rows)
	}
	if info := consumerInfo(t, s); info.NumPending+uint64(info.NumAckPending) != 2500 {
		t.Fatalf("stream holds %d+%d events, want 2500", info.NumPending, info.NumAckPending)
	}
	down.Store(false)
	waitWritten(t, s, wh, 2500)
}

func mustMarshal(t testing.TB, ev *opslogv1.OpsEvent) []byte {
	t.Helper()
	data, err := protoMarshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var protoMarshal = proto.Marshal
