package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// runCLI runs the sluice binary with exactly env (plus PATH and HOME) and stdin.
func runCLI(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	_, bin := sluicetest.Binaries(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "XDG_CONFIG_HOME=" + os.Getenv("XDG_CONFIG_HOME")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// TestTokensThroughCLI walks through what an operator and a workspace's users do with tokens,
// with the real CLI: workspaces made explicitly (a push to a missing one is an error naming
// it), a scoped token that reads one Data Source and nothing else, `sluice auth` saving it,
// rotation and revocation taking effect, and a token that cannot grant more than it holds.
func TestTokensThroughCLI(t *testing.T) {
	sys := sluicetest.Start(t)
	addr := "SLUICE_ADDR=" + sys.Addr
	operator := []string{addr, "SLUICE_TOKEN=" + sys.Token}
	must := func(env []string, args ...string) string {
		t.Helper()
		out, stderr, code := runCLI(t, env, "", args...)
		if code != 0 {
			t.Fatalf("sluice %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	refused := func(env []string, want string, args ...string) {
		t.Helper()
		out, stderr, code := runCLI(t, env, "", args...)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Fatalf("sluice %v: exit %d, stderr %q; want a refusal saying %q\n%s", args, code, stderr, want, out)
		}
	}

	// No token at all: refused, with what to do.
	refused([]string{addr}, "no token", "workspace", "ls")
	// A push to a workspace that does not exist is an error naming it; nothing is created.
	dir := writeProject(t, map[string]string{
		"datasources/events.datasource": cliEvents, "datasources/totals.datasource": cliTotals, "pipes/totals_mv.pipe": cliMV,
	})
	refused(operator, `workspace "shopp" does not exist`, "push", "--workspace", "shopp", dir)
	if ls := must(operator, "workspace", "ls"); strings.Contains(ls, "shopp") {
		t.Fatalf("a refused push created its workspace:\n%s", ls)
	}
	// The operator creates the workspace; its admin token is the only thing on stdout.
	shop := uniqueWS("shop")
	admin := strings.TrimSpace(must(operator, "workspace", "create", shop))
	if !strings.HasPrefix(admin, "sluice_") || strings.Contains(admin, "\n") {
		t.Fatalf("workspace create printed %q, want the admin token alone", admin)
	}
	if ls := must(operator, "workspace", "ls"); !strings.Contains(ls, shop) || !strings.Contains(ls, "ws_"+shop) {
		t.Fatalf("workspace ls:\n%s", ls)
	}
	// The admin token decides the workspace: no --workspace needed.
	adminEnv := []string{addr, "SLUICE_TOKEN=" + admin}
	if out := must(adminEnv, "push", dir); !strings.Contains(out, "3 change(s) applied") {
		t.Fatalf("push with the admin token:\n%s", out)
	}
	refused(adminEnv, "may not act on workspace other", "datasource", "ls", "--workspace", "other")
	refused(adminEnv, "needs the operator token", "workspace", "ls")
	if _, err := sys.App.Warehouse().Exec(context.Background(), "INSERT INTO "+sys.DatabaseOf(t, shop)+".events VALUES (now(), 'buy', 3), (now(), 'buy', 4)"); err != nil {
		t.Fatal(err)
	}

	// A reader of events alone.
	reader := strings.TrimSpace(must(adminEnv, "token", "create", "reader", "--scope", "DATASOURCES:READ:events"))
	readerEnv := []string{addr, "SLUICE_TOKEN=" + reader}
	if out := must(readerEnv, "sql", "SELECT sum(amount) FROM events"); !strings.Contains(out, "7") {
		t.Fatalf("reader's sql:\n%s", out)
	}
	refused(readerEnv, "lacks scope DATASOURCES:READ:totals", "sql", "SELECT * FROM totals")
	refused(readerEnv, "lacks scope", "datasource", "ls")
	refused(readerEnv, "lacks scope", "push", dir)
	ls := must(adminEnv, "token", "ls")
	if !strings.Contains(ls, "reader") || !strings.Contains(ls, "DATASOURCES:READ:events") || strings.Contains(ls, reader) {
		t.Fatalf("token ls (must list names and scopes, never secrets):\n%s", ls)
	}
	var listed struct {
		Tokens []struct {
			Name   string   `json:"name"`
			Scopes []string `json:"scopes"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(must(adminEnv, "token", "ls", "--output", "json")), &listed); err != nil || len(listed.Tokens) != 2 {
		t.Fatalf("token ls json: %v %+v", err, listed)
	}

	// `sluice auth` checks the token and saves it for the address; later calls use it.
	out, stderr, code := runCLI(t, []string{addr}, reader+"\n", "auth")
	if code != 0 || !strings.Contains(out, `"reader" of workspace `+shop) {
		t.Fatalf("auth: exit %d\n%s%s", code, out, stderr)
	}
	path := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "sluice", "credentials.json")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved credentials %s: %v", path, err)
	}
	if out := must([]string{addr}, "sql", "SELECT count() FROM events"); !strings.Contains(out, "2") {
		t.Fatalf("sql with the saved token:\n%s", out)
	}
	refused([]string{addr}, "invalid token", "auth", "--token", "sluice_0123456789abcdef_"+strings.Repeat("x", 43))
	must([]string{addr}, "auth", "--forget")
	refused([]string{addr}, "no token", "sql", "SELECT 1")

	// Rotation: the old secret stops working, the new one works at once.
	rotated := strings.TrimSpace(must(adminEnv, "token", "rotate", "reader"))
	if rotated == reader || !strings.HasPrefix(rotated, "sluice_") {
		t.Fatalf("rotate printed %q", rotated)
	}
	must([]string{addr, "SLUICE_TOKEN=" + rotated}, "sql", "SELECT count() FROM events")
	sluicetest.Eventually(t, 10*time.Second, "the old secret to be refused", func() bool {
		_, _, code := runCLI(t, readerEnv, "", "sql", "SELECT count() FROM events")
		return code != 0
	})
	// Revocation.
	must(adminEnv, "token", "rm", "reader")
	sluicetest.Eventually(t, 10*time.Second, "the deleted token to be refused", func() bool {
		_, _, code := runCLI(t, []string{addr, "SLUICE_TOKEN=" + rotated}, "", "sql", "SELECT count() FROM events")
		return code != 0
	})

	// A token manager grants only what it holds: TOKENS alone cannot mint an admin.
	manager := strings.TrimSpace(must(adminEnv, "token", "create", "manager", "--scope", "TOKENS", "--scope", "JOBS:READ"))
	managerEnv := []string{addr, "SLUICE_TOKEN=" + manager}
	refused(managerEnv, "lacks scope ADMIN", "token", "create", "escalated", "--scope", "ADMIN")
	refused(managerEnv, "lacks scope ADMIN", "token", "rotate", "admin")
	must(managerEnv, "token", "create", "jobs", "--scope", "JOBS:READ")
	refused(adminEnv, "cannot be deleted", "token", "rm", "admin")
	refused(adminEnv, "instance scope", "token", "create", "prom", "--scope", "METRICS:READ")
	refused(adminEnv, "needs the name of a Data Source", "token", "create", "vague", "--scope", "DATASOURCES:READ")

	// Removing the workspace revokes its tokens.
	must(operator, "workspace", "rm", shop, "--force")
	sluicetest.Eventually(t, 10*time.Second, "the removed workspace's admin token to be refused", func() bool {
		_, _, code := runCLI(t, adminEnv, "", "token", "ls")
		return code != 0
	})
}

// TestOperatorTokenBroughtFromAFile: an installation may bring its own operator token (a
// Secret): a token already in the operator token file when the store has none becomes the
// operator token; a file holding something else stops the start, naming the file.
func TestOperatorTokenBroughtFromAFile(t *testing.T) {
	const brought = "sluice_00112233445566ff_" + "bRoUgHt-by-the-installation-0123456789abcdEF"
	file := filepath.Join(t.TempDir(), "operator-token")
	if err := os.WriteFile(file, []byte(brought+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs("-auth.operator-token-file", file))
	if sys.Token != brought {
		t.Fatalf("the system's operator token is %q, want the file's", sys.Token)
	}
	if _, err := sys.Catalog.ListWorkspaces(context.Background(), &catalogv1.ListWorkspacesRequest{}); err != nil {
		t.Fatalf("the brought operator token: %v", err)
	}

	sluiced, _ := sluicetest.Binaries(t)
	bad := filepath.Join(t.TempDir(), "operator-token")
	if err := os.WriteFile(bad, []byte("not a token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := sluicetest.StartProcess(t, "sluiced", sluiced, append([]string{"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-http-addr", "",
		"-auth.operator-token-file", bad}, sluicetest.EmbeddedLibArgs()...)...)
	if code := p.Wait(t, 60*time.Second); code == 0 || !strings.Contains(p.Output(), bad) || !strings.Contains(p.Output(), "not a Sluice token") {
		t.Fatalf("start with a file that holds no token: exit %d\n%s", code, p.Output())
	}
}
