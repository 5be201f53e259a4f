package warehouse_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestEmbeddedSequenceRunsBackToBack: while a Sequence holds the embedded engine, statements
// of other callers wait, so what the sequence reads twice cannot change in between.
func TestEmbeddedSequenceRunsBackToBack(t *testing.T) {
	conn := warehousetest.Embedded(t)
	db := warehousetest.NewDatabase(t, conn)
	ctx := context.Background()
	tbl := warehouse.QualifiedName(db, "seq")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl+" (n UInt64) ENGINE = MergeTree ORDER BY n"); err != nil {
		t.Fatal(err)
	}
	seq, ok := conn.(warehouse.Sequencer)
	if !ok {
		t.Fatal("the embedded engine does not implement Sequencer")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // another caller inserting all the time
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (%d)", tbl, i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 20 {
		var a, b string
		err := seq.Sequence(ctx, func(c warehouse.Conn) error {
			r1, err := c.Query(ctx, "SELECT count() FROM "+tbl)
			if err != nil {
				return err
			}
			if _, err := c.Exec(ctx, "SELECT 1", warehouse.WithSettings(warehouse.Settings{"max_threads": 1})); err != nil {
				return err
			}
			r2, err := c.Query(ctx, "SELECT count() FROM "+tbl)
			if err != nil {
				return err
			}
			a, b = fmt.Sprint(r1.Rows), fmt.Sprint(r2.Rows)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("an insert ran inside the sequence: count %s then %s", a, b)
		}
	}
	close(stop)
	wg.Wait()
}
