package opslog

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// TableName is the ops log's table in Sluice's database, and the name of the view each
// workspace database has over it.
const TableName = opsevents.TableName

type column struct{ name, typ string }

func columns(cs []opsevents.Column) []column {
	out := make([]column, len(cs))
	for i, c := range cs {
		out[i] = column{c.Name, c.Type}
	}
	return out
}

// tableColumns are the table's columns, the workspace and the event id first, then the ones
// users see (platform/opsevents holds the schema).
var tableColumns = columns(opsevents.TableColumns)

// columnNames are the table's column names, in insert order.
var columnNames = func() []string {
	out := make([]string, len(tableColumns))
	for i, c := range tableColumns {
		out[i] = c.name
	}
	return out
}()

// selectList is the quoted column list of queries.
func selectList(cols []column) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = warehouse.QuoteIdent(c.name)
	}
	return strings.Join(parts, ", ")
}

// TableDDL is opsevents.TableDDL: the CREATE TABLE of the ops log in database db.
func TableDDL(db, ttl string) string { return opsevents.TableDDL(db, ttl) }

// ttlExpr is the TTL clause of a retention.
func ttlExpr(retention time.Duration) string {
	return "timestamp + " + ttlSeconds(retention)
}

func ttlSeconds(retention time.Duration) string {
	return fmt.Sprintf("toIntervalSecond(%d)", int64(retention/time.Second))
}

// WorkspaceViewDDL is opsevents.WorkspaceViewDDL: the view that makes the ops log one of a
// workspace's Data Sources, showing that workspace's events only.
func WorkspaceViewDDL(opsDB, workspaceDB, workspace string) string {
	return opsevents.WorkspaceViewDDL(opsDB, workspaceDB, workspace)
}

var versionRe = regexp.MustCompile(`^(\d+)\.(\d+)`)

// supportsTTL reports whether a ClickHouse version has table TTL (19.6 and newer).
func supportsTTL(version string) bool {
	m := versionRe.FindStringSubmatch(version)
	if m == nil {
		return true
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 19 || (major == 19 && minor >= 6)
}

// ensureTable creates Sluice's database and the table, and brings the TTL to the configured
// retention. It is idempotent.
func (s *Service) ensureTable(ctx context.Context) error {
	wh := s.deps.Warehouse
	res, err := wh.Query(ctx, "SELECT version()")
	if err != nil {
		return fmt.Errorf("clickhouse version: %w", err)
	}
	version := ""
	if len(res.Rows) == 1 {
		version, _ = res.Rows[0][0].(string)
	}
	ttl := ""
	s.dropByPartition = !supportsTTL(version)
	if !s.dropByPartition {
		ttl = ttlExpr(s.cfg.Retention)
	} else {
		s.log.Info("this ClickHouse has no table TTL: opslog.retention drops whole months instead", "version", version)
	}
	if _, err := wh.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+warehouse.QuoteIdent(s.db)); err != nil {
		return fmt.Errorf("create database %s: %w", s.db, err)
	}
	if _, err := wh.Exec(ctx, TableDDL(s.db, ttl)); err != nil {
		return fmt.Errorf("create %s.%s: %w", s.db, TableName, err)
	}
	if err := s.nullableFigures(ctx); err != nil {
		return err
	}
	if err := s.ensureTimestampNS(ctx); err != nil {
		return err
	}
	if err := s.ensureIDs(ctx, ttl); err != nil {
		return err
	}
	if ttl == "" {
		return nil
	}
	// A table made with another retention gets the new one; only then, because MODIFY TTL
	// rewrites the parts.
	res, err = wh.Query(ctx, fmt.Sprintf("SELECT engine_full FROM system.tables WHERE database = %s AND name = %s",
		warehouse.QuoteString(s.db), warehouse.QuoteString(TableName)))
	if err != nil {
		return fmt.Errorf("read %s.%s definition: %w", s.db, TableName, err)
	}
	if len(res.Rows) == 1 {
		full, _ := res.Rows[0][0].(string)
		if !strings.Contains(full, ttlSeconds(s.cfg.Retention)) {
			if _, err := wh.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY TTL %s", s.table, ttl)); err != nil {
				return fmt.Errorf("set retention of %s.%s: %w", s.db, TableName, err)
			}
		}
	}
	return nil
}

