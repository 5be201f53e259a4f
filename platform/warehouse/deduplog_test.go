package warehouse_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

const (
	dedupHelperEnv = "SLUICE_TEST_DEDUP_HELPER"
	dedupDirEnv    = "SLUICE_TEST_DEDUP_DIR"
	dedupBatches   = 4  // inserts, each with its own deduplication token
	dedupPerPart   = 50 // rows per partition per insert
	dedupParts     = 3  // partitions each insert writes
)

// TestEmbeddedRetryAfterKillBeforePartRename reproduces a kill between an insert's
// deduplication record and the rename of its part: the part directory of one partition of one
// insert is renamed back to tmp_insert_* while the engine is stopped, leaving the record. When
// the engine opens the directory again and the writer retries every insert with the same tokens,
// every row is present exactly once: the insert whose part was lost is written again, the others
// are deduplicated. A second restart and retry changes nothing (the repaired log still
// deduplicates). A kill after the rename (no part lost) must deduplicate every retry.
func TestEmbeddedRetryAfterKillBeforePartRename(t *testing.T) {
	if mode := os.Getenv(dedupHelperEnv); mode != "" {
		dedupHelper(t, mode)
		return
	}
	if testing.Short() {
		t.Skip("restarts chDB in helper processes")
	}
	want := dedupBatches * dedupParts * dedupPerPart
	for _, unrename := range []bool{true, false} {
		t.Run(map[bool]string{true: "part not renamed", false: "part renamed"}[unrename], func(t *testing.T) {
			dir := t.TempDir()
			out := runDedupHelper(t, dir, "write")
			if got := dedupResult(t, out); got != fmt.Sprintf("rows %d distinct %d", want, want) {
				t.Fatalf("after the first inserts: %s, want %d rows once each", got, want)
			}
			if unrename {
				// The part of partition 1 written by the second insert, as the kill leaves it.
				var part string
				for _, l := range strings.Split(out, "\n") {
					if p, ok := strings.CutPrefix(l, "part "); ok {
						part = strings.TrimSpace(p)
					}
				}
				if part == "" {
					t.Fatalf("the helper named no part:\n%s", out)
				}
				tmp := filepath.Join(filepath.Dir(part), "tmp_insert_"+filepath.Base(part))
				if err := os.Rename(part, tmp); err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("rows %d distinct %d", want-dedupPerPart, want-dedupPerPart)
				if got := dedupResult(t, runDedupHelper(t, dir, "count")); got != want {
					t.Fatalf("after losing the part: %s, want %s", got, want)
				}
			}
			for retry := 1; retry <= 2; retry++ {
				got := dedupResult(t, runDedupHelper(t, dir, "write"))
				if got != fmt.Sprintf("rows %d distinct %d", want, want) {
					t.Fatalf("after retry %d of every insert: %s, want %d rows once each", retry, got, want)
				}
			}
		})
	}
}

func runDedupHelper(t *testing.T, dir, mode string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmbeddedRetryAfterKillBeforePartRename$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), dedupHelperEnv+"="+mode, dedupDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, out)
	}
	return string(out)
}

func dedupResult(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "rows ") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("the helper gave no result:\n%s", out)
	return ""
}

// dedupHelper opens chDB on the directory; "write" creates the table (once) and inserts every
// batch with its token, "count" only counts. Both print the rows and distinct ids.
func dedupHelper(t *testing.T, mode string) {
	conn, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: warehousetest.LibPath(), DataDir: os.Getenv(dedupDirEnv)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	exec := func(q string) {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if mode == "write" {
		exec("CREATE DATABASE IF NOT EXISTS d")
		exec("CREATE TABLE IF NOT EXISTS d.t (p UInt8, id UInt32) ENGINE = MergeTree PARTITION BY p ORDER BY id SETTINGS non_replicated_deduplication_window = 100")
		exec("SYSTEM STOP MERGES d.t")
		fi := conn.(warehouse.FormattedInserter)
		for b := range dedupBatches {
			var rows strings.Builder
			for p := range dedupParts {
				for i := range dedupPerPart {
					fmt.Fprintf(&rows, "[%d,%d]\n", p, (b*dedupParts+p)*dedupPerPart+i)
				}
			}
			token := warehouse.WithSettings(warehouse.Settings{"insert_deduplicate": 1, "insert_deduplication_token": fmt.Sprintf("sluice-ingest-%d-%d-0", b*10+1, b*10+10)})
			if _, err := fi.InsertFormatted(ctx, "d.t", []string{"p", "id"}, "JSONCompactEachRow", []byte(rows.String()), token); err != nil {
				t.Fatal(err)
			}
		}
		res, err := conn.Query(ctx, "SELECT path FROM system.parts WHERE database = 'd' AND table = 't' AND active AND partition_id = '1' ORDER BY min_block_number LIMIT 1 OFFSET 1")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) == 1 {
			fmt.Printf("part %s\n", strings.TrimRight(fmt.Sprint(res.Rows[0][0]), "/"))
		}
	}
	res, err := conn.Query(ctx, "SELECT count(), uniqExact(id) FROM d.t")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("rows %v distinct %v\n", res.Rows[0][0], res.Rows[0][1])
}
