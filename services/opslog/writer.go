package opslog

// The writer moves events from SLUICE_OPS to datasources_ops_log.
//
// Exactly once. JetStream delivers every event at least once: a batch is acknowledged only
// after its insert has committed, so a writer that dies between the two gets the batch again
// (possibly split or merged with other events); and a publisher may publish an event again
// long after JetStream's duplicate window, with another timestamp. The writer makes any second
// write a no-op by looking up, before every insert attempt, which of the batch's event ids are
// already written, and inserting only the others. The look-up is exact because only opslog
// writers write the table, JetStream gives a message to one writer at a time (a writer that
// retries keeps it with in-progress acks), and an insert attempt is over (committed, failed,
// or killed on the server by the warehouse package when its context ends) before the next
// look-up starts. It is one query per batch, cheap whatever the table's size: it reads the
// table in the key range of the batch (workspaces, Data Sources, timestamps: a message
// delivered again), and the ids index (ids.go) around the times the batch's ids carry (an id
// published again with any timestamp), which a materialized view fills in the same insert. It
// works the same on chDB and on every ClickHouse server (18.16 has neither
// insert_deduplication_token nor non_replicated_deduplication_window), and it also covers what
// block deduplication would not: a partly committed insert (a batch whose rows span partitions
// is written as several parts) and a redelivered event in a differently composed batch. (Two
// replicas handed two copies of one event id at the same moment could both write it; one
// writer per installation, the default, cannot.)
//
// Never dropped. While ClickHouse is unreachable the writer retries the same batch with
// backoff (100 ms doubling to 5 s), telling JetStream the batch is still in progress so it is
// not handed to another writer, and fetches at most one batch ahead: the other events wait in
// the stream (durable, up to opsevents.MaxAge). A message that is not an OpsEvent can never
// be written and is terminated with a log line.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

const (
	// insertTimeout bounds one insert (or look-up) attempt.
	insertTimeout = 60 * time.Second
	// lookupQuerySize is the max_query_size that lets a look-up with a long list parse.
	lookupQuerySize = 16 << 20
	// notifyChunk bounds the events in one SubjectWritten message.
	notifyChunk = 500
	backoffMin  = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
)

// errCrash is returned by a test hook to make the writer stop as if the process died.
var errCrash = errors.New("opslog: simulated crash")

// hooks are test points; nil hooks do nothing. A hook returning an error stops the writer on
// the spot, leaving the batch unacknowledged.
type hooks struct {
	beforeInsert func(events int) error
	afterInsert  func(events int) error
	// wrap wraps the writer's ClickHouse connection (fault injection).
	wrap func(warehouse.Conn) warehouse.Conn
}

// pending is one fetched message and its decoded event.
type pending struct {
	msg jetstream.Msg
	ev  *opslogv1.OpsEvent
}

// batch is what one fetch brought: its messages, and its events once each.
type batch struct {
	fetched time.Time
	msgs    []pending
	events  []*opslogv1.OpsEvent
}

func (s *Service) warehouse() warehouse.Conn {
	if s.hooks.wrap != nil {
		return s.hooks.wrap(s.deps.Warehouse)
	}
	return s.deps.Warehouse
}

// run writes batches one after the other until ctx ends, in a pipeline of three goroutines:
// the fetcher fetches and decodes the next batch (up to BatchSize events, or what arrived
// within FlushInterval) while the writer inserts one, and the acknowledger acknowledges and
// announces the batch before it, which is committed. A batch waiting in the pipeline is
// unacknowledged: a writer that dies loses nothing of it.
func (s *Service) run(ctx context.Context, cons jetstream.Consumer) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *batch, 1)
	committed := make(chan *batch, 1)
	go s.fetch(fctx, cons, batches)
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for b := range committed {
			s.ack(b)
		}
	}()
	defer func() {
		close(committed)
		<-acked
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-batches:
			if err := s.writeBatch(ctx, b); err != nil {
				if !errors.Is(err, errCrash) && ctx.Err() == nil {
					s.log.Error("ops log writer stopped", "err", err)
				}
				return
			}
			committed <- b
		}
	}
}

// batchLinger is how long a batch whose first event has arrived waits for more.
const batchLinger = 10 * time.Millisecond

