package dataflow

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// A move (`ALTER TABLE staging MOVE PARTITION ID p TO TABLE ds`) is atomic for the readers of a
// running engine, not for a crash: the engine links each staged part into the Data Source and
// commits it there (a directory renamed on disk, part after part), and only then marks the
// staged parts as removed (an empty part written over them). An engine killed in between
// (chDB dies with the process that embeds it; a server can die too) comes back with the
// partition in both tables, or with some of its parts in both. Redoing the move would add
// those rows twice, so a move is recorded before it runs and decided after a restart:
//
//   - the MovePlan, recorded in the step's commit record before the moves, lists the staged
//     parts (name, rows, level, hash of their files) and each Data Source's highest block
//     number: every part written into a Data Source after the plan has higher block numbers;
//   - a move links the staged files, so a moved part shows up in its Data Source as a part of
//     one new block above the plan's, with the staged part's level, rows and hash of files
//     (after a merge swallows it, as an outdated part, kept on disk for the engine's
//     old_parts_lifetime);
//   - a later attempt (the engine may have been killed: whether it restarted cannot be told
//     reliably, as a restart can take less than the second its start time is counted in)
//     first calls ResolveMoves, which looks for such copies of every part still staged: a
//     partition with a copy of each of its parts was moved (it is dropped from staging); one
//     with copies of some was partly moved (the copied parts are dropped from staging, the
//     rest moved); one without any, while no part derived from blocks above the plan's is
//     older than old_parts_lifetime (so that a swallowed copy would still be seen), was not
//     moved. Anything else is refused (UndecidableMoveError) rather than risk a duplicate.

// MovePlan is what a step records before its moves, to decide them after a restart (in its
// commit record as a persistence.v1.MovePlan: Proto, MovePlanOf).
type MovePlan struct {
	// Moves are the staged partitions, in the order they are moved (upstream first).
	Moves []Move `json:"moves"`
	// Parts are the staged parts of those partitions.
	Parts []StagedPart `json:"parts"`
	// MaxBlocks is each Data Source's highest block number (over all its parts) when the
	// plan was made.
	MaxBlocks map[string]int64 `json:"max_blocks"`
	// QueryPrefix starts the query id of every move of the plan (a running one is seen in
	// system.processes).
	QueryPrefix string `json:"query_prefix"`
}

// StagedPart is one part of a staged partition.
type StagedPart struct {
	Table     string `json:"table"`
	Partition string `json:"partition"`
	Name      string `json:"name"`
	Rows      uint64 `json:"rows"`
	Level     uint64 `json:"level"`
	// Hash is the hash of all the part's files (system.parts.hash_of_all_files): a moved part
	// keeps its files, so its copy in the Data Source has the same hash.
	Hash string `json:"hash"`
}

// Proto is the plan as a commit record holds it (persistence.v1.DeltaCommit.move_plan); nil
// for no plan.
func (p *MovePlan) Proto() *persistencev1.MovePlan {
	if p == nil {
		return nil
	}
	out := &persistencev1.MovePlan{MaxBlocks: map[string]int64{}, QueryPrefix: p.QueryPrefix}
	for _, m := range p.Moves {
		out.Moves = append(out.Moves, &persistencev1.Move{Table: m.Table, PartitionId: m.PartitionID, Rows: m.Rows, Bytes: m.Bytes})
	}
	for _, sp := range p.Parts {
		out.Parts = append(out.Parts, &persistencev1.StagedPart{Table: sp.Table, Partition: sp.Partition, Name: sp.Name, Rows: sp.Rows, Level: sp.Level, Hash: sp.Hash})
	}
	for t, b := range p.MaxBlocks {
		out.MaxBlocks[t] = b
	}
	return out
}

