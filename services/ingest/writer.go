package ingest

// The writer moves accepted rows from SLUICE_INGEST to ClickHouse.
//
// One writer at a time. A writer holds the lease in the bucket (renewed every third of
// -ingest.lease-ttl; a replica whose renewal fails stops writing at once), so the stream is
// read in order by one reader and a batch is a contiguous range of stream sequences.
//
// Exactly once. Before inserting a batch (sequences first..last) the writer records it as
// pending in its position (compare-and-set); each table's insert carries the deduplication
// token `sluice-ingest-<first>-<last>-<table>`; after every insert has committed, the position
// moves to committed=last (compare-and-set) and the stream is purged up to it. A writer that
// dies anywhere leaves either no pending batch (then the next writer starts after committed) or
// a pending one, which the next writer reads again from the stream (nothing past committed is
// purged), regroups the same way (the grouping depends only on the messages) and inserts again
// with the same tokens: ClickHouse drops the inserts that had committed (block deduplication:
// insert_deduplication_token with non_replicated_deduplication_window, which the writer sets on
// the tables it writes; deduplicate_blocks_in_dependent_materialized_views for the views
// downstream). Materialized views fire on the insert as on any insert.
//
// A request is written whole or not at all: its rows may span several messages (parts), and a
// batch never ends between two parts of a request. Parts of a request whose publisher died
// before publishing the rest (the client got no answer) wait -ingest.abandon-after, then are
// skipped.
//
// Servers without insert_deduplication_token (ClickHouse before 21.x, such as 18.16) get the
// same protocol without the tokens: a writer that dies during an insert may write that batch
// twice (at least once). See docs/ingestion.md.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// Message headers of SLUICE_INGEST.
const (
	hdrWorkspace    = "Sluice-Workspace"
	hdrDataSource   = "Sluice-Datasource"
	hdrDatabase     = "Sluice-Database"
	hdrRequest      = "Sluice-Request"
	hdrPart         = "Sluice-Part" // "i/n", 1-based
	hdrRows         = "Sluice-Rows"
	hdrQuarantined  = "Sluice-Quarantined"
	hdrSplit        = "Sluice-Split" // bytes of Data Source rows; the rest is quarantine rows
	hdrBytes        = "Sluice-Bytes" // input bytes of the request (on its last part)
	hdrKind         = "Sluice-Kind"  // "hfi" (Events API) or "file"
	hdrTime         = "Sluice-Time"  // request start, Unix nanoseconds
	hdrDatasourceID = "Sluice-Datasource-Id"
	hdrColumns      = "Sluice-Columns" // JSON array of the Data Source columns the rows hold, in order
	hdrFile         = "Sluice-File"    // the appended file's name, when there is one
)

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// dedupWindow is the non_replicated_deduplication_window the writer sets: the last inserts
	// of a table ClickHouse remembers the tokens of.
	dedupWindow = 1000
	leaseKey    = "lease"
)

// errCrash is returned by a test hook to stop the writer as if its process died.
var errCrash = errors.New("ingest: simulated crash")

// hooks are test points; a hook returning an error stops the writer on the spot.
type hooks struct {
	afterPending func() error
	afterInsert  func(table string) error
}

// inMsg is one stream message, decoded.
type inMsg struct {
	seq                  uint64
	ws, ds, db, dsID     string
	req                  string
	part, parts          int
	rows, quarantined    uint64
	inputBytes           uint64
	kind                 string
	columns              string
	file                 string
	at                   time.Time
	data, quarantineData []byte
}

func decodeMsg(m jetstream.Msg) (*inMsg, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return decodeRaw(md.Sequence.Stream, m.Headers(), m.Data())
}

