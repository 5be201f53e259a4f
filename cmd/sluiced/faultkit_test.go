package main_test

import (
	"context"
	"fmt"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// faultProject is the data flow of the fault tests, deployable on chDB and on
// clickhouse-server 18.16:
//
//	ft_copy (copy) → ft_target (one partition per day) → ft_rollup_mv → ft_rollup
//	ft_source (one partition per day) → ft_pop_mv → ft_pop (one partition per day) → ft_pop_daily_mv → ft_pop_daily
//
// A copy run with iter=i writes `rows` rows (ids 0..rows-1, v = id % 1000) over `days` days from
// 2024-01-01; the tests check every row of every iteration, in the target and downstream.
var faultProject = map[string]string{
	"datasources/ft_target.datasource": "SCHEMA >\n    `id` UInt64,\n    `day` Date,\n    `iter` Int32,\n    `v` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"day\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/ft_rollup.datasource": "SCHEMA >\n    `day` Date,\n    `iter` Int32,\n    `n` UInt64,\n    `s` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"day, iter\"\n",
	"pipes/ft_rollup_mv.pipe": "NODE rollup\nSQL >\n    SELECT day, iter, count() AS n, sum(v) AS s FROM ft_target GROUP BY day, iter\n\n" +
		"TYPE MATERIALIZED\nDATASOURCE ft_rollup\n",
	"pipes/ft_copy.pipe": "NODE rows\nSQL >\n    %\n    SELECT number AS id, toDate('2024-01-01') + number % {{Int32(days, 8)}} AS day, {{Int32(iter, 0)}} AS iter, number % 1000 AS v\n" +
		"    FROM numbers({{UInt64(rows, 1000)}})\n\nTYPE COPY\nTARGET_DATASOURCE ft_target\n",
	"datasources/ft_source.datasource": "SCHEMA >\n    `id` UInt64,\n    `day` Date,\n    `v` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"day\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/ft_pop.datasource": "SCHEMA >\n    `id` UInt64,\n    `day` Date,\n    `v` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"day\"\nENGINE_SORTING_KEY \"id\"\n",
	"datasources/ft_pop_daily.datasource": "SCHEMA >\n    `day` Date,\n    `n` UInt64,\n    `s` UInt64\n\n" +
		"ENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"day\"\n",
	"pipes/ft_source_in.pipe": "NODE rows\nSQL >\n    %\n    SELECT number AS id, toDate('2024-01-01') + number % {{Int32(days, 20)}} AS day, number % 1000 AS v\n" +
		"    FROM numbers({{UInt64(rows, 1000)}})\n\nTYPE COPY\nTARGET_DATASOURCE ft_source\n",
	"pipes/ft_pop_mv.pipe": "NODE pop\nSQL >\n    SELECT id, day, v FROM ft_source\n\nTYPE MATERIALIZED\nDATASOURCE ft_pop\n",
	"pipes/ft_pop_daily_mv.pipe": "NODE daily\nSQL >\n    SELECT day, count() AS n, sum(v) AS s FROM ft_pop GROUP BY day\n\n" +
		"TYPE MATERIALIZED\nDATASOURCE ft_pop_daily\n",
}

// faultEnv is the fault project deployed in one workspace, and what its Data Sources must hold.
type faultEnv struct {
	t   testing.TB
	ws  string
	cat catalogv1.CatalogServiceClient
	sch schedulerv1.SchedulerServiceClient

	mu sync.Mutex
	// copies are the rows and days of each copy iteration that must be in ft_target.
	copies map[int][2]int
	// refused are the rows and days of each copy iteration whose job refused an attach it
	// could not decide: each of its partitions is in ft_target once or not at all.
	refused map[int][2]int
	// source is the number of rows loaded into ft_source (ids 0..source-1, over sourceDays).
	source, sourceDays int
	// popTimes is how many times ft_pop and ft_pop_daily must hold each source row (populates
	// add to them; 1 unless set).
	popTimes int
}

// newFaultEnv creates the workspace and pushes the fault project.
func newFaultEnv(t testing.TB, cat catalogv1.CatalogServiceClient, sch schedulerv1.SchedulerServiceClient, ws string) *faultEnv {
	t.Helper()
	ctx := context.Background()
	if _, err := cat.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: ws}); err != nil {
		t.Fatalf("create workspace %s: %v", ws, err)
	}
	req := &catalogv1.PushRequest{Workspace: ws}
	for path, content := range faultProject {
		req.Files = append(req.Files, &catalogv1.Datafile{Path: path, Content: content})
	}
	if _, err := cat.Push(ctx, req); err != nil {
		t.Fatalf("push: %v", err)
	}
	return &faultEnv{t: t, ws: ws, cat: cat, sch: sch, copies: map[int][2]int{}, refused: map[int][2]int{}}
}

