package dataflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// The crash inside a move, for real: a helper process (this test binary) stages a partition of
// many parts and moves it, and kills itself (SIGKILL: chDB dies with it) at the moment the
// first moved part is committed in the Data Source, before the engine removes the partition
// from staging. The next process finds the rows in both tables.

const (
	movesHelperEnv = "SLUICE_TEST_MOVE_HELPER"
	movedParts     = 60 // staged parts of partition 1: the move commits them one after another
	movedRows      = movedParts * 10
)

// TestMoveKilledInsideIsDecided: after the kill inside the move, the old protocol (Commit: the
// staging tables say what is left) moves the partition again and duplicates the rows already
// committed; ResolveMoves finds those rows' parts in the Data Source (whole, or outdated
// after a merge swallowed them) and the partition ends in the Data Source exactly once.
func TestMoveKilledInsideIsDecided(t *testing.T) {
	if os.Getenv(movesHelperEnv) != "" {
		moveHelper(t)
		return
	}
	if testing.Short() {
		t.Skip("kills helper processes")
	}
	for _, tc := range []struct {
		name  string
		merge bool // the Data Source merges the moved parts before the resolution
		old   bool // resume with Commit, as before move plans
		// second: the kill lands in the second partition's move, after the first one's, inside
		// the one ALTER that moves both (MovePlanned batches a Data Source's partitions).
		second bool
	}{
		{name: "resolved"},
		{name: "resolved after a merge", merge: true},
		{name: "old protocol duplicates", old: true},
		{name: "killed in the second partition of one ALTER", second: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			killAt, partition := "1_", "1"
			if tc.second {
				killAt, partition = "2_", "2"
			}
			var moved, staged string
			for try := 1; ; try++ {
				out, err := runMoveHelper(dir, "move", "SLUICE_TEST_MOVE_KILL_AT="+killAt)
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("the helper was not killed inside the move: %v\n%s", err, out)
				}
				// The state the kill left, read by a helper of its own.
				if out, err = runMoveHelper(dir, "look", "SLUICE_TEST_MOVE_PARTITION="+partition); err != nil {
					t.Fatalf("look: %v\n%s", err, out)
				}
				_, _ = fmt.Sscanf(lastLine(out), "staged %s moved %s", &staged, &moved)
				if staged == fmt.Sprint(movedRows) && moved != "0" {
					break // the partition in both tables: the case under test
				}
				if try == 5 {
					t.Fatalf("5 kills never left the partition in both tables: staged %s, moved %s", staged, moved)
				}
				dir = t.TempDir()
			}
			t.Logf("after the kill: %s rows staged, %s of them in the Data Source already", staged, moved)
			if tc.second {
				// The ALTER's first command ran whole before the second began.
				out, err := runMoveHelper(dir, "look", "SLUICE_TEST_MOVE_PARTITION=1")
				if err != nil {
					t.Fatalf("look: %v\n%s", err, out)
				}
				t.Logf("partition 1 (the ALTER's first command): %s", lastLine(out))
			}
			mode := "resolve"
			if tc.old {
				mode = "commit"
			}
			if tc.merge {
				mode += "-merge"
			}
			out, err := runMoveHelper(dir, mode)
			if err != nil {
				t.Fatalf("%s: %v\n%s", mode, err, out)
			}
			var rows, ids, left int
			if _, err := fmt.Sscanf(lastLine(out), "rows %d ids %d staged %d", &rows, &ids, &left); err != nil {
				t.Fatalf("%s: %q", mode, out)
			}
			total := 2 * movedRows // partitions 1 and 2
			if tc.old {
				if rows <= total || ids != total {
					t.Fatalf("the old protocol gave %d rows (%d distinct) from %d: the kill did not leave a duplicate", rows, ids, total)
				}
				return
			}
			if rows != total || ids != total || left != 0 {
				t.Fatalf("after resolving: Data Source %d rows, %d distinct, want %d once each; %d rows left in staging", rows, ids, total, left)
			}
		})
	}
}

// lastLine is the helper's last line of its own (before the test framework's).
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := lines[i]; strings.HasPrefix(l, "staged ") || strings.HasPrefix(l, "rows ") {
			return l
		}
	}
	return ""
}

