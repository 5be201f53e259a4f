package main_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// The backfill scenarios 3 and 4 of the spec (001, "Backfill strategies") with the Events API
// as the live ingestion, as the spec assumes: analytics_events maps its columns from JSON
// paths, and a client sends it batches of 50 events over HTTP the whole time.

var backfillOldJSON = `SCHEMA >
    ` + "`timestamp` DateTime `json:$.timestamp`,\n" +
	"    `session_id` String `json:$.session_id`,\n" +
	"    `action` LowCardinality(String) `json:$.action`,\n" +
	"    `version` LowCardinality(String) `json:$.version`,\n" +
	"    `payload` String `json:$.payload`\n" + `
ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp"
`

var backfillNewJSON = strings.Replace(backfillOldJSON, `ENGINE_SORTING_KEY "timestamp"`, `ENGINE_SORTING_KEY "action, timestamp"`, 1)

// eventsIngestion posts batches of 50 events to analytics_events until stopped, each event with
// a new session_id (the key the checks use), and counts the acknowledged batches.
type eventsIngestion struct {
	stop    chan struct{}
	done    sync.WaitGroup
	batches atomic.Int64
	err     atomic.Value
}

// startEventsIngestion starts posting; ts gives an event's timestamp from its sequence number.
func startEventsIngestion(t *testing.T, api eventsAPI, ws string, ts func(n int64) time.Time) *eventsIngestion {
	ing := &eventsIngestion{stop: make(chan struct{})}
	ing.done.Add(1)
	go func() {
		defer ing.done.Done()
		actions := []string{"buy", "view", "click"}
		for next := int64(0); ; next += 50 {
			select {
			case <-ing.stop:
				return
			default:
			}
			var b strings.Builder
			for n := next; n < next+50; n++ {
				fmt.Fprintf(&b, `{"timestamp":%q,"session_id":"s%d","action":%q,"version":"1","payload":"live"}`+"\n",
					ts(n).UTC().Format(time.DateTime), n, actions[n%3])
			}
			r := postEvents(t, api, ws, "analytics_events", []byte(b.String()), "", false)
			if r.code != http.StatusAccepted || r.ok.SuccessfulRows != 50 {
				ing.err.Store(fmt.Errorf("events batch at %d: %d %s", next, r.code, r.body))
				return
			}
			ing.batches.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(ing.end)
	return ing
}

func (ing *eventsIngestion) end() {
	select {
	case <-ing.stop:
	default:
		close(ing.stop)
	}
	ing.done.Wait()
}

// checkEventsBackfill ends the ingestion, waits until every acknowledged event is visible (a
// last request with wait=true), and compares the two Data Sources: the same count, no
// session_id twice in the new one, none missing.
func checkEventsBackfill(t *testing.T, sys *sluicetest.System, w *popWS, ing *eventsIngestion) {
	t.Helper()
	ing.end()
	if err, _ := ing.err.Load().(error); err != nil {
		t.Fatalf("ingestion: %v", err)
	}
	if r := postEvents(t, evAPI(sys), w.ws, "analytics_events", nil, "wait=true", false); r.code != http.StatusOK {
		t.Fatalf("wait=true: %d %s", r.code, r.body)
	}
	sluicetest.Eventually(t, 30*time.Second, "every acknowledged event in analytics_events", func() bool {
		return w.scalar("SELECT countIf(payload = 'live') FROM {db}.analytics_events") == fmt.Sprint(ing.batches.Load()*50)
	})
	oldN, newN := w.scalar("SELECT count() FROM {db}.analytics_events"), w.scalar("SELECT count() FROM {db}.analytics_events_1")
	dups := w.scalar("SELECT count() - uniqExact(session_id) FROM {db}.analytics_events_1")
	missing := w.scalar("SELECT count() FROM {db}.analytics_events WHERE session_id NOT IN (SELECT session_id FROM {db}.analytics_events_1)")
	t.Logf("analytics_events %s rows, analytics_events_1 %s rows, %d live batches through the Events API", oldN, newN, ing.batches.Load())
	if oldN != newN || dups != "0" || missing != "0" {
		t.Errorf("old %s rows, new %s rows, %s duplicates, %s missing: want equal counts, no duplicates, none missing", oldN, newN, dups, missing)
	}
	if ing.batches.Load() < 5 {
		t.Errorf("only %d batches were sent during the backfill: the test did not ingest the whole time", ing.batches.Load())
	}
}

// TestBackfillScenario3WithEventsAPI is scenario 3 (an incremental timestamp) with events
// stamped with the sending time: the materialized pipe is pushed while events arrive, and
// `sluice pipe populate sync_data --cutover-column timestamp --cutover-in 3s --wait` cuts the
// view over and populates the rows up to the cut-over.
func TestBackfillScenario3WithEventsAPI(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newIngestWS(t, sys, "scenario3_events", map[string]string{"datasources/analytics_events.datasource": backfillOldJSON})
	// History over two years, then live events stamped now.
	w.exec("INSERT INTO {db}.analytics_events SELECT toDateTime('2023-01-01 00:00:00') + number * 3600, concat('h', toString(number)), 'view', '1', 'old' FROM numbers(17000)")
	ing := startEventsIngestion(t, evAPI(sys), w.ws, func(int64) time.Time { return time.Now() })
	pushFiles(t, sys, w.ws, map[string]string{
		"datasources/analytics_events.datasource":   backfillOldJSON,
		"datasources/analytics_events_1.datasource": backfillNewJSON,
		"pipes/sync_data.pipe":                      mvPipe("node", "SELECT * FROM analytics_events", "analytics_events_1"),
	})
	sluicetest.Eventually(t, 30*time.Second, "the view to materialize live events", func() bool {
		return w.scalar("SELECT count() > 0 FROM {db}.analytics_events_1") == "1"
	})
	out, stderr, code := cli(t, bin, sys, "pipe", "populate", "sync_data", "--cutover-column", "timestamp", "--cutover-in", "3s", "--wait", "--workspace", w.ws)
	if code != 0 {
		t.Fatalf("populate: exit %d\n%s\n%s", code, out, stderr)
	}
	time.Sleep(200 * time.Millisecond) // a few more live batches after the populate
	checkEventsBackfill(t, sys, w, ing)
}

// TestBackfillScenario4WithEventsAPI is scenario 4, strategy 1 ("run a populate"): the
// timestamp is not incremental (events carry random times over two years, so they land in
// every partition), and `sluice pipe populate backfill_data --node migrating_node
// --cutover-snapshot --wait` runs while they keep arriving.
func TestBackfillScenario4WithEventsAPI(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newIngestWS(t, sys, "scenario4_events", map[string]string{"datasources/analytics_events.datasource": backfillOldJSON})
	w.exec("INSERT INTO {db}.analytics_events SELECT toDateTime('2023-01-01 00:00:00') + number * 3600, concat('h', toString(number)), 'view', '1', 'old' FROM numbers(17000)")
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	ing := startEventsIngestion(t, evAPI(sys), w.ws, func(n int64) time.Time {
		return start.Add(time.Duration((n*7919)%(730*86400)) * time.Second)
	})
	pushFiles(t, sys, w.ws, map[string]string{
		"datasources/analytics_events.datasource":   backfillOldJSON,
		"datasources/analytics_events_1.datasource": backfillNewJSON,
		"pipes/backfill_data.pipe":                  mvPipe("migrating_node", "SELECT * FROM analytics_events", "analytics_events_1"),
	})
	sluicetest.Eventually(t, 30*time.Second, "the view to materialize live events", func() bool {
		return w.scalar("SELECT count() > 0 FROM {db}.analytics_events_1") == "1"
	})
	out, stderr, code := cli(t, bin, sys, "pipe", "populate", "backfill_data", "--node", "migrating_node", "--cutover-snapshot", "--wait", "--workspace", w.ws)
	if code != 0 {
		t.Fatalf("populate: exit %d\n%s\n%s", code, out, stderr)
	}
	time.Sleep(200 * time.Millisecond)
	checkEventsBackfill(t, sys, w, ing)
	w.exec("OPTIMIZE TABLE {db}.analytics_events FINAL")
}
