package dataflow

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestAttachOutcomeOnServer: on a server without MOVE PARTITION ... TO TABLE, what the attach
// fallback asks of the server after a crash: whether a statement (by query id) finished,
// failed or never ran, and the parts an attach leaves (a copy of each staged part: same files,
// one new block).
func TestAttachOutcomeOnServer(t *testing.T) {
	conn := warehousetest.Native(t)
	db := warehousetest.NewDatabase(t, conn)
	ctx := context.Background()
	q := func(name string) string { return warehouse.QualifiedName(db, name) }
	for _, stmt := range []string{
		"CREATE TABLE " + q("t") + " (id UInt64, p UInt8) ENGINE = MergeTree PARTITION BY p ORDER BY id",
		"INSERT INTO " + q("t") + " SELECT number, number % 2 FROM numbers(10)",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	flow := Flow{Database: db, Target: "t"}
	d, err := New(conn, flow, "01a20160000000000008", "attach-outcome")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(ctx, "SELECT 100 + number, 1 FROM numbers(7)", []string{"id", "p"}); err != nil {
		t.Fatal(err)
	}
	before, err := d.PartitionState(ctx, "t", "1")
	if err != nil {
		t.Fatal(err)
	}
	start, err := ServerStart(ctx, conn)
	if err != nil || start == 0 {
		t.Fatalf("server start: %d, %v", start, err)
	}
	since := time.Now()
	qid := fmt.Sprintf("test-attach-%d", time.Now().UnixNano())
	m := Move{Table: "t", PartitionID: "1", Rows: 7}
	if err := d.AttachPartition(ctx, m, qid); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want QueryOutcome
	}{{qid, QueryFinished}, {"never-sent-" + qid, QueryNotLogged}} {
		if got, err := Outcome(ctx, conn, tc.id, since); err != nil || got != tc.want {
			t.Errorf("outcome of %s: %s, %v; want %s", tc.id, got, err, tc.want)
		}
	}
	bad := "bad-" + qid
	if _, err := conn.Exec(ctx, "ALTER TABLE "+q("t")+" ATTACH PARTITION ID '1' FROM "+q("no_such_table"), warehouse.WithQueryID(bad), warehouse.WithSettings(warehouse.Settings{"log_queries": 1})); err == nil {
		t.Fatal("attach from a missing table succeeded")
	}
	if got, err := Outcome(ctx, conn, bad, since); err != nil || got != QueryFailed {
		t.Errorf("outcome of a failed attach: %s, %v; want failed", got, err)
	}
	staged, err := d.StagedParts(ctx, m)
	if err != nil || len(staged) != 1 {
		t.Fatalf("staged parts: %v, %v", staged, err)
	}
	above, err := d.PartsAbove(ctx, "t", "1", before.MaxBlock)
	if err != nil || len(above) != 1 || !above[0].SameFiles(staged[0]) {
		t.Fatalf("parts written since the intent: %+v, %v; want one copy of %+v", above, err, staged[0])
	}
	staged0, err := d.PartContent(ctx, "t", true, staged[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.PartContent(ctx, "t", false, above[0].Name); err != nil || got != staged0 {
		t.Errorf("content of the attached part %s, staged %s (%v): want the same rows", got, staged0, err)
	}
	if other, _ := d.PartContent(ctx, "t", false, before.Parts[0]); other == staged0 {
		t.Errorf("another part has the staged part's content %s", other)
	}
	if rows, err := d.RowsAbove(ctx, "t", "1", before.MaxBlock); err != nil || rows != 7 {
		t.Errorf("rows above the intent's block: %d, %v; want 7", rows, err)
	}
	after, _ := d.PartitionState(ctx, "t", "1")
	if SameParts(after.Parts, before.Parts) {
		t.Errorf("the partition's parts did not change with the attach: %v", after.Parts)
	}
}
