package dataflow

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestMain(m *testing.M) { warehousetest.Main(m) }

// fixture is a small data flow, deployed as the catalog deploys one: a target `orders` with two
// materialized views downstream — `by_day` (from orders) and `enriched` (orders joined with
// by_day and with the dimension table `names`, which nothing in the flow writes).
type fixture struct {
	conn warehouse.Conn
	db   string
	flow Flow
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	conn := warehousetest.Embedded(t)
	db := warehousetest.NewDatabase(t, conn)
	q := func(name string) string { return warehouse.QualifiedName(db, name) }
	byDaySQL := fmt.Sprintf("SELECT count() AS n, toDate(ts) AS day FROM %s AS orders GROUP BY day", q("orders"))
	enrichedSQL := fmt.Sprintf("SELECT o.id AS id, nm.name AS name, d.n AS day_n FROM %s AS o LEFT JOIN %s AS nm ON nm.id = o.id %% 3 LEFT JOIN (SELECT day, sum(n) AS n FROM %s GROUP BY day) AS d ON d.day = toDate(o.ts)", q("orders"), q("names"), q("by_day"))
	for _, stmt := range []string{
		"CREATE TABLE " + q("orders") + " (id UInt64, ts DateTime) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY id",
		"CREATE TABLE " + q("by_day") + " (day Date, n UInt64) ENGINE = SummingMergeTree PARTITION BY toYYYYMM(day) ORDER BY day",
		"CREATE TABLE " + q("enriched") + " (id UInt64, name String, day_n UInt64) ENGINE = MergeTree ORDER BY id",
		"CREATE TABLE " + q("names") + " (id UInt64, name String) ENGINE = MergeTree ORDER BY id",
		"INSERT INTO " + q("names") + " VALUES (0, 'zero'), (1, 'one'), (2, 'two')",
		"CREATE MATERIALIZED VIEW " + q("__sluice_mv_by_day") + " TO " + q("by_day") + " AS " + byDaySQL,
		"CREATE MATERIALIZED VIEW " + q("__sluice_mv_enriched") + " TO " + q("enriched") + " AS " + enrichedSQL,
	} {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return &fixture{conn: conn, db: db, flow: Flow{Database: db, Target: "orders", Views: []View{
		{Pipe: "by_day_mv", Trigger: "orders", Target: "by_day", SQL: byDaySQL},
		{Pipe: "enriched_mv", Trigger: "orders", Target: "enriched", SQL: enrichedSQL},
	}}}
}

func (f *fixture) scalar(t *testing.T, sql string) string {
	t.Helper()
	res, err := f.conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return fmt.Sprint(res.Rows[0][0])
}

func (f *fixture) q(name string) string { return warehouse.QualifiedName(f.db, name) }

// rows loads 30 orders over two months (two partitions).
const rows = "SELECT number AS id, toDateTime('2024-01-30 00:00:00') + number * 3600 * 4 AS ts FROM numbers(30)"

func TestAppendCascadesOnceAndMovesAtomically(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d, err := New(f.conn, f.flow, "01a20160000000000009", "job-1/step-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(ctx, rows, []string{"id", "ts"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Cascade(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing is visible before the commit.
	for _, tbl := range []string{"orders", "by_day", "enriched"} {
		if got := f.scalar(t, "SELECT count() FROM "+f.q(tbl)); got != "0" {
			t.Fatalf("%s has %s rows before commit", tbl, got)
		}
	}
	moves, err := d.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(moves) < 4 {
		t.Fatalf("moves %v: want two partitions of orders and of by_day, and enriched's", moves)
	}
	if err := d.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.scalar(t, "SELECT count() FROM "+f.q("orders")); got != "30" {
		t.Fatalf("orders = %s, want 30", got)
	}
	// The moves did not fire the native views: by_day counts each order once.
	if got := f.scalar(t, "SELECT sum(n) FROM "+f.q("by_day")); got != "30" {
		t.Fatalf("by_day sum = %s, want 30", got)
	}
	// enriched: every order once, its name from the dimension table read whole (case 1), and
	// day_n from by_day including this step's staged rows (case 3: by_day is written earlier in
	// the flow). 2024-01-30 has 6 orders (hours 0,4,...,20).
	if got := f.scalar(t, "SELECT count() FROM "+f.q("enriched")); got != "30" {
		t.Fatalf("enriched = %s, want 30", got)
	}
	if got := f.scalar(t, "SELECT countIf(name = '') FROM "+f.q("enriched")); got != "0" {
		t.Fatalf("%s enriched rows without a name", got)
	}
	if got := f.scalar(t, "SELECT day_n FROM "+f.q("enriched")+" WHERE id = 0"); got != "6" {
		t.Fatalf("day_n of order 0 = %s, want 6 (the staged by_day rows)", got)
	}
	if got := f.scalar(t, fmt.Sprintf("SELECT count() FROM system.tables WHERE database = '%s' AND startsWith(name, '%s')", f.db, StagingPrefix)); got != "0" {
		t.Fatalf("%s staging tables left", got)
	}
	// Native views still work for ordinary inserts afterwards.
	if _, err := f.conn.Exec(ctx, "INSERT INTO "+f.q("orders")+" VALUES (100, '2024-03-01 00:00:00')"); err != nil {
		t.Fatal(err)
	}
	if got := f.scalar(t, "SELECT sum(n) FROM "+f.q("by_day")); got != "31" {
		t.Fatalf("by_day after a live insert = %s, want 31", got)
	}
}

func TestCommitResumesAfterCrash(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d, _ := New(f.conn, f.flow, "01a20160000000000009", "job-2/step-0")
	if err := d.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(ctx, rows, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Cascade(ctx); err != nil {
		t.Fatal(err)
	}
	// The first attempt dies after moving one partition.
	pending, err := d.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := pending[0]
	if _, err := f.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MOVE PARTITION ID '%s' TO TABLE %s", d.Staging(m.Table), m.PartitionID, f.q(m.Table))); err != nil {
		t.Fatal(err)
	}
	// The redelivered step (a new Delta with the same key) finishes only what is left.
	again, _ := New(f.conn, f.flow, "01a20160000000000009", "job-2/step-0")
	left, err := again.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != len(pending)-1 {
		t.Fatalf("redelivery moved %d partitions, want %d", len(left), len(pending)-1)
	}
	_ = again.Drop(ctx)
	if got := f.scalar(t, "SELECT count() FROM "+f.q("orders")); got != "30" {
		t.Fatalf("orders = %s, want 30", got)
	}
	if got := f.scalar(t, "SELECT sum(n) FROM "+f.q("by_day")); got != "30" {
		t.Fatalf("by_day sum = %s, want 30", got)
	}
	// A redelivery before the commit starts over: Prepare drops what the dead attempt staged.
	d3, _ := New(f.conn, f.flow, "01a20160000000000009", "job-3/step-0")
	_ = d3.Prepare(ctx)
	_, _ = d3.Load(ctx, rows, nil)
	d3again, _ := New(f.conn, f.flow, "01a20160000000000009", "job-3/step-0")
	if err := d3again.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.scalar(t, "SELECT count() FROM "+d3again.Staging("orders")); got != "0" {
		t.Fatalf("staging after a new Prepare has %s rows", got)
	}
	_ = d3again.Drop(ctx)
}

func TestSwapReplacesWholeContent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.conn.Exec(ctx, "INSERT INTO "+f.q("orders")+" SELECT number + 1000, toDateTime('2023-06-01 00:00:00') FROM numbers(5)"); err != nil {
		t.Fatal(err)
	}
	d, _ := New(f.conn, Flow{Database: f.db, Target: "orders"}, "01a20160000000000009", "job-4/step-0")
	if err := d.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(ctx, rows, nil); err != nil {
		t.Fatal(err)
	}
	_, staged, err := d.TableUUIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SwapOnce(ctx, staged); err != nil {
		t.Fatal(err)
	}
	// Right after the exchange, readers see the new content only.
	if got := f.scalar(t, "SELECT count() FROM "+f.q("orders")); got != "30" {
		t.Fatalf("orders after swap = %s, want 30", got)
	}
	if got := f.scalar(t, "SELECT min(id) FROM "+f.q("orders")); got != "0" {
		t.Fatalf("orders after swap start at id %s, want the staged rows' 0", got)
	}
	// The live view follows the table's name after the exchange.
	if _, err := f.conn.Exec(ctx, "INSERT INTO "+f.q("orders")+" VALUES (7, '2024-05-01 00:00:00')"); err != nil {
		t.Fatal(err)
	}
	if got := f.scalar(t, "SELECT sum(n) FROM "+f.q("by_day")+" WHERE day = '2024-05-01'"); got != "1" {
		t.Fatalf("view after swap = %s, want 1", got)
	}
	if err := d.Drop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFlowValidate(t *testing.T) {
	f := Flow{Database: "db", Target: "a", Views: []View{{Pipe: "p", Trigger: "b", Target: "c"}}}
	if err := f.Validate(); err == nil {
		t.Fatal("a view fired by a table the flow does not write: want an error")
	}
}
