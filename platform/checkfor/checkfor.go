// Package checkfor is the polling helper of Sluice's tests: wait until a condition holds,
// within a deadline. A test waits for what it needs to see, never for a duration, and asserts
// no duration: how long a wait took is for benchmarks to report.
package checkfor

import (
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 20 * time.Millisecond

// Eventually checks cond every Interval until it returns true, and fails the test when the
// timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	State(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// State is Eventually for a condition that also says what it saw: the failure shows the last
// state.
func State(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, state)
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(Interval)
	}
}
