package warehouse

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRepairDedupLogs checks which deduplication records the repair drops, on table directories
// laid out as the engine leaves them: a record is dropped only when no part on disk (active,
// outdated, merged or mutated) holds its blocks; tmp_* and detached parts hold nothing; records
// after a line cut short or garbled are not read (the engine stops there too); a record dropped
// already is not dropped again; tables of the old part-name format are left alone.
func TestRepairDedupLogs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parts  []string
		logs   map[string]string
		format string
		want   []string // block IDs dropped
	}{
		{
			name:  "part never renamed",
			parts: []string{"all_1_1_0", "tmp_insert_all_2_2_0"},
			logs:  map[string]string{"deduplication_log_1.txt": "1\tall_1_1_0\tall_a\n1\tall_2_2_0\tall_b\n"},
			want:  []string{"all_b"},
		},
		{
			name:  "merged, mutated and outdated parts hold their blocks",
			parts: []string{"p1_1_3_1", "p1_1_1_0", "p2_4_4_0_9"},
			logs:  map[string]string{"deduplication_log_1.txt": "1\tp1_1_1_0\tp1_a\n1\tp1_2_2_0\tp1_b\n1\tp1_3_3_0\tp1_c\n1\tp2_4_4_0\tp2_d\n1\tp1_5_5_0\tp1_e\n"},
			want:  []string{"p1_e"},
		},
		{
			name:  "a merge of lower level does not cover, another partition does not cover",
			parts: []string{"x_1_9_0", "y_5_5_0"},
			logs:  map[string]string{"deduplication_log_1.txt": "1\tx_5_5_1\tx_a\n1\tx_5_5_0\tx_b\n"},
			want:  []string{"x_a"},
		},
		{
			name:  "detached parts hold nothing",
			parts: []string{"detached/all_1_1_0"},
			logs:  map[string]string{"deduplication_log_1.txt": "1\tall_1_1_0\tall_a\n"},
			want:  []string{"all_a"},
		},
		{
			name: "dropped already, in a later log",
			logs: map[string]string{
				"deduplication_log_2.txt":  "1\tall_1_1_0\tall_a\n1\tall_2_2_0\tall_b\n",
				"deduplication_log_10.txt": "2\tall_1_1_0\tall_a\n",
			},
			want: []string{"all_b"},
		},
		{
			name:  "a line cut short and a garbled line end their file",
			parts: []string{},
			logs: map[string]string{
				"deduplication_log_1.txt": "1\tall_1_1_0\tall_a\n1\tall_2_2_0\tall_b",
				"deduplication_log_2.txt": "1\tall_3_3_0\tall_c\nGARBAGE\n1\tall_4_4_0\tall_d\n",
			},
			want: []string{"all_a", "all_c"},
		},
		{
			name:   "old part-name format",
			format: "0",
			logs:   map[string]string{"deduplication_log_1.txt": "1\tall_1_1_0\tall_a\n"},
		},
		{
			name:  "every part present",
			parts: []string{"all_1_1_0"},
			logs:  map[string]string{"deduplication_log_1.txt": "1\tall_1_1_0\tall_a\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			table := filepath.Join(data, "store", "abc", "abc12345-0000-0000-0000-000000000000")
			mkdir(t, filepath.Join(table, dedupLogsDir))
			mkdir(t, filepath.Join(table, "detached"))
			format := tc.format
			if format == "" {
				format = "1"
			}
			write(t, filepath.Join(table, "format_version.txt"), format)
			for _, p := range tc.parts {
				mkdir(t, filepath.Join(table, p))
			}
			for name, content := range tc.logs {
				write(t, filepath.Join(table, dedupLogsDir, name), content)
			}
			// The database's link to the table must not repair it twice.
			mkdir(t, filepath.Join(data, "data", "db"))
			if err := os.Symlink(table, filepath.Join(data, "data", "db", "t")); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(data, dedupRepairPrefix+"stale"), "left by a kill")

			got, err := repairDedupLogs(data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(data, dedupRepairPrefix+"stale")); !os.IsNotExist(err) {
				t.Errorf("a stale repair file is left: %v", err)
			}
			if len(tc.want) == 0 {
				if len(got) != 0 {
					t.Fatalf("repaired %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || !slices.Equal(got[0].Dropped, tc.want) {
				t.Fatalf("repaired %+v, want the blocks %q dropped", got, tc.want)
			}
			// The engine reads the DROP records from the newest log.
			logs, _, err := dedupLogFiles(filepath.Join(table, dedupLogsDir))
			if err != nil {
				t.Fatal(err)
			}
			if logs[len(logs)-1] != got[0].Log {
				t.Fatalf("the repair wrote %s; the newest log is %s", got[0].Log, logs[len(logs)-1])
			}
			var dropped []string
			for _, r := range readDedupLog(got[0].Log) {
				if r.op != '2' {
					t.Fatalf("the repair wrote %+v", r)
				}
				dropped = append(dropped, r.blockID)
			}
			if !slices.Equal(dropped, tc.want) {
				t.Fatalf("the new log drops %q, want %q", dropped, tc.want)
			}
			// Repaired once: a second run finds nothing to do.
			if again, err := repairDedupLogs(data); err != nil || len(again) != 0 {
				t.Fatalf("second repair: %+v, %v; want nothing", again, err)
			}
		})
	}
}

func TestRepairDedupLogsWithoutTables(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if got, err := repairDedupLogs(dir); err != nil || len(got) != 0 {
			t.Fatalf("%s: %+v, %v", dir, got, err)
		}
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
