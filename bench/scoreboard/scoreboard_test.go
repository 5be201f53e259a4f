package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// output is `go test -bench` output as bench/run.sh collects it: several sets, results whose
// figures come on a later line, a sub-benchmark that fails, a benchmark that fails on the line
// of its name, and a package that does not build.
const output = `==> go test -bench 'BenchmarkCopy10M|BenchmarkCopyOverheadTiny' -benchtime 5x ./cmd/sluiced
goos: linux
goarch: amd64
pkg: github.com/sluicehq/sluice/cmd/sluiced
cpu: Intel(R) Xeon(R) Processor
BenchmarkCopy10M/append-2         	       5	 96300432 ns/op	         3.1 copy-s	         1.031 ratio	         3.0 raw-s
BenchmarkCopy10M/replace-2        	--- FAIL: BenchmarkCopy10M/replace-2
    copy_bench_test.go:77: copy job: status:JOB_STATUS_FAILED
        more detail
--- FAIL: BenchmarkCopy10M
BenchmarkCopyOverheadTiny/append-2
time=2026-12-02T12:19:56Z level=WARN msg="a line of a process in between"
       5	 1000 ns/op	        42.5 overhead-ms	        60 copy-ms	        17.5 raw-ms
BenchmarkCopyOverheadTiny/replace-2   	       5	 1000 ns/op	        51 overhead-ms
FAIL
exit status 1
FAIL	github.com/sluicehq/sluice/cmd/sluiced	91.018s
==> go test -bench 'BenchmarkCopyScheduleLatency' -benchtime 1x ./cmd/sluiced
goos: linux
pkg: github.com/sluicehq/sluice/cmd/sluiced
BenchmarkCopyScheduleLatency-2   	--- FAIL: BenchmarkCopyScheduleLatency-2
    copy_bench_test.go:176: push: exit status 1
FAIL
FAIL	github.com/sluicehq/sluice/cmd/sluiced	91.018s
==> go test -bench 'BenchmarkPopulateExecutorScaling' -benchtime 1x ./cmd/sluiced
pkg: github.com/sluicehq/sluice/cmd/sluiced
BenchmarkPopulateExecutorScaling-2   	       1	 1 ns/op	 0.5 direct_s	 3.6 exec1_s	 3.1 exec2_s	 2.8 exec4_s	 3 rounds
PASS
ok  	github.com/sluicehq/sluice/cmd/sluiced	120s
==> go test -bench 'BenchmarkParseCorpus' -benchtime 20x ./services/catalog/datafile
# github.com/sluicehq/sluice/services/catalog/datafile
services/catalog/datafile/parse.go:12:2: undefined: nope
FAIL	github.com/sluicehq/sluice/services/catalog/datafile [build failed]
==> go test -bench 'BenchmarkIdleRSS' -benchtime 1x ./cmd/sluiced
pkg: github.com/sluicehq/sluice/cmd/sluiced
BenchmarkIdleRSS-2   	--- SKIP: BenchmarkIdleRSS-2
    rss_bench_test.go:20: no chDB here
PASS
`