// query runs a read-only query in the workspace through the catalog and returns its rows as
// text, one line per row.
func (e *faultEnv) query(sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := e.cat.Query(ctx, &catalogv1.QueryRequest{Workspace: e.ws, Sql: sql, Timeout: durationpb.New(60 * time.Second)})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range resp.GetRows() {
		for i, v := range r.GetValues() {
			if i > 0 {
				b.WriteByte(' ')
			}
			if f, ok := v.AsInterface().(float64); ok {
				b.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
			} else {
				fmt.Fprint(&b, v.AsInterface())
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// mustQuery is query, retried while the system recovers from a fault (up to a minute).
func (e *faultEnv) mustQuery(sql string) string {
	e.t.Helper()
	var out string
	var last error
	sluicetest.Eventually(e.t, 90*time.Second, "query "+sql, func() bool {
		out, last = e.query(sql)
		return last == nil
	})
	return out
}

// runCopy starts a copy of rows rows over days days as iteration iter and records what it
// must write once done.
func (e *faultEnv) runCopy(iter, rows, days int) string {
	e.t.Helper()
	var id string
	sluicetest.Eventually(e.t, 90*time.Second, "a copy to start", func() bool {
		resp, err := e.sch.RunCopy(context.Background(), &schedulerv1.RunCopyRequest{
			Workspace: e.ws, Pipe: "ft_copy",
			Parameters: map[string]string{"iter": strconv.Itoa(iter), "rows": strconv.Itoa(rows), "days": strconv.Itoa(days)},
		})
		if err != nil {
			return false
		}
		id = resp.GetJob().GetId()
		return true
	})
	e.mu.Lock()
	e.copies[iter] = [2]int{rows, days}
	e.mu.Unlock()
	return id
}

// forgetCopy removes an iteration whose job did not commit from what the target must hold.
func (e *faultEnv) forgetCopy(iter int) {
	e.mu.Lock()
	delete(e.copies, iter)
	e.mu.Unlock()
}

// refuseCopy moves an iteration whose job refused an undecidable attach from what the target
// must hold to what it may hold (see checkRefused).
func (e *faultEnv) refuseCopy(iter int) {
	e.mu.Lock()
	if c, ok := e.copies[iter]; ok {
		e.refused[iter] = c
		delete(e.copies, iter)
	}
	e.mu.Unlock()
}

// notRefused is the WHERE clause that leaves out the refused iterations ("" when none).
func (e *faultEnv) notRefused() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.refused) == 0 {
		return ""
	}
	iters := make([]string, 0, len(e.refused))
	for it := range e.refused {
		iters = append(iters, strconv.Itoa(it))
	}
	sort.Strings(iters)
	return " WHERE iter NOT IN (" + strings.Join(iters, ", ") + ")"
}

// loadSourceByCopy fills ft_source (which must be empty) with rows rows over days days through
// the copy pipe ft_source_in, whose cascade fills ft_pop and ft_pop_daily as the views would.
func (e *faultEnv) loadSourceByCopy(rows, days int) string {
	e.t.Helper()
	e.mu.Lock()
	if e.source != 0 {
		e.mu.Unlock()
		e.t.Fatal("loadSourceByCopy: the source is not empty")
	}
	e.source, e.sourceDays = rows, days
	e.mu.Unlock()
	resp, err := e.sch.RunCopy(context.Background(), &schedulerv1.RunCopyRequest{
		Workspace: e.ws, Pipe: "ft_source_in", Parameters: map[string]string{"rows": strconv.Itoa(rows), "days": strconv.Itoa(days)},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetJob().GetId()
}

// loadSource inserts rows more rows into ft_source (over days days), then empties ft_pop and
// ft_pop_daily, which the live views filled: the populates under test write them.
func (e *faultEnv) loadSource(wh warehouse.Conn, db string, rows, days int) {
	e.t.Helper()
	for _, sql := range []string{e.sourceSQL(db, rows, days), "TRUNCATE TABLE `" + db + "`.ft_pop", "TRUNCATE TABLE `" + db + "`.ft_pop_daily"} {
		if _, err := wh.Exec(context.Background(), sql); err != nil {
			e.t.Fatalf("%s: %v", sql, err)
		}
	}
}

// sourceSQL is the INSERT of rows more rows into ft_source, over days days.
func (e *faultEnv) sourceSQL(db string, rows, days int) string {
	e.mu.Lock()
	from := e.source
	e.source += rows
	e.sourceDays = max(e.sourceDays, days)
	e.mu.Unlock()
	return fmt.Sprintf("INSERT INTO `%s`.ft_source SELECT number AS id, toDate('2024-01-01') + number %% %d AS day, number %% 1000 AS v FROM numbers(%d, %d)", db, days, from, rows)
}

// sumV is the sum of id % 1000 over ids 0..rows-1.
func sumV(rows int) uint64 {
	var s uint64
	full := uint64(rows / 1000)
	s = full * (999 * 1000 / 2)
	for i := range rows % 1000 {
		s += uint64(i)
	}
	return s
}

// perDay are the row counts per day (from 2024-01-01) of ids 0..rows-1 spread as id % days.
func perDay(rows, days int) []int {
	out := make([]int, days)
	for d := range days {
		out[d] = rows / days
		if d < rows%days {
			out[d]++
		}
	}
	return out
}

// wantCopies is what ft_target (iter, rows, distinct ids, sum v) and ft_rollup (iter, rows,
// sum v) must hold, as query text.
func (e *faultEnv) wantCopies() (target, rollup string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	iters := make([]int, 0, len(e.copies))
	for it := range e.copies {
		iters = append(iters, it)
	}
	sort.Ints(iters)
	var t, r strings.Builder
	for _, it := range iters {
		rows := e.copies[it][0]
		fmt.Fprintf(&t, "%d %d %d %d\n", it, rows, rows, sumV(rows))
		fmt.Fprintf(&r, "%d %d %d\n", it, rows, sumV(rows))
	}
	return t.String(), r.String()
}

// checkCopies compares ft_target and ft_rollup with every copy that must be there: counts,
// distinct ids and sums per iteration, and the rows of each day.
func (e *faultEnv) checkCopies() {
	e.t.Helper()
	wantT, wantR := e.wantCopies()
	where := e.notRefused()
	if got := e.mustQuery("SELECT iter, count(), uniqExact(id), sum(v) FROM ft_target" + where + " GROUP BY iter ORDER BY iter"); got != wantT {
		e.t.Errorf("ft_target (iter, rows, distinct ids, sum v):\n%swant\n%s", got, wantT)
	}
	if got := e.mustQuery("SELECT iter, sum(n), sum(s) FROM ft_rollup" + where + " GROUP BY iter ORDER BY iter"); got != wantR {
		e.t.Errorf("ft_rollup downstream (iter, rows, sum v):\n%swant\n%s", got, wantR)
	}
	e.mu.Lock()
	var want strings.Builder
	iters := make([]int, 0, len(e.copies))
	for it := range e.copies {
		iters = append(iters, it)
	}
	sort.Ints(iters)
	for _, it := range iters {
		for d, n := range perDay(e.copies[it][0], e.copies[it][1]) {
			if n > 0 {
				fmt.Fprintf(&want, "%d %d %d\n", it, d, n)
			}
		}
	}
	e.mu.Unlock()
	if got := e.mustQuery("SELECT iter, toInt32(day - toDate('2024-01-01')) AS d, count() FROM ft_target" + where + " GROUP BY iter, d ORDER BY iter, d"); got != want.String() {
		e.t.Errorf("ft_target rows per (iter, day):\n%swant\n%s", got, want.String())
	}
	e.checkRefused()
}

// checkRefused checks the iterations whose copy refused an attach it could not decide (the
// documented refusal on servers without MOVE PARTITION ... TO TABLE): that commit may have
// attached some of its partitions before the one it could not decide, and that one may or may
// not be attached, so each day of the iteration must be in ft_target with all its rows once
// (distinct ids) or not at all, and ft_rollup must hold the iteration's rows once or not at all.
func (e *faultEnv) checkRefused() {
	e.t.Helper()
	e.mu.Lock()
	refused := make(map[int][2]int, len(e.refused))
	for it, c := range e.refused {
		refused[it] = c
	}
	e.mu.Unlock()
	for it, c := range refused {
		rows, days := c[0], c[1]
		want := perDay(rows, days)
		got := e.mustQuery(fmt.Sprintf("SELECT toInt32(day - toDate('2024-01-01')) AS d, count(), uniqExact(id) FROM ft_target WHERE iter = %d GROUP BY d ORDER BY d", it))
		attached := 0
		for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
			if line == "" {
				continue
			}
			var d, n, ids int
			if _, err := fmt.Sscan(line, &d, &n, &ids); err != nil || d < 0 || d >= len(want) || n != want[d] || ids != n {
				e.t.Errorf("refused copy iteration %d: ft_target day row %q; want each day once with its %v rows, or absent", it, line, want)
				continue
			}
			attached++
		}
		r := e.mustQuery(fmt.Sprintf("SELECT count(), sum(n), sum(s) FROM ft_rollup WHERE iter = %d", it))
		var groups, n int
		var s uint64
		if _, err := fmt.Sscan(r, &groups, &n, &s); err != nil || !(n == 0 && s == 0 || n == rows && s == sumV(rows)) {
			e.t.Errorf("refused copy iteration %d (%d rows): ft_rollup (groups, rows, sum v) = %q; want its rows once or none", it, rows, r)
		}
		e.t.Logf("refused copy iteration %d: %d of its days attached, each once; ft_rollup holds %d of its %d rows", it, attached, n, rows)
	}
}

// checkPopulated compares ft_pop and ft_pop_daily with ft_source: every source row once, and
// the daily rollup with the same rows and sums per day.
func (e *faultEnv) checkPopulated() {
	e.t.Helper()
	e.mu.Lock()
	rows, days, k := e.source, e.sourceDays, max(e.popTimes, 1)
	e.mu.Unlock()
	want := fmt.Sprintf("%d %d %d\n", k*rows, rows, uint64(k)*sumV(rows))
	if got := e.mustQuery("SELECT count(), uniqExact(id), sum(v) FROM ft_pop"); got != want {
		e.t.Errorf("ft_pop (rows, distinct ids, sum v) = %swant %s", got, want)
	}
	var wantDays strings.Builder
	for d, n := range perDay(rows, days) {
		var s uint64
		for id := d; id < rows; id += days {
			s += uint64(id % 1000)
		}
		if n > 0 {
			fmt.Fprintf(&wantDays, "%d %d %d\n", d, k*n, uint64(k)*s)
		}
	}
	if got := e.mustQuery("SELECT toInt32(day - toDate('2024-01-01')) AS d, count(), sum(v) FROM ft_pop GROUP BY d ORDER BY d"); got != wantDays.String() {
		e.t.Errorf("ft_pop per day (day, rows, sum v):\n%swant\n%s", got, wantDays.String())
	}
	if got := e.mustQuery("SELECT toInt32(day - toDate('2024-01-01')) AS d, sum(n), sum(s) FROM ft_pop_daily GROUP BY d ORDER BY d"); got != wantDays.String() {
		e.t.Errorf("ft_pop_daily downstream per day (day, rows, sum v):\n%swant\n%s", got, wantDays.String())
	}
}

// checkPopulatedPartly is checkPopulated after `extra` populates that did not finish, each of
// which may have committed some of its partitions (a populate commits partition by partition):
// each day of ft_pop must hold its source rows m times over, popTimes <= m <= popTimes+extra
// (every id there, the sums m times), and ft_pop_daily must hold that day's rows as many times
// (or, when one of them refused an attach it could not decide, popTimes to popTimes+extra times).
func (e *faultEnv) checkPopulatedPartly(extra int, refused bool) {
	e.t.Helper()
	e.mu.Lock()
	rows, days, k := e.source, e.sourceDays, max(e.popTimes, 1)
	e.mu.Unlock()
	pop := map[int]string{}
	for _, line := range strings.Split(strings.TrimSpace(e.mustQuery("SELECT toInt32(day - toDate('2024-01-01')) AS d, count(), uniqExact(id), sum(v) FROM ft_pop GROUP BY d ORDER BY d")), "\n") {
		var d int
		if _, err := fmt.Sscan(line, &d); err == nil {
			pop[d] = line
		}
	}
	daily := map[int]string{}
	for _, line := range strings.Split(strings.TrimSpace(e.mustQuery("SELECT toInt32(day - toDate('2024-01-01')) AS d, sum(n), sum(s) FROM ft_pop_daily GROUP BY d ORDER BY d")), "\n") {
		var d int
		if _, err := fmt.Sscan(line, &d); err == nil {
			daily[d] = line
		}
	}
	times := map[int]int{}
	for d, n := range perDay(rows, days) {
		if n == 0 {
			continue
		}
		var s uint64
		for id := d; id < rows; id += days {
			s += uint64(id % 1000)
		}
		m, ok := 0, false
		for m = k; m <= k+extra; m++ {
			if pop[d] == fmt.Sprintf("%d %d %d %d", d, m*n, n, uint64(m)*s) {
				ok = true
				break
			}
		}
		if !ok {
			e.t.Errorf("ft_pop day %d (day, rows, distinct ids, sum v) = %q; want its %d source rows %d to %d times over", d, pop[d], n, k, k+extra)
			continue
		}
		times[m]++
		lo, hi := m, m
		if refused {
			lo, hi = k, k+extra
		}
		found := false
		for md := lo; md <= hi && !found; md++ {
			found = daily[d] == fmt.Sprintf("%d %d %d", d, md*n, uint64(md)*s)
		}
		if !found {
			e.t.Errorf("ft_pop_daily downstream day %d (day, rows, sum v) = %q; want its %d rows %d to %d times over (ft_pop: %d)", d, daily[d], n, lo, hi, m)
		}
	}
	e.t.Logf("%d populates did not finish: the days of ft_pop and ft_pop_daily hold the source this many times (times: days): %v", extra, times)
}

// populate starts a populate of ft_pop_mv.
func (e *faultEnv) populate(truncate bool) string {
	e.t.Helper()
	return e.populateWith(&schedulerv1.PopulateOptions{Truncate: truncate})
}

// populateWith starts a populate of ft_pop_mv with opts (may be nil).
func (e *faultEnv) populateWith(opts *schedulerv1.PopulateOptions) string {
	e.t.Helper()
	var id string
	sluicetest.Eventually(e.t, 90*time.Second, "a populate to start", func() bool {
		resp, err := e.sch.Populate(context.Background(), &schedulerv1.PopulateRequest{
			Workspace: e.ws, Pipe: "ft_pop_mv", Options: opts,
		})
		if err != nil {
			return false
		}
		id = resp.GetJob().GetId()
		return true
	})
	return id
}

// waitFinal waits for a job to end and returns it.
func (e *faultEnv) waitFinal(id string, timeout time.Duration) *schedulerv1.Job {
	e.t.Helper()
	return waitJob(e.t, e.sch, e.ws, id, timeout, done, failed, cancelled)
}

// opsWritten sums the rows that the ops log says a job wrote into each Data Source.
func (e *faultEnv) opsWritten(ol opslogv1.OpsLogServiceClient, jobID string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	resp, err := ol.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: e.ws, JobId: jobID}, PageSize: 1000})
	if err != nil {
		e.t.Fatalf("ops log of job %s: %v", jobID, err)
	}
	for _, ev := range resp.GetEvents() {
		out[ev.GetDatasourceName()+"/"+opsevents.EventTypeName(ev.GetEventType())+"/"+opsevents.ResultName(ev.GetResult())] = strconv.FormatUint(ev.GetWrittenRows(), 10)
	}
	return out
}

// commitRecordText returns the commit record of a job's step as JSON text with the proto field
// names ("" while there is none); natsURL is a NATS server of the system.
func commitRecordText(natsURL, ws, id, step string) string {
	nc, err := nats.Connect(natsURL, nats.Timeout(time.Second))
	if err != nil {
		return ""
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, jobs.BucketCommits)
	if err != nil {
		return ""
	}
	ent, err := kv.Get(ctx, jobs.CommitKey(ws, id, step))
	if err != nil {
		return ""
	}
	c := &persistencev1.StepCommit{}
	if proto.Unmarshal(ent.Value(), c) != nil {
		return ""
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(c)
	if err != nil {
		return ""
	}
	return string(b)
}
