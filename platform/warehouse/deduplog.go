package warehouse

// Repair of MergeTree insert-deduplication logs before chDB opens its data directory.
//
// A non-replicated MergeTree table with non_replicated_deduplication_window keeps the block IDs
// of recent inserts in <table>/deduplication_logs/deduplication_log_<n>.txt, one record a line:
// "<op>\t<part name>\t<block id>\n", op 1 (ADD) or 2 (DROP); the engine replays the files in
// order of n when it loads the table. An insert writes its ADD record before it renames its
// tmp_insert_* part to the final name. A process killed between the two leaves a block ID whose
// part is gone (the engine removes tmp_* directories when it starts): the next insert with the
// same deduplication token is dropped as a duplicate, and rows a writer retries are lost.
//
// repairDedupLogs closes that window: for every ADD record still in force whose part no part
// directory on disk covers (active or outdated; not tmp_*, not detached/), it writes a DROP record
// in a new log file, deduplication_log_<last+1>.txt, which the engine replays after the others.
// The file is written beside the data directory's root and renamed into place, so a kill during
// the repair leaves either no file or the whole one.

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	dedupLogsDir      = "deduplication_logs"
	dedupLogPrefix    = "deduplication_log_"
	dedupLogSuffix    = ".txt"
	dedupRepairPrefix = ".sluice-dedup-repair-"
)

// dedupRepair is what repairDedupLogs did to one table.
type dedupRepair struct {
	Table   string   // table directory
	Log     string   // the log file written
	Dropped []string // block IDs neutralised
}

// repairDedupLogs repairs the deduplication logs of every MergeTree table under dataDir (see the
// file comment). It must run while no engine has dataDir open.
func repairDedupLogs(dataDir string) ([]dedupRepair, error) {
	stale, _ := filepath.Glob(filepath.Join(dataDir, dedupRepairPrefix+"*"))
	for _, f := range stale {
		_ = os.Remove(f)
	}
	tables, err := dedupTables(dataDir)
	if err != nil {
		return nil, err
	}
	var out []dedupRepair
	for _, dir := range tables {
		r, err := repairTableDedupLog(dataDir, dir)
		if err != nil {
			return out, fmt.Errorf("repair the deduplication log of %s: %w", dir, err)
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// dedupTables lists the table directories that have a deduplication log: store/<xxx>/<uuid>/ of
// Atomic databases and data/<db>/<table>/ of Ordinary ones (data/ entries that are links into
// store/ are counted once).
func dedupTables(dataDir string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, pattern := range []string{"store/*/*/" + dedupLogsDir, "data/*/*/" + dedupLogsDir} {
		logs, err := filepath.Glob(filepath.Join(dataDir, pattern))
		if err != nil {
			return nil, err
		}
		for _, l := range logs {
			dir, err := filepath.EvalSymlinks(filepath.Dir(l))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return nil, err
			}
			if fi, err := os.Stat(filepath.Join(dir, dedupLogsDir)); err != nil || !fi.IsDir() || seen[dir] {
				continue
			}
			seen[dir] = true
			out = append(out, dir)
		}
	}
	slices.Sort(out)
	return out, nil
}

// partInfo is a MergeTree part name of the current format: <partition>_<min>_<max>_<level>[_<mutation>].
type partInfo struct {
	partition     string
	min, max, lvl uint64
}

func parsePartName(name string) (partInfo, bool) {
	f := strings.Split(name, "_")
	if len(f) != 4 && len(f) != 5 || f[0] == "" {
		return partInfo{}, false
	}
	var n [3]uint64
	for i := range n {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return partInfo{}, false
		}
		n[i] = v
	}
	if len(f) == 5 {
		if _, err := strconv.ParseUint(f[4], 10, 64); err != nil {
			return partInfo{}, false
		}
	}
	if n[0] > n[1] {
		return partInfo{}, false
	}
	return partInfo{partition: f[0], min: n[0], max: n[1], lvl: n[2]}, true
}

// covers reports whether part p holds the blocks of part q (a merge or mutation of it, or q itself).
func (p partInfo) covers(q partInfo) bool {
	return p.partition == q.partition && p.min <= q.min && p.max >= q.max && p.lvl >= q.lvl
}

type dedupRecord struct {
	op      byte // '1' ADD, '2' DROP
	part    string
	blockID string
}

func repairTableDedupLog(dataDir, dir string) (*dedupRepair, error) {
	if v, err := os.ReadFile(filepath.Join(dir, "format_version.txt")); err == nil && strings.TrimSpace(string(v)) != "1" {
		return nil, nil // part names of the old format (date ranges): tables Sluice does not create
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var parts []partInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "tmp") || e.Name() == "detached" || e.Name() == dedupLogsDir {
			continue
		}
		if p, ok := parsePartName(e.Name()); ok {
			parts = append(parts, p)
		}
	}
	logs, last, err := dedupLogFiles(filepath.Join(dir, dedupLogsDir))
	if err != nil {
		return nil, err
	}
	if len(logs) == 0 {
		return nil, nil
	}
	// Replay the logs as the engine does: an ADD puts a block ID in force, a DROP removes it.
	inForce := map[string]string{} // block ID -> part name
	var order []string
	for _, l := range logs {
		for _, r := range readDedupLog(l) {
			switch r.op {
			case '1':
				if _, ok := inForce[r.blockID]; !ok {
					order = append(order, r.blockID)
				}
				inForce[r.blockID] = r.part
			case '2':
				delete(inForce, r.blockID)
			}
		}
	}
	var buf bytes.Buffer
	var dropped []string
	for _, id := range order {
		name, ok := inForce[id]
		if !ok {
			continue
		}
		delete(inForce, id) // an ID added twice is looked at once
		p, ok := parsePartName(name)
		if !ok || slices.ContainsFunc(parts, func(d partInfo) bool { return d.covers(p) }) {
			continue
		}
		fmt.Fprintf(&buf, "2\t%s\t%s\n", name, id)
		dropped = append(dropped, id)
	}
	if len(dropped) == 0 {
		return nil, nil
	}
	target := filepath.Join(dir, dedupLogsDir, dedupLogPrefix+strconv.FormatUint(last+1, 10)+dedupLogSuffix)
	if err := writeFileAtomic(dataDir, target, buf.Bytes()); err != nil {
		return nil, err
	}
	return &dedupRepair{Table: dir, Log: target, Dropped: dropped}, nil
}

