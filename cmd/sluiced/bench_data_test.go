package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeBenchData writes v as JSON to $SLUICE_BENCH_DATA/<benchmark>.json: the raw data behind
// a benchmark's summary metrics, which bench/scoreboard plots (bench/run.sh sets the
// variable). Without the variable nothing is written.
func writeBenchData(b *testing.B, v any) {
	b.Helper()
	dir := os.Getenv("SLUICE_BENCH_DATA")
	if dir == "" {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	name := strings.ReplaceAll(b.Name(), "/", "__") + ".json"
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		b.Fatalf("benchmark data: %v", err)
	}
}

// benchWorkspace returns a workspace name that no other benchmark, round or call of a
// benchmark function in this test binary uses: its systems share one chDB (and one
// clickhouse-server), where a workspace's database is named after the workspace, and Go calls
// a benchmark function more than once (with b.N = 1 first, unless it uses b.Loop).
func benchWorkspace(prefix string) string {
	benchSeq++
	return fmt.Sprintf("%s%d", prefix, benchSeq)
}

var benchSeq int

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
