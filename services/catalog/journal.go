package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// The push journal. A push (or a delete) changes ClickHouse with DDL and then records the
// result in the catalog's bucket with several writes; neither side is transactional with the
// other. A catalog that dies in between would leave tables the catalog does not know (the next
// push then fails on "already exists") or a mix of old and new records. So while it holds the
// workspace's lease, deploy keeps a journal in the catalog bucket:
//
//	journal.<workspace>          journalHead: the phase and what undoes each step of the plan
//	journal.<workspace>.w.<n>    kvWrite: the catalog writes that record the push, in order
//
// In the "applying" phase the head records the step about to run (written before it runs); in
// the "recording" phase every write is in the journal before the first is made. The next
// holder of the lease (any replica) reads the journal first: an applying push is undone (its
// steps up to the recorded one, in reverse, with their undo statements, which are safe to run
// again), a recording push is completed (its writes are made again; each has the same effect
// twice). Then the journal is removed.

const (
	phaseApplying  = "applying"
	phaseRecording = "recording"
)

type journalHead struct {
	Phase  string    `json:"phase"`
	Holder string    `json:"holder"`
	Start  time.Time `json:"start"`
	// Step is the plan step that is running or about to run (applying).
	Step int `json:"step"`
	// Undo are the undo statements of each step of the plan.
	Undo [][]string `json:"undo"`
	// Writes counts the journal's writes (recording).
	Writes int `json:"writes"`
}

func journalKey(ws string) string             { return "journal." + ws }
func journalWriteKey(ws string, n int) string { return fmt.Sprintf("journal.%s.w.%06d", ws, n) }

// deploy applies the plan to ClickHouse and then makes the writes that record it, journaled so
// that a catalog dying at any line leaves a state the next holder of the lease repairs. A
// failing step rolls the plan back (applyError); a failure before the first recording write
// rolls it back too; a failure after it leaves the journal for the next holder to complete.
func (s *Service) deploy(ctx context.Context, ws string, pl *plan, writes []kvWrite) error {
	head := journalHead{Phase: phaseApplying, Holder: s.instance, Start: s.deps.Now().UTC(), Step: -1}
	for _, st := range pl.steps {
		head.Undo = append(head.Undo, st.undo)
	}
	rev, err := s.putHead(ctx, ws, head, 0)
	if err != nil {
		return err
	}
	err = applyPlan(ctx, s.deps.Warehouse, pl, s.log, func(i int) error {
		head.Step = i
		rev, err = s.putHead(ctx, ws, head, rev)
		return err
	})
	if err != nil {
		// applyPlan rolled back what ran.
		s.clearJournal(ctx, ws)
		return err
	}
	for i, w := range writes {
		b, err := json.Marshal(w)
		if err == nil {
			_, err = s.store.kv.Put(ctx, journalWriteKey(ws, i), b)
		}
		if err != nil {
			return s.undeploy(ctx, ws, pl, fmt.Errorf("journal the catalog writes: %w", err))
		}
	}
	head.Phase, head.Writes = phaseRecording, len(writes)
	if rev, err = s.putHead(ctx, ws, head, rev); err != nil {
		return s.undeploy(ctx, ws, pl, err)
	}
	for _, w := range writes {
		if err := s.store.write(ctx, w); err != nil {
			s.log.Error("push applied but not fully recorded: the next push or delete in the workspace completes it", "workspace", ws, "err", err)
			return status.Errorf(codes.Unavailable, "workspace %s: the change is applied in ClickHouse but the catalog could not record all of it (%v); the next push or delete in the workspace completes it: push again", ws, err)
		}
	}
	s.clearJournal(ctx, ws)
	return nil
}

// undeploy rolls the whole plan back after a failure to journal the catalog writes.
func (s *Service) undeploy(ctx context.Context, ws string, pl *plan, cause error) error {
	rollback(context.WithoutCancel(ctx), s.deps.Warehouse, pl.steps, s.log)
	s.clearJournal(ctx, ws)
	return cause
}

