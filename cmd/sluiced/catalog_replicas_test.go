package main_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/services/catalog"
)

// TestCatalogReplicasTakeTurns: two catalog processes, against one NATS server and one
// clickhouse-server, each receive a stream of pushes to the same workspace at the same time.
// Every push succeeds; the workspace's lease in NATS passes from one process to the other
// only after its holder released it (never two holders at once), and both processes held it;
// at the end ClickHouse has every column of every version and the catalog numbered each file's
// versions without a gap, and no lease or journal is left behind.
func TestCatalogReplicasTakeTurns(t *testing.T) {
	if testing.Short() {
		t.Skip("catalog processes and a clickhouse-server")
	}
	c := sluicetest.StartCluster(t, sluicetest.ClusterOptions{NATSNodes: 1, Catalogs: 2})
	ctx := context.Background()
	catalogs := c.Of("catalog")
	var clients []catalogv1.CatalogServiceClient
	for _, s := range catalogs {
		clients = append(clients, sluicetest.NewClients(t, s.Addr, c.Token).Catalog)
	}
	const ws = "turns"
	if _, err := clients[0].CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
		t.Fatalf("create workspace: %v", err)
	}
	got, err := clients[1].GetWorkspace(ctx, &catalogv1.GetWorkspaceRequest{Name: ws})
	if err != nil {
		t.Fatalf("the other catalog does not see the workspace: %v", err)
	}
	db := got.GetWorkspace().GetDatabase()

	// Every change of the lease, in order, as the test's own NATS client sees it.
	nc := c.NATSConn(t)
	leases, err := nc.JS.KeyValue(ctx, catalog.BucketLeases)
	if err != nil {
		t.Fatalf("lease bucket: %v", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watcher, err := leases.Watch(watchCtx, "ws."+ws, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	type change struct {
		op     jetstream.KeyValueOp
		holder string
	}
	var (
		mu      sync.Mutex
		changes []change
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for e := range watcher.Updates() {
			if e != nil {
				mu.Lock()
				changes = append(changes, change{e.Operation(), string(e.Value())})
				mu.Unlock()
			}
		}
	}()

	// Each catalog pushes successive versions of its own Data Source: each version adds a
	// column, so each push is an ALTER of a table that a push interleaved with another would
	// plan against a stale state.
	const rounds = 6
	version := func(r, i int) string {
		cols := []string{"timestamp DateTime"}
		for k := 0; k <= i; k++ {
			cols = append(cols, fmt.Sprintf("c_%d_%d Int64 DEFAULT %d", r, k, k))
		}
		return "SCHEMA >\n    " + strings.Join(cols, ",\n    ") + "\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"timestamp\"\n"
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*rounds)
	for r, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				resp, err := cl.Push(pctx, &catalogv1.PushRequest{Workspace: ws,
					Files: []*catalogv1.Datafile{{Path: fmt.Sprintf("datasources/t%d.datasource", r), Content: version(r, i)}}})
				cancel()
				if err != nil {
					errs <- fmt.Errorf("%s: push %d: %w", catalogs[r].Name, i, err)
				} else if !resp.GetApplied() {
					errs <- fmt.Errorf("%s: push %d not applied: %v", catalogs[r].Name, i, resp)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if _, err := leases.Get(ctx, "ws."+ws); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the lease is still there after the last push: %v", err)
	}
	// The lease is gone: the watcher's last change is the last release.
	sluicetest.Eventually(t, 30*time.Second, "the last release of the lease seen by the watcher", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(changes) > 0 && changes[len(changes)-1].op != jetstream.KeyValuePut
	})
	stopWatch()
	<-watched

	// Holders: a new holder only after a release; both processes held it.
	holders := map[string]bool{}
	current := ""
	for i, ch := range changes {
		switch ch.op {
		case jetstream.KeyValuePut:
			if current != "" && ch.holder != current {
				t.Fatalf("change %d: %s took the lease while %s held it (changes: %v)", i, ch.holder, current, changes)
			}
			current = ch.holder
			holders[ch.holder] = true
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			current = ""
		}
	}
	byProcess := map[string]bool{}
	for h := range holders {
		for _, s := range catalogs {
			if strings.Contains(h, fmt.Sprintf("-%d-", s.PID())) {
				byProcess[s.Name] = true
			}
		}
	}
	if len(byProcess) != len(catalogs) {
		t.Fatalf("lease holders %v: want each of the %d catalog processes", holders, len(catalogs))
	}

	wh := c.Warehouse(t)
	for r := range clients {
		table := fmt.Sprintf("t%d", r)
		res, err := wh.Query(ctx, "SELECT name FROM system.columns WHERE database = "+warehouse.QuoteString(db)+
			" AND table = "+warehouse.QuoteString(table)+" ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, row := range res.Rows {
			cols = append(cols, fmt.Sprint(row[0]))
		}
		want := []string{}
		for k := range rounds {
			want = append(want, fmt.Sprintf("c_%d_%d", r, k))
		}
		want = append(want, "timestamp")
		if strings.Join(cols, ",") != strings.Join(want, ",") {
			t.Errorf("%s columns in ClickHouse: %v, want %v", table, cols, want)
		}
		vs, err := clients[1-r].ListFileVersions(ctx, &catalogv1.ListFileVersionsRequest{Workspace: ws, Path: "datasources/" + table + ".datasource"})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs.GetVersions()) != rounds {
			t.Fatalf("%s: %d stored versions, want %d", table, len(vs.GetVersions()), rounds)
		}
		for i, v := range vs.GetVersions() {
			if v.GetVersion() != int64(rounds-i) || v.GetContent() != version(r, rounds-1-i) {
				t.Errorf("%s: version %d of %d is number %d with content\n%s", table, i, rounds, v.GetVersion(), v.GetContent())
			}
		}
	}
	records, err := nc.JS.KeyValue(ctx, catalog.BucketCatalog)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := records.ListKeysFiltered(ctx, "journal.>"); err != nil {
		t.Fatal(err)
	} else {
		for k := range keys.Keys() {
			t.Errorf("journal left behind: %s", k)
		}
	}
	t.Logf("%d lease changes, holders %v", len(changes), holders)
}
