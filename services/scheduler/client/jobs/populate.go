package jobs

import (
	"encoding/json"
	"fmt"
)

// PopulateStep is the payload of one step of a POPULATEVIEW job (StepSpec.payload, JSON): one
// partition of the materialized view's source Data Source.
type PopulateStep struct {
	// Source is the Data Source whose inserts fire the view (its query's left-most table).
	Source string `json:"source"`
	// Partition is the source partition id (system.parts.partition_id, `_partition_id`). Empty
	// when the source had no rows when the job was created: the step then reads the whole
	// source (normally nothing).
	Partition string `json:"partition"`
	// Rows the partition had when the job was created (for progress and sizing; the step reads
	// the partition as it is when it runs).
	Rows uint64 `json:"rows,omitempty"`
	// MemoryBudget is the per-step memory budget in bytes (max_memory_usage of every statement);
	// 0 means the executor's default.
	MemoryBudget uint64 `json:"memory_budget,omitempty"`
	// JobPartitions lists every partition of the job, on step 0 of a snapshot cut-over only:
	// that step also reads the partitions created after the job's list was made.
	JobPartitions []string `json:"job_partitions,omitempty"`
}

// Encode returns the step's payload.
func (p PopulateStep) Encode() []byte {
	b, _ := json.Marshal(p)
	return b
}

// DecodePopulateStep reads a POPULATEVIEW step's payload.
func DecodePopulateStep(b []byte) (PopulateStep, error) {
	var p PopulateStep
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("populate step payload: %w", err)
	}
	if p.Source == "" {
		return p, fmt.Errorf("populate step payload: no source Data Source")
	}
	return p, nil
}
