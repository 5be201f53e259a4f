package scheduler

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoClickHouseDriver: the scheduler reaches ClickHouse only through the catalog, so
// it links no driver (docs/architecture.md). An import that brings one in fails here.
func TestLinksNoClickHouseDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "ClickHouse/") || strings.HasSuffix(pkg, "platform/warehouse/chdb") || strings.HasSuffix(pkg, "platform/warehouse") {
			t.Errorf("the scheduler links %s", pkg)
		}
	}
}
