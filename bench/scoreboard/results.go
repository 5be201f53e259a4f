package main

import (
	"bufio"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Result is one benchmark's line of `go test -bench` output: its iterations and every metric
// it reported (ns/op and the ones of b.ReportMetric), by unit.
type Result struct {
	Package    string             `json:"package"`
	Name       string             `json:"name"` // without the -GOMAXPROCS suffix
	Iterations int                `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"`
}

// Failure is a benchmark that failed or was skipped, or a package whose run failed as a whole
// (Name empty: a build error, a panic, a timeout); its figures are missing.
type Failure struct {
	Package string `json:"package"`
	Name    string `json:"name,omitempty"`
	Output  string `json:"output"`
}

// Run is what one `make bench` printed.
type Run struct {
	Results  []Result  `json:"results"`
	Failures []Failure `json:"failures,omitempty"`
	Skipped  []Failure `json:"skipped,omitempty"`
}

var (
	// "BenchmarkCopy10M/append-2   	       5	 96300432 ns/op	 0.07643 copy-s ..."
	resultLine = regexp.MustCompile(`^(Benchmark\S*?)(?:-\d+)?\s+(\d+)\s+(\S.*)$`)
	// The name alone: the figures follow on a later line when something wrote in between.
	nameLine  = regexp.MustCompile(`^(Benchmark\S*?)(?:-\d+)?\s*$`)
	valueLine = regexp.MustCompile(`^\s+(\d+)\s+(\d\S*\s+\S+.*)$`)
	endLine   = regexp.MustCompile(`^\s*--- (FAIL|SKIP): (Benchmark\S*?)(?:-\d+)?(?: \(.*\))?\s*$`)
	pkgFailed = regexp.MustCompile(`^FAIL\s+(\S+)`)
	pkgPassed = regexp.MustCompile(`^ok\s+(\S+)`)
	// A failing benchmark's name is printed before it runs, so its "--- FAIL" ends that line.
	namedEnd = regexp.MustCompile(`^Benchmark\S*\s+(--- (?:FAIL|SKIP): .*)$`)
)

// maxOutput bounds the lines of a failure's output kept for the report.
const maxOutput = 8

// Parse reads the output of one or more `go test -bench` runs.
func Parse(r io.Reader) (*Run, error) {
	run := &Run{}
	pkg, pending := "", ""
	var open *Failure // the failure whose indented output follows
	indent := 0
	var block []string // the current package's lines that are not figures (for a failure without a name)
	namedFailure := false
	// A benchmark that fails (or skips) before it reports anything is printed before the
	// "pkg:" header: its package is the one the set ends with ("FAIL <pkg>", "ok <pkg>").
	setFailures, setSkipped := 0, 0
	endSet := func(p string) {
		for _, fs := range [][]Failure{run.Failures[setFailures:], run.Skipped[setSkipped:]} {
			for i := range fs {
				if fs[i].Package == "" {
					fs[i].Package = p
				}
			}
		}
		setFailures, setSkipped = len(run.Failures), len(run.Skipped)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := namedEnd.FindStringSubmatch(line); m != nil {
			line, pending = m[1], ""
		}
		if open != nil && !endLine.MatchString(line) {
			if lead := len(line) - len(strings.TrimLeft(line, " \t")); lead > indent && strings.TrimSpace(line) != "" {
				if strings.Count(open.Output, "\n") < maxOutput {
					open.Output += strings.TrimSpace(line) + "\n"
				}
				continue
			}
		}
		if open != nil {
			open.Output = strings.TrimSpace(open.Output)
			open = nil
		}
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
			block, namedFailure = nil, false
		case strings.HasPrefix(line, "==> "): // a new set starts (bench/run.sh)
			pkg, pending, block, namedFailure = "", "", nil, false
		case resultLine.MatchString(line):
			m := resultLine.FindStringSubmatch(line)
			run.add(pkg, m[1], m[2], m[3])
			pending = ""
		case nameLine.MatchString(line):
			pending = nameLine.FindStringSubmatch(line)[1]
		case pending != "" && valueLine.MatchString(line):
			m := valueLine.FindStringSubmatch(line)
			run.add(pkg, pending, m[1], m[2])
			pending = ""
		case endLine.MatchString(line):
			m := endLine.FindStringSubmatch(line)
			f := Failure{Package: pkg, Name: m[2]}
			if m[1] == "FAIL" {
				run.Failures = append(run.Failures, f)
				open = &run.Failures[len(run.Failures)-1]
				namedFailure = true
			} else {
				run.Skipped = append(run.Skipped, f)
				open = &run.Skipped[len(run.Skipped)-1]
			}
			indent = len(line) - len(strings.TrimLeft(line, " \t"))
		case pkgFailed.MatchString(line):
			p := pkgFailed.FindStringSubmatch(line)[1]
			if !namedFailure {
				run.Failures = append(run.Failures, Failure{Package: p, Output: strings.Join(lastLines(block, maxOutput), "\n")})
			}
			endSet(p)
			block, namedFailure = nil, false
		case pkgPassed.MatchString(line):
			endSet(pkgPassed.FindStringSubmatch(line)[1])
			block, namedFailure = nil, false
		default:
			// Kept for a failure without a name; "# package" heads the compiler's errors.
			if t := strings.TrimSpace(line); t != "" && t != "PASS" && t != "FAIL" && !strings.HasPrefix(t, "ok ") && !strings.HasPrefix(t, "# ") {
				block = append(block, t)
			}
		}
	}
	if open != nil {
		open.Output = strings.TrimSpace(open.Output)
	}
	return run, sc.Err()
}

func (r *Run) add(pkg, name, iterations, figures string) {
	n, _ := strconv.Atoi(iterations)
	res := Result{Package: pkg, Name: name, Iterations: n, Metrics: map[string]float64{}}
	f := strings.Fields(figures)
	for i := 0; i+1 < len(f); i += 2 {
		// A NaN or an infinity (a ratio over a zero time) is no figure, and JSON has no way
		// to write it.
		if v, err := strconv.ParseFloat(f[i], 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			res.Metrics[f[i+1]] = v
		}
	}
	r.Results = append(r.Results, res)
}

// Find returns the last result of the benchmark name in the package whose import path ends
// with pkg ("cmd/sluiced"), or nil.
func (r *Run) Find(pkg, name string) *Result {
	for i := len(r.Results) - 1; i >= 0; i-- {
		if res := &r.Results[i]; res.Name == name && inPackage(res.Package, pkg) {
			return res
		}
	}
	return nil
}

// Why says why a benchmark has no result: its failure or skip (its own, else its parent's,
// else its package's), or that it did not run.
func (r *Run) Why(pkg, name string) string {
	top, _, _ := strings.Cut(name, "/")
	for _, match := range []string{name, top, ""} {
		for _, list := range []struct {
			fs   []Failure
			verb string
		}{{r.Failures, "failed"}, {r.Skipped, "skipped"}} {
			for i := len(list.fs) - 1; i >= 0; i-- {
				if f := list.fs[i]; inPackage(f.Package, pkg) && f.Name == match {
					return name + " " + list.verb + firstLine(f.Output)
				}
			}
		}
	}
	return name + " did not run (not in bench/packages.d, or left out by BENCH)"
}

func inPackage(path, suffix string) bool {
	return path == suffix || strings.HasSuffix(path, "/"+suffix) || (path == "" && suffix == "")
}

func firstLine(s string) string {
	if s == "" {
		return ""
	}
	l, _, _ := strings.Cut(s, "\n")
	return ": " + l
}

func lastLines(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}
