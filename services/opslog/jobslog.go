package opslog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/jobs"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/opsevents/opslogdb"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// JobsLogConsumer is the durable consumer, on the stream of the job records' KV bucket, that
// keeps jobs_log.
const JobsLogConsumer = "opslog-jobs-log"

// ensureJobsLog creates jobs_log (the catalog may have created it already) with the retention
// TTL where the server has TTL. It is idempotent.
func (s *Service) ensureJobsLog(ctx context.Context) error {
	ttl := ""
	if !s.dropByPartition {
		ttl = fmt.Sprintf("toDateTime(created_at) + toIntervalSecond(%d)", int64(s.cfg.Retention/time.Second))
	}
	if _, err := s.deps.Warehouse.Exec(ctx, opsevents.JobsLogDDL(s.db, opslogdb.HasDateTime64(ctx, s.deps.Warehouse), ttl)); err != nil {
		return fmt.Errorf("create %s.%s: %w", s.db, opsevents.JobsLogTable, err)
	}
	return nil
}

// keepJobsLog writes every change of a job record to jobs_log until ctx ends: a durable
// consumer on the job records' stream, acknowledged after each insert. A row written twice
// (redelivery) is collapsed by the table's engine; deletions of expired records are skipped,
// since the table keeps jobs for the ops log's retention. The stream appears when the
// scheduler first starts; until then this waits.
func (s *Service) keepJobsLog(ctx context.Context) {
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		c, err := s.deps.NATS.JS.CreateOrUpdateConsumer(ctx, jobs.StreamRecords, jetstream.ConsumerConfig{
			Durable:       JobsLogConsumer,
			Description:   "writes job records to jobs_log",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       s.cfg.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: 4 * s.cfg.BatchSize,
			Replicas:      s.deps.NATS.Replicas,
		})
		if err == nil {
			cons = c
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			s.log.Warn("jobs log consumer", "err", err)
		}
		if !sleep(ctx, time.Second) {
			return
		}
	}
	table := warehouse.QualifiedName(s.db, opsevents.JobsLogTable)
	backoff := backoffMin
	for ctx.Err() == nil {
		fetched, err := cons.Fetch(s.cfg.BatchSize, jetstream.FetchMaxWait(s.cfg.FlushInterval))
		if err != nil {
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, backoffMax)
			continue
		}
		var msgs []jetstream.Msg
		var rows [][]any
		for m := range fetched.Messages() {
			msgs = append(msgs, m)
			if op := m.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" {
				continue
			}
			rec, err := jobs.Decode(m.Data())
			if err != nil || rec.GetJob().GetId() == "" || rec.GetJob().GetWorkspace() == "" {
				s.log.Warn("skipping a job record that does not decode", "subject", m.Subject(), "err", err)
				continue
			}
			rows = append(rows, opsevents.JobsLogRow(rec.GetJob()))
		}
		for len(rows) > 0 && ctx.Err() == nil {
			if _, err := s.deps.Warehouse.InsertRows(ctx, table, opsevents.JobsLogColumns, rows); err != nil {
				s.log.Warn("jobs log insert failed; retrying", "rows", len(rows), "err", err)
				if !sleep(ctx, backoff) {
					return // unacknowledged: redelivered to the next writer
				}
				backoff = min(2*backoff, backoffMax)
				continue
			}
			backoff = backoffMin
			rows = nil
		}
		if len(rows) > 0 {
			return // stopped before the rows were written: unacknowledged, redelivered
		}
		for _, m := range msgs {
			_ = m.Ack()
		}
	}
}
