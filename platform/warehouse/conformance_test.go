package warehouse_test

import (
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestMain(m *testing.M) { warehousetest.Main(m) }

func TestConformanceEmbedded(t *testing.T) {
	warehousetest.Conformance(t, warehousetest.Embedded)
}

func TestConformanceNative(t *testing.T) {
	warehousetest.Conformance(t, warehousetest.Native)
}
