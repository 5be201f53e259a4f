package scheduler

import (
	"fmt"
	"slices"
	"testing"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/jobs"
)

func partitionsOf(sizes ...uint64) []*catalogv1.PopulatePartition {
	out := make([]*catalogv1.PopulatePartition, len(sizes))
	for i, b := range sizes {
		out[i] = &catalogv1.PopulatePartition{Id: fmt.Sprintf("p%03d", i), Rows: b / 10, Bytes: b}
	}
	return out
}

// TestPopulateStepsSizedByData: small partitions share a step up to the byte limit, a large
// one is a step of its own, a step never holds more than maxStepPartitions, and every
// partition is in exactly one step, in order, with the step's rows and bytes their sums.
func TestPopulateStepsSizedByData(t *testing.T) {
	const mb = 1 << 20
	sizes := []uint64{10 * mb, 10 * mb, 10 * mb, 300 * mb, 5 * mb, 100 * mb, 100 * mb, 100 * mb}
	for range 250 {
		sizes = append(sizes, 1000) // 250 tiny partitions
	}
	plan := &catalogv1.PlanPopulateResponse{Source: "events", Condition: "x > 1", Partitions: partitionsOf(sizes...)}
	steps := populateSteps(plan, stepSizing{bytes: 256 * mb}, false)
	var got [][]string
	var seen []string
	for i, st := range steps {
		p := st.GetPopulate()
		if st.GetId() != fmt.Sprint(i) || p.GetSource() != "events" || p.GetCondition() != "x > 1" {
			t.Fatalf("step %d = %v", i, st)
		}
		parts := jobs.PopulatePartitions(p)
		if len(parts) > 1 && p.GetPartition() != "" {
			t.Errorf("step %d names a partition and a group: %v", i, p)
		}
		var rows, bytes uint64
		for _, id := range parts {
			var n int
			_, _ = fmt.Sscanf(id, "p%03d", &n)
			rows, bytes = rows+sizes[n]/10, bytes+sizes[n]
		}
		if p.GetRows() != rows || p.GetBytes() != bytes {
			t.Errorf("step %d: rows %d bytes %d, want the sums %d, %d", i, p.GetRows(), p.GetBytes(), rows, bytes)
		}
		got = append(got, parts)
		seen = append(seen, parts...)
	}
	want := [][]string{{"p000", "p001", "p002"}, {"p003"}, {"p004", "p005", "p006"}}
	if len(got) != 6 || !slices.EqualFunc(got[:3], want, slices.Equal) {
		t.Fatalf("steps = %v, want %v and then the rest", got, want)
	}
	// p007 (100 MB) and the first 99 tiny ones; then at most 100 partitions a step.
	if len(got[3]) != 100 || got[3][0] != "p007" || len(got[4]) != 100 || len(got[5]) != 51 {
		t.Errorf("the last steps hold %d, %d, %d partitions, want 100, 100, 51", len(got[3]), len(got[4]), len(got[5]))
	}
	var all []string
	for _, p := range plan.GetPartitions() {
		all = append(all, p.GetId())
	}
	if !slices.Equal(seen, all) {
		t.Errorf("partitions across the steps = %v, want each once in order", seen)
	}
}

// TestPopulateStepsWithinTheMemoryBudget: a step's memory budget caps a group at half of it;
// an empty source is one step reading everything; a snapshot cut-over's step 0 lists every
// partition of the job.
func TestPopulateStepsWithinTheMemoryBudget(t *testing.T) {
	plan := &catalogv1.PlanPopulateResponse{Source: "s", Partitions: partitionsOf(40, 40, 40, 40, 40)}
	steps := populateSteps(plan, stepSizing{bytes: 1 << 30, budget: 200}, true)
	if len(steps) != 3 {
		t.Fatalf("%d steps, want 3 (at most 100 bytes each with a budget of 200)", len(steps))
	}
	if got := steps[0].GetPopulate().GetJobPartitions(); len(got) != 5 {
		t.Errorf("step 0 of a snapshot cut-over lists %v, want the 5 partitions", got)
	}
	if got := steps[1].GetPopulate().GetJobPartitions(); len(got) != 0 {
		t.Errorf("step 1 lists job partitions %v", got)
	}
	empty := populateSteps(&catalogv1.PlanPopulateResponse{Source: "s"}, stepSizing{bytes: 1 << 30, parallelism: 4}, false)
	if len(empty) != 1 || len(jobs.PopulatePartitions(empty[0].GetPopulate())) != 0 {
		t.Errorf("empty source: %v, want one step reading the whole source", empty)
	}
	// A partition of unknown size (a plan of an older catalog) counts as a hundredth of a step.
	unknown := populateSteps(&catalogv1.PlanPopulateResponse{Source: "s", Partitions: partitionsOf(0, 0, 0)}, stepSizing{bytes: 1 << 30, parallelism: 4}, false)
	if len(unknown) != 1 || len(unknown[0].GetPopulate().GetPartitions()) != 3 {
		t.Errorf("partitions of unknown size: %v, want one step of 3", unknown)
	}
}

// TestPopulateStepsSpreadForParallelism: with a parallelism of n, a source of small partitions
// is spread over at least n steps (when it has n partitions), each holding a similar share;
// fewer partitions than n are a step each, and parallelism never merges what the byte limit
// keeps apart.
func TestPopulateStepsSpreadForParallelism(t *testing.T) {
	var sizes []uint64
	for range 64 {
		sizes = append(sizes, 1000)
	}
	plan := &catalogv1.PlanPopulateResponse{Source: "s", Partitions: partitionsOf(sizes...)}
	// (3 shares of 64 partitions round to groups of 21: 4 steps, the last of one partition.)
	for _, tc := range []struct{ parallelism, min, max int }{{0, 1, 1}, {1, 1, 1}, {2, 2, 2}, {4, 4, 4}, {3, 3, 4}, {64, 64, 64}, {100, 64, 64}} {
		steps := populateSteps(plan, stepSizing{bytes: 1 << 30, parallelism: tc.parallelism}, false)
		n := 0
		for _, st := range steps {
			n += len(jobs.PopulatePartitions(st.GetPopulate()))
		}
		if len(steps) < tc.min || len(steps) > tc.max || n != 64 {
			t.Errorf("parallelism %d: %d steps over %d partitions, want %d to %d steps over 64", tc.parallelism, len(steps), n, tc.min, tc.max)
		}
	}
	if steps := populateSteps(plan, stepSizing{bytes: 8000, parallelism: 2}, false); len(steps) != 8 {
		t.Errorf("bytes 8000, parallelism 2: %d steps, want 8 (the byte limit)", len(steps))
	}
}