// MovePlanOf is the plan a commit record holds; nil for a record without one (a record of an
// earlier version, or of a server without a plan: its moves are decided by what the staging
// tables hold).
func MovePlanOf(p *persistencev1.MovePlan) *MovePlan {
	if p == nil {
		return nil
	}
	out := &MovePlan{MaxBlocks: map[string]int64{}, QueryPrefix: p.GetQueryPrefix()}
	for _, m := range p.GetMoves() {
		out.Moves = append(out.Moves, Move{Table: m.GetTable(), PartitionID: m.GetPartitionId(), Rows: m.GetRows(), Bytes: m.GetBytes()})
	}
	for _, sp := range p.GetParts() {
		out.Parts = append(out.Parts, StagedPart{Table: sp.GetTable(), Partition: sp.GetPartition(), Name: sp.GetName(), Rows: sp.GetRows(), Level: sp.GetLevel(), Hash: sp.GetHash()})
	}
	for t, b := range p.GetMaxBlocks() {
		out.MaxBlocks[t] = b
	}
	return out
}

// Plan lists what is staged and the Data Sources' highest block numbers: what a step records
// before moving (see MovePlan). Its Moves are what Pending returns. A server whose parts have
// no hash_of_all_files (older than MOVE PARTITION ... TO TABLE) gives no plan (nil).
func (d *Delta) Plan(ctx context.Context) (*MovePlan, error) {
	names := make([]string, 0, len(d.staging))
	targets := make([]string, 0, len(d.staging))
	byStaging := map[string]string{}
	for _, t := range d.flow.Tables() {
		names = append(names, warehouse.QuoteString(d.staging[t]))
		targets = append(targets, warehouse.QuoteString(t))
		byStaging[d.staging[t]] = t
	}
	// One read of system.parts for the staged parts and the Data Sources' blocks alike: it
	// costs what listing the staged partitions alone costs.
	res, err := d.conn.Query(ctx, fmt.Sprintf(
		"SELECT table, partition_id, name, rows, data_uncompressed_bytes, level, hash_of_all_files, max_block_number, active FROM system.parts WHERE database = %s AND table IN (%s, %s)",
		warehouse.QuoteString(d.flow.Database), strings.Join(names, ", "), strings.Join(targets, ", ")))
	if code := warehouse.CodeOf(err); code == 16 || code == 47 {
		return nil, nil // a server without hash_of_all_files (before MOVE PARTITION, too)
	}
	if err != nil {
		return nil, fmt.Errorf("list staged partitions of %s: %w", d.flow.Target, err)
	}
	plan := &MovePlan{MaxBlocks: map[string]int64{}, QueryPrefix: d.movePrefix()}
	type key struct{ table, partition string }
	sums := map[key]*Move{}
	for _, r := range res.Rows {
		t, staged := byStaging[fmt.Sprint(r[0])]
		if !staged {
			t := fmt.Sprint(r[0])
			if b, ok := plan.MaxBlocks[t]; !ok || warehouse.Int64(r[7]) > b {
				plan.MaxBlocks[t] = warehouse.Int64(r[7])
			}
			continue
		}
		if warehouse.Uint64(r[8]) != 1 || warehouse.Uint64(r[3]) == 0 {
			continue // replaced, or the empty part a move leaves
		}
		k := key{t, fmt.Sprint(r[1])}
		m := sums[k]
		if m == nil {
			m = &Move{Table: t, PartitionID: k.partition}
			sums[k] = m
		}
		m.Rows += warehouse.Uint64(r[3])
		m.Bytes += warehouse.Uint64(r[4])
		plan.Parts = append(plan.Parts, StagedPart{Table: t, Partition: k.partition, Name: fmt.Sprint(r[2]), Rows: warehouse.Uint64(r[3]), Level: warehouse.Uint64(r[5]), Hash: fmt.Sprint(r[6])})
	}
	plan.Moves = orderMoves(d.flow.Tables(), sums)
	return plan, nil
}

// movePrefix starts the query ids of the delta's moves: the same for every attempt of the
// step, so that a later attempt sees an earlier one's move still running.
func (d *Delta) movePrefix() string {
	h := sha256.Sum256([]byte(d.flow.Database + "\x00" + d.key))
	return "sluice-move-" + hex.EncodeToString(h[:8]) + "-"
}

