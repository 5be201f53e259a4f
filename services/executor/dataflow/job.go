package dataflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/platform/warehouse"
)

var (
	jobIDRE      = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	jobStagingRE = regexp.MustCompile(`^` + StagingPrefix + `j([A-Za-z0-9-]{1,64})_[0-9a-f]{12}(?:_[0-9a-f]{8})?_[0-9]+$`)
	attemptRE    = regexp.MustCompile(`^[0-9a-f]{8}$`)
)

// NewForAttempt is New for one attempt of a step, its staging tables named
// `__sluice_stage_j<job id>_<hash of step key>_<attempt>_<n>`: attempt (8 hex digits) tells
// them apart from those of every other attempt of the step, so that an attempt that is late (it
// started before another attempt recorded the step's commit, or runs on after its message was
// redelivered) never writes into the tables whose rows a commit record names; and
// DropStepStaging finds the tables of every attempt of the step.
func NewForAttempt(conn warehouse.Conn, flow Flow, jobID, stepKey, attempt string) (*Delta, error) {
	if !attemptRE.MatchString(attempt) {
		return nil, fmt.Errorf("attempt %q cannot name a staging table", attempt)
	}
	d, err := New(conn, flow, jobID, stepKey)
	if err != nil {
		return nil, err
	}
	prefix := stepStagingPrefix(jobID, stepKey)
	for i, t := range flow.Tables() {
		d.staging[t] = fmt.Sprintf("%s%s_%d", prefix, attempt, i)
	}
	return d, nil
}

func stepStagingPrefix(jobID, stepKey string) string {
	h := sha256.Sum256([]byte(stepKey))
	return fmt.Sprintf("%sj%s_%s_", StagingPrefix, jobID, hex.EncodeToString(h[:6]))
}

// DropStepStaging drops the staging tables of every attempt of a step (NewForAttempt) in a
// database: for the attempt that finished the step's commit, what other attempts left.
func DropStepStaging(ctx context.Context, conn warehouse.Conn, database, jobID, stepKey string) error {
	tables, err := ListStaging(ctx, conn, database)
	if err != nil {
		return err
	}
	prefix := stepStagingPrefix(jobID, stepKey)
	var errs []error
	for _, t := range tables {
		rest, ok := strings.CutPrefix(t.Name, prefix)
		if !ok || t.Job != jobID {
			continue
		}
		if a, _, ok := strings.Cut(rest, "_"); !ok || !attemptRE.MatchString(a) {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+warehouse.QualifiedName(t.Database, t.Name)); err != nil {
			errs = append(errs, fmt.Errorf("drop staging table %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// JobOfStaging returns the job a staging table belongs to (see New).
func JobOfStaging(table string) (string, bool) {
	m := jobStagingRE.FindStringSubmatch(table)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// StagingTable is a staging table found in a database.
type StagingTable struct {
	Database string
	Name     string
	// Job is the job it belongs to ("" for a staging table named otherwise: left by an
	// earlier version of Sluice).
	Job string
}

// ListStaging lists the staging tables of every database (database "" ) or of one.
func ListStaging(ctx context.Context, conn warehouse.Conn, database string) ([]StagingTable, error) {
	where := "startsWith(name, " + warehouse.QuoteString(StagingPrefix) + ")"
	if database != "" {
		where += " AND database = " + warehouse.QuoteString(database)
	}
	res, err := conn.Query(ctx, "SELECT database, name FROM system.tables WHERE "+where+" ORDER BY database, name")
	if err != nil {
		return nil, fmt.Errorf("list staging tables: %w", err)
	}
	out := make([]StagingTable, 0, len(res.Rows))
	for _, r := range res.Rows {
		st := StagingTable{Database: fmt.Sprint(r[0]), Name: fmt.Sprint(r[1])}
		st.Job, _ = JobOfStaging(st.Name)
		out = append(out, st)
	}
	return out, nil
}

// DropJobStaging drops every staging table of a job in a database, whatever attempt of which
// step left it.
func DropJobStaging(ctx context.Context, conn warehouse.Conn, database, jobID string) error {
	tables, err := ListStaging(ctx, conn, database)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tables {
		if t.Job != jobID {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+warehouse.QualifiedName(t.Database, t.Name)); err != nil {
			errs = append(errs, fmt.Errorf("drop staging table %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// TableUUIDs returns the UUID of each Data Source of the flow and of its staging table
// (system.tables.uuid; the zero UUID on databases that do not give tables one, such as the
// Ordinary databases of old servers). EXCHANGE TABLES swaps names, not UUIDs, so a table's
// UUID says which content a name holds: SwapOnce relies on it.
func (d *Delta) TableUUIDs(ctx context.Context) (tables, staging map[string]string, err error) {
	res, err := d.conn.Query(ctx, fmt.Sprintf("SELECT name, toString(uuid) FROM system.tables WHERE database = %s", warehouse.QuoteString(d.flow.Database)))
	if warehouse.CodeOf(err) == 47 { // no uuid column: a server before table UUIDs
		res, err = &warehouse.Result{}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("table uuids: %w", err)
	}
	byName := map[string]string{}
	for _, r := range res.Rows {
		byName[fmt.Sprint(r[0])] = fmt.Sprint(r[1])
	}
	tables, staging = map[string]string{}, map[string]string{}
	for _, t := range d.flow.Tables() {
		tables[t] = byName[t]
		staging[t] = byName[d.staging[t]]
	}
	return tables, staging, nil
}

const zeroUUID = "00000000-0000-0000-0000-000000000000"

// UsableUUID reports whether u identifies a table (Atomic databases give every table one).
func UsableUUID(u string) bool { return u != "" && u != zeroUUID }

// SwapOnce makes each Data Source of the flow hold the content whose UUID is staged[table] (the
// UUIDs of the staging tables before any swap, from TableUUIDs), exchanging only the tables
// that do not hold it yet. Unlike Swap it may be called again after a crash at any point:
// a table already swapped is recognised by its UUID and not swapped back. The old content ends
// in the staging tables, for Drop.
func (d *Delta) SwapOnce(ctx context.Context, staged map[string]string) error {
	for _, t := range d.flow.Tables() {
		if !UsableUUID(staged[t]) {
			return fmt.Errorf("swap %s: no table UUID to recognise the staged content by", t)
		}
	}
	cur, _, err := d.TableUUIDs(ctx)
	if err != nil {
		return err
	}
	for _, t := range d.flow.Tables() {
		if cur[t] == staged[t] {
			continue
		}
		if _, err := d.conn.Exec(ctx, fmt.Sprintf("EXCHANGE TABLES %s AND %s", d.table(t), d.Staging(t))); err != nil {
			return fmt.Errorf("swap %s: %w", t, err)
		}
	}
	return nil
}

// MoveUnsupported reports whether err says the server does not know `MOVE PARTITION ... TO
// TABLE` (a syntax error on servers before 19.17).
func MoveUnsupported(err error) bool {
	if err == nil {
		return false
	}
	code := warehouse.CodeOf(err)
	return code == 62 || (code == 48 && strings.Contains(err.Error(), "MOVE"))
}
