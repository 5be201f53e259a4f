package ingest

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"
)

// committedSeq is the stream sequence up to which rows are visible in ClickHouse, as this
// process has heard (from the writer's announcements, or by reading the writer's position),
// and the requests waiting for it.
type committedSeq struct {
	mu      sync.Mutex
	seq     uint64
	waiters map[chan struct{}]uint64
}

func newCommittedSeq() *committedSeq { return &committedSeq{waiters: map[chan struct{}]uint64{}} }

func (c *committedSeq) observe(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.seq {
		return
	}
	c.seq = seq
	for ch, want := range c.waiters {
		if want <= seq {
			close(ch)
			delete(c.waiters, ch)
		}
	}
}

// wait returns when rows up to seq are visible, or with ctx's error.
func (c *committedSeq) wait(ctx context.Context, seq uint64) error {
	c.mu.Lock()
	if seq <= c.seq {
		c.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	c.waiters[ch] = seq
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, ch)
		c.mu.Unlock()
		return ctx.Err()
	}
}

func (c *committedSeq) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters) > 0
}

func parseSeq(b []byte) uint64 {
	n, _ := strconv.ParseUint(string(b), 10, 64)
	return n
}

// pollCommitted reads the writer's position while requests wait, in case an announcement was
// missed (a writer in another process, a reconnect).
func (s *Service) pollCommitted(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.seen.pending() {
			continue
		}
		if pos, _, err := s.loadPosition(ctx); err == nil {
			s.seen.observe(pos.Committed)
		}
	}
}

// position is the writer's record in the bucket: everything up to Committed is written and
// purged from the stream; Pending is a batch that was being written (first..last).
type position struct {
	Committed uint64    `json:"committed"`
	Pending   *pendingB `json:"pending,omitempty"`
}

type pendingB struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

const positionKey = "position"

func (s *Service) loadPosition(ctx context.Context) (position, uint64, error) {
	var pos position
	e, err := s.kv.Get(ctx, positionKey)
	if err != nil {
		if isKeyNotFound(err) {
			return pos, 0, nil
		}
		return pos, 0, err
	}
	if err := json.Unmarshal(e.Value(), &pos); err != nil {
		return pos, 0, err
	}
	return pos, e.Revision(), nil
}
