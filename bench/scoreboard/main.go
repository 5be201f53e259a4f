// Command scoreboard turns the output of `make bench` into its scoreboard: every speed target
// (bench/README.md) with the value the run measured, its target and whether it is met, printed
// as one table and written to latest.json with every benchmark's raw figures, and the plots of
// the figures that are curves or distributions (P4, P9) as SVG files beside it.
//
//	go run ./bench/scoreboard -raw bench/results/latest.txt -data bench/results/data -out bench/results
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Report is latest.json.
type Report struct {
	Started  string    `json:"started,omitempty"`
	Finished string    `json:"finished"`
	CPUs     int       `json:"cpus"`
	Load     Load      `json:"load_average"`
	Figures  []Figure  `json:"figures"`
	Plots    []Plot    `json:"plots"`
	Results  []Result  `json:"benchmarks"`
	Failures []Failure `json:"failures,omitempty"`
	Skipped  []Failure `json:"skipped,omitempty"`
}

// Load is the machine's load average (1, 5, 15 minutes, from /proc/loadavg) when the run
// started and when it ended: the machines are shared, and the figures depend on it.
type Load struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

func main() {
	raw := flag.String("raw", "bench/results/latest.txt", "the output of the go test -bench runs")
	data := flag.String("data", "bench/results/data", "the directory of the benchmarks' data files ($SLUICE_BENCH_DATA)")
	out := flag.String("out", "bench/results", "where latest.json and the plots are written")
	started := flag.String("started", "", "when the run started (RFC 3339)")
	loadStart := flag.String("load-start", "", "the load average when the run started")
	flag.Parse()
	if err := run(*raw, *data, *out, *started, *loadStart, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scoreboard:", err)
		os.Exit(1)
	}
}

func run(rawPath, dataDir, outDir, started, loadStart string, w io.Writer) error {
	f, err := os.Open(rawPath)
	if err != nil {
		return err
	}
	defer f.Close()
	parsed, err := Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", rawPath, err)
	}
	rep := Report{
		Started: started, Finished: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(),
		Load:    Load{Start: loadStart, End: loadAverage()},
		Figures: Scoreboard(parsed), Plots: WritePlots(dataDir, outDir),
		Results: parsed.Results, Failures: parsed.Failures, Skipped: parsed.Skipped,
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(outDir, "latest.json")
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		return err
	}
	PrintTable(w, rep.Figures)
	fmt.Fprintln(w)
	for _, p := range rep.Plots {
		if p.File != "" {
			fmt.Fprintf(w, "%s plot: %s\n", p.Figure, filepath.Join(outDir, p.File))
		} else {
			fmt.Fprintf(w, "%s plot not written: %s\n", p.Figure, p.Reason)
		}
	}
	for _, fl := range rep.Failures {
		if fl.Output == "" && hasChildFailure(rep.Failures, fl) {
			continue // its sub-benchmark's line says why
		}
		name := fl.Name
		if name == "" {
			name = "the run"
		}
		fmt.Fprintf(w, "FAILED %s %s%s\n", fl.Package, name, firstLine(fl.Output))
	}
	fmt.Fprintf(w, "load average (1, 5, 15 min): %s at the start, %s at the end, %d CPUs\n", orDash(rep.Load.Start), orDash(rep.Load.End), rep.CPUs)
	fmt.Fprintf(w, "figures and every benchmark's raw metrics: %s\n", jsonPath)
	return nil
}

// PrintTable writes the figures as one Markdown table, columns aligned, and under it why each
// figure that was not measured was not.
func PrintTable(w io.Writer, figures []Figure) {
	rows := [][]string{{"id", "figure", "measured", "target", "status", "how"}}
	var notes []string
	noteOf := map[string]int{} // figures of one benchmark share its note
	for _, f := range figures {
		status := string(f.Status)
		if f.Reason != "" {
			if noteOf[f.Reason] == 0 {
				notes = append(notes, fmt.Sprintf("[%d] %s", len(notes)+1, f.Reason))
				noteOf[f.Reason] = len(notes)
			}
			status += fmt.Sprintf(" [%d]", noteOf[f.Reason])
		}
		rows = append(rows, []string{f.ID, f.What, f.Measured, f.Target, status, f.How})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			b.WriteString("| " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " ")
		}
		fmt.Fprintln(w, b.String()+"|")
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i, n := range width {
		sep[i] = strings.Repeat("-", n)
	}
	line(sep)
	for _, r := range rows[1:] {
		line(r)
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

func hasChildFailure(fs []Failure, parent Failure) bool {
	for _, f := range fs {
		if f.Package == parent.Package && parent.Name != "" && strings.HasPrefix(f.Name, parent.Name+"/") {
			return true
		}
	}
	return false
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
