package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// replicas runs n catalog replicas on one embedded NATS server and the test binary's chDB,
// sharing a database prefix: what n catalog processes against one NATS and one ClickHouse see.
func replicas(t *testing.T, n int) ([]*Service, warehouse.Conn) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	server, err := natsx.Connect(ctx, natsx.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Close)
	wh := warehousetest.Embedded(t)
	prefix := fmt.Sprintf("t%d_%d_", os.Getpid(), prefixSeq.Add(1))
	var out []*Service
	for i := range n {
		nc, err := natsx.Connect(ctx, natsx.Config{URL: server.EmbeddedURL()}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		s, err := New(Config{DatabasePrefix: prefix, QueryMaxRows: 1000, QueryTimeout: 30e9},
			Deps{Log: log, NATS: nc, Warehouse: wh, Instance: fmt.Sprintf("replica-%d", i), OperatorTokenFile: filepath.Join(t.TempDir(), "token")})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	t.Cleanup(func() {
		res, _ := wh.Query(context.Background(), "SELECT name FROM system.databases WHERE startsWith(name, "+warehouse.QuoteString(prefix)+")")
		if res != nil {
			for _, r := range res.Rows {
				_, _ = wh.Exec(context.Background(), "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(fmt.Sprint(r[0])))
			}
		}
	})
	return out, wh
}

// TestPushWaitsForTheOtherReplicasLease: while one replica holds a workspace's lease, another
// replica's push to that workspace does not run (it fails when its deadline passes, naming the
// holder); pushes to other workspaces go on; once the lease is released the push runs.
func TestPushWaitsForTheOtherReplicasLease(t *testing.T) {
	rs, wh := replicas(t, 2)
	ctx := operatorCtx(t, rs[0], "shop", "other")
	push := func(s *Service, ctx context.Context, ws string) (*catalogv1.PushResponse, error) {
		return s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: files("datasources/events.datasource", eventsDS)})
	}
	_, unlock, err := rs[0].lock(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = push(rs[1], short, "shop")
	cancel()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "replica-0") {
		t.Fatalf("push while replica-0 holds the lease: %v (want Unavailable naming replica-0)", err)
	}
	ws, _ := rs[1].store.workspace(ctx, "shop")
	if n := count(t, wh, "SELECT count() FROM system.tables WHERE database = "+warehouse.QuoteString(ws.Database)+" AND name = 'events'"); n != 0 {
		t.Fatalf("the refused push created the table")
	}
	if _, err := push(rs[1], ctx, "other"); err != nil {
		t.Fatalf("a push to another workspace waited for the lease: %v", err)
	}
	unlock()
	resp, err := push(rs[1], ctx, "shop")
	if err != nil || !resp.GetApplied() {
		t.Fatalf("push after the release: %v %v", resp, err)
	}
	if n := count(t, wh, "SELECT count() FROM system.tables WHERE database = "+warehouse.QuoteString(ws.Database)+" AND name = 'events'"); n != 1 {
		t.Fatalf("events table: %d", n)
	}
}

