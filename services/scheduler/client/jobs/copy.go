package jobs

import (
	"encoding/json"
	"fmt"
)

// Copy modes as a copy step's payload spells them.
const (
	CopyAppend  = "append"
	CopyReplace = "replace"
)

// CopyStep is the payload of the one step of a COPY job (StepSpec.payload, JSON). The scheduler
// renders the copy node when it receives the request (parameters and job_timestamp applied,
// tables qualified), so the step is a pure function of the request: a redelivery or a retry
// runs the same SQL, whatever happened to the pipe since.
type CopyStep struct {
	// Target is the Data Source the copy writes (TARGET_DATASOURCE).
	Target string `json:"target"`
	// SQL is the copy node's rendered query.
	SQL string `json:"sql"`
	// Columns are the names of the query's result columns, in order: the target columns it
	// fills.
	Columns []string `json:"columns,omitempty"`
	// Mode is CopyAppend or CopyReplace.
	Mode string `json:"mode"`
	// FileVersion is the pipe's datafile version the SQL was rendered from.
	FileVersion int64 `json:"file_version,omitempty"`
}

// Encode returns the step's payload.
func (p CopyStep) Encode() []byte {
	b, _ := json.Marshal(p)
	return b
}

// DecodeCopyStep reads a COPY step's payload.
func DecodeCopyStep(b []byte) (CopyStep, error) {
	var p CopyStep
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("copy step payload: %w", err)
	}
	switch {
	case p.Target == "":
		return p, fmt.Errorf("copy step payload: no target Data Source")
	case p.SQL == "":
		return p, fmt.Errorf("copy step payload: no SQL")
	case p.Mode != CopyAppend && p.Mode != CopyReplace:
		return p, fmt.Errorf("copy step payload: mode %q is not append or replace", p.Mode)
	}
	return p, nil
}
