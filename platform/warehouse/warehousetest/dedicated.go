package warehousetest

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// DedicatedServer is a clickhouse-server of one test (not the binary's shared one), with the
// same private configuration as Server, that the test may restart: for proving that what a
// test did leaves a server that starts again with its tables.
type DedicatedServer struct {
	bin string
	s   *server
}

// NewDedicatedServer starts a clickhouse-server for the test; it is stopped and its directory
// removed when the test ends.
func NewDedicatedServer(t testing.TB) *DedicatedServer {
	t.Helper()
	Server(t) // the same checks for a missing binary or configuration
	bin := ServerBinary()
	s, err := startServer(bin)
	if err != nil {
		t.Fatalf("warehousetest: start a dedicated clickhouse-server: %v", err)
	}
	d := &DedicatedServer{bin: bin, s: s}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dedicated clickhouse-server log tail (%s):\n%s", d.s.dir, d.s.logTail())
		}
		d.s.kill()
		_ = os.RemoveAll(d.s.dir)
	})
	return d
}

// Config is how to reach the server (as default).
func (d *DedicatedServer) Config() warehouse.NativeConfig { return d.s.cfg }

// Restart stops the server gracefully (SIGTERM, SIGKILL after 10 s) and starts it again on the
// same data, configuration and ports. The test fails, with the server's log, if it does not
// answer SELECT 1 within the start timeout: a server that cannot load its tables exits.
func (d *DedicatedServer) Restart(t testing.TB) {
	t.Helper()
	d.s.kill()
	next := &server{dir: d.s.dir, cfg: d.s.cfg, exited: make(chan struct{}), stop: make(chan struct{})}
	d.s = next
	if err := next.start(d.bin); err != nil {
		t.Fatalf("warehousetest: restart clickhouse-server: %v", err)
	}
	if err := next.waitReady(); err != nil {
		t.Fatalf("warehousetest: clickhouse-server did not start again: %v\nlog tail:\n%s", err, next.logTail())
	}
}