func parse(t *testing.T) *Run {
	t.Helper()
	run, err := Parse(strings.NewReader(output))
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestParseResultsAndFailures(t *testing.T) {
	run := parse(t)
	type want struct {
		name   string
		n      int
		metric string
		value  float64
	}
	for _, w := range []want{
		{"BenchmarkCopy10M/append", 5, "ratio", 1.031},
		{"BenchmarkCopyOverheadTiny/append", 5, "overhead-ms", 42.5},
		{"BenchmarkCopyOverheadTiny/replace", 5, "overhead-ms", 51},
		{"BenchmarkPopulateExecutorScaling", 1, "exec4_s", 2.8},
	} {
		r := run.Find("cmd/sluiced", w.name)
		if r == nil {
			t.Fatalf("%s: no result in %+v", w.name, run.Results)
		}
		if r.Iterations != w.n || r.Metrics[w.metric] != w.value || r.Package != "github.com/sluicehq/sluice/cmd/sluiced" {
			t.Errorf("%s = %+v, want %d iterations and %s %v", w.name, r, w.n, w.metric, w.value)
		}
	}
	if len(run.Results) != 4 {
		t.Errorf("%d results, want 4: %+v", len(run.Results), run.Results)
	}
	if r := run.Find("services/catalog", "BenchmarkCopy10M/append"); r != nil {
		t.Errorf("found in another package: %+v", r)
	}
	whys := map[string]string{
		"BenchmarkCopy10M/replace":     "BenchmarkCopy10M/replace failed: copy_bench_test.go:77: copy job: status:JOB_STATUS_FAILED",
		"BenchmarkCopyScheduleLatency": "BenchmarkCopyScheduleLatency failed: copy_bench_test.go:176: push: exit status 1",
		"BenchmarkIdleRSS":             "BenchmarkIdleRSS skipped: rss_bench_test.go:20: no chDB here",
		"BenchmarkJobDispatch":         "BenchmarkJobDispatch did not run (not in bench/packages.d, or left out by BENCH)",
	}
	for name, want := range whys {
		if got := run.Why("cmd/sluiced", name); got != want {
			t.Errorf("Why(%s) = %q, want %q", name, got, want)
		}
	}
	if got := run.Why("services/catalog/datafile", "BenchmarkParseCorpus"); !strings.Contains(got, "failed: services/catalog/datafile/parse.go:12:2: undefined: nope") {
		t.Errorf("build failure: Why = %q", got)
	}
	if f := run.Failures[0]; f.Name != "BenchmarkCopy10M/replace" || !strings.Contains(f.Output, "more detail") {
		t.Errorf("first failure = %+v", f)
	}
}

// TestFailureBeforeThePackageHeader: a benchmark that fails before it reports anything is
// printed before go test's "pkg:" header; the failure still belongs to the set's package, and
// the scoreboard says it failed, not that it did not run.
func TestFailureBeforeThePackageHeader(t *testing.T) {
	const out = `==> go test -bench '^BenchmarkCopyScheduleLatency$' -benchtime 1x ./cmd/sluiced
--- FAIL: BenchmarkCopyScheduleLatency
    copy_bench_test.go:234: 100 of 500 tick jobs started within 2 minutes of the tick
    sluicetest.go:276: sluiced log:
        time=2026-12-02T13:23:46.244Z level=WARN msg="split mode without TLS"
FAIL
exit status 1
FAIL	github.com/sluicehq/sluice/cmd/sluiced	168.158s
==> go test -bench 'BenchmarkIdleRSS' -benchtime 1x ./cmd/sluiced
--- SKIP: BenchmarkIdleRSS
    rss_bench_test.go:20: no chDB here
PASS
ok  	github.com/sluicehq/sluice/cmd/sluiced	1.2s
==> go test -bench 'BenchmarkOpsLog' -benchtime 1x ./services/opslog
--- FAIL: BenchmarkOpsLogLatency
    bench_test.go:9: no server
FAIL
FAIL	github.com/sluicehq/sluice/services/opslog	2.0s
`
	run, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ pkg, name, want string }{
		{"cmd/sluiced", "BenchmarkCopyScheduleLatency", "BenchmarkCopyScheduleLatency failed: copy_bench_test.go:234: 100 of 500 tick jobs started within 2 minutes of the tick"},
		{"cmd/sluiced", "BenchmarkIdleRSS", "BenchmarkIdleRSS skipped: rss_bench_test.go:20: no chDB here"},
		{"services/opslog", "BenchmarkOpsLogLatency/chdb", "BenchmarkOpsLogLatency/chdb failed: bench_test.go:9: no server"},
		{"cmd/sluiced", "BenchmarkOpsLogLatency/chdb", "BenchmarkOpsLogLatency/chdb did not run (not in bench/packages.d, or left out by BENCH)"},
	} {
		if got := run.Why(c.pkg, c.name); got != c.want {
			t.Errorf("Why(%s, %s) = %q, want %q", c.pkg, c.name, got, c.want)
		}
	}
	if len(run.Failures) != 2 {
		t.Errorf("failures %+v, want the two benchmarks'", run.Failures)
	}
}

