package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Status says whether a figure meets its target.
type Status string

const (
	Met         Status = "met"
	Missed      Status = "missed"
	NotMeasured Status = "not measured"
)

// Figure is one row of the scoreboard: a speed target (bench/README.md), what the run
// measured and whether that meets the target.
type Figure struct {
	ID       string   `json:"id"`
	What     string   `json:"figure"`
	Value    *float64 `json:"value,omitempty"`
	Unit     string   `json:"unit,omitempty"`
	Measured string   `json:"measured"`
	Target   string   `json:"target"`
	Status   Status   `json:"status"`
	How      string   `json:"how"`              // how many rounds, and how they combine
	Source   string   `json:"source"`           // the benchmark and metric it comes from
	Reason   string   `json:"reason,omitempty"` // why not measured
}

// target is a bound on a figure: met when the value is at most (or at least) limit.
type target struct {
	atMost bool
	limit  float64
}

func atMost(v float64) target  { return target{atMost: true, limit: v} }
func atLeast(v float64) target { return target{limit: v} }

func (t target) met(v float64) bool {
	if t.atMost {
		return v <= t.limit
	}
	return v >= t.limit
}

func (t target) String(unit string) string {
	op := "≥"
	if t.atMost {
		op = "≤"
	}
	return op + " " + formatLimit(t.limit, unit)
}

// metricFigure is a figure read from one metric of one benchmark.
type metricFigure struct {
	id, what string
	pkg      string // import path suffix of the benchmark's package
	bench    string // the benchmark's name, with its sub-benchmark
	metric   string // the unit it reports the figure in
	unit     string
	target   target
	// how describes the rounds; %d is replaced by their number (the benchmark's iterations),
	// and a figure measured with fewer rounds than it asks for says so.
	how    string
	rounds int
}