// fetch waits (up to FlushInterval) for the first event of a batch, then takes every event
// already waiting or arriving within batchLinger, up to BatchSize: under load batches are full, and when events are
// rare each is written as soon as it arrives rather than after a whole FlushInterval (a copy
// job waits for its events to be readable before it is reported done).
func (s *Service) fetch(ctx context.Context, cons jetstream.Consumer, out chan<- *batch) {
	backoff := backoffMin
	for ctx.Err() == nil {
		first, err := cons.Fetch(1, jetstream.FetchMaxWait(s.cfg.FlushInterval))
		if err != nil {
			s.log.Warn("fetch ops events", "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, backoffMax)
			continue
		}
		backoff = backoffMin
		b := &batch{fetched: time.Now()}
		seen := map[string]bool{}
		s.collect(first, b, seen)
		if len(b.msgs) > 0 && s.cfg.BatchSize > 1 {
			// The rest of the batch: what is waiting, and what arrives within a short linger
			// (a fetch returns as soon as the batch is full).
			linger := min(s.cfg.FlushInterval, batchLinger)
			if rest, err := cons.Fetch(s.cfg.BatchSize-1, jetstream.FetchMaxWait(linger)); err == nil {
				s.collect(rest, b, seen)
			}
		}
		if len(b.events) == 0 {
			continue
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// collect decodes a fetch's messages into the batch; seen drops a second copy of an event.
func (s *Service) collect(fetched jetstream.MessageBatch, b *batch, seen map[string]bool) {
	for m := range fetched.Messages() {
		ev := &opslogv1.OpsEvent{}
		if err := proto.Unmarshal(m.Data(), ev); err != nil || ev.GetId() == "" || ev.GetWorkspace() == "" {
			s.log.Error("dropping a message that is not an ops event", "subject", m.Subject(), "err", err)
			s.metrics.invalid.Inc()
			_ = m.Term()
			continue
		}
		b.msgs = append(b.msgs, pending{msg: m, ev: ev})
		if !seen[ev.GetId()] {
			seen[ev.GetId()] = true
			b.events = append(b.events, ev)
		}
	}
	if err := fetched.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		s.log.Debug("fetch ended", "err", err, "messages", len(b.msgs))
	}
}

// writeBatch writes the batch's events exactly once. It returns only when they are
// committed, or with an error when ctx ended first (they stay unacknowledged).
func (s *Service) writeBatch(ctx context.Context, b *batch) error {
	backoff := backoffMin
	lastProgress := time.Now()
	for attempt := 1; ; attempt++ {
		if s.hooks.beforeInsert != nil {
			if err := s.hooks.beforeInsert(len(b.events)); err != nil {
				return err
			}
		}
		written, dup, err := s.insertNew(b.events)
		if err == nil {
			s.metrics.written.Add(float64(written))
			s.metrics.duplicates.Add(float64(dup + len(b.msgs) - len(b.events)))
			if attempt > 1 {
				s.log.Info("ops events written after retries", "events", len(b.events), "attempts", attempt)
			}
			break
		}
		s.metrics.writeErrors.Inc()
		s.log.Warn("writing ops events failed; retrying", "events", len(b.events), "attempt", attempt, "err", err, "class", warehouse.ClassOf(err).String())
		if code := warehouse.CodeOf(err); code == 60 || code == 81 { // UNKNOWN_TABLE, UNKNOWN_DATABASE
			ectx, cancel := context.WithTimeout(context.Background(), insertTimeout)
			if terr := s.ensureTable(ectx); terr != nil {
				s.log.Warn("re-creating the ops log table", "err", terr)
			}
			cancel()
		}
		if time.Since(lastProgress) > s.cfg.AckWait/3 {
			for _, p := range b.msgs {
				_ = p.msg.InProgress()
			}
			lastProgress = time.Now()
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, backoffMax)
	}
	if s.hooks.afterInsert != nil {
		return s.hooks.afterInsert(len(b.events))
	}
	return nil
}

// ack acknowledges a committed batch and announces its events to followers. An ack that is
// lost (NATS restarting) only means a redelivery, which the look-up makes a no-op.
func (s *Service) ack(b *batch) {
	for _, p := range b.msgs {
		if err := p.msg.Ack(); err != nil {
			s.log.Debug("ack ops event", "id", p.ev.GetId(), "err", err)
		}
	}
	s.metrics.batch.Observe(time.Since(b.fetched).Seconds())
	s.notifyWritten(b.events)
}

// insertNew inserts the events whose ids are not in the table yet; it reports how many it
// inserted and how many were there already.
func (s *Service) insertNew(events []*opslogv1.OpsEvent) (written, dup int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), insertTimeout)
	defer cancel()
	wh := s.warehouse()
	start := time.Now()
	existing, err := s.existingIDs(ctx, wh, events)
	if err != nil {
		return 0, 0, fmt.Errorf("look up written events: %w", err)
	}
	looked := time.Now()
	defer func() {
		s.log.Debug("ops events batch", "events", len(events), "written", written, "lookup", looked.Sub(start), "insert", time.Since(looked), "err", err)
	}()
	rows := make([][]any, 0, len(events))
	for _, ev := range events {
		if !existing[ev.GetId()] {
			rows = append(rows, toRow(ev))
		}
	}
	if len(rows) > 0 {
		if _, err := wh.InsertRows(ctx, s.table, columnNames, rows); err != nil {
			return 0, 0, fmt.Errorf("insert %d ops events: %w", len(rows), err)
		}
	}
	return len(rows), len(events) - len(rows), nil
}

// existingIDs returns which of the events' ids are in the table, with one query: the ops log
// by key range (workspace, Data Source, timestamp; see lookupQueries), which finds a message
// delivered again, and the ids index by the times the ids carry (see ids.go), which finds an
// id published again with any other timestamp.
func (s *Service) existingIDs(ctx context.Context, wh warehouse.Conn, events []*opslogv1.OpsEvent) (map[string]bool, error) {
	found := map[string]bool{}
	qs := lookupQueries(s.table, events)
	timed := make([]timedEvent, len(events))
	for i, ev := range events {
		timed[i] = timedEvent{id: ev.GetId(), at: idTime(ev.GetId())}
	}
	slices.SortFunc(timed, func(a, b timedEvent) int { return cmp.Compare(a.at, b.at) })
	qs = append(qs, idLookups(warehouse.QualifiedName(s.db, IDsTableName), timed)...)
	res, err := wh.Query(ctx, strings.Join(qs, "\nUNION ALL\n"), warehouse.WithSettings(warehouse.Settings{"max_query_size": lookupQuerySize}))
	if err != nil {
		return nil, err
	}
	for _, row := range res.Rows {
		if id, ok := row[0].(string); ok {
			found[id] = true
		}
	}
	return found, nil
}

const (
	// clusterGap splits a batch's timestamps into clusters.
	clusterGap = 10 * time.Minute
	// denseCluster is the size from which a cluster is looked up by range alone.
	denseCluster = 1000
)

// lookupQueries are the queries that find which of the events are written.
func lookupQueries(table string, events []*opslogv1.OpsEvent) []string {
	sorted := slices.Clone(events)
	slices.SortFunc(sorted, func(a, b *opslogv1.OpsEvent) int { return eventTime(a).Compare(eventTime(b)) })
	var out []string
	start := 0
	for i := 1; i <= len(sorted); i++ {
		if i < len(sorted) && eventTime(sorted[i]).Sub(eventTime(sorted[i-1])) <= clusterGap {
			continue
		}
		cluster := sorted[start:i]
		if len(cluster) >= denseCluster {
			out = append(out, lookupSQL(table, cluster, false))
		} else {
			out = append(out, lookupSQL(table, cluster, true))
		}
		start = i
	}
	return out
}

// lookupSQL selects the ids of written events in the key range of events (sorted by time),
// reading only the granules of their workspaces, Data Sources and timestamp range; withIDs
// also restricts it to the events' ids.
func lookupSQL(table string, events []*opslogv1.OpsEvent, withIDs bool) string {
	workspaces, datasources := set{}, set{}
	ids := make([]string, 0, len(events))
	for _, ev := range events {
		workspaces.add(ev.GetWorkspace())
		datasources.add(ev.GetDatasourceName())
		if withIDs {
			ids = append(ids, warehouse.QuoteString(ev.GetId()))
		}
	}
	q := fmt.Sprintf("SELECT event_id FROM %s WHERE workspace IN (%s) AND datasource_name IN (%s) AND timestamp >= %s AND timestamp <= %s",
		table, workspaces.list(), datasources.list(), dateTime(eventTime(events[0])), dateTime(eventTime(events[len(events)-1])))
	if withIDs {
		q += " AND event_id IN (" + strings.Join(ids, ", ") + ")"
	}
	return q
}

// dateTime is a DateTime literal independent of the server's time zone.
func dateTime(t time.Time) string {
	return fmt.Sprintf("toDateTime(%d)", max(t.Unix(), 0))
}

type set map[string]struct{}

func (s set) add(v string) { s[v] = struct{}{} }

func (s set) list() string {
	out := make([]string, 0, len(s))
	for v := range s {
		out = append(out, warehouse.QuoteString(v))
	}
	return strings.Join(out, ", ")
}

// notifyWritten publishes the committed events for TailEvents, per workspace. Core NATS: a
// follower that misses a notification still finds the event in the table.
func (s *Service) notifyWritten(events []*opslogv1.OpsEvent) {
	byWS := map[string][]*opslogv1.OpsEvent{}
	for _, ev := range events {
		if opsevents.ValidWorkspace(ev.GetWorkspace()) == nil {
			byWS[ev.GetWorkspace()] = append(byWS[ev.GetWorkspace()], ev)
		}
	}
	for ws, evs := range byWS {
		for lo := 0; lo < len(evs); lo += notifyChunk {
			data, err := proto.Marshal(&opslogv1.QueryEventsResponse{Events: evs[lo:min(lo+notifyChunk, len(evs))]})
			if err != nil {
				continue
			}
			if err := s.deps.NATS.NC.Publish(SubjectWritten+"."+ws, data); err != nil {
				s.log.Debug("notify written ops events", "err", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
