package main_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// newIngestWS creates a workspace explicitly, pushes files into it and returns helpers on it.
func newIngestWS(t testing.TB, sys *sluicetest.System, ws string, files map[string]string) *popWS {
	t.Helper()
	return newPopWS(t, sys, ws, files)
}

// eventsAPI is where the Events API listens and the token requests carry.
type eventsAPI struct{ url, token string }

// evAPI is the Events API of an in-process system, with its operator token.
func evAPI(sys *sluicetest.System) eventsAPI { return eventsAPI{sys.EventsURL, sys.Token} }

// eventsReply is one Events API answer.
type eventsReply struct {
	code   int
	header http.Header
	body   string
	ok     struct {
		SuccessfulRows  uint64 `json:"successful_rows"`
		QuarantinedRows uint64 `json:"quarantined_rows"`
	}
}

// postEvents sends body to POST /v0/events with a real HTTP client, with the API's token.
func postEvents(t testing.TB, api eventsAPI, ws, ds string, body []byte, query string, gz bool) eventsReply {
	t.Helper()
	url := fmt.Sprintf("%s/v0/events?name=%s&workspace=%s", api.url, ds, ws)
	if ws == "" {
		url = fmt.Sprintf("%s/v0/events?name=%s", api.url, ds)
	}
	if query != "" {
		url += "&" + query
	}
	var r io.Reader = bytes.NewReader(body)
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		r = &buf
	}
	req, err := http.NewRequest(http.MethodPost, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if api.token != "" {
		req.Header.Set("Authorization", "Bearer "+api.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	out := eventsReply{code: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &out.ok)
	return out
}

const eventsDS = "SCHEMA >\n" +
	"    `timestamp` DateTime `json:$.timestamp`,\n" +
	"    `user_id` UInt64 `json:$.user.id`,\n" +
	"    `country` LowCardinality(String) `json:$.user.geo.country`,\n" +
	"    `tags` Array(String) `json:$.tags[:]`,\n" +
	"    `item_ids` Array(UInt32) `json:$.items[:].id`,\n" +
	"    `amount` Float64 `json:$.amount` DEFAULT 0,\n" +
	"    `note` Nullable(String) `json:$.note`,\n" +
	"    `action` String\n\n" +
	"ENGINE \"MergeTree\"\n" +
	"ENGINE_PARTITION_KEY \"toYYYYMM(timestamp)\"\n" +
	"ENGINE_SORTING_KEY \"timestamp, user_id\"\n"

const countriesDS = `SCHEMA >
    country String,
    n UInt64

ENGINE "SummingMergeTree"
ENGINE_SORTING_KEY "country"
`

// TestEventsAPI sends NDJSON with nested JSON paths to POST /v0/events over HTTP, with good and
// bad rows, gzip, wait=true and the error cases, and checks every row where it must be: the
// Data Source, its quarantine (with the error), the materialized view downstream and the ops
// log.
func TestEventsAPI(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs("-ingest.max-request-bytes", "65536"))
	w := newIngestWS(t, sys, "events_api", map[string]string{
		"datasources/events.datasource":    eventsDS,
		"datasources/countries.datasource": countriesDS,
		"pipes/by_country.pipe":            mvPipe("agg", "SELECT country, count() AS n FROM events GROUP BY country", "countries"),
	})
	good := `{"timestamp":"2024-03-01 10:00:00","user":{"id":7,"geo":{"country":"ES"}},"tags":["a","b"],"items":[{"id":1},{"id":2}],"amount":12.5,"note":"first","action":"buy"}
{"timestamp":"2024-03-01T11:00:00Z","user":{"id":"8","geo":{"country":"FR"}},"tags":[],"items":[],"action":"view"}
{"timestamp":1709290800,"user":{"id":9,"geo":{"country":"ES"}},"action":"click","note":null}
`
	bad := `{"timestamp":"yesterday","user":{"id":10,"geo":{"country":"ES"}},"action":"buy"}
{"timestamp":"2024-03-01 12:00:00","user":{"id":"abc","geo":{"country":"DE"}},"action":"buy"}
{"timestamp":"2024-03-01 12:00:00","user":{"geo":{"country":"DE"}},"action":"buy"}
`
	r := postEvents(t, evAPI(sys), "events_api", "events", []byte(good+bad), "", false)
	if r.code != http.StatusAccepted || r.ok.SuccessfulRows != 3 || r.ok.QuarantinedRows != 3 {
		t.Fatalf("mixed request: %d %s; want 202 with 3 successful and 3 quarantined rows", r.code, r.body)
	}
	// gzip, and wait=true: 200 once the rows are visible.
	more := `{"timestamp":"2024-04-02 00:00:00","user":{"id":11,"geo":{"country":"IT"}},"tags":["x"],"items":[{"id":5},{"nope":1}],"action":"buy"}` + "\n"
	r = postEvents(t, evAPI(sys), "events_api", "events", []byte(more), "wait=true", true)
	if r.code != http.StatusOK || r.ok.SuccessfulRows != 1 || r.ok.QuarantinedRows != 0 {
		t.Fatalf("gzip with wait=true: %d %s; want 200 with 1 successful row", r.code, r.body)
	}
	// wait=true of a later request means the earlier one is visible too (one writer, in order).
	w.wantRows("SELECT timestamp, user_id, country, tags, item_ids, amount, note, action FROM {db}.events ORDER BY user_id",
		"2024-03-01 10:00:00|7|ES|[a b]|[1 2]|12.5|first|buy",
		"2024-03-01 11:00:00|8|FR|[]|[]|0|<nil>|view",
		"2024-03-01 11:00:00|9|ES|[]|[]|0|<nil>|click",
		"2024-04-02 00:00:00|11|IT|[x]|[5]|0|<nil>|buy")
	w.wantRows("SELECT user_id, c__error_column, c__error FROM {db}.events_quarantine ORDER BY c__error[1]",
		"<nil>|[user_id]|[missing value on column 'user_id' (it is not Nullable and has no DEFAULT)]",
		"abc|[user_id]|[value 'abc' on column 'user_id' is not UInt64]",
		"10|[timestamp]|[value 'yesterday' on column 'timestamp' is not DateTime]")
	if n := w.scalar("SELECT countIf(c__import_id != '' AND insertion_date > now() - 3600) FROM {db}.events_quarantine"); n != "3" {
		t.Errorf("quarantine rows with an import id and a recent insertion_date: %s, want 3", n)
	}
	// The materialized view received every row.
	w.wantRows("SELECT country, sum(n) FROM {db}.countries GROUP BY country ORDER BY country", "ES|2", "FR|1", "IT|1")

	// Refused requests write nothing.
	before := w.scalar("SELECT count() FROM {db}.events")
	r = postEvents(t, evAPI(sys), "events_api", "events", []byte(good+"{\"timestamp\": 1,\n"+good), "", false)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "line 4") {
		t.Errorf("malformed JSON on line 4: %d %s; want 400 naming line 4", r.code, r.body)
	}
	r = postEvents(t, evAPI(sys), "events_api", "nosuch", []byte(good), "", false)
	if r.code != http.StatusNotFound || !strings.Contains(r.body, "'nosuch'") {
		t.Errorf("unknown Data Source: %d %s; want 404 naming it", r.code, r.body)
	}
	big := bytes.Repeat([]byte(strings.SplitAfter(good, "\n")[0]), 65536/100)
	r = postEvents(t, evAPI(sys), "events_api", "events", big, "", false)
	if r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte body over the 64 KiB limit: %d %s; want 413", len(big), r.code, r.body)
	}
	r = postEvents(t, evAPI(sys), "events_api", "events", []byte(good), "wait=maybe", false)
	if r.code != http.StatusBadRequest {
		t.Errorf("wait=maybe: %d; want 400", r.code)
	}
	r = postEvents(t, evAPI(sys), "events_api", "events", []byte(""), "wait=true", false)
	if r.code != http.StatusOK || r.ok.SuccessfulRows != 0 {
		t.Errorf("empty request: %d %s; want 200 with 0 rows", r.code, r.body)
	}
	// wait=true with nothing to write waits for everything accepted before it: none of the
	// refused requests wrote a row.
	if r := postEvents(t, evAPI(sys), "events_api", "events", nil, "wait=true", false); r.code != http.StatusOK {
		t.Fatalf("empty wait=true: %d %s", r.code, r.body)
	}
	if after := w.scalar("SELECT count() FROM {db}.events"); after != before {
		t.Errorf("rows after the refused requests: %s, want %s", after, before)
	}

	// Hostile names are refused before they reach NATS or ClickHouse; hostile values are data.
	for _, q := range []string{"name=events%3B%20DROP%20TABLE%20events&workspace=events_api", "name=events&workspace=..%2Fother", "name=events.x&workspace=events_api"} {
		req, _ := http.NewRequest(http.MethodPost, sys.EventsURL+"/v0/events?"+q, strings.NewReader(good))
		req.Header.Set("Authorization", "Bearer "+sys.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
		}
	}
	hostile := `'); DROP TABLE events; --\\\u0000` // JSON for: '); DROP TABLE events; --\ and a NUL
	r = postEvents(t, evAPI(sys), "events_api", "events", []byte(`{"timestamp":"2024-05-01 00:00:00","user":{"id":99,"geo":{"country":"XX"}},"action":"`+hostile+`"}`+"\n"), "wait=true", false)
	if r.code != http.StatusOK || r.ok.SuccessfulRows != 1 {
		t.Fatalf("hostile value: %d %s", r.code, r.body)
	}
	if n := w.scalar("SELECT count() FROM {db}.events WHERE action = " + warehouse.QuoteString("'); DROP TABLE events; --\\\x00")); n != "1" {
		t.Errorf("the hostile value was not stored verbatim (%s rows match)", n)
	}
	before = w.scalar("SELECT count() FROM {db}.events")

	// A synchronous request after the refused ones: still only the accepted rows.
	r = postEvents(t, evAPI(sys), "events_api", "events", []byte(more), "wait=true", false)
	if r.code != http.StatusOK {
		t.Fatalf("wait=true: %d %s", r.code, r.body)
	}
	if after := w.scalar("SELECT count() FROM {db}.events"); after != fmt.Sprint(atoi(t, before)+1) {
		t.Errorf("rows after the refused requests: %s, want %s + 1", after, before)
	}

	// The ops log has append-hfi events that add up to what was written.
	sluicetest.Eventually(t, 30*time.Second, "append-hfi events for every row", func() bool {
		resp, err := sys.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{
			Filter: &opslogv1.EventFilter{Workspace: "events_api", Datasource: "events", EventTypes: []opslogv1.EventType{opslogv1.EventType_EVENT_TYPE_APPEND_HFI}}, PageSize: 100})
		if err != nil {
			return false
		}
		var rows, q uint64
		for _, ev := range resp.GetEvents() {
			if ev.GetResult() != opslogv1.Result_RESULT_OK {
				t.Fatalf("append-hfi event with result %s: %s", ev.GetResult(), ev.GetError())
			}
			rows += ev.GetRows()
			q += ev.GetRowsQuarantine()
		}
		return rows == 6 && q == 3
	})
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// writeFile writes a test input file.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const readingsDS = "SCHEMA >\n" +
	"    `day` Date `json:$.day`,\n" +
	"    `station` String `json:$.station`,\n" +
	"    `volume` Float32 `json:$.volume`\n\n" +
	"ENGINE \"MergeTree\"\n" +
	"ENGINE_SORTING_KEY \"day, station\"\n"