func decodeRaw(seq uint64, h nats.Header, data []byte) (*inMsg, error) {
	im := &inMsg{seq: seq, ws: h.Get(hdrWorkspace), ds: h.Get(hdrDataSource), db: h.Get(hdrDatabase), req: h.Get(hdrRequest),
		kind: h.Get(hdrKind), dsID: h.Get(hdrDatasourceID), columns: h.Get(hdrColumns), file: h.Get(hdrFile)}
	if _, err := fmt.Sscanf(h.Get(hdrPart), "%d/%d", &im.part, &im.parts); err != nil || im.part < 1 || im.parts < im.part {
		return nil, fmt.Errorf("message %d: bad %s %q", seq, hdrPart, h.Get(hdrPart))
	}
	split, err := strconv.Atoi(h.Get(hdrSplit))
	if err != nil || split < 0 || split > len(data) || im.db == "" || im.ds == "" || !strings.HasPrefix(im.columns, "[") {
		return nil, fmt.Errorf("message %d: bad headers", seq)
	}
	im.rows, _ = strconv.ParseUint(h.Get(hdrRows), 10, 64)
	im.quarantined, _ = strconv.ParseUint(h.Get(hdrQuarantined), 10, 64)
	im.inputBytes, _ = strconv.ParseUint(h.Get(hdrBytes), 10, 64)
	ns, _ := strconv.ParseInt(h.Get(hdrTime), 10, 64)
	im.at = time.Unix(0, ns)
	im.data, im.quarantineData = data[:split], data[split:]
	return im, nil
}

func (s *Service) runWriter(ctx context.Context) {
	owner := randomID()
	backoff := backoffMin
	for ctx.Err() == nil {
		rev, err := s.acquireLease(ctx, owner)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("ingest writer lease", "err", err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, backoffMax)
			}
			continue
		}
		s.log.Info("ingest writer holds the lease", "owner", owner)
		wctx, cancel := context.WithCancel(ctx)
		go s.keepLease(wctx, cancel, owner, rev)
		err = s.write(wctx)
		cancel()
		if errors.Is(err, errCrash) {
			return
		}
		if ctx.Err() != nil {
			s.releaseLease(owner)
			return
		}
		s.log.Warn("ingest writer stopped; starting again", "err", err)
		sleep(ctx, backoff)
		backoff = min(2*backoff, backoffMax)
	}
}

type lease struct {
	Owner string `json:"owner"`
	Until int64  `json:"until"` // Unix milliseconds
}

func (s *Service) acquireLease(ctx context.Context, owner string) (uint64, error) {
	for {
		val, _ := json.Marshal(lease{Owner: owner, Until: time.Now().Add(s.cfg.LeaseTTL).UnixMilli()})
		e, err := s.kv.Get(ctx, leaseKey)
		switch {
		case isKeyNotFound(err):
			if rev, err := s.kv.Create(ctx, leaseKey, val); err == nil {
				return rev, nil
			}
		case err != nil:
			return 0, err
		default:
			var l lease
			_ = json.Unmarshal(e.Value(), &l)
			if l.Owner == owner || time.Now().UnixMilli() > l.Until {
				if rev, err := s.kv.Update(ctx, leaseKey, val, e.Revision()); err == nil {
					return rev, nil
				}
			}
		}
		if !sleep(ctx, s.cfg.LeaseTTL/4) {
			return 0, ctx.Err()
		}
	}
}

// keepLease renews the lease; when a renewal fails the writer is stopped.
func (s *Service) keepLease(ctx context.Context, stop context.CancelFunc, owner string, rev uint64) {
	t := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		val, _ := json.Marshal(lease{Owner: owner, Until: time.Now().Add(s.cfg.LeaseTTL).UnixMilli()})
		rctx, cancel := context.WithTimeout(ctx, s.cfg.LeaseTTL/3)
		next, err := s.kv.Update(rctx, leaseKey, val, rev)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("ingest writer lost its lease; stopping", "err", err)
			}
			stop()
			return
		}
		rev = next
	}
}

