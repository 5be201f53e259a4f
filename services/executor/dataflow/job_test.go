package dataflow

import (
	"context"
	"fmt"
	"testing"
)

func TestJobStagingNamesAndDrop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, err := New(f.conn, f.flow, "01a2016555196da4aa7e", "ws.job.copy#1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(f.conn, f.flow, "01a2016555196da4aa7e", "ws.job.copy#2")
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(f.conn, f.flow, "01a20165ffffffffffff", "ws.other.copy#1")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Delta{a, b, other} {
		if err := d.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a.Staging("orders") == b.Staging("orders") {
		t.Fatalf("two attempts share a staging table %s", a.Staging("orders"))
	}
	list, err := ListStaging(ctx, f.conn, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 9 {
		t.Fatalf("staging tables = %v, want 9", list)
	}
	for _, st := range list {
		if st.Job != "01a2016555196da4aa7e" && st.Job != "01a20165ffffffffffff" {
			t.Fatalf("staging table %s: job %q", st.Name, st.Job)
		}
	}
	if err := DropJobStaging(ctx, f.conn, f.db, "01a2016555196da4aa7e"); err != nil {
		t.Fatal(err)
	}
	list, _ = ListStaging(ctx, f.conn, f.db)
	if len(list) != 3 || list[0].Job != "01a20165ffffffffffff" {
		t.Fatalf("after dropping one job's staging: %v", list)
	}
	if _, ok := JobOfStaging("__sluice_stage_0123456789abcdef_0"); ok {
		t.Error("a staging table named otherwise (an earlier version's) is no job's")
	}
}

// TestAttemptStagingNamesAndDropStep: attempts of one step stage into tables of their own, and
// DropStepStaging drops every attempt's tables of that step and nothing of another step.
func TestAttemptStagingNamesAndDropStep(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const job = "01a2016555196da4aa7e"
	a, err := NewForAttempt(f.conn, f.flow, job, "ws."+job+".p1", "0a0b0c0d")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewForAttempt(f.conn, f.flow, job, "ws."+job+".p1", "1a1b1c1d")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewForAttempt(f.conn, f.flow, job, "ws."+job+".p2", "0a0b0c0d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewForAttempt(f.conn, f.flow, job, "ws."+job+".p1", "x; DROP"); err == nil {
		t.Fatal("an attempt that is not 8 hex digits named a staging table")
	}
	for _, d := range []*Delta{a, b, other} {
		if err := d.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a.Staging("orders") == b.Staging("orders") {
		t.Fatalf("two attempts share a staging table %s", a.Staging("orders"))
	}
	list, err := ListStaging(ctx, f.conn, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 9 {
		t.Fatalf("staging tables = %v, want 9", list)
	}
	for _, st := range list {
		if st.Job != job {
			t.Fatalf("staging table %s: job %q", st.Name, st.Job)
		}
	}
	if err := DropStepStaging(ctx, f.conn, f.db, job, "ws."+job+".p1"); err != nil {
		t.Fatal(err)
	}
	list, _ = ListStaging(ctx, f.conn, f.db)
	kept := map[string]bool{}
	for _, t := range f.flow.Tables() {
		kept[other.staging[t]] = true
	}
	if len(list) != len(kept) {
		t.Fatalf("after dropping step p1's staging: %v, want the %d tables of p2", list, len(kept))
	}
	for _, st := range list {
		if !kept[st.Name] {
			t.Fatalf("after dropping step p1's staging, %s is left", st.Name)
		}
	}
}

// TestSwapOnceAfterCrashBetweenExchanges: an executor that died after exchanging the first table
// (and before recording it) must not swap it back when its step is redelivered.
func TestSwapOnceAfterCrashBetweenExchanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Old content: 30 orders.
	old, _ := New(f.conn, f.flow, "01a20160000000000001", "old")
	for _, step := range []func() error{
		func() error { return old.Prepare(ctx) },
		func() error { _, err := old.Load(ctx, rows, []string{"id", "ts"}); return err },
		func() error { _, err := old.Cascade(ctx); return err },
		func() error { _, err := old.Commit(ctx); return err },
		func() error { return old.Drop(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// New content: 5 orders.
	d, _ := New(f.conn, f.flow, "01a20160000000000002", "new")
	if err := d.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load(ctx, "SELECT number + 1000 AS id, toDateTime('2024-05-01 00:00:00') AS ts FROM numbers(5)", []string{"id", "ts"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Cascade(ctx); err != nil {
		t.Fatal(err)
	}
	_, staged, err := d.TableUUIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for tbl, u := range staged {
		if !UsableUUID(u) {
			t.Fatalf("staging table of %s has no uuid (%q): chDB databases are Atomic", tbl, u)
		}
	}
	// The crash: orders exchanged, nothing recorded.
	if _, err := f.conn.Exec(ctx, fmt.Sprintf("EXCHANGE TABLES %s AND %s", f.q("orders"), d.Staging("orders"))); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the redelivery, and one more for good measure
		if err := d.SwapOnce(ctx, staged); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.scalar(t, "SELECT count() FROM "+f.q("orders")); got != "5" {
		t.Fatalf("orders = %s rows, want the 5 new ones", got)
	}
	if got := f.scalar(t, "SELECT sum(n) FROM "+f.q("by_day")); got != "5" {
		t.Fatalf("by_day sum = %s, want 5 (recomputed from the new content)", got)
	}
	if got := f.scalar(t, "SELECT count() FROM "+f.q("enriched")); got != "5" {
		t.Fatalf("enriched = %s, want 5", got)
	}
	// Native views follow the exchanged tables.
	if _, err := f.conn.Exec(ctx, "INSERT INTO "+f.q("orders")+" VALUES (7, '2024-05-01 00:00:00')"); err != nil {
		t.Fatal(err)
	}
	if got := f.scalar(t, "SELECT sum(n) FROM "+f.q("by_day")); got != "6" {
		t.Fatalf("by_day after a native insert = %s, want 6", got)
	}
}
