package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestPopulateStepsGroupSmallPartitions populates a source of 60 small daily partitions and 3
// large ones, on chDB and on a clickhouse-server, with steps of 100 kB
// (-scheduler.populate-step-bytes): the small partitions share a few steps (one staging table,
// one insert and one commit each), each large one is a step of its own, the job counts every
// partition once, and every day of the target and of the Data Source downstream holds exactly
// the source's rows of that day, once after the first populate and twice after a second one
// (which adds, without truncate). No staging table is left.
func TestPopulateStepsGroupSmallPartitions(t *testing.T) {
	for _, engine := range []string{"chdb", "server"} {
		t.Run(engine, func(t *testing.T) {
			args := []string{"-scheduler.populate-step-bytes", "100000"}
			if engine == "server" {
				args = append(args, "-clickhouse-addr", strings.Join(warehousetest.Server(t).Addrs, ","))
			}
			sys := sluicetest.Start(t, sluicetest.WithArgs(args...))
			e := newFaultEnv(t, sys.Catalog, sys.Scheduler, "steps_"+engine)
			w, err := sys.Catalog.GetWorkspace(context.Background(), &catalogv1.GetWorkspaceRequest{Name: e.ws})
			if err != nil {
				t.Fatal(err)
			}
			db := warehouse.QuoteIdent(w.GetWorkspace().GetDatabase())
			// 60 days of 200 rows (about 3.6 kB each), then 3 days of 20,000 rows (360 kB).
			for _, sql := range []string{
				"INSERT INTO " + db + ".ft_source SELECT number, toDate('2024-01-01') + number % 60, number % 1000 FROM numbers(12000)",
				"INSERT INTO " + db + ".ft_source SELECT 100000 + number, toDate('2024-06-01') + number % 3, number % 997 FROM numbers(60000)",
				"TRUNCATE TABLE " + db + ".ft_pop", "TRUNCATE TABLE " + db + ".ft_pop_daily",
			} {
				if _, err := sys.App.Warehouse().Exec(context.Background(), sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			perDay := func(times int) string {
				return e.mustQuery(fmt.Sprintf("SELECT day, count() * %d, uniqExact(id), sum(v) * %d FROM ft_source GROUP BY day ORDER BY day", times, times))
			}
			for round := 1; round <= 2; round++ {
				j := e.waitFinal(e.populate(false), 120*time.Second)
				p := j.GetProgress()
				// 60 small days of about 3.6 kB: 3 steps of at most 100 kB; 3 large days: a
				// step each (the engine's byte counts differ a little: 5 to 8 steps).
				if j.GetStatus() != done || p.GetPartitionsTotal() != 63 || p.GetPartitionsDone() != 63 || p.GetStepsTotal() < 5 || p.GetStepsTotal() > 8 ||
					p.GetStepsDone() != p.GetStepsTotal() || p.GetStatistics().GetWrittenRows() != 72000 {
					t.Fatalf("round %d: populate = %v, want done, 63/63 partitions in 5 to 8 steps, 72000 rows", round, j)
				}
				t.Logf("round %d: 63 partitions in %d steps", round, p.GetStepsTotal())
				want := perDay(round)
				if got := e.mustQuery("SELECT day, count(), uniqExact(id), sum(v) FROM ft_pop GROUP BY day ORDER BY day"); got != want {
					t.Fatalf("round %d: ft_pop per day (day, rows, distinct ids, sum v):\n%swant\n%s", round, got, want)
				}
				wantDaily := e.mustQuery(fmt.Sprintf("SELECT day, count() * %d, sum(v) * %d FROM ft_source GROUP BY day ORDER BY day", round, round))
				if got := e.mustQuery("SELECT day, sum(n), sum(s) FROM ft_pop_daily GROUP BY day ORDER BY day"); got != wantDaily {
					t.Fatalf("round %d: ft_pop_daily downstream per day (day, rows, sum v):\n%swant\n%s", round, got, wantDaily)
				}
			}
			sluicetest.Eventually(t, 10*time.Second, "staging tables dropped", func() bool {
				return stagingTables(t, sys.App.Warehouse(), w.GetWorkspace().GetDatabase()) == ""
			})
		})
	}
}
