package warehousetest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// PrivateServer is a clickhouse-server process of one test, which the test may stop, kill and
// start again on the same ports and data: for outages. (Server is shared by a test binary and
// must stay up.)
type PrivateServer struct {
	bin string
	dir string
	cfg warehouse.NativeConfig

	mu  sync.Mutex
	cur *server
}

// NewPrivateServer starts a clickhouse-server with its own configuration, data and ports; it
// is killed and its directory removed when the test ends.
func NewPrivateServer(t testing.TB) *PrivateServer {
	t.Helper()
	bin := serverInstalled(t)
	dir, err := newTempDir("private")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"data", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeServerConfig(dir, ports); err != nil {
		t.Fatal(err)
	}
	p := &PrivateServer{bin: bin, dir: dir, cfg: warehouse.NativeConfig{
		Addrs: []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}, Username: "default", DialTimeout: 5 * time.Second,
	}}
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			if p.cur != nil {
				t.Logf("private clickhouse-server log tail:\n%s", p.cur.logTail())
			}
			p.mu.Unlock()
		}
		p.Stop(true)
		_ = os.RemoveAll(dir)
	})
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// Config is how to reach the server.
func (p *PrivateServer) Config() warehouse.NativeConfig {
	cfg := p.cfg
	cfg.Addrs = append([]string(nil), p.cfg.Addrs...)
	return cfg
}

// Addr is the server's native protocol address.
func (p *PrivateServer) Addr() string { return p.cfg.Addrs[0] }

// Stop stops the server and waits until the process is gone: with SIGKILL when kill, else
// with SIGTERM (a clean shutdown). Stopping a stopped server does nothing.
func (p *PrivateServer) Stop(kill bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.cur
	if s == nil {
		return
	}
	p.cur = nil
	if kill {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
		close(s.stop)
		return
	}
	s.kill()
}

// Start starts the stopped server again, with the same data, and waits until it answers.
func (p *PrivateServer) Start(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
}

func (p *PrivateServer) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		return nil
	}
	s := &server{dir: p.dir, cfg: p.cfg, exited: make(chan struct{}), stop: make(chan struct{})}
	// A killed server may leave its pid file behind; the new one refuses to start over it.
	_ = os.Remove(filepath.Join(p.dir, "data", "status"))
	if err := s.start(p.bin); err != nil {
		return err
	}
	if err := s.waitReady(); err != nil {
		s.kill()
		return fmt.Errorf("%w; log tail:\n%s", err, s.logTail())
	}
	p.cur = s
	return nil
}