// The mapping from the benchmarks' metrics to the speed targets, in the order of bench/README.md.
// Each benchmark's doc comment says what it measures; bench/README.md describes the table.
var metricFigures = []metricFigure{
	{id: "P1", what: "copy of 10 M rows / raw INSERT … SELECT, append", pkg: "cmd/sluiced", bench: "BenchmarkCopy10M/append", metric: "ratio", unit: "×", target: atMost(1.05), how: "median of %d paired rounds", rounds: 5},
	{id: "P1", what: "copy of 10 M rows / raw INSERT … SELECT, replace", pkg: "cmd/sluiced", bench: "BenchmarkCopy10M/replace", metric: "ratio", unit: "×", target: atMost(1.05), how: "median of %d paired rounds", rounds: 5},
	{id: "P2", what: "copy of 10 rows − raw insert, append", pkg: "cmd/sluiced", bench: "BenchmarkCopyOverheadTiny/append", metric: "overhead-ms", unit: "ms", target: atMost(50), how: "mean of %d×20 copies"},
	{id: "P2", what: "copy of 10 rows − raw insert, replace", pkg: "cmd/sluiced", bench: "BenchmarkCopyOverheadTiny/replace", metric: "overhead-ms", unit: "ms", target: atMost(50), how: "mean of %d×20 copies"},
	{id: "P3", what: "populate of 10 M rows / direct insert, 24 partitions, chDB", pkg: "cmd/sluiced", bench: "BenchmarkPopulate/chdb_24", metric: "ratio", unit: "×", target: atMost(1.15), how: "median of %d paired rounds", rounds: 3},
	{id: "P3", what: "populate / direct insert, 1,000 daily partitions, chDB", pkg: "cmd/sluiced", bench: "BenchmarkPopulate/chdb_1000", metric: "ratio", unit: "×", target: atMost(1.15), how: "median of %d paired rounds", rounds: 3},
	{id: "P3", what: "populate / direct insert, 24 partitions, server, 1 executor", pkg: "cmd/sluiced", bench: "BenchmarkPopulate/server_24", metric: "ratio", unit: "×", target: atMost(1.10), how: "median of %d paired rounds", rounds: 3},
	{id: "P4", what: "cron tick → step running, 500 pipes due at once, p50", pkg: "cmd/sluiced", bench: "BenchmarkCopyScheduleLatency", metric: "p50-ms", unit: "ms", target: atMost(50), how: "500 pipes × %d ticks, pooled"},
	{id: "P4", what: "cron tick → step running, 500 pipes due at once, p99", pkg: "cmd/sluiced", bench: "BenchmarkCopyScheduleLatency", metric: "p99-ms", unit: "ms", target: atMost(250), how: "500 pipes × %d ticks, pooled"},
	{id: "P5", what: "empty jobs through scheduler → JetStream → executor", pkg: "cmd/sluiced", bench: "BenchmarkJobDispatch", metric: "jobs/s", unit: "jobs/s", target: atLeast(5000), how: "%d rounds of 20,000 jobs"},
	{id: "P6", what: "push of the corpus into empty workspaces, chDB", pkg: "services/catalog", bench: "BenchmarkPushCorpus", metric: "s/corpus", unit: "s", target: atMost(3), how: "mean of %d pushes"},
	{id: "P6", what: "datafile parsing", pkg: "services/catalog/datafile", bench: "BenchmarkParseCorpus", metric: "datafiles/s", unit: "files/s", target: atLeast(5000), how: "%d passes over the corpus"},
	{id: "P7", what: "ops log event → row visible, p99, chDB", pkg: "services/opslog", bench: "BenchmarkOpsLogLatency/chdb", metric: "p99-ms", unit: "ms", target: atMost(2000), how: "last of %d runs at 5,000 events/s"},
	{id: "P7", what: "ops log event → row visible, p99, server", pkg: "services/opslog", bench: "BenchmarkOpsLogLatency/native", metric: "p99-ms", unit: "ms", target: atMost(2000), how: "last of %d runs at 5,000 events/s"},
	{id: "P7", what: "ops log events written, sustained, chDB", pkg: "services/opslog", bench: "BenchmarkOpsLogThroughput/chdb", metric: "events/s", unit: "events/s", target: atLeast(50000), how: "last of %d runs of 500,000 events"},
	{id: "P7", what: "ops log events written, sustained, server", pkg: "services/opslog", bench: "BenchmarkOpsLogThroughput/native", metric: "events/s", unit: "events/s", target: atLeast(50000), how: "last of %d runs of 500,000 events"},
	{id: "P8", what: "all-in-one idle RSS, chDB included", pkg: "cmd/sluiced", bench: "BenchmarkIdleRSS", metric: "MB_rss", unit: "MB", target: atMost(700), how: "last of %d starts"},
	{id: "P10", what: "Events API rows/s / engine's JSONEachRow insert", pkg: "cmd/sluiced", bench: "BenchmarkEventsAPIThroughput", metric: "ratio", unit: "×", target: atLeast(0.8), how: "total of %d rounds of 1.5 M rows"},
	{id: "P11", what: "Events API request → row visible at 5,000 req/s, p99", pkg: "cmd/sluiced", bench: "BenchmarkEventsAPILatency", metric: "p99_ms", unit: "ms", target: atMost(1000), how: "mean of %d runs of 10 s"},
}

// Scoreboard computes every figure from the run, in the order of bench/README.md (P9 last).
func Scoreboard(run *Run) []Figure {
	var out []Figure
	for _, f := range metricFigures {
		out = append(out, f.measure(run))
	}
	return append(out, scaling(run))
}