// dropExpired drops the monthly partitions whose every event is older than the retention,
// for servers without TTL: an event is kept for at least the retention and at most a month
// longer. It reports the partitions dropped.
func (s *Service) dropExpired(ctx context.Context, now time.Time) ([]string, error) {
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf(
		"SELECT DISTINCT partition FROM system.parts WHERE database = %s AND table = %s AND active",
		warehouse.QuoteString(s.db), warehouse.QuoteString(TableName)))
	if err != nil {
		return nil, fmt.Errorf("list ops log partitions: %w", err)
	}
	cutoff := now.Add(-s.cfg.Retention).UTC()
	var dropped []string
	for _, row := range res.Rows {
		p, _ := row[0].(string)
		month, err := time.Parse("200601", p)
		if err != nil {
			continue
		}
		if !month.AddDate(0, 1, 0).Before(cutoff) {
			continue
		}
		if _, err := s.deps.Warehouse.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION %s", s.table, p)); err != nil {
			return dropped, fmt.Errorf("drop ops log partition %s: %w", p, err)
		}
		// The ids index is partitioned by the same months.
		if _, err := s.deps.Warehouse.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION %s", warehouse.QualifiedName(s.db, IDsTableName), p)); err != nil {
			return dropped, fmt.Errorf("drop ops log ids partition %s: %w", p, err)
		}
		dropped = append(dropped, p)
	}
	return dropped, nil
}

// retain runs dropExpired every hour until ctx ends.
func (s *Service) retain(ctx context.Context) {
	for {
		dctx, cancel := context.WithTimeout(ctx, insertTimeout)
		dropped, err := s.dropExpired(dctx, time.Now())
		cancel()
		if err != nil {
			s.log.Warn("ops log retention", "err", err)
		} else if len(dropped) > 0 {
			s.log.Info("ops log retention dropped months", "partitions", dropped)
		}
		if !sleep(ctx, time.Hour) {
			return
		}
	}
}

// nullableFigures brings a table made before cpu_time and memory_usage were Nullable to the
// current columns (their zeros stay zeros; new events write NULL where the engine reports
// nothing). Idempotent: a table that has them Nullable is left alone.
func (s *Service) nullableFigures(ctx context.Context) error {
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = %s AND table = %s AND name IN ('cpu_time', 'memory_usage')",
		warehouse.QuoteString(s.db), warehouse.QuoteString(TableName)))
	if err != nil {
		return fmt.Errorf("read %s.%s columns: %w", s.db, TableName, err)
	}
	for _, r := range res.Rows {
		name, typ := fmt.Sprint(r[0]), fmt.Sprint(r[1])
		if strings.HasPrefix(typ, "Nullable(") {
			continue
		}
		if _, err := s.deps.Warehouse.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN %s Nullable(%s)", s.table, warehouse.QuoteIdent(name), typ)); err != nil {
			return fmt.Errorf("make %s.%s %s Nullable: %w", s.db, TableName, name, err)
		}
		s.log.Info("ops log column made Nullable", "column", name)
	}
	return nil
}

// ensureTimestampNS adds the full-timestamp column to a table made before it existed; its
// rows get their whole-second timestamp.
func (s *Service) ensureTimestampNS(ctx context.Context) error {
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf("SELECT count() FROM system.columns WHERE database = %s AND table = %s AND name = %s",
		warehouse.QuoteString(s.db), warehouse.QuoteString(TableName), warehouse.QuoteString(opsevents.TimestampNSColumn)))
	if err != nil {
		return fmt.Errorf("columns of %s.%s: %w", s.db, TableName, err)
	}
	if len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) != "0" {
		return nil
	}
	if _, err := s.deps.Warehouse.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s Int64 DEFAULT %s",
		s.table, warehouse.QuoteIdent(opsevents.TimestampNSColumn), opsevents.TimestampNSDefault)); err != nil {
		return fmt.Errorf("add %s to %s.%s: %w", opsevents.TimestampNSColumn, s.db, TableName, err)
	}
	return nil
}