// MovePlanned moves the plan's partitions that are still staged into their Data Sources, in
// the plan's order. The caller has recorded the plan, and has resolved (ResolveMoves) what an
// engine killed since may have left half done.
func (d *Delta) MovePlanned(ctx context.Context, plan *MovePlan, pending []Move) error {
	var b [4]byte
	_, _ = rand.Read(b[:])
	qid := plan.QueryPrefix + hex.EncodeToString(b[:])
	left := map[string]bool{}
	for _, m := range pending {
		left[m.Table+"\x00"+m.PartitionID] = true
	}
	var todo []Move
	for _, m := range plan.Moves {
		if pending == nil || left[m.Table+"\x00"+m.PartitionID] {
			todo = append(todo, m)
		}
	}
	for i, batch := range moveBatches(todo) {
		if _, err := d.conn.Exec(ctx, d.moveStatement(batch), warehouse.WithQueryID(fmt.Sprintf("%s-%d", qid, i))); err != nil {
			return fmt.Errorf("move partitions %s into %s: %w", partitionIDs(batch), batch[0].Table, err)
		}
	}
	return nil
}

// maxMovesPerAlter bounds the partition commands of one ALTER.
const maxMovesPerAlter = 100

// moveBatches cuts moves (in plan order) into the statements that make them: consecutive moves
// of one Data Source share one ALTER, so a step of many partitions pays the statement's fixed
// cost (parse, table locks, a mutation of the table's part set) once per Data Source rather
// than once per partition. The engine runs an ALTER's commands one after the other, so a crash
// inside it leaves what a crash between single moves leaves: each partition moved, partly
// moved or not, which the plan decides per partition (ResolveMoves).
func moveBatches(moves []Move) [][]Move {
	var out [][]Move
	for _, m := range moves {
		if n := len(out); n > 0 && out[n-1][0].Table == m.Table && len(out[n-1]) < maxMovesPerAlter {
			out[n-1] = append(out[n-1], m)
			continue
		}
		out = append(out, []Move{m})
	}
	return out
}

// moveStatement is one ALTER moving the batch's partitions (all of one Data Source).
func (d *Delta) moveStatement(batch []Move) string {
	cmds := make([]string, len(batch))
	for i, m := range batch {
		cmds[i] = fmt.Sprintf("MOVE PARTITION ID %s TO TABLE %s", warehouse.QuoteString(m.PartitionID), d.table(m.Table))
	}
	return "ALTER TABLE " + d.Staging(batch[0].Table) + " " + strings.Join(cmds, ", ")
}

func partitionIDs(batch []Move) string {
	ids := make([]string, len(batch))
	for i, m := range batch {
		ids[i] = m.PartitionID
	}
	return strings.Join(ids, ", ")
}

// UndecidableMoveError says that a move an engine was killed inside cannot be decided: the
// staged rows are kept, not moved a second time.
type UndecidableMoveError struct {
	Move    Move
	Staging string
	Reason  string
}

func (e *UndecidableMoveError) Error() string {
	return fmt.Sprintf("cannot tell whether partition %s was moved into %s before the engine restarted (%s): its %d staged rows are kept in %s, not moved a second time; "+
		"compare them with the Data Source and move them by hand (ALTER TABLE %s MOVE PARTITION ID '%s' TO TABLE ...) or drop them",
		e.Move.PartitionID, e.Move.Table, e.Reason, e.Move.Rows, e.Staging, e.Staging, e.Move.PartitionID)
}

// MoveDecision is what ResolveMoves found of a staged partition's earlier move.
type MoveDecision struct {
	Move Move
	// Moved: its parts were all in the Data Source already (dropped from staging).
	Moved bool
	// Parts: the parts of it found moved (dropped from staging, or their copies from the Data
	// Source), when not all were.
	Parts int
}