func (s *Service) releaseLease(owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	e, err := s.kv.Get(ctx, leaseKey)
	if err != nil {
		return
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && l.Owner == owner {
		_ = s.kv.Delete(ctx, leaseKey, jetstream.LastRevision(e.Revision()))
	}
}

// write finishes a pending batch, then writes batches until ctx ends or a step fails.
func (s *Service) write(ctx context.Context) error {
	pos, rev, err := s.loadPosition(ctx)
	if err != nil {
		return fmt.Errorf("read the writer's position: %w", err)
	}
	if pos.Pending != nil {
		msgs, err := s.readRange(ctx, pos.Pending.First, pos.Pending.Last)
		if err != nil {
			return fmt.Errorf("read pending batch %d..%d: %w", pos.Pending.First, pos.Pending.Last, err)
		}
		s.log.Info("finishing a batch a writer left pending", "first", pos.Pending.First, "last", pos.Pending.Last, "messages", len(msgs))
		if rev, err = s.writeBatch(ctx, msgs, pos.Pending.First, pos.Pending.Last, rev, true); err != nil {
			return err
		}
		pos.Committed = pos.Pending.Last
	}
	s.seen.observe(pos.Committed)
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{SubjectPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    pos.Committed + 1,
	})
	if err != nil {
		return fmt.Errorf("read the ingest stream: %w", err)
	}
	msgs := make(chan *inMsg, 4096)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.readStream(rctx, cons, msgs)
	var buf []*inMsg
	size := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Fill the batch: until the oldest message has waited the flush interval, or the batch
		// is full.
		if len(buf) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case m := <-msgs:
				buf = append(buf, m)
				size += len(m.data) + len(m.quarantineData)
			}
		}
		timer.Reset(time.Until(buf[0].at.Add(s.cfg.FlushInterval)))
	fill:
		for size < s.cfg.BatchBytes {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case m := <-msgs:
				buf = append(buf, m)
				size += len(m.data) + len(m.quarantineData)
			case <-timer.C:
				break fill
			}
		}
		// Drain what already arrived, so one insert carries it.
		for more := true; more && size < s.cfg.BatchBytes; {
			select {
			case m := <-msgs:
				buf = append(buf, m)
				size += len(m.data) + len(m.quarantineData)
			default:
				more = false
			}
		}
		cut := s.cutPoint(buf, time.Now())
		if cut == 0 {
			// The oldest message is a part of a request still being published: wait for it.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case m := <-msgs:
				buf = append(buf, m)
				size += len(m.data) + len(m.quarantineData)
			case <-time.After(s.cfg.FlushInterval):
			}
			continue
		}
		batch := buf[:cut]
		first, last := batch[0].seq, batch[cut-1].seq
		if rev, err = s.writeBatch(ctx, batch, first, last, rev, false); err != nil {
			return err
		}
		buf = slices.Clone(buf[cut:])
		size = 0
		for _, m := range buf {
			size += len(m.data) + len(m.quarantineData)
		}
	}
}

func (s *Service) readStream(ctx context.Context, cons jetstream.Consumer, out chan<- *inMsg) {
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		s.log.Error("read the ingest stream", "err", err)
		return
	}
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("ingest stream reader stopped", "err", err)
			}
			return
		}
		im, err := decodeMsg(m)
		if err != nil {
			s.log.Error("skipping a message that is not ingest rows", "err", err)
			continue
		}
		select {
		case out <- im:
		case <-ctx.Done():
			return
		}
	}
}

// readRange reads the messages first..last again (a pending batch).
func (s *Service) readRange(ctx context.Context, first, last uint64) ([]*inMsg, error) {
	var out []*inMsg
	for seq := first; seq <= last; seq++ {
		raw, err := s.stream.GetMsg(ctx, seq)
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // a gap: nothing was published under that sequence in the filter
			}
			return nil, err
		}
		if !strings.HasPrefix(raw.Subject, SubjectPrefix+".") {
			continue
		}
		im, err := decodeRaw(seq, raw.Header, raw.Data)
		if err != nil {
			s.log.Error("skipping a message that is not ingest rows", "err", err)
			continue
		}
		out = append(out, im)
	}
	return out, nil
}

// cutPoint is how many of buf's first messages form the next batch: all of them, except from
// the first part of a request whose other parts have not arrived (unless it waited longer than
// AbandonAfter: then it is taken, to be skipped).
func (s *Service) cutPoint(buf []*inMsg, now time.Time) int {
	type reqState struct {
		first, seen, parts int
		at                 time.Time
	}
	reqs := map[string]*reqState{}
	var order []string
	for i, m := range buf {
		r := reqs[m.req]
		if r == nil {
			r = &reqState{first: i, parts: m.parts, at: m.at}
			reqs[m.req] = r
			order = append(order, m.req)
		}
		r.seen++
	}
	for _, id := range order {
		r := reqs[id]
		if r.seen < r.parts && now.Sub(r.at) < s.cfg.AbandonAfter {
			return r.first
		}
	}
	return len(buf)
}

// target is one table's rows in a batch, all with the same columns.
type target struct {
	ws, ds, dsID, db, table string
	quarantine              bool
	columns                 []string
	data                    []byte
	rows                    uint64
}

