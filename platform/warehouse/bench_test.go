package warehouse_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// The benchmarks measure the cost of the Go layer: each operation runs
// once through the package and once as directly as the driver allows, in
// alternating order, and reports both times and their ratio (target: at
// most 1.02). Run with a fixed count, e.g.
//
//	go test -run '^$' -bench . -benchtime 5x ./warehouse/

var benchEngines = []struct {
	name string
	open func(testing.TB) warehouse.Conn
}{
	{"chdb", warehousetest.Embedded},
	{"native", warehousetest.Native},
}

// pair times fn(true) (through the package) and fn(false) (direct) b.N
// times each and reports the median seconds per operation of each and the
// ratio of the medians: the server's own run-to-run noise (merges, page
// cache) is larger than the layer's cost, and medians resist it better.
func pair(b *testing.B, reset func(), fn func(viaPackage bool)) {
	var pkg, direct []time.Duration
	for i := 0; i < b.N; i++ {
		for _, via := range []bool{i%2 == 0, i%2 != 0} {
			reset()
			runtime.GC() // start both from the same heap state
			b.StartTimer()
			start := time.Now()
			fn(via)
			d := time.Since(start)
			b.StopTimer()
			if via {
				pkg = append(pkg, d)
			} else {
				direct = append(direct, d)
			}
		}
	}
	mp, md := median(pkg), median(direct)
	b.ReportMetric(mp.Seconds(), "pkg-s/op")
	b.ReportMetric(md.Seconds(), "direct-s/op")
	b.ReportMetric(float64(mp)/float64(md), "pkg/direct")
	b.ReportMetric(0, "ns/op") // the pair's total says nothing on its own
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func BenchmarkInsertSelect10M(b *testing.B) {
	for _, e := range benchEngines {
		b.Run(e.name, func(b *testing.B) {
			conn := e.open(b)
			ctx := context.Background()
			table := warehouse.QualifiedName(warehousetest.NewDatabase(b, conn), "t")
			mustBench(b)(conn.Exec(ctx, "CREATE TABLE "+table+" (n UInt64, s String, k UInt8) ENGINE = MergeTree ORDER BY n"))
			stmt := "INSERT INTO " + table + " SELECT number, toString(number), number % 100 FROM numbers(10000000)"
			reset := func() { mustBench(b)(conn.Exec(ctx, "TRUNCATE TABLE "+table)) }
			b.StopTimer()
			b.ResetTimer()
			pair(b, reset, func(via bool) {
				var err error
				switch {
				case via:
					_, err = conn.Exec(ctx, stmt)
				case conn.Engine() == warehouse.EngineEmbedded:
					_, err = warehouse.RawChDB(conn).Query(stmt, "Null")
				default:
					err = warehouse.RawNative(conn).Exec(ctx, stmt)
				}
				if err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func BenchmarkInsertRows100k(b *testing.B) {
	const n = 100_000
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{uint64(i), "name-" + strconv.Itoa(i), float64(i) / 3, base.Add(time.Duration(i) * time.Second)}
	}
	cols := []string{"id", "name", "score", "at"}
	for _, e := range benchEngines {
		b.Run(e.name, func(b *testing.B) {
			conn := e.open(b)
			ctx := context.Background()
			table := warehouse.QualifiedName(warehousetest.NewDatabase(b, conn), "t")
			mustBench(b)(conn.Exec(ctx, "CREATE TABLE "+table+" (id UInt64, name String, score Float64, at DateTime) ENGINE = MergeTree ORDER BY id"))
			reset := func() { mustBench(b)(conn.Exec(ctx, "TRUNCATE TABLE "+table)) }
			b.StopTimer()
			b.ResetTimer()
			pair(b, reset, func(via bool) {
				var err error
				switch {
				case via:
					_, err = conn.InsertRows(ctx, table, cols, rows)
				case conn.Engine() == warehouse.EngineEmbedded:
					err = directChDBInsert(conn, table, rows)
				default:
					err = directNativeInsert(ctx, conn, table, rows)
				}
				if err != nil {
					b.Fatal(err)
				}
			})
			var got any
			if res, err := conn.Query(ctx, "SELECT count() FROM "+table); err == nil {
				got = res.Rows[0][0]
			}
			if got != uint64(n) {
				b.Fatalf("table holds %v rows after the last insert, want %d", got, n)
			}
		})
	}
}

// directChDBInsert is the same insert written for this one table: the
// JSON encoded by hand, the statement sent straight to chDB.
func directChDBInsert(conn warehouse.Conn, table string, rows [][]any) error {
	buf := make([]byte, 0, len(rows)*64)
	buf = append(buf, "INSERT INTO "+table+" (id, name, score, at) FORMAT JSONCompactEachRow\n"...)
	for _, r := range rows {
		buf = append(buf, '[')
		buf = strconv.AppendUint(buf, r[0].(uint64), 10)
		buf = append(buf, ',')
		buf = strconv.AppendQuote(buf, r[1].(string))
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, r[2].(float64), 'g', -1, 64)
		buf = append(buf, ',')
		buf = strconv.AppendInt(buf, r[3].(time.Time).Unix(), 10)
		buf = append(buf, ']', '\n')
	}
	_, err := warehouse.RawChDB(conn).Query(string(buf), "Null")
	return err
}

func directNativeInsert(ctx context.Context, conn warehouse.Conn, table string, rows [][]any) error {
	batch, err := warehouse.RawNative(conn).PrepareBatch(ctx, "INSERT INTO "+table+" (id, name, score, at)")
	if err != nil {
		return err
	}
	defer batch.Close()
	for _, r := range rows {
		if err := batch.Append(r...); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	return batch.Send()
}

func mustBench(b *testing.B) func(warehouse.Stats, error) {
	return func(_ warehouse.Stats, err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
}