// ResolveMoves decides what the moves of plan, made by an earlier attempt, left half done if
// the engine was killed inside one (see MovePlan): it drops from staging what was moved
// already, and returns what is left to move, and what it found moved. An
// *UndecidableMoveError refuses a partition that cannot be decided.
func (d *Delta) ResolveMoves(ctx context.Context, plan *MovePlan) ([]Move, []MoveDecision, error) {
	pending, err := d.Pending(ctx)
	if err != nil || len(pending) == 0 {
		return pending, nil, err
	}
	lifetime, err := d.oldPartsLifetime(ctx)
	if err != nil {
		return nil, nil, err
	}
	var left []Move
	var found []MoveDecision
	for _, m := range pending {
		moved, r, err := d.resolveMove(ctx, plan, m, lifetime)
		if err != nil {
			return nil, nil, err
		}
		if moved {
			if err := d.DropStaged(ctx, m); err != nil {
				return nil, nil, err
			}
			found = append(found, MoveDecision{Move: m, Moved: true})
			continue
		}
		if n := len(r.staged) + len(r.target); n > 0 {
			found = append(found, MoveDecision{Move: m, Parts: n})
		}
		for _, name := range r.staged {
			stmt := fmt.Sprintf("ALTER TABLE %s DROP PART %s", d.Staging(m.Table), warehouse.QuoteString(name))
			if _, err := d.conn.Exec(ctx, stmt); err != nil {
				return nil, nil, fmt.Errorf("drop moved part %s from staging of %s: %w", name, m.Table, err)
			}
		}
		for _, name := range r.target {
			stmt := fmt.Sprintf("ALTER TABLE %s DROP PART %s", d.table(m.Table), warehouse.QuoteString(name))
			if _, err := d.conn.Exec(ctx, stmt); err != nil {
				return nil, nil, fmt.Errorf("drop part %s of a half-done move from %s: %w", name, m.Table, err)
			}
		}
		left = append(left, m)
	}
	return left, found, nil
}

// halfMoved is what undoes a partition's half-done move: the staged parts that were moved
// (dropped from staging), or else the moved copies (dropped from the Data Source).
type halfMoved struct{ staged, target []string }

// resolveMove decides one staged partition: moved whole, moved in part (halfMoved), or not
// moved.
func (d *Delta) resolveMove(ctx context.Context, plan *MovePlan, m Move, lifetime int64) (bool, halfMoved, error) {
	undecidable := func(reason string) error {
		return &UndecidableMoveError{Move: m, Staging: d.Staging(m.Table), Reason: reason}
	}
	var staged []StagedPart
	for _, p := range plan.Parts {
		if p.Table == m.Table && p.Partition == m.PartitionID {
			staged = append(staged, p)
		}
	}
	if len(staged) == 0 {
		return false, halfMoved{}, undecidable("the partition is not in the step's recorded plan")
	}
	maxBlock := plan.MaxBlocks[m.Table] // 0 when the Data Source had no part at all
	res, err := d.conn.Query(ctx, fmt.Sprintf(
		"SELECT name, min_block_number, max_block_number, level, rows, hash_of_all_files, toInt64(toUnixTimestamp(modification_time)), toInt64(toUnixTimestamp(now())), active FROM system.parts "+
			"WHERE database = %s AND table = %s AND partition_id = %s AND max_block_number > %d",
		warehouse.QuoteString(d.flow.Database), warehouse.QuoteString(m.Table), warehouse.QuoteString(m.PartitionID), maxBlock))
	if err != nil {
		return false, halfMoved{}, fmt.Errorf("parts of %s partition %s: %w", m.Table, m.PartitionID, err)
	}
	used := map[string]bool{}
	var matched, copies []string
	copiesActive := true
	for _, sp := range staged {
		for _, r := range res.Rows {
			name := fmt.Sprint(r[0])
			if used[name] || warehouse.Int64(r[1]) != warehouse.Int64(r[2]) || warehouse.Uint64(r[3]) != sp.Level || warehouse.Uint64(r[4]) != sp.Rows || fmt.Sprint(r[5]) != sp.Hash {
				continue
			}
			used[name] = true
			matched = append(matched, sp.Name)
			copies = append(copies, name)
			copiesActive = copiesActive && warehouse.Uint64(r[8]) == 1
			break
		}
	}
	if len(matched) == len(staged) {
		return true, halfMoved{}, nil
	}
	if len(matched) > 0 {
		// Some parts were moved: drop those from staging if it still holds them as they were
		// staged; if staging merged them since (with parts not moved), drop their copies
		// from the Data Source instead, if it has not merged them either.
		active, err := d.parts(ctx, d.staging[m.Table], m.PartitionID, "")
		if err != nil {
			return false, halfMoved{}, err
		}
		have := map[string]bool{}
		for _, p := range active {
			have[p.Name] = true
		}
		intact := true
		for _, name := range matched {
			intact = intact && have[name]
		}
		switch {
		case intact:
			return false, halfMoved{staged: matched}, nil
		case copiesActive:
			return false, halfMoved{target: copies}, nil
		}
		return false, halfMoved{}, undecidable(fmt.Sprintf("%d of its %d parts were moved, and both staging and the Data Source merged them since", len(matched), len(staged)))
	}
	// No copy: not moved, unless a copy was merged into another part so long ago that the
	// engine has removed it from disk since. A part derived from blocks written after the
	// plan (a merge, a mutation) tells when: its sources stay on disk old_parts_lifetime
	// after it was made.
	for _, r := range res.Rows {
		name := fmt.Sprint(r[0])
		derived := warehouse.Int64(r[1]) != warehouse.Int64(r[2]) || strings.Count(name, "_") > 3
		if derived && warehouse.Int64(r[6]) <= warehouse.Int64(r[7])-lifetime+5 {
			return false, halfMoved{}, undecidable(fmt.Sprintf("part %s, merged from parts written since, is older than the engine keeps merged parts (%d s)", name, lifetime))
		}
	}
	return false, halfMoved{}, nil
}

