package warehouse

import (
	"context"
)

// Sequencer is implemented by engines that can run several statements back to back, with no
// statement of any other caller in between: the embedded engine, which runs one statement at a
// time for the whole process. A server engine cannot promise that (other clients write at any
// moment) and does not implement it.
type Sequencer interface {
	// Sequence calls fn with a Conn whose Exec and Query run while this caller holds the
	// engine; every other caller waits until fn returns. fn must only use the Conn it is given
	// (calls on another handle of the same engine would wait for fn forever).
	Sequence(ctx context.Context, fn func(Conn) error) error
}

var _ Sequencer = (*embeddedConn)(nil)

// Sequence implements Sequencer.
func (c *embeddedConn) Sequence(ctx context.Context, fn func(Conn) error) error {
	if c.closed.Load() {
		return &Error{Message: "connection is closed", Class: ClassPermanent}
	}
	select {
	case c.e.turn <- struct{}{}:
	case <-ctx.Done():
		return contextError(ctx, "")
	}
	defer func() { <-c.e.turn }()
	return fn(&heldConn{c: c})
}

// heldConn runs statements on the embedded engine while its Sequence holds the turn.
type heldConn struct{ c *embeddedConn }

func (h *heldConn) Exec(ctx context.Context, sql string, opts ...Option) (Stats, error) {
	o := resolveOptions(opts)
	var st Stats
	err := h.c.inTurn(ctx, o, shapeOf(sql), func(clause string) error {
		if err := h.c.refuseMultiStatement(sql); err != nil {
			return err
		}
		r, err := h.c.e.conn.Query(withClause(sql, clause), "Null")
		st = embeddedStats(o.QueryID, r)
		return err
	})
	return st, err
}

func (h *heldConn) Query(ctx context.Context, sql string, opts ...Option) (*Result, error) {
	o := resolveOptions(opts)
	var res *Result
	err := h.c.inTurn(ctx, o, shapeOf(sql), func(clause string) error {
		if err := h.c.refuseMultiStatement(sql); err != nil {
			return err
		}
		r, err := h.c.e.conn.Query(withClause(sql, clause), "JSONCompact")
		if err != nil {
			return err
		}
		res, err = decodeJSONCompact(r.Data)
		if err != nil {
			return err
		}
		res.Stats = embeddedStats(o.QueryID, r)
		return nil
	})
	return res, err
}

func (h *heldConn) InsertRows(context.Context, string, []string, [][]any, ...Option) (Stats, error) {
	return Stats{}, &Error{Message: "InsertRows is not available inside Sequence", Class: ClassPermanent}
}

func (h *heldConn) Engine() Engine                 { return h.c.Engine() }
func (h *heldConn) Ping(ctx context.Context) error { return nil }
func (h *heldConn) Close() error                   { return nil }
