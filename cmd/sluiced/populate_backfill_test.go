package main_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// The backfill scenarios of the spec (001, "Backfill strategies"): analytics_events gets a new
// sorting key, so a new Data Source analytics_events_1 is created and backfilled while
// analytics_events keeps receiving inserts.

const backfillOld = `SCHEMA >
    timestamp DateTime,
    session_id String,
    action LowCardinality(String),
    version LowCardinality(String),
    payload String

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp"
`

var backfillNew = strings.Replace(backfillOld, `ENGINE_SORTING_KEY "timestamp"`, `ENGINE_SORTING_KEY "action, timestamp"`, 1)

// ingestion inserts batches of 50 events into analytics_events until stopped, each with a new
// session_id (the key the test checks for duplicates).
type ingestion struct {
	stop    chan struct{}
	done    sync.WaitGroup
	batches atomic.Int64
	err     atomic.Value
}

// startIngestion starts inserting; ts is the SQL of a row's timestamp (number is the row's
// sequence number).
func startIngestion(t *testing.T, w *popWS, ts string, from int64) *ingestion {
	ing := &ingestion{stop: make(chan struct{})}
	ing.done.Add(1)
	go func() {
		defer ing.done.Done()
		next := from
		for {
			select {
			case <-ing.stop:
				return
			default:
			}
			sql := fmt.Sprintf("INSERT INTO %s.analytics_events SELECT %s, concat('s', toString(number)), ['buy', 'view', 'click'][number %% 3 + 1], '1', 'live' FROM numbers(%d, 50)",
				w.db, ts, next)
			if _, err := w.sys.App.Warehouse().Exec(context.Background(), sql); err != nil {
				ing.err.Store(err)
				return
			}
			next += 50
			ing.batches.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(ing.end)
	return ing
}

func (ing *ingestion) end() {
	select {
	case <-ing.stop:
	default:
		close(ing.stop)
	}
	ing.done.Wait()
}

// checkBackfill ends the ingestion and compares the two Data Sources: the same count, no
// session_id twice in the new one, none missing.
func checkBackfill(t *testing.T, w *popWS, ing *ingestion) {
	t.Helper()
	ing.end()
	if err, _ := ing.err.Load().(error); err != nil {
		t.Fatalf("ingestion: %v", err)
	}
	oldN, newN := w.scalar("SELECT count() FROM {db}.analytics_events"), w.scalar("SELECT count() FROM {db}.analytics_events_1")
	dups := w.scalar("SELECT count() - uniqExact(session_id) FROM {db}.analytics_events_1")
	missing := w.scalar("SELECT count() FROM {db}.analytics_events WHERE session_id NOT IN (SELECT session_id FROM {db}.analytics_events_1)")
	t.Logf("analytics_events %s rows, analytics_events_1 %s rows, %d live batches during the test", oldN, newN, ing.batches.Load())
	if oldN != newN || dups != "0" || missing != "0" {
		t.Errorf("old %s rows, new %s rows, %s duplicates, %s missing: want equal counts, no duplicates, none missing", oldN, newN, dups, missing)
	}
	if ing.batches.Load() < 5 {
		t.Errorf("only %d batches were inserted during the backfill: the test did not ingest the whole time", ing.batches.Load())
	}
}

func pushFiles(t *testing.T, sys *sluicetest.System, ws string, files map[string]string) {
	t.Helper()
	sys.EnsureWorkspace(t, ws)
	if _, err := sys.Catalog.Push(context.Background(), pushRequest(ws, files)); err != nil {
		t.Fatalf("push: %v", err)
	}
}

func pushRequest(ws string, files map[string]string) *catalogv1.PushRequest {
	req := &catalogv1.PushRequest{Workspace: ws}
	for path, content := range files {
		req.Files = append(req.Files, &catalogv1.Datafile{Path: path, Content: content})
	}
	return req
}

// TestBackfillScenario3IncrementalTimestamp is scenario 3 without a second pipe: the
// materialized pipe is the plain `SELECT * FROM analytics_events`, and `sluice pipe populate
// sync_data --cutover-column timestamp --cutover-in 3s --wait` cuts the view over to the rows
// after a moment 3 seconds ahead, empties the new Data Source, and once that moment has passed
// populates the rows up to it. Events arrive the whole time with an incremental timestamp.
func TestBackfillScenario3IncrementalTimestamp(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newPopWS(t, sys, "scenario3", map[string]string{"datasources/analytics_events.datasource": backfillOld})
	// History over two years, then live events stamped now().
	w.exec("INSERT INTO {db}.analytics_events SELECT toDateTime('2023-01-01 00:00:00') + number * 3600, concat('h', toString(number)), 'view', '1', 'old' FROM numbers(17000)")
	ing := startIngestion(t, w, "now()", 0)
	pushFiles(t, sys, "scenario3", map[string]string{
		"datasources/analytics_events.datasource":   backfillOld,
		"datasources/analytics_events_1.datasource": backfillNew,
		"pipes/sync_data.pipe":                      mvPipe("node", "SELECT * FROM analytics_events", "analytics_events_1"),
	})
	sluicetest.Eventually(t, 30*time.Second, "the view to materialize live events", func() bool {
		return w.scalar("SELECT count() > 0 FROM {db}.analytics_events_1") == "1"
	})
	out, stderr, code := cli(t, bin, sys, "pipe", "populate", "sync_data", "--cutover-column", "timestamp", "--cutover-in", "3s", "--wait", "--workspace", "scenario3")
	if code != 0 {
		t.Fatalf("populate: exit %d\n%s\n%s", code, out, stderr)
	}
	time.Sleep(200 * time.Millisecond) // a few more live batches after the populate
	checkBackfill(t, w, ing)
}

// TestBackfillScenario4Populate is scenario 4, strategy 1 ("run a populate"): the timestamp is
// not incremental, so the materialized pipe has no condition; `sluice pipe populate
// backfill_data --node migrating_node --cutover-snapshot --wait` runs while events keep
// arriving (with random timestamps over two years, so into every partition). The snapshot
// cut-over makes it exact: rows inserted before the job starts come from the populate, later
// ones from the view.
func TestBackfillScenario4Populate(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newPopWS(t, sys, "scenario4", map[string]string{"datasources/analytics_events.datasource": backfillOld})
	w.exec("INSERT INTO {db}.analytics_events SELECT toDateTime('2023-01-01 00:00:00') + number * 3600, concat('h', toString(number)), 'view', '1', 'old' FROM numbers(17000)")
	ing := startIngestion(t, w, "toDateTime('2023-01-01 00:00:00') + cityHash64(number) % (730 * 86400)", 0)
	pushFiles(t, sys, "scenario4", map[string]string{
		"datasources/analytics_events.datasource":   backfillOld,
		"datasources/analytics_events_1.datasource": backfillNew,
		"pipes/backfill_data.pipe":                  mvPipe("migrating_node", "SELECT * FROM analytics_events", "analytics_events_1"),
	})
	sluicetest.Eventually(t, 30*time.Second, "the view to materialize live events", func() bool {
		return w.scalar("SELECT count() > 0 FROM {db}.analytics_events_1") == "1"
	})
	out, stderr, code := cli(t, bin, sys, "pipe", "populate", "backfill_data", "--node", "migrating_node", "--cutover-snapshot", "--wait", "--workspace", "scenario4")
	if code != 0 {
		t.Fatalf("populate: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "done") {
		t.Errorf("--wait output:\n%s", out)
	}
	time.Sleep(200 * time.Millisecond)
	checkBackfill(t, w, ing)
	// The source's merges run again after the job.
	w.exec("OPTIMIZE TABLE {db}.analytics_events FINAL")
}
