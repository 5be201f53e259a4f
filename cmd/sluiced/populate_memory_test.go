package main_test

import (
	"strings"
	"testing"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// TestPopulateMemoryLimitRetriedAndSplit provokes MEMORY_LIMIT_EXCEEDED with a small memory
// budget (max_memory_usage of every statement of a step): the view gathers a partition's
// payloads in one groupArray, which fewer threads and smaller blocks cannot shrink, so each
// step restages with fewer resources, then split into sub-ranges of the partition, until it
// fits. The target then holds every source row exactly once.
func TestPopulateMemoryLimitRetriedAndSplit(t *testing.T) {
	sys := sluicetest.Start(t)
	w := newPopWS(t, sys, "mem", map[string]string{
		"datasources/m.datasource": "SCHEMA >\n    id UInt64,\n    k UInt8,\n    payload String\n\nENGINE \"MergeTree\"\nENGINE_PARTITION_KEY \"k\"\nENGINE_SORTING_KEY \"id\"\n",
		"datasources/g.datasource": "SCHEMA >\n    k UInt8,\n    payloads Array(String)\n\nENGINE \"MergeTree\"\nENGINE_SORTING_KEY \"k\"\n",
		"pipes/gather.pipe":        mvPipe("mv", "SELECT k, groupArray(payload) AS payloads FROM m GROUP BY k", "g"),
	})
	w.exec("INSERT INTO {db}.m SELECT number, number % 2, concat(repeat('x', 400), toString(number)) FROM numbers(80000)")
	w.exec("TRUNCATE TABLE {db}.g")
	resp, err := sys.Scheduler.Populate(t.Context(), &schedulerv1.PopulateRequest{Workspace: "mem", Pipe: "gather", MemoryBudgetBytes: 24 << 20})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, sys.Scheduler, "mem", resp.GetJob().GetId(), 120e9, done, failed, cancelled)
	if j.GetStatus() != done {
		t.Fatalf("populate = %v", j)
	}
	w.wantRows("SELECT k, count(), uniqExact(p) FROM {db}.g ARRAY JOIN payloads AS p GROUP BY k ORDER BY k", "0|40000|40000", "1|40000|40000")
	for i, c := range commitRecords(t, sys.App.NATSURL(), "mem", j.GetId(), 2) {
		pc := c.GetDelta()
		if pc.GetSplit() < 2 || pc.GetLevel() != 2 {
			t.Errorf("step %d staged at level %d split %d: want the lowest level and a split", i, pc.GetLevel(), pc.GetSplit())
		}
		t.Logf("step %d: level %d, split into %d", i, pc.GetLevel(), pc.GetSplit())
	}
	// With a budget no split can meet, the job fails naming the partition.
	resp, err = sys.Scheduler.Populate(t.Context(), &schedulerv1.PopulateRequest{Workspace: "mem", Pipe: "gather", MemoryBudgetBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, sys.Scheduler, "mem", resp.GetJob().GetId(), 120e9, done, failed, cancelled)
	if j.GetStatus() != failed || !containsAll(j.GetError().GetMessage(), "memory limit exceeded even split into 64 ranges", "populate partition") {
		t.Errorf("populate with 1 KiB = %v", j)
	}
	waitOpsEvents(t, sys, "mem", j.GetId(), "populateview|g|error|0")
	w.wantRows("SELECT count() FROM {db}.g ARRAY JOIN payloads AS p", "80000")
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