// writeBatch writes messages first..last exactly once and moves the position past them. redo
// says the batch was pending already.
func (s *Service) writeBatch(ctx context.Context, msgs []*inMsg, first, last, rev uint64, redo bool) (uint64, error) {
	start := time.Now()
	var err error
	if !redo {
		if rev, err = s.savePosition(ctx, position{Committed: first - 1, Pending: &pendingB{First: first, Last: last}}, rev); err != nil {
			return rev, fmt.Errorf("record pending batch: %w", err)
		}
		if s.hooks.afterPending != nil {
			if err := s.hooks.afterPending(); err != nil {
				return rev, err
			}
		}
	}
	targets, complete := groupBatch(msgs)
	failures := map[string]string{}
	for i, t := range targets {
		if err := s.insertTarget(ctx, t, fmt.Sprintf("sluice-ingest-%d-%d-%d", first, last, i), redo); err != nil {
			if ctx.Err() != nil || errors.Is(err, errCrash) {
				return rev, err
			}
			failures[t.table] = err.Error()
			s.log.Error("ingest rows could not be written; they are dropped", "table", t.table, "rows", t.rows, "err", err)
		}
		s.metrics.written.Add(float64(t.rows))
		if s.hooks.afterInsert != nil {
			if err := s.hooks.afterInsert(t.table); err != nil {
				return rev, err
			}
		}
	}
	inserted := time.Now()
	if rev, err = s.savePosition(ctx, position{Committed: last}, rev); err != nil {
		return rev, fmt.Errorf("commit batch %d..%d: %w", first, last, err)
	}
	s.log.Debug("ingest batch written", "first", first, "last", last, "messages", len(msgs), "tables", len(targets),
		"oldest_wait", start.Sub(msgs[0].at), "insert", inserted.Sub(start), "commit", time.Since(inserted))
	s.metrics.batches.Inc()
	s.metrics.batchTime.Observe(time.Since(start).Seconds())
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSequence(last+1)); err != nil {
		s.log.Warn("purge written ingest rows", "err", err)
	}
	s.seen.observe(last)
	_ = s.deps.NATS.NC.Publish(SubjectCommitted, []byte(strconv.FormatUint(last, 10)))
	s.publishEvents(ctx, msgs, complete, targets, failures, first, last)
	return rev, nil
}

// groupBatch gathers the rows of the complete requests of a batch by table and column list, in
// stream order, sorted by table and columns: the same messages always give the same inserts.
func groupBatch(msgs []*inMsg) ([]*target, map[string]bool) {
	parts := map[string]int{}
	for _, m := range msgs {
		parts[m.req]++
	}
	complete := map[string]bool{}
	for _, m := range msgs {
		complete[m.req] = parts[m.req] == m.parts
	}
	type key struct{ table, columns string }
	sizes := map[key]int{}
	keyOf := func(m *inMsg, quarantine bool) key {
		name := m.ds
		if quarantine {
			name += QuarantineSuffix
		}
		return key{warehouse.QualifiedName(m.db, name), m.columns}
	}
	for _, m := range msgs {
		if complete[m.req] {
			sizes[keyOf(m, false)] += len(m.data)
			sizes[keyOf(m, true)] += len(m.quarantineData)
		}
	}
	byKey := map[key]*target{}
	add := func(m *inMsg, quarantine bool, data []byte, rows uint64) {
		if len(data) == 0 {
			return
		}
		k := keyOf(m, quarantine)
		t := byKey[k]
		if t == nil {
			var cols []string
			_ = json.Unmarshal([]byte(m.columns), &cols)
			if quarantine {
				cols = append(cols, colErrorColumn, colError, colImportID)
			}
			t = &target{ws: m.ws, ds: m.ds, dsID: m.dsID, db: m.db, table: k.table, quarantine: quarantine, columns: cols, data: make([]byte, 0, sizes[k])}
			byKey[k] = t
		}
		t.data = append(t.data, data...)
		t.rows += rows
	}
	for _, m := range msgs {
		if !complete[m.req] {
			continue
		}
		add(m, false, m.data, m.rows)
		add(m, true, m.quarantineData, m.quarantined)
	}
	out := make([]*target, 0, len(byKey))
	for _, t := range byKey {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *target) int {
		if c := strings.Compare(a.table, b.table); c != 0 {
			return c
		}
		return slices.Compare(a.columns, b.columns)
	})
	return out, complete
}

