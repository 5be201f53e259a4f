package sluice_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startServer runs a real sluiced all-in-one (embedded NATS and ClickHouse) in a temporary
// directory and returns its gRPC address and its operator token (which the catalog writes to
// <data dir>/token on first start). SLUICED names the binary; without it the test builds
// ../../cmd/sluiced. SLUICE_CHDB_LIB names libchdb.so (make chdb).
func startServer(t *testing.T) (addr, operatorToken string) {
	t.Helper()
	bin := os.Getenv("SLUICED")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "sluiced")
		build := exec.Command("go", "build", "-o", bin, "./cmd/sluiced")
		build.Dir = "../.."
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build sluiced: %v\n%s", err, out)
		}
	}
	lib := os.Getenv("SLUICE_CHDB_LIB")
	if lib == "" {
		t.Fatal("SLUICE_CHDB_LIB is not set: run `make chdb` and point it at libchdb.so (the Makefile sets it)")
	}
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "-target=all", "-data-dir", dataDir, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
		"-log-format", "json", "-clickhouse-embedded-lib", lib)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sluiced: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	ready := make(chan string, 1)
	var logTail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if len(logTail) < 200 {
				logTail = append(logTail, line)
			}
			var rec struct {
				Msg      string `json:"msg"`
				GRPCAddr string `json:"grpc_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "sluiced ready" {
				ready <- rec.GRPCAddr
			}
		}
	}()
	select {
	case addr = <-ready:
	case <-time.After(2 * time.Minute):
		t.Fatalf("sluiced not ready within 2 minutes:\n%s", strings.Join(logTail, "\n"))
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "token"))
	if err != nil || strings.TrimSpace(string(b)) == "" {
		t.Fatalf("the operator token in %s: %v", dataDir, err)
	}
	return addr, strings.TrimSpace(string(b))
}