func TestScoreboard(t *testing.T) {
	figs := Scoreboard(parse(t))
	byWhat := map[string]Figure{}
	for _, f := range figs {
		byWhat[f.ID+" "+f.What] = f
	}
	check := func(key string, status Status, measured, how string) {
		t.Helper()
		f, ok := byWhat[key]
		if !ok {
			t.Fatalf("no figure %q", key)
		}
		if f.Status != status || f.Measured != measured || f.How != how {
			t.Errorf("%s = %+v, want %s, %q, %q", key, f, status, measured, how)
		}
	}
	check("P1 copy of 10 M rows / raw INSERT … SELECT, append", Met, "1.03×", "median of 5 paired rounds")
	check("P1 copy of 10 M rows / raw INSERT … SELECT, replace", NotMeasured, "—", "median of N paired rounds")
	check("P2 copy of 10 rows − raw insert, append", Met, "42.5 ms", "mean of 5×20 copies")
	check("P2 copy of 10 rows − raw insert, replace", Missed, "51.0 ms", "mean of 5×20 copies")
	check("P9 populate speed-up, 1 → 2 → 4 executors, split, server", Met, "1.00× → 1.16× → 1.29× (1 executor: 7.20× direct)", "median of 3 rounds per count")
	if figs[len(figs)-1].ID != "P9" || figs[0].ID != "P1" {
		t.Errorf("order: first %s, last %s", figs[0].ID, figs[len(figs)-1].ID)
	}
	seen := map[string]bool{}
	for _, f := range figs {
		seen[f.ID] = true
		if f.Status == NotMeasured && f.Reason == "" {
			t.Errorf("%s %s not measured without a reason", f.ID, f.What)
		}
	}
	for _, id := range []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10", "P11"} {
		if !seen[id] {
			t.Errorf("no row for %s", id)
		}
	}
}

