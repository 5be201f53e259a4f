package step

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FaultsEnv names the environment variable that arms fault points, for tests that need a
// crash or a stall at one precise line of the commit path (a window of microseconds that no
// outside kill can aim at). It is read when the executor is built; unset, points do nothing.
//
//	SLUICE_TEST_FAULTS=point[@n]:action[;point[@n]:action...]
//
// point is one of the names passed to Context.Fault ("attach.before", "attach.after",
// "commit.recorded", "move.after": after a try's moves, "stage.begin": a populate step that
// found no recorded commit and is about to stage), or "move.inside": a try's moves,
// killed (only "kill" applies) inside the statement, as soon as the engine has committed a
// moved part in its Data Source and before it removes the partition from staging (the data
// directories watched: a local engine only; see Context.FaultArmed). @n arms only the n-th hit
// of the point in this process (every hit without it); action is "kill" (SIGKILL of this
// process: a real crash, nothing runs after it) or "sleep=DURATION".
const FaultsEnv = "SLUICE_TEST_FAULTS"

type faultRule struct {
	nth    int
	kill   bool
	sleep  time.Duration
	hits   int
	passed bool
}

// Faults holds the armed fault points of a process.
type Faults struct {
	mu    sync.Mutex
	rules map[string]*faultRule
}

// ParseFaults reads a FaultsEnv value; "" arms nothing.
func ParseFaults(spec string) (*Faults, error) {
	fs := &Faults{rules: map[string]*faultRule{}}
	for _, item := range strings.Split(spec, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		point, action, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("%s: %q: want point[@n]:action", FaultsEnv, item)
		}
		r := &faultRule{}
		if name, n, ok := strings.Cut(point, "@"); ok {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("%s: %q: @%s is not a positive count", FaultsEnv, item, n)
			}
			point, r.nth = name, v
		}
		switch {
		case action == "kill":
			r.kill = true
		case strings.HasPrefix(action, "sleep="):
			d, err := time.ParseDuration(strings.TrimPrefix(action, "sleep="))
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", FaultsEnv, item, err)
			}
			r.sleep = d
		default:
			return nil, fmt.Errorf("%s: %q: action %q is not kill or sleep=DURATION", FaultsEnv, item, action)
		}
		fs.rules[point] = r
	}
	return fs, nil
}

// take counts a hit of the point and returns its rule if this hit is armed.
func (fs *Faults) take(point string) *faultRule {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	r := fs.rules[point]
	if r == nil || r.passed {
		return nil
	}
	r.hits++
	if r.nth > 0 && r.hits != r.nth {
		return nil
	}
	if r.nth > 0 {
		r.passed = true
	}
	return r
}

// hit runs the point's action, if armed.
func (fs *Faults) hit(point string, log *slog.Logger) {
	r := fs.take(point)
	if r == nil {
		return
	}
	log.Warn("fault point reached", "point", point, "kill", r.kill, "sleep", r.sleep)
	if r.kill {
		KillNow()
	}
	time.Sleep(r.sleep)
}

// KillNow ends this process with SIGKILL: a real crash, nothing runs after it.
func KillNow() {
	_ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
	select {} // the signal is delivered before anything else of this step runs
}
