package warehouse

import (
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluicehq/sluice/platform/warehouse/chdb"
)

// RawChDB and RawNative expose the connections under a Conn, for the
// benchmarks that compare the package with calling the drivers directly.
func RawChDB(c Conn) *chdb.Conn { return c.(*embeddedConn).e.conn }

func RawNative(c Conn) driver.Conn { return c.(*nativeConn).db }
