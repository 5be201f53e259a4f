package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// cliTarget is what the CLI is pointed at: its environment names the address and the token
// (sluicetest.Clients, or a Split).
type cliTarget interface{ CLIEnv() []string }

// sluiceCLI runs the sluice binary against target in workspace ws and returns stdout, stderr
// and the exit code.
func sluiceCLI(t testing.TB, target cliTarget, args ...string) (string, string, int) {
	t.Helper()
	_, cli := sluicetest.Binaries(t)
	cmd := exec.Command(cli, append(args, "--workspace", "ws")...)
	cmd.Env = target.CLIEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func TestJobCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	sys := sluicetest.Start(t, sluicetest.WithArgs(fastJobs...))

	// --wait follows the job to its end, one line per change when not on a terminal.
	out, stderr, code := sluiceCLI(t, sys, "job", "noop", "--steps", "3", "--sleep", "100ms", "--wait")
	if code != 0 || !strings.Contains(out, "done: 3/3 steps, 3 rows written") {
		t.Fatalf("job noop --wait: code %d\n%s%s", code, out, stderr)
	}
	// Without --wait: the id, as text and as JSON.
	out, _, code = sluiceCLI(t, sys, "job", "noop", "--sleep", "30s", "--output", "json")
	var started struct{ ID string }
	if err := json.Unmarshal([]byte(out), &started); code != 0 || err != nil || started.ID == "" {
		t.Fatalf("job noop --output json: code %d, %q (%v)", code, out, err)
	}
	sluicetest.Eventually(t, 20*time.Second, "the job to work", func() bool {
		out, _, _ := sluiceCLI(t, sys, "job", "show", started.ID, "--output", "json")
		var j struct{ Status string }
		return json.Unmarshal([]byte(out), &j) == nil && j.Status == "JOB_STATUS_WORKING"
	})
	out, _, code = sluiceCLI(t, sys, "job", "ls", "--status", "working", "--kind", "noop")
	if code != 0 || !strings.Contains(out, started.ID) || strings.Count(out, "\n") != 2 {
		t.Errorf("job ls --status working: code %d\n%s", code, out)
	}
	out, _, code = sluiceCLI(t, sys, "job", "cancel", started.ID)
	if code != 0 || !strings.Contains(out, "job "+started.ID+": cancel") {
		t.Errorf("job cancel: code %d %q", code, out)
	}
	sluicetest.Eventually(t, 20*time.Second, "the job to be cancelled", func() bool {
		out, _, _ := sluiceCLI(t, sys, "job", "show", started.ID)
		return strings.Contains(out, "status:") && strings.Contains(out, "cancelled")
	})
	_, stderr, code = sluiceCLI(t, sys, "job", "cancel", started.ID)
	if code != 1 || !strings.Contains(stderr, "only waiting and working jobs can be cancelled") {
		t.Errorf("second cancel: code %d %q", code, stderr)
	}
	// A job that fails makes --wait exit 1 with the job's error.
	_, stderr, code = sluiceCLI(t, sys, "job", "noop", "--fail", "permanent", "--wait")
	if code != 1 || !strings.Contains(stderr, "fail=permanent") {
		t.Errorf("failing job --wait: code %d %q", code, stderr)
	}
	out, _, code = sluiceCLI(t, sys, "job", "ls", "--output", "json")
	var listed struct {
		Jobs []struct{ ID, Status string }
	}
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed.Jobs) != 3 {
		t.Errorf("job ls --output json: code %d, %v, %q", code, err, out)
	}
	if _, stderr, code = sluiceCLI(t, sys, "job", "ls", "--status", "sleeping"); code != 2 || !strings.Contains(stderr, "sleeping") {
		t.Errorf("bad --status: code %d %q", code, stderr)
	}
	if _, stderr, code = sluiceCLI(t, sys, "job", "show", "nosuchjob"); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("show unknown: code %d %q", code, stderr)
	}
}

// TestJobSplitMode runs jobs with each service in its own process against a nats-server: the
// CLI finds the scheduler in the address list, the scheduler queues, the executor process runs.
func TestJobSplitMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	split := sluicetest.StartSplit(t, fastJobs...)
	out, stderr, code := sluiceCLI(t, split, "job", "noop", "--steps", "4", "--wait")
	if code != 0 || !strings.Contains(out, "done: 4/4 steps, 4 rows written") {
		t.Fatalf("job noop --wait in split mode: code %d\n%s%s", code, out, stderr)
	}
	out, _, code = sluiceCLI(t, split, "job", "noop", "--limited", "--sleep", "100ms", "--wait")
	if code != 0 || !strings.Contains(out, "done: 1/1 steps") {
		t.Fatalf("limited job in split mode: code %d\n%s", code, out)
	}
}
