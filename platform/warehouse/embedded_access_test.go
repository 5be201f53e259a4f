package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// listener counts the connections made to a loopback port, to prove that nothing was fetched.
type listener struct {
	addr  string
	count atomic.Int64
}

func listen(t *testing.T) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.count.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return l
}

// TestEmbeddedCannotReachFilesOrNetwork reads a file and a network port every way ClickHouse
// offers from the embedded engine: the table functions, the file fallback of unknown tables,
// File and URL tables, INSERT INTO FUNCTION. Each is refused by chDB itself (ACCESS_DENIED) —
// the second line of defence behind Sluice's analysis of users' SQL — the secret appears in no
// result, no file is written and no connection reaches the port.
func TestEmbeddedCannotReachFilesOrNetwork(t *testing.T) {
	conn := warehousetest.Embedded(t)
	db := warehousetest.NewDatabase(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret.txt")
	secret := fmt.Sprintf("embedded-secret-%d", time.Now().UnixNano())
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	written := filepath.Join(dir, "written.txt")
	port := listen(t)
	tbl := func(n string) string { return warehouse.QualifiedName(db, n) }
	for _, sql := range []string{
		"SELECT * FROM file('" + secretFile + "', 'LineAsString')",
		"SELECT * FROM `" + secretFile + "`",
		"SELECT * FROM filesystem('" + dir + "')",
		"SELECT * FROM url('http://" + port.addr + "/x', CSV, 'a String')",
		"SELECT * FROM s3('http://" + port.addr + "/bucket-name/key.csv', CSV, 'a String')",
		"SELECT * FROM remote('" + port.addr + "', system.one)",
		"SELECT * FROM mysql('" + port.addr + "', 'd', 't', 'u', 'p')",
		"SELECT * FROM postgresql('" + port.addr + "', 'd', 't', 'u', 'p')",
		"SELECT * FROM sqlite('" + secretFile + "', 't')",
		"INSERT INTO FUNCTION file('" + written + "', 'LineAsString') SELECT 'x'",
		"INSERT INTO FUNCTION url('http://" + port.addr + "/w', CSV, 'a String') SELECT 'x'",
		"CREATE TABLE " + tbl("f") + " (s String) ENGINE = File(LineAsString, '" + secretFile + "')",
		"CREATE TABLE " + tbl("u") + " (s String) ENGINE = URL('http://" + port.addr + "/x', CSV)",
	} {
		res, err := conn.Query(ctx, sql)
		var we *warehouse.Error
		if !errors.As(err, &we) || we.Code != 497 {
			t.Errorf("%s: %v (rows %v), want code 497 ACCESS_DENIED", sql, err, res)
		}
		if err != nil && strings.Contains(err.Error(), secret) || res != nil && strings.Contains(fmt.Sprint(res.Rows), secret) {
			t.Errorf("%s: the secret came back", sql)
		}
	}
	if _, err := os.Stat(written); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written: %v", err)
	}
	if n := port.count.Load(); n != 0 {
		t.Errorf("%d connection(s) reached the port", n)
	}
	// What Sluice itself does still works: tables, views, inserts of rows, reads.
	for _, sql := range []string{
		"CREATE TABLE " + tbl("m") + " (n UInt64) ENGINE = MergeTree ORDER BY n",
		"CREATE TABLE " + tbl("s") + " (n UInt64) ENGINE = SummingMergeTree ORDER BY n",
		"CREATE MATERIALIZED VIEW " + tbl("mv") + " TO " + tbl("s") + " AS SELECT n FROM " + tbl("m"),
		"CREATE TABLE " + tbl("j") + " (n UInt64) ENGINE = Join(ANY, LEFT, n)",
		"INSERT INTO " + tbl("m") + " SELECT number FROM numbers(5)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := conn.InsertRows(ctx, tbl("m"), []string{"n"}, [][]any{{uint64(10)}}); err != nil {
		t.Fatal(err)
	}
	if res, err := conn.Query(ctx, "SELECT sum(n) FROM "+tbl("s")); err != nil || fmt.Sprint(res.Rows) != "[[20]]" {
		t.Errorf("sum through the view: %v %v, want 20", res, err)
	}
	// Measured limit: chDB checks no grant and no path for the scalar file() in its local
	// mode. Sluice's analysis refuses it wherever users' SQL or a definition stands; if this
	// starts failing, chDB closed the gap and docs/security.md should say so.
	if res, err := conn.Query(ctx, "SELECT file('"+secretFile+"')"); err != nil || !strings.Contains(fmt.Sprint(res.Rows), secret) {
		t.Logf("scalar file() no longer reads files in chDB (%v): update docs/security.md", err)
	}
}
