package opslog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestEventIDOnceWhateverItsTimestamp publishes events of every kind of id (generated, time
// ordered as Publish makes them; derived from a job; chosen by the publisher), lets many other
// events be written, and then publishes each id again as a new message (as after JetStream's
// duplicate window), with a timestamp days, months or years away from the first, in another
// Data Source: every id is in the table once, with its first content.
func TestEventIDOnceWhateverItsTimestamp(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			db := warehousetest.NewDatabase(t, wh)
			nc := startNATS(t)
			s := startService(t, testConfig(), nc, wh, db, hooks{})
			pub := opsevents.NewPublisher(nc, nil)

			first := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
			ids := []string{
				uuid.Must(uuid.NewV7()).String(),
				opsevents.JobEventID("acme", "01a2363d9a90b525a30f", opsevents.EventCopy, "sales"),
				"publisher-chosen-id-42",
				uuid.NewString(),
			}
			var originals []*opslogv1.OpsEvent
			for i, id := range ids {
				ev := testEvent("acme", "sales", i+1)
				ev.Id, ev.Timestamp = id, timestamppb.New(first.Add(time.Duration(i)*time.Minute))
				originals = append(originals, ev)
			}
			publish(t, pub, originals...)
			var others []*opslogv1.OpsEvent
			for i := range 3000 {
				ev := testEvent("acme", fmt.Sprintf("ds%d", i%5), 100+i)
				ev.Timestamp = timestamppb.New(first.Add(time.Duration(i) * time.Second))
				others = append(others, ev)
			}
			publish(t, pub, others...)
			waitWritten(t, s, wh, uint64(len(ids)+len(others)))
			for i, id := range ids {
				for j, shift := range []time.Duration{48 * time.Hour, -40 * 24 * time.Hour, 3 * 365 * 24 * time.Hour} {
					again := testEvent("acme", "other_ds", 9000+10*i+j)
					again.Id, again.Timestamp = id, timestamppb.New(first.Add(shift))
					publishRaw(t, nc, again, fmt.Sprintf("late-%d-%d", i, j))
				}
			}
			// A marker published last: once it is written, every republished event was seen.
			marker := testEvent("acme", "marker", 1)
			publish(t, pub, marker)
			waitWritten(t, s, wh, uint64(len(ids)+len(others)+1))
			for i, id := range ids {
				res, err := wh.Query(context.Background(), fmt.Sprintf("SELECT count(), any(datasource_name), any(written_rows) FROM %s WHERE event_id = %s",
					warehouse.QualifiedName(db, TableName), warehouse.QuoteString(id)))
				if err != nil {
					t.Fatal(err)
				}
				if got, want := fmt.Sprint(res.Rows[0]), fmt.Sprintf("[1 sales %d]", i+1); got != want {
					t.Errorf("event %s: (rows, datasource, written_rows) = %s, want %s: once, as first published", id, got, want)
				}
			}
		})
	}
}

// TestIDTime: the time an id carries, as Go and as the table's SQL read it, agree.
func TestIDTime(t *testing.T) {
	at := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	v7, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{
		v7.String(), uuid.NewString(), opsevents.JobEventID("w", "j", "copy", "d"), "not-a-uuid", "",
		"0190f1a2-3b4c-7d5e-8f60-718293a4b5c6", "0190F1A2-3B4C-7D5E-8F60-718293A4B5C6", "zz90f1a2-3b4c-7d5e-8f60-718293a4b5c6",
		fmt.Sprintf("%08x-%04x-8000-8000-000000000000", at.UnixMilli()>>16, at.UnixMilli()&0xffff),
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			for _, id := range ids {
				res, err := wh.Query(context.Background(), "SELECT toUInt32("+idTimeSQL(warehouse.QuoteString(id))+")")
				if err != nil {
					t.Fatal(err)
				}
				if got, want := res.Rows[0][0], uint64(idTime(id)); got != want {
					t.Errorf("id %q: SQL reads time %v, Go %v", id, got, want)
				}
			}
		})
	}
	if got := idTime(ids[len(ids)-1]); got != at.Unix() {
		t.Errorf("a time-ordered id of %s: %d, want %d", at, got, at.Unix())
	}
	if got := idTime(ids[1]); got != 0 {
		t.Errorf("a random (v4) id carries no time: %d", got)
	}
}

// TestWritersStartingTogether starts several writers at once on a table that has rows and no
// ids index yet, with a build a crashed writer left behind: every writer starts, the index
// holds each id once, and no build is left.
func TestWritersStartingTogether(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			wh := e.open(t)
			db := warehousetest.NewDatabase(t, wh)
			if _, err := wh.Exec(ctx, TableDDL(db, "")); err != nil {
				t.Fatal(err)
			}
			const rows = 200000
			if _, err := wh.Exec(ctx, fmt.Sprintf("INSERT INTO %s (event_id, workspace, timestamp) SELECT toString(generateUUIDv4()), 'acme', toDateTime('2026-03-14 09:00:00') + number FROM numbers(%d)",
				warehouse.QualifiedName(db, TableName), rows)); err != nil {
				t.Fatal(err)
			}
			if _, err := wh.Exec(ctx, idsTableDDL(db, IDsTableName+"_build", "")); err != nil {
				t.Fatal(err)
			}
			nc := startNATS(t)
			const writers = 4
			services := make([]*Service, writers)
			errs := make(chan error, writers)
			for i := range services {
				s, err := New(testConfig(), Deps{Log: testLogger(t), NATS: nc, Warehouse: wh, Database: db})
				if err != nil {
					t.Fatal(err)
				}
				services[i] = s
				go func() {
					ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
					defer cancel()
					errs <- s.Start(ctx)
				}()
			}
			for range services {
				if err := <-errs; err != nil {
					t.Errorf("a writer did not start: %v", err)
				}
			}
			for _, s := range services {
				t.Cleanup(func() { stopService(t, s) })
			}
			res, err := wh.Query(ctx, fmt.Sprintf("SELECT count(), uniqExact(event_id) FROM %s", warehouse.QualifiedName(db, IDsTableName)))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fmt.Sprint(res.Rows[0]), fmt.Sprintf("[%d %d]", rows, rows); got != want {
				t.Errorf("ids index (rows, ids) = %s, want %s", got, want)
			}
			prefix := IDsTableName + "_build"
			res, err = wh.Query(ctx, fmt.Sprintf("SELECT name FROM system.tables WHERE database = %s AND substring(name, 1, %d) = %s",
				warehouse.QuoteString(db), len(prefix), warehouse.QuoteString(prefix)))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rows) != 0 {
				t.Errorf("builds left behind: %v", res.Rows)
			}
		})
	}
}
