package opslog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

const (
	// DefaultLimit is the events a query returns when it names no limit.
	DefaultLimit = 100
	// MaxLimit bounds the events one query (or a tail's backlog) returns.
	MaxLimit = 10000
)

// errStopping ends a tail when the service stops; the client may follow again elsewhere.
var errStopping = errors.New("the ops log is stopping: follow again")

// errInvalid marks a request error (InvalidArgument).
type errInvalid struct{ field, msg string }

func (e *errInvalid) Error() string { return e.field + ": " + e.msg }

// checkFilter validates a filter.
func checkFilter(f *opslogv1.EventFilter) error {
	if err := opsevents.ValidWorkspace(f.GetWorkspace()); err != nil {
		return &errInvalid{"filter.workspace", err.Error()}
	}
	for _, t := range f.GetEventTypes() {
		if opsevents.EventTypeName(t) == "" {
			return &errInvalid{"filter.event_types", fmt.Sprintf("%v is not an event type", t)}
		}
	}
	for _, r := range f.GetResults() {
		if opsevents.ResultName(r) == "" {
			return &errInvalid{"filter.results", fmt.Sprintf("%v is not a result", r)}
		}
	}
	if f.GetSince() != nil && f.GetUntil() != nil && !f.GetSince().AsTime().Before(f.GetUntil().AsTime()) {
		return &errInvalid{"filter.until", "must be after since"}
	}
	return nil
}

// whereSQL renders the filter; every value is quoted.
func whereSQL(f *opslogv1.EventFilter, withUntil bool) string {
	conds := []string{"workspace = " + warehouse.QuoteString(f.GetWorkspace())}
	if f.GetDatasource() != "" {
		conds = append(conds, "datasource_name = "+warehouse.QuoteString(f.GetDatasource()))
	}
	if len(f.GetEventTypes()) > 0 {
		names := make([]string, len(f.GetEventTypes()))
		for i, t := range f.GetEventTypes() {
			names[i] = opsevents.EventTypeName(t)
		}
		conds = append(conds, "event_type IN ("+quoteList(names)+")")
	}
	if len(f.GetResults()) > 0 {
		names := make([]string, len(f.GetResults()))
		for i, r := range f.GetResults() {
			names[i] = opsevents.ResultName(r)
		}
		conds = append(conds, "result IN ("+quoteList(names)+")")
	}
	if f.GetJobId() != "" {
		conds = append(conds, "job_id = "+warehouse.QuoteString(f.GetJobId()))
	}
	if f.GetPipe() != "" {
		p := warehouse.QuoteString(f.GetPipe())
		conds = append(conds, "(pipe_name = "+p+" OR pipe_id = "+p+")")
	}
	// The conditions on the whole-second timestamp let ClickHouse skip granules by the sorting
	// key; those on timestamp_ns are exact.
	if f.GetSince() != nil {
		since := f.GetSince().AsTime()
		conds = append(conds, "timestamp >= "+dateTime(since.Truncate(time.Second)),
			fmt.Sprintf("%s >= %d", opsevents.TimestampNSColumn, since.UnixNano()))
	}
	if withUntil && f.GetUntil() != nil {
		u := f.GetUntil().AsTime()
		secs := u.Unix()
		if u.Nanosecond() > 0 {
			secs++
		}
		conds = append(conds, fmt.Sprintf("timestamp < toDateTime(%d)", max(secs, 0)),
			fmt.Sprintf("%s < %d", opsevents.TimestampNSColumn, u.UnixNano()))
	}
	return strings.Join(conds, " AND ")
}

func quoteList(vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = warehouse.QuoteString(v)
	}
	return strings.Join(out, ", ")
}

// Cursor is where a page of events starts: after the event with this full timestamp and id
// (events are ordered newest first by timestamp_ns, then id, both descending).
type Cursor struct {
	TimestampNS int64
	ID          string
}

