// Package opslogdb keeps the ops log's tables and views in ClickHouse (their DDL is in
// opsevents): apart from opsevents, so that a process that only publishes events (the
// scheduler) links no ClickHouse driver.
package opslogdb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// EnsureWorkspaceView creates the workspace's datasources_ops_log and jobs_log views, and first Sluice's
// database and the table when the opslog service has not created them yet (the catalog may
// start first; the opslog service adds the retention TTL when it starts). The catalog calls it
// when it creates a workspace; it is idempotent.
func EnsureWorkspaceView(ctx context.Context, wh warehouse.Conn, opsDB, workspaceDB, workspace string) error {
	if _, err := wh.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+warehouse.QuoteIdent(opsDB)); err != nil {
		return fmt.Errorf("ops log database %s: %w", opsDB, err)
	}
	if _, err := wh.Exec(ctx, opsevents.TableDDL(opsDB, "")); err != nil {
		return fmt.Errorf("ops log table %s.%s: %w", opsDB, opsevents.TableName, err)
	}
	if _, err := wh.Exec(ctx, opsevents.WorkspaceViewDDL(opsDB, workspaceDB, workspace)); err != nil {
		return fmt.Errorf("ops log view of workspace %s: %w", workspace, err)
	}
	if err := EnsureJobsLog(ctx, wh, opsDB); err != nil {
		return err
	}
	if _, err := wh.Exec(ctx, opsevents.JobsLogViewDDL(opsDB, workspaceDB, workspace)); err != nil {
		return fmt.Errorf("jobs log view of workspace %s: %w", workspace, err)
	}
	return nil
}

// WaitWritten waits until the ops log in database opsDB holds the events ids of workspace ws,
// for at most within. It reports whether they are all there: a job can then be reported
// finished once its events are readable, so a client that sees it done finds them. Events are
// durable once published whatever this returns.
//
// With nc it listens to the opslog writer's announcements of committed batches
// (opsevents.WrittenSubject) and returns as soon as they name the last missing id, asking
// ClickHouse only at the start (the events may be there already) and every writtenRecheck (an
// announcement is core NATS: lost if the writer dies between commit and announcement). Without
// nc it polls ClickHouse with a growing interval.
func WaitWritten(ctx context.Context, wh warehouse.Conn, nc *nats.Conn, opsDB, ws string, ids []string, within time.Duration) bool {
	if len(ids) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	missing := make(map[string]bool, len(ids))
	for _, id := range ids {
		missing[id] = true
	}
	var notes chan *nats.Msg
	if nc != nil {
		notes = make(chan *nats.Msg, 64)
		// Subscribed before the first look, so that a batch committed after that look is
		// announced to this subscription.
		sub, err := nc.ChanSubscribe(opsevents.WrittenSubject(ws), notes)
		if err == nil {
			defer func() { _ = sub.Unsubscribe() }()
			if err := nc.FlushWithContext(ctx); err != nil {
				notes = nil
			}
		} else {
			notes = nil
		}
	}
	lookup := func() {
		quoted := make([]string, 0, len(missing))
		for id := range missing {
			quoted = append(quoted, warehouse.QuoteString(id))
		}
		q := fmt.Sprintf("SELECT DISTINCT event_id FROM %s WHERE workspace = %s AND event_id IN (%s)",
			warehouse.QualifiedName(opsDB, opsevents.TableName), warehouse.QuoteString(ws), strings.Join(quoted, ", "))
		if res, err := wh.Query(ctx, q); err == nil {
			for _, row := range res.Rows {
				delete(missing, fmt.Sprint(row[0]))
			}
		}
	}
	lookup()
	for wait := 5 * time.Millisecond; len(missing) > 0; {
		if notes != nil {
			wait = writtenRecheck
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case m := <-notes:
			t.Stop()
			var batch opslogv1.QueryEventsResponse
			if proto.Unmarshal(m.Data, &batch) == nil {
				for _, ev := range batch.GetEvents() {
					delete(missing, ev.GetId())
				}
			}
		case <-t.C:
			lookup()
			wait = min(2*wait, 200*time.Millisecond)
		}
	}
	return true
}

// writtenRecheck is how often WaitWritten asks ClickHouse while it listens to announcements.
const writtenRecheck = 250 * time.Millisecond

// HasDateTime64 reports whether the server has DateTime64 (ClickHouse 20.1 and newer).
func HasDateTime64(ctx context.Context, wh warehouse.Conn) bool {
	_, err := wh.Query(ctx, "SELECT toDateTime64(0, 3)")
	return err == nil
}

// EnsureJobsLog creates the jobs_log table in opsDB when it is missing (the opslog service adds
// the retention TTL when it starts).
func EnsureJobsLog(ctx context.Context, wh warehouse.Conn, opsDB string) error {
	if _, err := wh.Exec(ctx, opsevents.JobsLogDDL(opsDB, HasDateTime64(ctx, wh), "")); err != nil {
		return fmt.Errorf("jobs log table %s.%s: %w", opsDB, opsevents.JobsLogTable, err)
	}
	return nil
}
