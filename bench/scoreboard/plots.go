package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// The data files the benchmarks write into $SLUICE_BENCH_DATA for the plots (the metrics they
// report carry only summaries). Their shapes are written by cmd/sluiced's benchmarks.

// scheduleLatency is BenchmarkCopyScheduleLatency's data: per tick, every job's latency from
// the tick to its step running and to its job record being created, in milliseconds.
type scheduleLatency struct {
	Pipes int `json:"pipes"`
	Ticks []struct {
		Tick      string    `json:"tick"`
		StartMs   []float64 `json:"start_ms"`
		CreatedMs []float64 `json:"created_ms"`
	} `json:"ticks"`
}

// executorScaling is BenchmarkPopulateExecutorScaling's data: the seconds of every round of the
// direct insert and of the populate with each executor count.
type executorScaling struct {
	Rows       int       `json:"rows"`
	Partitions int       `json:"partitions"`
	DirectS    []float64 `json:"direct_s"`
	Executors  []struct {
		Count   int       `json:"count"`
		Seconds []float64 `json:"seconds"`
	} `json:"executors"`
}

// Plot is a chart written next to latest.json, or why it was not.
type Plot struct {
	Figure string `json:"figure"`
	File   string `json:"file,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// WritePlots reads the benchmarks' data files in dataDir and writes the plots into outDir.
func WritePlots(dataDir, outDir string) []Plot {
	plots := []struct {
		figure, data, file string
		render             func([]byte) (string, error)
	}{
		{"P4", "BenchmarkCopyScheduleLatency.json", "p4-schedule-latency.svg", latencyPlot},
		{"P9", "BenchmarkPopulateExecutorScaling.json", "p9-executor-scaling.svg", scalingPlot},
	}
	var out []Plot
	for _, p := range plots {
		res := Plot{Figure: p.figure}
		data, err := os.ReadFile(filepath.Join(dataDir, p.data))
		var svg string
		if err == nil {
			svg, err = p.render(data)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(outDir, p.file), []byte(svg), 0o644)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			res.Reason = fmt.Sprintf("no %s (the benchmark did not run, or failed)", p.data)
		case err != nil:
			res.Reason = fmt.Sprintf("%s: %v", p.data, err)
		default:
			res.File = p.file
		}
		out = append(out, res)
	}
	return out
}

// latencyPlot is P4's distribution: the share of the jobs whose step runs (and whose record
// exists) within x ms of the tick, with the targets' p50 and p99 bounds.
func latencyPlot(data []byte) (string, error) {
	var d scheduleLatency
	if err := json.Unmarshal(data, &d); err != nil {
		return "", err
	}
	var start, created []float64
	for _, t := range d.Ticks {
		start, created = append(start, t.StartMs...), append(created, t.CreatedMs...)
	}
	if len(start) == 0 {
		return "", errors.New("no latencies")
	}
	xMax := math.Max(slices.Max(start), 300) * 1.05
	if len(created) > 0 {
		xMax = math.Max(xMax, slices.Max(created)*1.05)
	}
	xMin := math.Min(0, slices.Min(append(slices.Clone(start), created...)))
	c := chart{
		title:  plural(fmt.Sprintf("P4: cron tick → step running, %d copy pipes due at once (%d jobs, %d ticks)", d.Pipes, len(start), len(d.Ticks)), len(d.Ticks)),
		xLabel: "milliseconds after the tick", yLabel: "share of the jobs",
		xMin: xMin, xMax: xMax, yMin: 0, yMax: 1,
		yTickFormat: func(v float64) string { return fmt.Sprintf("%.0f%%", v*100) },
		series: []series{
			cdf("tick → job record created", "#8a8a8a", created),
			cdf("tick → step running", "#1f5fbf", start),
		},
		rules: []rule{
			{vertical: true, at: 50, label: "p50 target 50 ms", color: "#2a9d3a"},
			{vertical: true, at: 250, label: "p99 target 250 ms", color: "#c0392b"},
			{at: 0.5, label: "50%", color: "#888888"},
			{at: 0.99, label: "99%", color: "#888888"},
		},
	}
	return c.SVG(), nil
}

// cdf is the empirical distribution of xs as a staircase.
func cdf(name, color string, xs []float64) series {
	s := slices.Clone(xs)
	slices.Sort(s)
	out := series{name: name, color: color, line: true, step: true}
	for i, x := range s {
		out.xs, out.ys = append(out.xs, x), append(out.ys, float64(i+1)/float64(len(s)))
	}
	return out
}

// scalingPlot is P9's curve: rows per second of the populate with 1, 2 and 4 executors (every
// round, and a line through the medians), against one direct insert of the same rows and
// against linear scaling from one executor.
func scalingPlot(data []byte) (string, error) {
	var d executorScaling
	if err := json.Unmarshal(data, &d); err != nil {
		return "", err
	}
	if len(d.Executors) == 0 || d.Rows == 0 {
		return "", errors.New("no rounds")
	}
	mrows := func(secs float64) float64 { return float64(d.Rows) / secs / 1e6 }
	rounds := series{name: "each round", color: "#9bb7e0", dots: true}
	medians := series{name: "median", color: "#1f5fbf", line: true, dots: true}
	linear := series{name: "linear scaling", color: "#888888", line: true, dashed: true}
	yMax, xMax := 0.0, 1.0
	var ticks []float64
	for _, e := range d.Executors {
		if len(e.Seconds) == 0 {
			continue
		}
		n := float64(e.Count)
		for _, s := range e.Seconds {
			rounds.xs, rounds.ys = append(rounds.xs, n), append(rounds.ys, mrows(s))
			yMax = math.Max(yMax, mrows(s))
		}
		medians.xs, medians.ys = append(medians.xs, n), append(medians.ys, mrows(median(e.Seconds)))
		ticks, xMax = append(ticks, n), math.Max(xMax, n)
	}
	if len(medians.ys) == 0 {
		return "", errors.New("no rounds")
	}
	linear.xs = []float64{medians.xs[0], xMax}
	linear.ys = []float64{medians.ys[0], medians.ys[0] * xMax / medians.xs[0]}
	c := chart{
		title:  fmt.Sprintf("P9: populate of %s rows, %d partitions, against one server", thousands(float64(d.Rows)), d.Partitions),
		xLabel: "executor processes", yLabel: "million rows per second",
		xMin: 0.5, xMax: xMax + 0.5, yMin: 0, xTicks: ticks,
		series: []series{linear, rounds, medians},
	}
	if len(d.DirectS) > 0 {
		direct := mrows(median(d.DirectS))
		c.rules = append(c.rules, rule{at: direct, label: "one direct INSERT … SELECT", color: "#c0392b"})
		yMax = math.Max(yMax, direct)
	}
	c.yMax = math.Max(yMax, medians.ys[0]) * 1.15
	return c.SVG(), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
