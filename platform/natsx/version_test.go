package natsx

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{
		"2.9.10": false, "2.9.25": false, "2.10.0": true, "2.15.2": true, "v2.11.1": true,
		"3.0.0": true, "1.4.1": false, "2.10.0-beta.1": true, "": false, "garbage": false,
	} {
		if got := versionAtLeast(v, 2, 10); got != want {
			t.Errorf("versionAtLeast(%q, 2.10) = %v, want %v", v, got, want)
		}
	}
}

// TestOldClusterIsRefused: Debian's nats-server (2.9.10) run as a cluster member is refused
// with a message that says why and what to do; the same program alone is accepted (the
// split-mode tests run on it).
func TestOldClusterIsRefused(t *testing.T) {
	route := freeAddr(t)
	client := startDebianNATS(t, "-n", "old", "--cluster_name", "old", "--cluster", "nats://"+route, "--routes", "nats://"+route)
	_, err := Connect(context.Background(), Config{URL: "nats://" + client}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "upgrade the NATS servers to 2.10") || !strings.Contains(err.Error(), "cluster old") {
		t.Fatalf("connecting to a 2.9 cluster: %v", err)
	}
}

// startDebianNATS runs Debian's nats-server (2.9.x) with JetStream and args, waits until it
// takes clients and returns its client address; the test skips on another version.
func startDebianNATS(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatal("nats-server is not installed: run `make deps` (apt-get install -y nats-server)")
	}
	out, _ := exec.Command(bin, "--version").Output()
	if !strings.Contains(string(out), "v2.9.") {
		t.Skipf("this test needs a nats-server before 2.10 (Debian's 2.9.10); found %s", out)
	}
	client := freeAddr(t)
	host, port, _ := net.SplitHostPort(client)
	cmd := exec.Command(bin, append([]string{"-a", host, "-p", port, "-js", "-sd", t.TempDir()}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := nats.Connect("nats://" + client)
		if err == nil {
			nc.Close()
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
