package opslog

// The ids index. The writer must not write an event whose id is already in the table, however
// late the event comes again and whatever timestamp it carries then. The table's sorting key
// (workspace, Data Source, timestamp) finds a redelivered message (same content) cheaply, but
// not the same id published again with another timestamp or Data Source. So a second table,
// datasources_ops_log_ids, holds every written id, sorted by the time the id itself carries
// (ids made by Publish are time-ordered UUIDs, version 7) and then the id: a batch's ids are
// looked up in the few granules around their own times, independently of the events'
// timestamps, and of the table's size. A materialized view fills it from every insert into the
// table, in the same statement. Ids that carry no time (those derived from a job, or chosen by
// a publisher) share time 0 and are looked up by their value.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/platform/warehouse"
)

const (
	// IDsTableName is the ids index of the ops log, in Sluice's database.
	IDsTableName = TableName + "_ids"
	// idsViewName is the materialized view that fills it.
	idsViewName = TableName + "_ids_mv"
)

// timedID matches the ids that carry a time: UUIDs of version 7 (and 8, laid out the same
// way), whose first 48 bits are Unix milliseconds.
var timedID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[78]`)

const timedIDSQL = `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[78]`

// maxIDTime is the last second a DateTime holds; later times count as none.
const maxIDTime = 4294967295

// idTime is the time an id carries, in Unix seconds; 0 for an id that carries none. idTimeSQL
// computes the same in ClickHouse.
func idTime(id string) int64 {
	if !timedID.MatchString(id) {
		return 0
	}
	ms, err := strconv.ParseUint(id[0:8]+id[9:13], 16, 64)
	if err != nil {
		return 0
	}
	if s := ms / 1000; s <= maxIDTime {
		return int64(s)
	}
	return 0
}

// idTimeSQL is idTime of the String expression e, as a DateTime.
func idTimeSQL(e string) string {
	secs := fmt.Sprintf("intDiv(reinterpretAsUInt64(reverse(unhex(concat(substring(%s, 1, 8), substring(%s, 10, 4))))), 1000)", e, e)
	return fmt.Sprintf("toDateTime(multiIf(NOT match(%s, %s), 0, %s > %d, 0, %s))", e, warehouse.QuoteString(timedIDSQL), secs, maxIDTime, secs)
}

// idsTableDDL is the ids index of the ops log in db: the id, the time it carries, and the
// event's timestamp (for the retention, the same as the table's).
func idsTableDDL(db, name, ttl string) string {
	q := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (event_id String, id_time DateTime, timestamp DateTime) ENGINE = MergeTree\n"+
		"PARTITION BY toYYYYMM(timestamp)\nORDER BY (id_time, event_id)", warehouse.QualifiedName(db, name))
	if ttl != "" {
		q += "\nTTL " + ttl
	}
	return q
}

// idsSelect is the query that maps ops log rows to the ids index.
func idsSelect(from string) string {
	return fmt.Sprintf("SELECT event_id, %s AS id_time, timestamp FROM %s", idTimeSQL("event_id"), from)
}

// ensureIDs creates the ids index, filled with the ids already in the table, and the view that
// keeps it filled. It runs before the writer starts (the table does not change meanwhile).
func (s *Service) ensureIDs(ctx context.Context, ttl string) error {
	wh := s.deps.Warehouse
	ids := warehouse.QualifiedName(s.db, IDsTableName)
	exists, err := s.idsExist(ctx)
	if err != nil {
		return fmt.Errorf("look for %s: %w", IDsTableName, err)
	}
	if !exists {
		// Built aside and renamed, so that a crash half way leaves no partial index. Each
		// writer builds under a name of its own: writers starting together build it each, the
		// first rename wins and the others drop theirs.
		var b [6]byte
		_, _ = rand.Read(b[:])
		buildName := IDsTableName + "_build_" + hex.EncodeToString(b[:])
		build := warehouse.QualifiedName(s.db, buildName)
		for _, stmt := range []string{
			idsTableDDL(s.db, buildName, ttl),
			"INSERT INTO " + build + " " + idsSelect(s.table),
			"RENAME TABLE " + build + " TO " + ids,
		} {
			if _, err := wh.Exec(ctx, stmt); err != nil {
				_, _ = wh.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+build)
				if exists, _ := s.idsExist(ctx); exists {
					break // another writer built it first
				}
				return fmt.Errorf("build %s: %w", IDsTableName, err)
			}
		}
		s.log.Info("ops log ids index built", "table", IDsTableName)
	}
	// Builds a crash left behind. A writer still building when the index appeared loses
	// nothing by losing its build: the index is there.
	prefix := IDsTableName + "_build"
	res, err := wh.Query(ctx, fmt.Sprintf("SELECT name FROM system.tables WHERE database = %s AND substring(name, 1, %d) = %s",
		warehouse.QuoteString(s.db), len(prefix), warehouse.QuoteString(prefix)))
	if err != nil {
		return fmt.Errorf("look for %s builds: %w", IDsTableName, err)
	}
	for _, row := range res.Rows {
		if _, err := wh.Exec(ctx, "DROP TABLE IF EXISTS "+warehouse.QualifiedName(s.db, fmt.Sprint(row[0]))); err != nil {
			return fmt.Errorf("drop %s: %w", row[0], err)
		}
	}
	if _, err := wh.Exec(ctx, fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s TO %s AS %s",
		warehouse.QualifiedName(s.db, idsViewName), ids, idsSelect(s.table))); err != nil {
		return fmt.Errorf("create %s: %w", idsViewName, err)
	}
	if ttl == "" {
		return nil
	}
	res, err = wh.Query(ctx, fmt.Sprintf("SELECT engine_full FROM system.tables WHERE database = %s AND name = %s",
		warehouse.QuoteString(s.db), warehouse.QuoteString(IDsTableName)))
	if err != nil {
		return fmt.Errorf("read %s definition: %w", IDsTableName, err)
	}
	if len(res.Rows) == 1 && !strings.Contains(fmt.Sprint(res.Rows[0][0]), ttlSeconds(s.cfg.Retention)) {
		if _, err := wh.Exec(ctx, "ALTER TABLE "+ids+" MODIFY TTL "+ttl); err != nil {
			return fmt.Errorf("set retention of %s: %w", IDsTableName, err)
		}
	}
	return nil
}

// idsExist reports whether the ids index exists.
func (s *Service) idsExist(ctx context.Context) (bool, error) {
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf("SELECT count() FROM system.tables WHERE database = %s AND name = %s",
		warehouse.QuoteString(s.db), warehouse.QuoteString(IDsTableName)))
	if err != nil {
		return false, err
	}
	return len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) == "1", nil
}

// idLookups are the SELECTs of the ids index that find which of events' ids (given with
// their times, sorted by time) are written: one per cluster of close times, naming the ids
// unless the cluster is dense (its time range then holds about the cluster itself). Ids that
// carry no time are always named.
func idLookups(ids string, evs []timedEvent) []string {
	var out []string
	start := 0
	for i := 1; i <= len(evs); i++ {
		if i < len(evs) && evs[i].at-evs[i-1].at <= int64(clusterGap.Seconds()) && (evs[i].at == 0) == (evs[i-1].at == 0) {
			continue
		}
		c := evs[start:i]
		q := fmt.Sprintf("SELECT event_id FROM %s WHERE id_time >= toDateTime(%d) AND id_time <= toDateTime(%d)", ids, c[0].at, c[len(c)-1].at)
		if len(c) < denseCluster || c[0].at == 0 {
			list := make([]string, len(c))
			for j, e := range c {
				list[j] = warehouse.QuoteString(e.id)
			}
			q += " AND event_id IN (" + strings.Join(list, ", ") + ")"
		}
		out = append(out, q)
		start = i
	}
	return out
}

// timedEvent is an event id and the time it carries.
type timedEvent struct {
	id string
	at int64
}
