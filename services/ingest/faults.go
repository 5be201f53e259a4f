package ingest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// faultsEnv arms fault points for tests that need a crash at one precise line of the writer (a
// window no outside kill can aim at). It is the variable the executor reads for its own points
// (which this service ignores), with the same syntax:
//
//	SLUICE_TEST_FAULTS=point[@n]:action[;...]
//
// The writer's point is "ingest.inserted": after a table's insert of a batch has returned and
// before the batch is committed. The only action is "kill" (SIGKILL of this process); @n arms
// the n-th hit in this process, every hit without it. Unset, nothing is armed.
const faultsEnv = "SLUICE_TEST_FAULTS"

// armFaults sets the hooks that spec arms.
func armFaults(spec string, h *hooks) error {
	for _, item := range strings.Split(spec, ";") {
		point, action, _ := strings.Cut(strings.TrimSpace(item), ":")
		name, n, counted := strings.Cut(point, "@")
		if !strings.HasPrefix(name, "ingest.") {
			continue // a point of another service
		}
		if name != "ingest.inserted" || action != "kill" {
			return fmt.Errorf("%s: %q: the ingest service has the point ingest.inserted with the action kill", faultsEnv, item)
		}
		nth := 0
		if counted {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 {
				return fmt.Errorf("%s: %q: @%s is not a positive count", faultsEnv, item, n)
			}
			nth = v
		}
		var mu sync.Mutex
		hits := 0
		h.afterInsert = func(string) error {
			mu.Lock()
			hits++
			armed := nth == 0 || hits == nth
			mu.Unlock()
			if armed {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal ends the process
			}
			return nil
		}
	}
	return nil
}