func TestFewerRoundsThanAsked(t *testing.T) {
	run, err := Parse(strings.NewReader("pkg: github.com/sluicehq/sluice/cmd/sluiced\nBenchmarkCopy10M/append-2 1 5 ns/op 1.2 ratio\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := metricFigures[0].measure(run)
	if f.Status != Missed || f.How != "median of 1 paired round (the figure asks for 5)" {
		t.Errorf("figure = %+v", f)
	}
}

func TestNonFiniteMetricIsNotAFigure(t *testing.T) {
	run, err := Parse(strings.NewReader("pkg: github.com/sluicehq/sluice/cmd/sluiced\nBenchmarkCopy10M/append-2 5 5 ns/op NaN ratio +Inf copy-s 1.5 raw-s\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := metricFigures[0].measure(run)
	if f.Status != NotMeasured || f.Reason != "BenchmarkCopy10M/append reported no ratio" {
		t.Errorf("figure = %+v", f)
	}
	if _, err := json.Marshal(run); err != nil {
		t.Errorf("the run cannot be written: %v", err)
	}
}

func TestScalingRule(t *testing.T) {
	for _, c := range []struct {
		metrics string
		want    Status
	}{
		{"0.5 direct_s 3.6 exec1_s 3.1 exec2_s 2.8 exec4_s", Met},
		{"0.5 direct_s 3.6 exec1_s 3.7 exec2_s 3.6 exec4_s", Missed},    // two executors are not faster
		{"0.5 direct_s 3.6 exec1_s 3.0 exec2_s 3.5 exec4_s", Missed},    // four are slower than two
		{"3.5 direct_s 3.6 exec1_s 3.65 exec2_s 3.7 exec4_s", Met},      // one already saturates the server
		{"3.5 direct_s 3.6 exec1_s 3.65 exec2_s 4.2 exec4_s", Missed},   // saturated, then slower
		{"0.5 direct_s 3.6 exec1_s 3.1 exec2_s", NotMeasured},           // no count of four
		{"0.5 direct_s 3.6 exec1_s 3.1 exec2_s 0 exec4_s", NotMeasured}, // a count without a time
	} {
		run, err := Parse(strings.NewReader("pkg: x/cmd/sluiced\nBenchmarkPopulateExecutorScaling 1 1 ns/op " + c.metrics + " 3 rounds\n"))
		if err != nil {
			t.Fatal(err)
		}
		if f := scaling(run); f.Status != c.want {
			t.Errorf("%s: %+v, want %s", c.metrics, f, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{1.0349, "×", "1.03×"}, {42.46, "ms", "42.5 ms"}, {834, "ms", "834 ms"}, {6210.4, "jobs/s", "6,210 jobs/s"},
		{1234567, "events/s", "1,234,567 events/s"}, {2.5, "s", "2.50 s"},
	} {
		if got := format(c.v, c.unit); got != c.want {
			t.Errorf("format(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	if got := atLeast(50000).String("events/s"); got != "≥ 50,000 events/s" {
		t.Errorf("target = %q", got)
	}
}

func TestRunWritesReportAndPlots(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "latest.txt")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(raw, []byte(output), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(data, "BenchmarkCopyScheduleLatency.json"), map[string]any{"pipes": 3, "ticks": []any{
		map[string]any{"tick": "2026-12-02T12:20:00Z", "start_ms": []float64{12, 40, 300}, "created_ms": []float64{-5, 2, 3}},
	}})
	writeJSON(t, filepath.Join(data, "BenchmarkPopulateExecutorScaling.json"), map[string]any{"rows": 2000000, "partitions": 64,
		"direct_s": []float64{0.5, 0.45}, "executors": []any{
			map[string]any{"count": 1, "seconds": []float64{3.6, 3.5, 3.7}},
			map[string]any{"count": 2, "seconds": []float64{3.1}},
			map[string]any{"count": 4, "seconds": []float64{2.8}},
		}})
	var out bytes.Buffer
	if err := run(raw, data, dir, "2026-12-02T12:00:00Z", "1.00 2.00 3.00", &out); err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	for _, want := range []string{"| P1  | copy of 10 M rows / raw INSERT … SELECT, append", "| met ", "not measured [1]",
		"[1] BenchmarkCopy10M/replace failed: copy_bench_test.go:77", "P4 plot: " + filepath.Join(dir, "p4-schedule-latency.svg"),
		"FAILED github.com/sluicehq/sluice/cmd/sluiced BenchmarkCopyScheduleLatency: copy_bench_test.go:176", "1.00 2.00 3.00 at the start"} {
		if !strings.Contains(printed, want) {
			t.Errorf("printed table lacks %q:\n%s", want, printed)
		}
	}
	if n := strings.Count(printed, "BenchmarkCopyScheduleLatency failed"); n != 1 {
		t.Errorf("the two P4 rows' reason is printed %d times, want once:\n%s", n, printed)
	}
	var rep Report
	js, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Figures) != len(metricFigures)+1 || len(rep.Results) != 4 || rep.Results[0].Metrics["copy-s"] != 3.1 || rep.Load.Start != "1.00 2.00 3.00" {
		t.Errorf("latest.json = %s", js)
	}
	for _, p := range rep.Plots {
		if p.File == "" {
			t.Fatalf("plot %s not written: %s", p.Figure, p.Reason)
		}
		svg, err := os.ReadFile(filepath.Join(dir, p.File))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, p.File, svg)
		for _, want := range map[string][]string{
			"P4": {"p50 target 50 ms", "p99 target 250 ms", "tick → step running", "3 jobs, 1 tick", "<polyline"},
			"P9": {"one direct INSERT … SELECT", "2,000,000 rows, 64 partitions", "linear scaling", "<circle"},
		}[p.Figure] {
			if !strings.Contains(string(svg), want) && !strings.Contains(string(svg), esc(want)) {
				t.Errorf("%s lacks %q", p.File, want)
			}
		}
	}
}

func TestPlotsWithoutData(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "BenchmarkPopulateExecutorScaling.json"), []byte(`{"rows": 10}`), 0o644); err != nil {
		t.Fatal(err)
	}
	plots := WritePlots(dir, dir)
	if plots[0].File != "" || !strings.Contains(plots[0].Reason, "no BenchmarkCopyScheduleLatency.json") {
		t.Errorf("P4 = %+v", plots[0])
	}
	if plots[1].File != "" || !strings.Contains(plots[1].Reason, "no rounds") {
		t.Errorf("P9 = %+v", plots[1])
	}
}

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 1, "[0 0.2 0.4 0.6 0.8 1]"}, {0, 870, "[0 200 400 600 800]"}, {-12, 40, "[-10 0 10 20 30 40]"},
	} {
		if got := sprint(niceTicks(c.lo, c.hi)); got != c.want {
			t.Errorf("niceTicks(%v, %v) = %s, want %s", c.lo, c.hi, got, c.want)
		}
	}
}

func sprint(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, tickLabel(x))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wellFormed fails unless doc parses as XML with an svg root.
func wellFormed(t *testing.T, name string, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q", name, root)
	}
}