// Query returns at most limit events matching f, newest first, after the cursor when it is
// not nil.
func (s *Service) Query(ctx context.Context, f *opslogv1.EventFilter, limit int, after *Cursor) ([]*opslogv1.OpsEvent, error) {
	if err := checkFilter(f); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	where := whereSQL(f, true)
	if after != nil {
		// Every event older than the cursor, or as old with a smaller id: never one twice, never
		// one skipped, whatever was written in between (a new event is newer than the cursor).
		where += fmt.Sprintf(" AND (%[1]s < %[2]d OR (%[1]s = %[2]d AND event_id < %[3]s))",
			opsevents.TimestampNSColumn, after.TimestampNS, warehouse.QuoteString(after.ID))
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s DESC, event_id DESC LIMIT %d",
		selectList(tableColumns), s.table, where, opsevents.TimestampNSColumn, limit)
	res, err := s.deps.Warehouse.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("query the ops log: %w", err)
	}
	out := make([]*opslogv1.OpsEvent, 0, len(res.Rows))
	for _, row := range res.Rows {
		ev, err := fromRow(row)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// matches reports whether a followed event passes the filter (its since and until apply to
// the backlog only: a job created long ago that ends now is new).
func matches(f *opslogv1.EventFilter, ev *opslogv1.OpsEvent) bool {
	switch {
	case ev.GetWorkspace() != f.GetWorkspace():
		return false
	case f.GetDatasource() != "" && ev.GetDatasourceName() != f.GetDatasource():
		return false
	case len(f.GetEventTypes()) > 0 && !slices.Contains(f.GetEventTypes(), ev.GetEventType()):
		return false
	case len(f.GetResults()) > 0 && !slices.Contains(f.GetResults(), ev.GetResult()):
		return false
	case f.GetJobId() != "" && ev.GetJobId() != f.GetJobId():
		return false
	case f.GetPipe() != "" && ev.GetPipeName() != f.GetPipe() && ev.GetPipeId() != f.GetPipe():
		return false
	}
	return true
}

// Tail sends the backlog (events at or after since, or backlog ago; none when both are unset),
// oldest first, then every matching event as soon as it is committed to the table, until ctx
// ends or send fails. Followed events come from the writers' SubjectWritten notifications,
// published after the insert committed, so an event is always visible in the table (and to
// QueryEvents) before it is streamed. The subscription starts before the backlog is read, and
// events in both are sent once.
func (s *Service) Tail(ctx context.Context, f *opslogv1.EventFilter, backlog time.Duration, send func(*opslogv1.OpsEvent) error) error {
	if err := checkFilter(f); err != nil {
		return err
	}
	f = proto.Clone(f).(*opslogv1.EventFilter)
	f.Until = nil
	notes := make(chan *nats.Msg, 1024)
	sub, err := s.deps.NATS.NC.ChanSubscribe(SubjectWritten+"."+f.GetWorkspace(), notes)
	if err != nil {
		return fmt.Errorf("follow the ops log: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, 256<<20)
	if err := s.deps.NATS.NC.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("follow the ops log: %w", err)
	}

	sent := map[string]bool{}
	if f.GetSince() == nil && backlog > 0 {
		f.Since = timestamppb.New(time.Now().Add(-backlog))
	}
	if f.GetSince() != nil {
		events, err := s.Query(ctx, f, MaxLimit, nil)
		if err != nil {
			return err
		}
		for i := len(events) - 1; i >= 0; i-- {
			sent[events[i].GetId()] = true
			if err := send(events[i]); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return errStopping
		case m := <-notes:
			var batch opslogv1.QueryEventsResponse
			if err := proto.Unmarshal(m.Data, &batch); err != nil {
				continue
			}
			for _, ev := range batch.GetEvents() {
				if sent[ev.GetId()] || !matches(f, ev) {
					continue
				}
				if err := send(ev); err != nil {
					return err
				}
			}
		}
	}
}