func runMoveHelper(dir, mode string, env ...string) (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMoveKilledInsideIsDecided$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), movesHelperEnv+"="+mode, "SLUICE_TEST_MOVE_DIR="+dir), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// moveHelper is the helper process: one mode per run, on the chDB data directory it is given.
func moveHelper(t *testing.T) {
	dir := os.Getenv("SLUICE_TEST_MOVE_DIR")
	conn, err := warehouse.OpenEmbedded(warehouse.EmbeddedConfig{LibPath: warehousetest.LibPath(), DataDir: filepath.Join(dir, "chdb")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	exec := func(q string) {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	scalar := func(q string) string {
		res, err := conn.Query(ctx, q)
		if err != nil || len(res.Rows) != 1 {
			t.Fatalf("%s: %v %v", q, res, err)
		}
		return fmt.Sprint(res.Rows[0][0])
	}
	d, err := New(conn, Flow{Database: "db", Target: "events"}, "01a2016000000000000a", "step-1")
	if err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(dir, "plan.json")
	mode := os.Getenv(movesHelperEnv)
	switch mode {
	case "move":
		exec("CREATE DATABASE db")
		exec("CREATE TABLE db.events (id UInt64) ENGINE = MergeTree PARTITION BY id % 4 ORDER BY id")
		exec("INSERT INTO db.events SELECT number * 4 FROM numbers(10)") // partition 0: not staged
		if err := d.PrepareForMoves(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range movedParts {
			exec(fmt.Sprintf("INSERT INTO %s SELECT 1000 + (%d * 10 + number) * 4 + 1 FROM numbers(10)", d.Staging("events"), i))
		}
		for i := range movedParts {
			exec(fmt.Sprintf("INSERT INTO %s SELECT 1000000 + (%d * 10 + number) * 4 + 2 FROM numbers(10)", d.Staging("events"), i))
		}
		plan, err := d.Plan(ctx)
		if err != nil || plan == nil {
			t.Fatalf("plan: %v %v", plan, err)
		}
		b, _ := json.Marshal(plan)
		if err := os.WriteFile(planFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// Kill this process as soon as the Data Source holds a moved part of the partition
		// named by SLUICE_TEST_MOVE_KILL_AT (1_ or 2_): the engine commits them there one by
		// one, and removes them from staging afterwards; both partitions move in one ALTER.
		killAt := os.Getenv("SLUICE_TEST_MOVE_KILL_AT")
		path := scalar("SELECT data_paths[1] FROM system.tables WHERE database = 'db' AND name = 'events'")
		go func() {
			for {
				entries, _ := os.ReadDir(path)
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), killAt) {
						_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					}
				}
				time.Sleep(20 * time.Microsecond)
			}
		}()
		if err := d.MovePlanned(ctx, plan, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // the watcher kills this process: a move done whole is not the case
		fmt.Println("the move ended before the kill")
		os.Exit(0)
	case "look":
		p := os.Getenv("SLUICE_TEST_MOVE_PARTITION")
		fmt.Printf("staged %s moved %s\n", scalar("SELECT count() FROM "+d.Staging("events")+" WHERE id % 4 = "+p), scalar("SELECT count() FROM db.events WHERE id % 4 = "+p))
	default:
		if strings.HasSuffix(mode, "-merge") {
			exec("OPTIMIZE TABLE db.events PARTITION ID '1' FINAL")
			if n := scalar("SELECT count() FROM system.parts WHERE database = 'db' AND table = 'events' AND partition_id = '1' AND active"); n != "1" {
				t.Fatalf("the Data Source's partition 1 has %s active parts after OPTIMIZE FINAL", n)
			}
		}
		if strings.HasPrefix(mode, "commit") {
			if _, err := d.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			b, err := os.ReadFile(planFile)
			if err != nil {
				t.Fatal(err)
			}
			var plan MovePlan
			if err := json.Unmarshal(b, &plan); err != nil {
				t.Fatal(err)
			}
			left, _, err := d.ResolveMoves(ctx, &plan)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				next, err := d.Plan(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := d.MovePlanned(ctx, next, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		fmt.Printf("rows %s ids %s staged %s\n", scalar("SELECT count() FROM db.events WHERE id >= 1000"), scalar("SELECT uniqExact(id) FROM db.events WHERE id >= 1000"),
			scalar("SELECT count() FROM "+d.Staging("events")))
	}
	_ = conn.Close()
}

// TestStagingForMovesNeverMerges: staging tables of moves keep their parts as staged (on chDB,
// even after inserts that would merge), and a server that lacks what move plans need (18.16:
// no merge settings in CREATE TABLE AS, no hash_of_all_files) still stages, without a plan.
func TestStagingForMovesNeverMerges(t *testing.T) {
	for _, engine := range []string{"chdb", "server"} {
		t.Run(engine, func(t *testing.T) {
			var conn warehouse.Conn
			if engine == "chdb" {
				conn = warehousetest.Embedded(t)
			} else {
				conn = warehousetest.Native(t)
			}
			db := warehousetest.NewDatabase(t, conn)
			ctx := context.Background()
			if _, err := conn.Exec(ctx, "CREATE TABLE "+warehouse.QualifiedName(db, "t")+" (id UInt64) ENGINE = MergeTree PARTITION BY id % 2 ORDER BY id"); err != nil {
				t.Fatal(err)
			}
			d, err := New(conn, Flow{Database: db, Target: "t"}, "01a2016000000000000b", "unmerged")
			if err != nil {
				t.Fatal(err)
			}
			if err := d.PrepareForMoves(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 12 {
				if _, err := d.Load(ctx, fmt.Sprintf("SELECT %d * 100 + number FROM numbers(10)", i), nil); err != nil {
					t.Fatal(err)
				}
			}
			plan, err := d.Plan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pending, err := d.Pending(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var rows uint64
			for _, m := range pending {
				rows += m.Rows
			}
			if len(pending) != 2 || rows != 120 {
				t.Fatalf("pending = %+v, want 2 partitions, 120 rows", pending)
			}
			if engine == "server" {
				if plan != nil {
					t.Logf("the server gives a move plan of %d parts", len(plan.Parts))
				}
				return
			}
			if plan == nil || len(plan.Parts) != 24 || len(plan.Moves) != 2 {
				t.Fatalf("plan = %+v, want 24 staged parts in 2 moves", plan)
			}
			time.Sleep(2 * time.Second) // time for merges to run, if the table allowed any
			if _, err := conn.Exec(ctx, "OPTIMIZE TABLE "+d.Staging("t")); err != nil {
				t.Logf("OPTIMIZE refused: %v", err)
			}
			res, err := conn.Query(ctx, "SELECT count() FROM system.parts WHERE database = "+warehouse.QuoteString(db)+" AND table = "+warehouse.QuoteString(d.staging["t"])+" AND active")
			if err != nil {
				t.Fatal(err)
			}
			if got := warehouse.Uint64(res.Rows[0][0]); got != 24 {
				t.Fatalf("staging holds %d active parts after a merge was asked for, want the 24 staged", got)
			}
		})
	}
}