// recoverPipe is the "recover quarantined rows" pattern: a copy pipe reads the quarantine,
// fixes the values (a decimal comma) and appends them to the Data Source.
const recoverPipe = `NODE fix
SQL >
    SELECT toDate(assumeNotNull(day)) AS day, assumeNotNull(station) AS station,
        toFloat32(replaceAll(assumeNotNull(volume), ',', '.')) AS volume
    FROM readings_quarantine
    WHERE c__error_column = ['volume']

TYPE COPY
TARGET_DATASOURCE readings
`

// TestDatasourceAppendAndReplaceCLI appends files through `sluice datasource append` (CSV with
// and without a header, gzip-compressed NDJSON), recovers a quarantined row with a copy pipe
// that reads readings_quarantine, refuses a malformed file whole, and replaces the content
// with `sluice datasource replace`.
func TestDatasourceAppendAndReplaceCLI(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newIngestWS(t, sys, "files", map[string]string{
		"datasources/readings.datasource": readingsDS,
		"pipes/recover.pipe":              recoverPipe,
	})
	run := func(args ...string) (string, string) {
		t.Helper()
		out, stderr, code := cli(t, bin, sys, append(args, "--workspace", "files")...)
		if code != 0 {
			t.Fatalf("sluice %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out, stderr
	}
	out, _ := run("datasource", "append", "readings", writeFile(t, "with_header.csv", "day,station,volume\n2024-01-01,A,1.5\n2024-01-02,B,\"11,57\"\n"))
	if !strings.Contains(out, "1 rows") || !strings.Contains(out, "1 rows in quarantine") {
		t.Errorf("append output: %q", out)
	}
	run("datasource", "append", "readings", writeFile(t, "no_header.csv", "2024-01-03,C,3\n2024-01-03,D,4.25\n"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"day":"2024-01-05","station":"E","volume":5}` + "\n" + `{"day":"2024-01-06","station":"F","volume":"6.5"}` + "\n"))
	_ = zw.Close()
	run("datasource", "append", "readings", writeFile(t, "rows.ndjson.gz", gz.String()))
	w.wantRows("SELECT day, station, volume FROM {db}.readings ORDER BY day, station",
		"2024-01-01 00:00:00|A|1.5", "2024-01-03 00:00:00|C|3", "2024-01-03 00:00:00|D|4.25", "2024-01-05 00:00:00|E|5", "2024-01-06 00:00:00|F|6.5")
	w.wantRows("SELECT day, station, volume, c__error FROM {db}.readings_quarantine",
		"2024-01-02|B|11,57|[value '11,57' on column 'volume' is not Float32]")

	// A malformed file is refused whole, naming the line.
	out, stderr, code := cli(t, bin, sys, "datasource", "append", "readings", writeFile(t, "bad.csv", "2024-02-01,X,1\n2024-02-02,Y,2\n2024-02-03,Z\n"), "--workspace", "files")
	if code == 0 || !strings.Contains(stderr, "line 3") {
		t.Errorf("malformed CSV: exit %d\n%s%s; want a failure naming line 3", code, out, stderr)
	}
	if n := w.scalar("SELECT count() FROM {db}.readings WHERE station IN ('X', 'Y', 'Z')"); n != "0" {
		t.Errorf("%s rows of the refused file were written", n)
	}
	// An unknown Data Source is named.
	_, stderr, code = cli(t, bin, sys, "datasource", "append", "nosuch", writeFile(t, "x.csv", "1\n"), "--workspace", "files")
	if code == 0 || !strings.Contains(stderr, "'nosuch'") {
		t.Errorf("unknown Data Source: exit %d %s", code, stderr)
	}

	// Recover the quarantined row with the copy pipe that reads readings_quarantine.
	run("pipe", "copy", "run", "recover", "--wait")
	w.wantRows("SELECT day, station, volume FROM {db}.readings WHERE station = 'B'", "2024-01-02 00:00:00|B|11.57")

	// Replace: the new content, atomically.
	out, _ = run("datasource", "replace", "readings", writeFile(t, "new.csv", "day,station,volume\n2025-01-01,N,1\n2025-01-02,M,2\n"))
	if !strings.Contains(out, "replaced readings: 2 rows") {
		t.Errorf("replace output: %q", out)
	}
	w.wantRows("SELECT day, station, volume FROM {db}.readings ORDER BY day", "2025-01-01 00:00:00|N|1", "2025-01-02 00:00:00|M|2")

	// Ops log: one append event per file (the refused one has none) and the replace.
	sluicetest.Eventually(t, 30*time.Second, "append and replace events", func() bool {
		resp, err := sys.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{
			Filter: &opslogv1.EventFilter{Workspace: "files", Datasource: "readings", EventTypes: []opslogv1.EventType{opslogv1.EventType_EVENT_TYPE_APPEND, opslogv1.EventType_EVENT_TYPE_REPLACE}}, PageSize: 100})
		if err != nil {
			return false
		}
		appends, replaces := 0, 0
		var rows, q uint64
		for _, ev := range resp.GetEvents() {
			switch ev.GetEventType() {
			case opslogv1.EventType_EVENT_TYPE_APPEND:
				appends++
				if !strings.HasSuffix(ev.GetOptions()["file_name"], ".csv") && !strings.HasSuffix(ev.GetOptions()["file_name"], ".gz") {
					t.Fatalf("append event without the file's name: %v", ev.GetOptions())
				}
				rows += ev.GetRows()
				q += ev.GetRowsQuarantine()
			case opslogv1.EventType_EVENT_TYPE_REPLACE:
				replaces++
			}
		}
		return appends == 3 && replaces == 1 && rows == 5 && q == 1
	})
}

// TestEventsAPILimits checks the per-workspace rate limits: past them a request gets 429 with
// Retry-After and writes nothing; the accepted ones are all there.
func TestEventsAPILimits(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs("-ingest.requests-per-second", "5", "-ingest.rows-per-second", "0", "-ingest.bytes-per-second", "0"))
	w := newIngestWS(t, sys, "limits", map[string]string{"datasources/readings.datasource": readingsDS})
	row := []byte(`{"day":"2024-01-01","station":"A","volume":1}` + "\n")
	accepted, limited := 0, 0
	for range 30 {
		r := postEvents(t, evAPI(sys), "limits", "readings", row, "", false)
		switch r.code {
		case http.StatusAccepted:
			accepted++
			if r.header.Get("X-RateLimit-Limit") != "5" || r.header.Get("X-RateLimit-Remaining") == "" || r.header.Get("X-RateLimit-Reset") == "" {
				t.Errorf("rate-limit headers: %v", r.header)
			}
		case http.StatusTooManyRequests:
			limited++
			if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 without a Retry-After: %q", ra)
			}
			if !strings.Contains(r.body, "nothing was written") {
				t.Errorf("429 body: %s", r.body)
			}
		default:
			t.Fatalf("unexpected %d %s", r.code, r.body)
		}
	}
	if limited == 0 || accepted == 0 {
		t.Fatalf("30 requests at once with a limit of 5/s: %d accepted, %d limited; want both", accepted, limited)
	}
	// Another workspace has its own budget.
	other := newIngestWS(t, sys, "limits2", map[string]string{"datasources/readings.datasource": readingsDS})
	if r := postEvents(t, evAPI(sys), "limits2", "readings", row, "wait=true", false); r.code != http.StatusOK {
		t.Errorf("another workspace: %d %s", r.code, r.body)
	}
	sluicetest.Eventually(t, 30*time.Second, "a request to pass the limit again", func() bool {
		return postEvents(t, evAPI(sys), "limits", "readings", nil, "wait=true", false).code == http.StatusOK
	})
	sluicetest.Eventually(t, 10*time.Second, "the accepted rows", func() bool {
		return w.scalar("SELECT count() FROM {db}.readings") == fmt.Sprint(accepted)
	})
	if n := other.scalar("SELECT count() FROM {db}.readings"); n != "1" {
		t.Errorf("limits2.readings has %s rows, want 1", n)
	}
}

// TestDatasourceAppendParquet appends a Parquet file (written here with parquet-go: strings,
// integers, an optional float, a list, a millisecond timestamp and a date) through the CLI, with
// a JSON path into the list and a row that goes to quarantine.
func TestDatasourceAppendParquet(t *testing.T) {
	sys := sluicetest.Start(t)
	_, bin := sluicetest.Binaries(t)
	w := newIngestWS(t, sys, "parquet", map[string]string{"datasources/pq.datasource": "SCHEMA >\n" +
		"    `id` UInt8 `json:$.id`,\n    `name` String `json:$.name`,\n    `ts` DateTime64(3) `json:$.ts`,\n" +
		"    `day` Date `json:$.day`,\n    `first_tag` Nullable(String) `json:$.tags[0]`,\n    `tags` Array(String) `json:$.tags[:]`,\n" +
		"    `score` Nullable(Float64) `json:$.score`\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"id\"\n"})
	type row struct {
		ID    int64     `parquet:"id"`
		Name  string    `parquet:"name"`
		TS    time.Time `parquet:"ts,timestamp(millisecond)"`
		Day   int32     `parquet:"day,date"`
		Tags  []string  `parquet:"tags,list"`
		Score *float64  `parquet:"score,optional"`
	}
	score := 9.5
	var buf bytes.Buffer
	pw := parquet.NewGenericWriter[row](&buf)
	if _, err := pw.Write([]row{
		{ID: 1, Name: "a", TS: time.Date(2024, 5, 1, 10, 0, 0, 123e6, time.UTC), Day: 19844, Tags: []string{"x", "y"}, Score: &score},
		{ID: 2, Name: "b", TS: time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC), Day: 19845},
		{ID: 300, Name: "too big for UInt8", TS: time.Date(2024, 5, 3, 0, 0, 0, 0, time.UTC), Day: 19846},
	}); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := cli(t, bin, sys, "datasource", "append", "pq", writeFile(t, "rows.parquet", buf.String()), "--workspace", "parquet")
	if code != 0 || !strings.Contains(out, "2 rows, 1 rows in quarantine") {
		t.Fatalf("append parquet: exit %d\n%s%s", code, out, stderr)
	}
	w.wantRows("SELECT id, name, toString(ts), day, first_tag, tags, score FROM {db}.pq ORDER BY id",
		"1|a|2024-05-01 10:00:00.123|2024-05-01 00:00:00|x|[x y]|9.5",
		"2|b|2024-05-02 00:00:00.000|2024-05-02 00:00:00|<nil>|[]|<nil>")
	w.wantRows("SELECT id, c__error FROM {db}.pq_quarantine", "300|[value '300' on column 'id' is not UInt8]")
	// Not a Parquet file: refused, nothing written.
	_, stderr, code = cli(t, bin, sys, "datasource", "append", "pq", writeFile(t, "bad.parquet", "not parquet at all"), "--workspace", "parquet")
	if code == 0 || !strings.Contains(stderr, "not a Parquet file") {
		t.Errorf("bad parquet: exit %d %s", code, stderr)
	}
}

// TestAppendRPC calls the unary gRPC Append directly: CSV rows with wait, then the errors a
// client must be able to tell apart (a format error naming the line, an unknown Data Source).
func TestAppendRPC(t *testing.T) {
	sys := sluicetest.Start(t)
	w := newIngestWS(t, sys, "append_rpc", map[string]string{"datasources/readings.datasource": readingsDS})
	ctx := context.Background()
	resp, err := sys.Ingest.Append(ctx, &ingestv1.AppendRequest{
		Workspace: "append_rpc", Datasource: "readings", Format: ingestv1.Format_FORMAT_CSV, Wait: true,
		Data: []byte("station,day,volume\nA,2024-01-01,1\nB,2024-01-02,x\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResult(); r.GetSuccessfulRows() != 1 || r.GetQuarantinedRows() != 1 || r.GetImportId() == "" || r.GetBytes() == 0 {
		t.Errorf("result %v", r)
	}
	w.wantRows("SELECT day, station, volume FROM {db}.readings", "2024-01-01 00:00:00|A|1")
	w.wantRows("SELECT station, c__import_id = "+warehouse.QuoteString(resp.GetResult().GetImportId())+" FROM {db}.readings_quarantine", "B|1")
	_, err = sys.Ingest.Append(ctx, &ingestv1.AppendRequest{Workspace: "append_rpc", Datasource: "readings", Format: ingestv1.Format_FORMAT_NDJSON, Data: []byte("{}\n{\n")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("malformed NDJSON: %v; want InvalidArgument naming line 2", err)
	}
	_, err = sys.Ingest.Append(ctx, &ingestv1.AppendRequest{Workspace: "append_rpc", Datasource: "nope", Data: []byte("{}\n")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown Data Source: %v; want NotFound", err)
	}
	_, err = sys.Ingest.Append(ctx, &ingestv1.AppendRequest{Workspace: "append_rpc", Datasource: "readings_quarantine", Data: []byte("{}\n")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("appending to a quarantine table: %v; want NotFound", err)
	}
}

// TestEventsAPIDataSourceDroppedWhileQueued drops a Data Source while accepted rows for it wait
// to be written: the writer cannot write them, records an append-hfi event with result error
// naming the engine's error, and goes on with the other Data Source's rows of the same batch.
func TestEventsAPIDataSourceDroppedWhileQueued(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs("-ingest.flush-interval", "3s"))
	w := newIngestWS(t, sys, "dropped", map[string]string{"datasources/readings.datasource": readingsDS, "datasources/other.datasource": readingsDS})
	row := []byte(`{"day":"2024-01-01","station":"A","volume":1}` + "\n")
	for _, ds := range []string{"readings", "other"} {
		if r := postEvents(t, evAPI(sys), "dropped", ds, row, "", false); r.code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", ds, r.code, r.body)
		}
	}
	// Well within the 3 s the rows wait before they are written.
	if _, err := sys.Catalog.DeleteDataSource(context.Background(), &catalogv1.DeleteDataSourceRequest{Workspace: "dropped", Name: "readings"}); err != nil {
		t.Fatal(err)
	}
	if r := postEvents(t, evAPI(sys), "dropped", "readings", row, "", false); r.code != http.StatusNotFound {
		t.Errorf("after the drop: %d %s; want 404", r.code, r.body)
	}
	if r := postEvents(t, evAPI(sys), "dropped", "other", nil, "wait=true", false); r.code != http.StatusOK {
		t.Fatalf("wait=true: %d %s", r.code, r.body)
	}
	if n := w.scalar("SELECT count() FROM {db}.other"); n != "1" {
		t.Errorf("other has %s rows, want 1", n)
	}
	sluicetest.Eventually(t, 30*time.Second, "an append-hfi error event for readings", func() bool {
		resp, err := sys.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{
			Filter: &opslogv1.EventFilter{Workspace: "dropped", Datasource: "readings", EventTypes: []opslogv1.EventType{opslogv1.EventType_EVENT_TYPE_APPEND_HFI}}, PageSize: 10})
		if err != nil || len(resp.GetEvents()) == 0 {
			return false
		}
		ev := resp.GetEvents()[0]
		if ev.GetResult() != opslogv1.Result_RESULT_ERROR || !strings.Contains(ev.GetError(), "readings") {
			t.Fatalf("event %v", ev)
		}
		return true
	})
}

// TestEventsAPIRowsLimit checks the rows-per-second limit: a request that would take more
// rows than the workspace has left this second gets 429 and writes nothing.
func TestEventsAPIRowsLimit(t *testing.T) {
	sys := sluicetest.Start(t, sluicetest.WithArgs("-ingest.requests-per-second", "0", "-ingest.rows-per-second", "100", "-ingest.bytes-per-second", "0"))
	w := newIngestWS(t, sys, "rows_limit", map[string]string{"datasources/readings.datasource": readingsDS})
	body := []byte(strings.Repeat(`{"day":"2024-01-01","station":"A","volume":1}`+"\n", 60))
	if r := postEvents(t, evAPI(sys), "rows_limit", "readings", body, "", false); r.code != http.StatusAccepted {
		t.Fatalf("first 60 rows: %d %s", r.code, r.body)
	}
	r := postEvents(t, evAPI(sys), "rows_limit", "readings", body, "", false)
	if r.code != http.StatusTooManyRequests || !strings.Contains(r.body, "rows per second") || r.header.Get("Retry-After") == "" {
		t.Fatalf("60 more rows at once with 100 rows/s: %d %s; want 429 naming the rows limit", r.code, r.body)
	}
	if r := postEvents(t, evAPI(sys), "rows_limit", "readings", nil, "wait=true", false); r.code != http.StatusOK {
		t.Fatalf("wait=true: %d", r.code)
	}
	if n := w.scalar("SELECT count() FROM {db}.readings"); n != "60" {
		t.Errorf("%s rows written, want 60 (the refused request wrote nothing)", n)
	}
}
