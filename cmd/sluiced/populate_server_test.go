package main_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// TestPopulateOnServer runs the spec's case 3 through the CLI against a clickhouse-server
// process over the native protocol. The Debian server (18.16) has no MOVE PARTITION ... TO
// TABLE, so every step commits by ATTACH PARTITION ... FROM and DROP PARTITION, recording each
// attached partition: the target and both Data Sources downstream still hold every row once.
func TestPopulateOnServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and starts a clickhouse-server")
	}
	cfg := warehousetest.Server(t)
	sys := sluicetest.Start(t, sluicetest.WithArgs(append([]string{"-clickhouse-addr", strings.Join(cfg.Addrs, ",")}, fastJobs...)...))
	_, bin := sluicetest.Binaries(t)
	w := newPopWS(t, sys, "pop_server", case3Files)
	// popRowsA as INSERT ... SELECT: 18.16 does not take inline VALUES over the native protocol.
	names := "['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten']"
	ts := "toDateTime('2024-01-05 00:00:00') + toIntervalMonth(intDiv(number, 3)) + toIntervalDay(number % 3)"
	w.exec("INSERT INTO {db}.a SELECT number + 1, " + names + "[number + 1], " + ts + " FROM numbers(9)")
	// A second part in one partition: id 10 in March.
	w.exec("INSERT INTO {db}.a SELECT 10, 'ten', toDateTime('2024-03-08 00:00:00') FROM numbers(1)")
	for _, tbl := range []string{"b", "c", "d"} {
		w.exec("TRUNCATE TABLE {db}." + tbl)
	}
	out, stderr, code := cli(t, bin, sys, "pipe", "populate", "pipe_1", "--wait", "--workspace", "pop_server")
	if code != 0 {
		t.Fatalf("sluice pipe populate: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "3/3 partitions, 10 rows written") {
		t.Errorf("--wait output:\n%s", out)
	}
	w.wantRows("SELECT id, name FROM {db}.b ORDER BY id",
		"1|one", "2|two", "3|three", "4|four", "5|five", "6|six", "7|seven", "8|eight", "9|nine", "10|ten")
	w.wantRows("SELECT id, name FROM {db}.c ORDER BY id",
		"1|ONE", "2|TWO", "3|THREE", "4|FOUR", "5|FIVE", "6|SIX", "7|SEVEN", "8|EIGHT", "9|NINE", "10|TEN")
	w.wantRows("SELECT id, name, c_name FROM {db}.d ORDER BY id",
		"1|one|ONE", "2|two|TWO", "3|three|THREE", "4|four|FOUR", "5|five|FIVE", "6|six|SIX", "7|seven|SEVEN", "8|eight|EIGHT", "9|nine|NINE", "10|ten|TEN")
	if got := w.scalar("SELECT count() FROM system.tables WHERE database = '{db}' AND startsWith(name, '__sluice_stage_')"); got != "0" {
		t.Errorf("%s staging tables left", got)
	}
	// --truncate and --sql-condition on the server too.
	if out, stderr, code := cli(t, bin, sys, "pipe", "populate", "pipe_1", "--truncate", "--only-this-view", "--sql-condition", "id % 2 = 0", "--wait", "--workspace", "pop_server"); code != 0 {
		t.Fatalf("--truncate --sql-condition: exit %d\n%s\n%s", code, out, stderr)
	}
	w.wantRows("SELECT id FROM {db}.b ORDER BY id", "2", "4", "6", "8", "10")
}
