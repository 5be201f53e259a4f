package apierr

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// TestFromWarehouseReadsEveryClass: the error mapping reads warehouse errors by their class
// words, without importing the package; every class maps to its code and reason, also wrapped.
func TestFromWarehouseReadsEveryClass(t *testing.T) {
	for class, want := range map[warehouse.Class]struct {
		code   codes.Code
		reason commonv1.ErrorReason
	}{
		warehouse.ClassTimeout:     {codes.DeadlineExceeded, commonv1.ErrorReason_ERROR_REASON_QUERY_TIMEOUT},
		warehouse.ClassCancelled:   {codes.Canceled, commonv1.ErrorReason_ERROR_REASON_CANCELLED},
		warehouse.ClassRetryable:   {codes.Unavailable, commonv1.ErrorReason_ERROR_REASON_CLICKHOUSE_UNAVAILABLE},
		warehouse.ClassMemoryLimit: {codes.ResourceExhausted, commonv1.ErrorReason_ERROR_REASON_MEMORY_LIMIT},
		warehouse.ClassPermanent:   {codes.InvalidArgument, commonv1.ErrorReason_ERROR_REASON_CLICKHOUSE_ERROR},
	} {
		err := fmt.Errorf("step 1: %w", &warehouse.Error{Code: 241, Message: "boom", Class: class})
		e := FromWarehouse(err)
		if e == nil || e.Code != want.code || e.Reason != want.reason || e.Metadata["clickhouse_code"] != "241" {
			t.Errorf("%s: %+v, want %s %s with clickhouse_code 241", class, e, want.code, want.reason)
		}
	}
	if e := FromWarehouse(fmt.Errorf("not ClickHouse")); e != nil {
		t.Errorf("a plain error mapped as ClickHouse's: %+v", e)
	}
}
