package main_test

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// BenchmarkIdleRSS starts the all-in-one process (embedded NATS and chDB) and reports its
// resident memory once it is serving and idle. TARGETS.md P8: <= 700 MB.
func BenchmarkIdleRSS(b *testing.B) {
	sluiced, _ := sluicetest.Binaries(b)
	var mb float64
	for b.Loop() {
		addr := sluicetest.FreeAddr(b)
		p := sluicetest.StartProcess(b, "sluiced-rss", sluiced, append([]string{"-dev", "-data-dir", b.TempDir(),
			"-grpc-addr", addr, "-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0", "-log-level", "warn"}, sluicetest.EmbeddedLibArgs()...)...)
		sluicetest.WaitServing(b, addr, "", 60*time.Second, p)
		time.Sleep(3 * time.Second) // idle: let start-up work settle
		kb, err := vmRSS(p.Cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		mb = float64(kb) / 1024
		p.Kill()
	}
	b.ReportMetric(mb, "MB_rss")
}

func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb int64
			_, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
