package ingest

import (
	"strings"
	"testing"
)

// The ingest service arms its own point, ignores the executor's, and refuses a point or an
// action it does not have rather than run a fault test that cannot fault.
func TestArmFaults(t *testing.T) {
	for _, c := range []struct {
		spec  string
		armed bool
		err   string
	}{
		{spec: ""},
		{spec: "move.inside@1:kill;attach.after:sleep=2s"},
		{spec: "ingest.inserted@2:kill", armed: true},
		{spec: "attach.after@4:sleep=3s; ingest.inserted:kill", armed: true},
		{spec: "ingest.inserted:sleep=1s", err: "action kill"},
		{spec: "ingest.pending:kill", err: "ingest.inserted"},
		{spec: "ingest.inserted@0:kill", err: "not a positive count"},
	} {
		var h hooks
		err := armFaults(c.spec, &h)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), faultsEnv) {
				t.Errorf("%q: %v, want an error naming %s and saying %q", c.spec, err, faultsEnv, c.err)
			}
			continue
		}
		if err != nil || (h.afterInsert != nil) != c.armed {
			t.Errorf("%q: armed %v, %v; want armed %v", c.spec, h.afterInsert != nil, err, c.armed)
		}
	}
}