// dedupLogFiles lists a table's log files in the order the engine replays them, and the
// highest log number.
func dedupLogFiles(logsDir string) ([]string, uint64, error) {
	entries, err := os.ReadDir(logsDir)
	if err != nil {
		return nil, 0, err
	}
	type numbered struct {
		n    uint64
		path string
	}
	var logs []numbered
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, dedupLogPrefix) || !strings.HasSuffix(name, dedupLogSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, dedupLogPrefix), dedupLogSuffix), 10, 64)
		if err != nil {
			continue
		}
		logs = append(logs, numbered{n, filepath.Join(logsDir, name)})
	}
	slices.SortFunc(logs, func(a, b numbered) int { return cmp.Compare(a.n, b.n) })
	paths := make([]string, len(logs))
	var last uint64
	for i, l := range logs {
		paths[i] = l.path
		last = l.n
	}
	return paths, last, nil
}

// readDedupLog reads a log's records up to the first one that is not whole (a line cut short by
// a kill, or garbage): the engine stops reading the file there too.
func readDedupLog(path string) []dedupRecord {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []dedupRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), len(data)+1)
	consumed := 0
	for sc.Scan() {
		line := sc.Text()
		consumed += len(line) + 1
		if consumed > len(data) { // the last line has no newline: cut short
			break
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] != "1" && f[0] != "2" {
			break
		}
		out = append(out, dedupRecord{op: f[0][0], part: f[1], blockID: f[2]})
	}
	return out
}

// writeFileAtomic writes data to a temporary file in tmpDir (on the same file system as target,
// outside any directory the engine reads), syncs it, renames it to target and syncs target's
// directory.
func writeFileAtomic(tmpDir, target string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, dedupRepairPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(0o644); err != nil { // as the engine's own logs, not CreateTemp's 0600
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(target))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