func (f metricFigure) measure(run *Run) Figure {
	out := Figure{ID: f.id, What: f.what, Unit: f.unit, Target: f.target.String(f.unit), Source: f.bench + " " + f.metric}
	res := run.Find(f.pkg, f.bench)
	v, ok := 0.0, false
	if res != nil {
		v, ok = res.Metrics[f.metric]
	}
	if !ok {
		out.Status, out.Measured = NotMeasured, "—"
		if res != nil {
			out.Reason = fmt.Sprintf("%s reported no %s", f.bench, f.metric)
		} else {
			out.Reason = run.Why(f.pkg, f.bench)
		}
		out.How = strings.ReplaceAll(f.how, "%d", "N")
		return out
	}
	out.Value, out.Measured = &v, format(v, f.unit)
	out.Status = Missed
	if f.target.met(v) {
		out.Status = Met
	}
	rounds := res.Iterations
	out.How = plural(fmt.Sprintf(f.how, rounds), rounds)
	if f.rounds > rounds {
		out.How += fmt.Sprintf(" (the figure asks for %d)", f.rounds)
	}
	return out
}

// scaling is P9: the populate's throughput with 1, 2 and 4 executor processes against a
// server. The target asks that it grows until ClickHouse saturates and that the curve be
// reported: the figure is met when two executors are faster than one (unless one is already
// within 10% of the server's own direct insert, which is the saturation point) and no count
// is more than 5% slower than the one before it.
func scaling(run *Run) Figure {
	const bench = "BenchmarkPopulateExecutorScaling"
	out := Figure{ID: "P9", What: "populate speed-up, 1 → 2 → 4 executors, split, server",
		Target: "grows until the server saturates", Source: bench + " exec{1,2,4}_s, direct_s", How: "median of %d rounds per count", Unit: "×"}
	res := run.Find("cmd/sluiced", bench)
	var secs []float64
	if res != nil {
		for _, n := range []int{1, 2, 4} {
			if v, ok := res.Metrics[fmt.Sprintf("exec%d_s", n)]; ok && v > 0 {
				secs = append(secs, v)
			}
		}
	}
	if len(secs) != 3 {
		out.Status, out.Measured, out.How = NotMeasured, "—", strings.ReplaceAll(out.How, "%d", "N")
		if res != nil {
			out.Reason = bench + " reported fewer than three executor counts"
		} else {
			out.Reason = run.Why("cmd/sluiced", bench)
		}
		return out
	}
	speedup := []float64{1, secs[0] / secs[1], secs[0] / secs[2]}
	var parts []string
	for i := range speedup {
		parts = append(parts, format(speedup[i], "×"))
	}
	out.Measured = strings.Join(parts, " → ")
	v := speedup[2]
	out.Value = &v
	direct := res.Metrics["direct_s"]
	if direct > 0 {
		out.Measured += fmt.Sprintf(" (1 executor: %s direct)", format(secs[0]/direct, "×"))
	}
	saturated := direct > 0 && secs[0] <= 1.10*direct
	grows := speedup[1] > 1 || saturated
	for i := 1; i < len(secs); i++ {
		if secs[i] > 1.05*secs[i-1] {
			grows = false
		}
	}
	out.Status = Missed
	if grows {
		out.Status = Met
	}
	rounds := int(res.Metrics["rounds"])
	out.How = plural(fmt.Sprintf(out.How, rounds), rounds)
	return out
}

// formatLimit writes a target's bound as round as it is.
func formatLimit(v float64, unit string) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if v >= 1000 && v == math.Trunc(v) {
		s = thousands(v)
	}
	if unit == "×" {
		return s + "×"
	}
	return s + " " + unit
}

// format writes a value in its unit with as many digits as its size deserves.
func format(v float64, unit string) string {
	var s string
	switch a := math.Abs(v); {
	case unit == "×":
		return fmt.Sprintf("%.2f×", v)
	case a >= 1000:
		s = thousands(v)
	case a >= 100:
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural turns "1 ticks" and "1 paired rounds" into the singular.
func plural(how string, n int) string {
	if n != 1 {
		return how
	}
	return strings.NewReplacer("1 paired rounds", "1 paired round", "1 rounds", "1 round", "1 ticks", "1 tick",
		"1 pushes", "1 push", "1 passes", "1 pass", "1 runs", "1 run", "1 starts", "1 start").Replace(how)
}
