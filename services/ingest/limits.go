package ingest

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds each workspace's token buckets: requests, rows and bytes per second, with a
// burst of one second's worth.
type limiter struct {
	cfg Config
	mu  sync.Mutex
	ws  map[string]*wsLimits
}

type wsLimits struct{ requests, rows, bytes *rate.Limiter }

func newLimiter(cfg Config) *limiter { return &limiter{cfg: cfg, ws: map[string]*wsLimits{}} }

func bucket(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), int(math.Max(1, math.Ceil(perSecond))))
}

func (l *limiter) of(ws string) *wsLimits {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.ws[ws]
	if w == nil {
		w = &wsLimits{requests: bucket(l.cfg.RequestsPerSecond), rows: bucket(l.cfg.RowsPerSecond), bytes: bucket(l.cfg.BytesPerSecond)}
		l.ws[ws] = w
	}
	return w
}

// allow takes n tokens from b; when it cannot, it says how long to wait before retrying and
// takes nothing. A request larger than a whole second's budget is let through when the bucket
// is full, so that it is never refused forever.
func allow(b *rate.Limiter, n int, what string) (time.Duration, string) {
	if b == nil || n <= 0 {
		return 0, ""
	}
	now := time.Now()
	if n > b.Burst() {
		if b.TokensAt(now) >= float64(b.Burst()) {
			b.AllowN(now, b.Burst())
			return 0, ""
		}
		n = b.Burst()
	}
	r := b.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, what
	}
	return 0, ""
}
