package opslog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestUnreportedFiguresAreNull: a table made when cpu_time and memory_usage were not Nullable
// is brought to Nullable at start (its rows kept), and an event whose engine reported no
// figures is written with NULL, one that reported them with their values; both read back so.
func TestUnreportedFiguresAreNull(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			db := warehousetest.NewDatabase(t, wh)
			ctx := context.Background()
			old := strings.NewReplacer("`cpu_time` Nullable(Float32)", "`cpu_time` Float32", "`memory_usage` Nullable(UInt64)", "`memory_usage` UInt64").Replace(TableDDL(db, ""))
			if !strings.Contains(old, "`cpu_time` Float32") {
				t.Fatalf("the old table's DDL was not made: %s", old)
			}
			if _, err := wh.Exec(ctx, old); err != nil {
				t.Fatal(err)
			}
			if _, err := wh.Exec(ctx, "INSERT INTO "+warehouse.QualifiedName(db, TableName)+" (workspace, event_id, timestamp, event_type, datasource_name, result) SELECT 'acme', 'old', now(), 'create', 'x', 'ok'"); err != nil {
				t.Fatal(err)
			}
			nc := startNATS(t)
			s := startService(t, testConfig(), nc, wh, db, hooks{})
			silent, measured := testEvent("acme", "a", 1), testEvent("acme", "b", 2)
			measured.CpuTime, measured.MemoryUsage = durationpb.New(250*time.Millisecond), proto.Uint64(4096)
			publish(t, opsevents.NewPublisher(nc, nil), silent, measured)
			waitWritten(t, s, wh, 3)
			res, err := wh.Query(ctx, "SELECT datasource_name, ifNull(toString(cpu_time), 'NULL'), ifNull(toString(memory_usage), 'NULL') FROM "+warehouse.QualifiedName(db, TableName)+" ORDER BY datasource_name")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res.Rows {
				got = append(got, fmt.Sprintf("%v|%v|%v", r...))
			}
			if want := "a|NULL|NULL b|0.25|4096 x|0|0"; strings.Join(got, " ") != want {
				t.Fatalf("rows %q, want %q", strings.Join(got, " "), want)
			}
		})
	}
}