// insertTarget inserts one table's rows with the batch's token, retrying transient failures
// until ctx ends. A permanent failure (the table was dropped, rows it refuses) is returned.
func (s *Service) insertTarget(ctx context.Context, t *target, token string, redo bool) error {
	backoff := backoffMin
	for attempt := 1; ; attempt++ {
		err := s.insertRows(ctx, t, token, redo || attempt > 1)
		if err == nil {
			return nil
		}
		class := warehouse.ClassOf(err)
		var le *preInsertError
		if ctx.Err() != nil || !errors.As(err, &le) && (class == warehouse.ClassPermanent || class == warehouse.ClassUnknown && attempt >= 5) {
			return err
		}
		s.metrics.writeErrors.Inc()
		s.log.Warn("writing ingest rows failed; retrying", "table", t.table, "attempt", attempt, "err", err)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// insertRows inserts a table's rows with the token; again says an earlier attempt may have
// committed them.
func (s *Service) insertRows(ctx context.Context, t *target, token string, again bool) error {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	tokens, err := s.hasDedupTokens(ictx)
	if err != nil {
		return &preInsertError{"ask the engine for insert deduplication", err}
	}
	settings := warehouse.Settings{}
	if tokens {
		if err := s.ensureDedup(ictx, t.db); err != nil {
			return &preInsertError{"enable insert deduplication", err}
		}
		settings["insert_deduplicate"] = 1
		settings["insert_deduplication_token"] = token
		settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
	}
	if fi, ok := s.deps.Warehouse.(warehouse.FormattedInserter); ok {
		settings["date_time_input_format"] = "best_effort"
		settings["input_format_null_as_default"] = 1
		settings["input_format_defaults_for_omitted_fields"] = 1
		_, err := fi.InsertFormatted(ictx, t.table, t.columns, "JSONCompactEachRow", t.data, warehouse.WithSettings(settings))
		return err
	}
	return s.insertNative(ictx, t, token, settings, !tokens, again)
}

// hasDedupTokens reports (once) whether the engine takes insert_deduplication_token.
func (s *Service) hasDedupTokens(ctx context.Context) (bool, error) {
	s.dedupMu.Lock()
	known := s.dedupKnown
	s.dedupMu.Unlock()
	if known != 0 {
		return known > 0, nil
	}
	res, err := s.deps.Warehouse.Query(ctx, "SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token'")
	if err != nil {
		return false, err
	}
	has := len(res.Rows) == 1 && fmt.Sprint(res.Rows[0][0]) != "0"
	s.dedupMu.Lock()
	s.dedupKnown = map[bool]int{true: 1, false: -1}[has]
	s.dedupMu.Unlock()
	if !has {
		s.log.Info("ClickHouse has no insert_deduplication_token: a batch that may have been inserted before is looked up in system.query_log by its query id")
	}
	return has, nil
}

// ensureDedup sets non_replicated_deduplication_window on the MergeTree tables of a database
// that lack it (the Data Sources, the views' targets and the quarantine tables), so that the
// engine drops a batch inserted twice. Checked at most every few seconds per database.
func (s *Service) ensureDedup(ctx context.Context, db string) error {
	s.dedupMu.Lock()
	checked := s.dedupChecked[db]
	s.dedupMu.Unlock()
	if time.Since(checked) < 5*time.Second {
		return nil
	}
	res, err := s.deps.Warehouse.Query(ctx, fmt.Sprintf(
		"SELECT name FROM system.tables WHERE database = %s AND engine LIKE '%%MergeTree' AND engine NOT LIKE 'Replicated%%' AND NOT startsWith(name, '__sluice') AND position(engine_full, 'non_replicated_deduplication_window') = 0",
		warehouse.QuoteString(db)))
	if err != nil {
		return err
	}
	for _, r := range res.Rows {
		stmt := fmt.Sprintf("ALTER TABLE %s MODIFY SETTING non_replicated_deduplication_window = %d", warehouse.QualifiedName(db, fmt.Sprint(r[0])), dedupWindow)
		if _, err := s.deps.Warehouse.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("enable insert deduplication on %s: %w", r[0], err)
		}
	}
	s.dedupMu.Lock()
	s.dedupChecked[db] = time.Now()
	s.dedupMu.Unlock()
	return nil
}

func (s *Service) savePosition(ctx context.Context, pos position, rev uint64) (uint64, error) {
	val, _ := json.Marshal(pos)
	if rev == 0 {
		return s.kv.Create(ctx, positionKey, val)
	}
	return s.kv.Update(ctx, positionKey, val, rev)
}

func isKeyNotFound(err error) bool { return errors.Is(err, jetstream.ErrKeyNotFound) }

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
