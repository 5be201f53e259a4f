package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// applyPlan runs the plan's statements in order, calling begin (when not nil) before each step.
// If a statement or begin fails, the undo statements of the steps already applied run in
// reverse order, so a failed push leaves ClickHouse as it was (except for forced drops, which
// run last and cannot be undone).
func applyPlan(ctx context.Context, wh warehouse.Conn, pl *plan, log *slog.Logger, begin func(step int) error) error {
	var done []*step
	for n, s := range pl.steps {
		if begin != nil {
			if err := begin(n); err != nil {
				rollback(context.WithoutCancel(ctx), wh, done, log)
				return fmt.Errorf("%s %s: %w", actionVerb(s), s.action.GetName(), err)
			}
		}
		for i, stmt := range s.action.GetStatements() {
			if _, err := wh.Exec(ctx, stmt); err != nil {
				// A step whose first statements ran is undone with the rest.
				if i > 0 {
					done = append(done, s)
				}
				rollback(context.WithoutCancel(ctx), wh, done, log)
				return &applyError{name: s.action.GetName(), err: fmt.Errorf("%s %s: %w", actionVerb(s), s.action.GetName(), err)}
			}
		}
		done = append(done, s)
	}
	return nil
}

// applyError is a plan step that failed, naming its resource.
type applyError struct {
	name string
	err  error
}

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

func rollback(ctx context.Context, wh warehouse.Conn, done []*step, log *slog.Logger) {
	for i := len(done) - 1; i >= 0; i-- {
		for _, stmt := range done[i].undo {
			if _, err := wh.Exec(ctx, stmt); err != nil {
				log.Error("push rollback: statement failed; ClickHouse may need a manual fix", "resource", done[i].action.GetName(), "statement", stmt, "err", err)
			}
		}
	}
}

func actionVerb(s *step) string {
	return map[int]string{
		phaseCreateTables: "create Data Source",
		phaseAlterTables:  "alter Data Source",
		phaseDropViews:    "drop view of pipe",
		phaseDropTables:   "drop Data Source",
		phaseCreateViews:  "create view of pipe",
	}[s.phase]
}

// isNotFound reports errNotFound.
func isNotFound(err error) bool { return errors.Is(err, errNotFound) }