func (s *Service) putHead(ctx context.Context, ws string, h journalHead, rev uint64) (uint64, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		rev, err = s.store.kv.Put(ctx, journalKey(ws), b)
	} else {
		// Compare-and-set: only the holder that wrote the head writes it again.
		rev, err = s.store.kv.Update(ctx, journalKey(ws), b, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("catalog journal of workspace %s: %w", ws, err)
	}
	return rev, nil
}

// clearJournal removes the journal's writes and then its head. A journal that cannot be
// removed now is harmless: the next holder finds it finished (its undo statements and writes
// have their effect once).
func (s *Service) clearJournal(ctx context.Context, ws string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.store.delete(cctx, journalKey(ws)); err != nil {
		s.log.Warn("removing the push journal", "workspace", ws, "err", err)
		return
	}
	keys, err := s.store.keys(cctx, "journal."+ws+".w.*")
	if err != nil {
		s.log.Warn("removing the push journal", "workspace", ws, "err", err)
		return
	}
	for _, k := range keys {
		if err := s.store.delete(cctx, k); err != nil {
			s.log.Warn("removing the push journal", "workspace", ws, "key", k, "err", err)
		}
	}
}

// recoverJournal completes or undoes what a previous holder of the workspace's lease left in
// its journal. It runs while holding the lease.
func (s *Service) recoverJournal(ctx context.Context, ws string) error {
	var head journalHead
	if _, err := s.store.getJSON(ctx, journalKey(ws), &head); err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	log := s.log.With("workspace", ws, "holder", head.Holder, "started", head.Start)
	switch head.Phase {
	case phaseApplying:
		log.Warn("a push was interrupted while applying its DDL: undoing it", "step", head.Step)
		for i := min(head.Step, len(head.Undo)-1); i >= 0; i-- {
			for _, stmt := range head.Undo[i] {
				if _, err := s.deps.Warehouse.Exec(ctx, stmt); err != nil {
					if c := warehouse.ClassOf(err); c == warehouse.ClassPermanent || c == warehouse.ClassUnknown {
						// Already undone, or never done (the step had not run).
						log.Info("undo statement had nothing to undo", "statement", stmt, "err", err)
						continue
					}
					return fmt.Errorf("workspace %s: undo an interrupted push: %w", ws, err)
				}
			}
		}
	case phaseRecording:
		log.Warn("a push was interrupted while recording it: completing it", "writes", head.Writes)
		for i := range head.Writes {
			var w kvWrite
			if _, err := s.store.getJSON(ctx, journalWriteKey(ws, i), &w); err != nil {
				return fmt.Errorf("workspace %s: complete an interrupted push: write %d: %w", ws, i, err)
			}
			if err := s.store.write(ctx, w); err != nil {
				return fmt.Errorf("workspace %s: complete an interrupted push: %w", ws, err)
			}
		}
		s.announce(ws)
	default:
		return fmt.Errorf("workspace %s: push journal in an unknown phase %q", ws, head.Phase)
	}
	s.clearJournal(ctx, ws)
	return nil
}

// recoverInterrupted repairs, at start, the workspaces whose journals no live replica holds.
// A workspace whose lease is held is left to its holder (and to its next operation).
func (s *Service) recoverInterrupted(ctx context.Context) {
	keys, err := s.store.keys(ctx, "journal.*")
	if err != nil {
		s.log.Warn("listing interrupted pushes", "err", err)
		return
	}
	for _, k := range keys {
		ws := strings.TrimPrefix(k, "journal.")
		if _, err := s.leases.Get(ctx, leaseKey(ws)); err == nil {
			continue // its holder is alive, or its lease expires soon and the next operation repairs it
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, unlock, err := s.lock(actx, ws)
		if err != nil {
			s.log.Warn("repairing an interrupted push", "workspace", ws, "err", err)
		} else {
			unlock()
		}
		cancel()
	}
}