// TestConcurrentPushesFromTwoReplicas: both replicas push successive versions of a project
// into one workspace at once. Every push succeeds (they take turns), and ClickHouse and the
// catalog agree at the end: each column the last version has exists, and the stored files are
// numbered versions without gaps.
func TestConcurrentPushesFromTwoReplicas(t *testing.T) {
	rs, wh := replicas(t, 2)
	ctx := operatorCtx(t, rs[0], "shop")
	const rounds = 6
	version := func(r, i int) string {
		// Each version adds a column: pushes are alters of one table, which must not interleave.
		cols := []string{"timestamp DateTime"}
		for c := 0; c <= i; c++ {
			cols = append(cols, fmt.Sprintf("c_%d_%d Int64 DEFAULT %d", r, c, c))
		}
		return "SCHEMA >\n    " + strings.Join(cols, ",\n    ") + "\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"timestamp\"\n"
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for r, s := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				_, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "shop", Files: files(fmt.Sprintf("datasources/t%d.datasource", r), version(r, i))})
				if err != nil {
					errs <- fmt.Errorf("replica %d push %d: %w", r, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ws, _ := rs[0].store.workspace(ctx, "shop")
	for r := range rs {
		q := fmt.Sprintf("SELECT count() FROM system.columns WHERE database = %s AND table = 't%d'", warehouse.QuoteString(ws.Database), r)
		if got := count(t, wh, q); got != rounds+1 {
			t.Errorf("t%d has %d columns in ClickHouse, want %d", r, got, rounds+1)
		}
		vs, err := rs[1].store.fileVersions(ctx, "shop", fmt.Sprintf("datasources/t%d.datasource", r))
		if err != nil || len(vs) != rounds || vs[0].Version != rounds || vs[0].Content != version(r, rounds-1) {
			t.Errorf("stored versions of t%d: %d (latest %+v), %v", r, len(vs), vs, err)
		}
	}
	if keys, _ := rs[0].store.keys(ctx, "journal.>"); len(keys) != 0 {
		t.Errorf("journal left behind: %v", keys)
	}
}

// TestInterruptedPushIsUndone: a replica that died while applying a push's DDL left a table
// and its journal; the next push (on another replica) undoes the table, then applies itself.
func TestInterruptedPushIsUndone(t *testing.T) {
	rs, wh := replicas(t, 2)
	ctx := operatorCtx(t, rs[0], "shop")
	ws, _ := rs[0].store.workspace(ctx, "shop")
	tbl := warehouse.QualifiedName(ws.Database, "half")
	// What a replica dying after the first step of a two-table push leaves.
	if _, err := wh.Exec(ctx, "CREATE TABLE "+tbl+" (x Int64) ENGINE = MergeTree ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	head := journalHead{Phase: phaseApplying, Holder: "dead-replica", Step: 1, Undo: [][]string{
		{"DROP TABLE IF EXISTS " + tbl},
		{"DROP TABLE IF EXISTS " + warehouse.QualifiedName(ws.Database, "never_created")},
		{"DROP TABLE IF EXISTS " + warehouse.QualifiedName(ws.Database, "events")}, // not reached: kept
	}}
	if _, err := rs[0].putHead(ctx, "shop", head, 0); err != nil {
		t.Fatal(err)
	}
	// A table of the same name as a later, unreached step must survive.
	if _, err := wh.Exec(ctx, "CREATE TABLE "+warehouse.QualifiedName(ws.Database, "events")+" (x Int64) ENGINE = MergeTree ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	_, err := rs[1].Push(ctx, &catalogv1.PushRequest{Workspace: "shop", Files: files("datasources/half.datasource", "SCHEMA >\n    x Int64\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"x\"\n")})
	if err != nil {
		t.Fatalf("push after an interrupted one: %v", err)
	}
	if n := count(t, wh, "SELECT count() FROM system.tables WHERE database = "+warehouse.QuoteString(ws.Database)+" AND name IN ('half', 'events')"); n != 2 {
		t.Errorf("tables half (pushed again) and events (untouched): %d of 2", n)
	}
	if recs, _ := rs[0].store.resources(ctx, "shop"); len(recs[kindDataSource]) != 1 {
		t.Errorf("deployed Data Sources: %v", recs[kindDataSource])
	}
	if keys, _ := rs[0].store.keys(ctx, "journal.>"); len(keys) != 0 {
		t.Errorf("journal left behind: %v", keys)
	}
}

// TestInterruptedRecordingIsCompleted: a replica that died after the DDL, while recording the
// push, left its writes journaled; the next operation on the workspace makes them, so the
// catalog knows the table ClickHouse has, and pushing the same files again changes nothing.
func TestInterruptedRecordingIsCompleted(t *testing.T) {
	rs, wh := replicas(t, 2)
	ctx := operatorCtx(t, rs[0], "shop")
	fs := files("datasources/events.datasource", eventsDS)
	// Replica 0 computes the push's writes and applies its DDL, then dies before recording.
	ws, _ := rs[0].store.workspace(ctx, "shop")
	deployed, _ := rs[0].store.resources(ctx, "shop")
	old, _ := rs[0].buildProject(ws, deployed, nil, nil, false)
	old.analyze()
	next, _ := rs[0].buildProject(ws, deployed, fs, nil, false)
	next.analyze()
	order, _ := next.buildGraph().topoOrder()
	pl, _ := makePlan(next, old, order, false, func(*pipeDef) (string, error) { return "", nil })
	writes, err := rs[0].records(ctx, ws, next, old, fs, pl)
	if err != nil || len(writes) < 2 {
		t.Fatalf("records: %d, %v", len(writes), err)
	}
	if err := applyPlan(ctx, wh, pl, rs[0].log, nil); err != nil {
		t.Fatal(err)
	}
	for i, w := range writes {
		b, _ := json.Marshal(w)
		if _, err := rs[0].store.kv.Put(ctx, journalWriteKey("shop", i), b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rs[0].putHead(ctx, "shop", journalHead{Phase: phaseRecording, Holder: "replica-0", Writes: len(writes)}, 0); err != nil {
		t.Fatal(err)
	}
	// Only the first write was made before it died.
	if err := rs[0].store.write(ctx, writes[0]); err != nil {
		t.Fatal(err)
	}
	resp, err := rs[1].Push(ctx, &catalogv1.PushRequest{Workspace: "shop", Files: fs})
	if err != nil {
		t.Fatalf("push after an interrupted recording: %v", err)
	}
	if resp.GetApplied() {
		t.Errorf("the same files were applied again: the interrupted push was not completed")
	}
	if recs, _ := rs[1].store.resources(ctx, "shop"); len(recs[kindDataSource]) != 1 {
		t.Errorf("deployed Data Sources: %v", recs[kindDataSource])
	}
	if vs, _ := rs[1].store.fileVersions(ctx, "shop", "datasources/events.datasource"); len(vs) != 1 {
		t.Errorf("file versions: %d, want 1", len(vs))
	}
	if keys, _ := rs[0].store.keys(ctx, "journal.>"); len(keys) != 0 {
		t.Errorf("journal left behind: %v", keys)
	}
}
