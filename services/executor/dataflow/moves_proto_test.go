package dataflow

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
)

// TestMovePlanInTheCommitRecord: a plan survives the commit record (persistence.v1, written and
// read as protojson) whole, and a record without one, as earlier versions wrote, reads as no
// plan.
func TestMovePlanInTheCommitRecord(t *testing.T) {
	plan := &MovePlan{
		Moves: []Move{{Table: "events", PartitionID: "202601", Rows: 3, Bytes: 120}, {Table: "daily", PartitionID: "all", Rows: 1, Bytes: 9}},
		Parts: []StagedPart{
			{Table: "events", Partition: "202601", Name: "202601_1_1_0", Rows: 2, Level: 0, Hash: "a1"},
			{Table: "events", Partition: "202601", Name: "202601_2_2_0", Rows: 1, Level: 0, Hash: "b2"},
			{Table: "daily", Partition: "all", Name: "all_1_3_1", Rows: 1, Level: 1, Hash: "c3"},
		},
		MaxBlocks:   map[string]int64{"events": 41, "daily": 0},
		QueryPrefix: "sluice-move-0123456789abcdef-",
	}
	rec := &persistencev1.DeltaCommit{Phase: persistencev1.CommitPhase_COMMIT_PHASE_MOVING, StagingKey: "k", MovePlan: plan.Proto()}
	b, err := protojson.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back persistencev1.DeltaCommit
	if err := protojson.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := MovePlanOf(back.GetMovePlan()); !reflect.DeepEqual(got, plan) {
		t.Errorf("plan read back:\n%+v\nwant\n%+v", got, plan)
	}
	old := []byte(`{"phase":"COMMIT_PHASE_MOVING","stagingKey":"k","tables":[{"table":"events","rows":"3"}]}`)
	var earlier persistencev1.DeltaCommit
	if err := protojson.Unmarshal(old, &earlier); err != nil {
		t.Fatal(err)
	}
	if got := MovePlanOf(earlier.GetMovePlan()); got != nil {
		t.Errorf("a record without a plan reads as plan %+v", got)
	}
	if (*MovePlan)(nil).Proto() != nil {
		t.Error("no plan is written as a plan")
	}
}