// oldPartsLifetime is how long the engine keeps a part on disk after a merge replaced it.
func (d *Delta) oldPartsLifetime(ctx context.Context) (int64, error) {
	res, err := d.conn.Query(ctx, "SELECT value FROM system.merge_tree_settings WHERE name = 'old_parts_lifetime'")
	if err != nil {
		return 0, fmt.Errorf("merge tree settings: %w", err)
	}
	if len(res.Rows) != 1 {
		return 0, nil
	}
	return warehouse.Int64(res.Rows[0][0]), nil
}

// MoveRunning reports whether a move of the plan is running now (an earlier attempt's
// statement, still running on a server after its executor died).
func (d *Delta) MoveRunning(ctx context.Context, plan *MovePlan) (bool, error) {
	res, err := d.conn.Query(ctx, "SELECT count() FROM system.processes WHERE startsWith(query_id, "+warehouse.QuoteString(plan.QueryPrefix)+")")
	if err != nil {
		return false, fmt.Errorf("running statements: %w", err)
	}
	return len(res.Rows) == 1 && warehouse.Uint64(res.Rows[0][0]) > 0, nil
}

// WatchMoved calls moved (once) as soon as a Data Source of the plan gets a part of a planned
// partition: a move has committed it there. It watches the tables' data directories (a local
// engine on Linux only), for the fault point that kills a process inside a move; stop ends
// the watch.
func (d *Delta) WatchMoved(ctx context.Context, plan *MovePlan, moved func()) (stop func(), err error) {
	names := make([]string, 0, len(plan.MaxBlocks))
	for _, t := range d.flow.Tables() {
		names = append(names, warehouse.QuoteString(t))
	}
	res, err := d.conn.Query(ctx, fmt.Sprintf("SELECT arrayJoin(data_paths) FROM system.tables WHERE database = %s AND name IN (%s)",
		warehouse.QuoteString(d.flow.Database), strings.Join(names, ", ")))
	if err != nil {
		return nil, fmt.Errorf("data paths of %s: %w", d.flow.Target, err)
	}
	var dirs []string
	for _, r := range res.Rows {
		dirs = append(dirs, fmt.Sprint(r[0]))
	}
	partitions := map[string]bool{}
	for _, m := range plan.Moves {
		partitions[m.PartitionID] = true
	}
	return watchNewParts(dirs, func(name string) bool {
		p, _, ok := strings.Cut(name, "_")
		return ok && partitions[p]
	}, moved)
}

// MoveListed moves the given staged partitions (from Pending, with nothing staged since) into
// their Data Sources, upstream first: Commit without listing them again. After a crash, use
// Commit, which lists what is left.
func (d *Delta) MoveListed(ctx context.Context, moves []Move) error {
	for _, m := range moves {
		stmt := fmt.Sprintf("ALTER TABLE %s MOVE PARTITION ID %s TO TABLE %s", d.Staging(m.Table), warehouse.QuoteString(m.PartitionID), d.table(m.Table))
		if _, err := d.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("move partition %s into %s: %w", m.PartitionID, m.Table, err)
		}
	}
	return nil
}
