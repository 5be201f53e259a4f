package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
)

type opsLogJSON struct {
	Events []struct {
		ID             string `json:"id"`
		EventType      string `json:"event_type"`
		DatasourceName string `json:"datasource_name"`
		Result         string `json:"result"`
		WrittenRows    uint64 `json:"written_rows"`
	} `json:"events"`
}

// TestOpsLogThroughCLI publishes events to a running system's stream and reads them with
// `sluice ops-log`, filtered, and follows new ones with --follow.
func TestOpsLogThroughCLI(t *testing.T) {
	_, cli := sluicetest.Binaries(t)
	sys := sluicetest.Start(t)
	nc, err := natsx.Connect(context.Background(), natsx.Config{URL: sys.App.NATSURL()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub := opsevents.NewPublisher(nc, nil)
	ctx := context.Background()
	publish := func(ws, typ, ds, result string, rows uint64) *opslogv1.OpsEvent {
		ev := &opslogv1.OpsEvent{Workspace: ws, EventType: opsevents.EventTypeOf(typ), DatasourceName: ds, Result: opsevents.ResultOf(result), WrittenRows: rows, Rows: rows,
			Timestamp: timestamppb.Now()}
		if err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	publish("acme", "copy", "sales", "ok", 10)
	publish("acme", "copy", "sales", "error", 0)
	publish("acme", "populateview", "sales", "ok", 5)
	publish("acme", "copy", "orders", "ok", 7)
	publish("other", "copy", "sales", "ok", 99)

	run := func(args ...string) opsLogJSON {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"ops-log", "--addr", sys.Addr, "--workspace", "acme", "--output", "json"}, args...)...)
		cmd.Env = sys.CLIEnv()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sluice ops-log %v: %v\n%s", args, err, stderr.String())
		}
		var got opsLogJSON
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return got
	}
	sluicetest.Eventually(t, 30*time.Second, "four acme events", func() bool { return len(run().Events) == 4 })
	got := run("--datasource", "sales", "--event-type", "copy", "--result", "ok", "--since", "1h")
	if len(got.Events) != 1 || got.Events[0].WrittenRows != 10 {
		t.Fatalf("filtered events = %+v, want the one ok copy into sales", got.Events)
	}
	if got := run("--limit", "2"); len(got.Events) != 2 {
		t.Fatalf("--limit 2: %d events", len(got.Events))
	}
	textCmd := exec.Command(cli, "ops-log", "--addr", sys.Addr, "--workspace", "acme", "--datasource", "orders")
	textCmd.Env = sys.CLIEnv()
	text, err := textCmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(text), "TIMESTAMP") || !strings.Contains(string(text), "orders") || strings.Count(string(text), "\n") != 2 {
		t.Fatalf("text output (%v):\n%s", err, text)
	}

	// --follow prints the backlog of the last hour, then new events as they are written.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(fctx, cli, "ops-log", "--addr", sys.Addr, "--workspace", "acme", "--output", "json",
		"--follow", "--since", "1h", "--event-type", "copy")
	cmd.Env = sys.CLIEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() map[string]any {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("sluice ops-log --follow ended")
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return m
		case <-time.After(30 * time.Second):
			t.Fatal("no line from sluice ops-log --follow within 30s")
		}
		return nil
	}
	for range 3 { // the three acme copies
		if m := next(); m["event_type"] != "copy" {
			t.Fatalf("backlog line %v", m)
		}
	}
	publish("acme", "populateview", "sales", "ok", 1) // filtered out
	ev := publish("acme", "copy", "late", "ok", 3)
	if m := next(); m["id"] != ev.GetId() || m["datasource_name"] != "late" {
		t.Fatalf("followed %v, want event %s", m, ev.GetId())
	}
}

// TestOpsLogSurvivesKill9 kills an all-in-one sluiced (its embedded NATS and chDB with it)
// with SIGKILL while the ops log is writing a stream of small batches, restarts it on the same
// data directory, and checks that every event published before the kill is in the table
// exactly once.
func TestOpsLogSurvivesKill9(t *testing.T) {
	sluiced, _ := sluicetest.Binaries(t)
	dir := t.TempDir()
	addr, natsAddr := sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
	args := append([]string{"-data-dir", dir, "-grpc-addr", addr, "-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0", "-nats-listen", natsAddr,
		"-opslog.batch-size", "100", "-opslog.flush-interval", "10ms", "-opslog.ack-wait", "1s"}, sluicetest.EmbeddedLibArgs()...)
	p := sluicetest.StartProcess(t, "sluiced", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)

	// A publisher publishes until the kill; ids holds the events JetStream acknowledged.
	nc, err := natsx.Connect(context.Background(), natsx.Config{URL: sluicetest.EmbeddedNATSURL(t, dir)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ids := map[string]bool{}
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		pub := opsevents.NewPublisher(nc, nil)
		for i := 0; i < 8000; i++ {
			ev := &opslogv1.OpsEvent{Workspace: "acme", EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "sales", Result: opslogv1.Result_RESULT_OK, WrittenRows: uint64(i)}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := pub.Publish(ctx, ev)
			cancel()
			if err != nil {
				return
			}
			mu.Lock()
			ids[ev.GetId()] = true
			mu.Unlock()
		}
	}()
	clients := sluicetest.NewClients(t, addr, sluicetest.ReadOperatorToken(t, filepath.Join(dir, "token"), p))
	count := func() (int, map[string]int) {
		resp, err := clients.OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{
			Filter: &opslogv1.EventFilter{Workspace: "acme"}, PageSize: 10000})
		if err != nil {
			return -1, nil
		}
		seen := map[string]int{}
		for _, ev := range resp.GetEvents() {
			seen[ev.GetId()]++
		}
		return len(resp.GetEvents()), seen
	}
	// Kill it in the middle of the stream.
	sluicetest.Eventually(t, 60*time.Second, "some events written", func() bool {
		c, _ := count()
		return c > 500
	})
	p.Kill()
	<-pubDone
	nc.Close()
	n := len(ids)
	if n >= 8000 {
		t.Fatal("the publisher finished before the kill; the test proves nothing")
	}
	t.Logf("killed with %d events published", n)

	p = sluicetest.StartProcess(t, "sluiced-restarted", sluiced, args...)
	sluicetest.WaitServing(t, addr, "", 60*time.Second, p)
	sluicetest.Eventually(t, 60*time.Second, "every event written", func() bool {
		c, _ := count()
		return c >= n
	})
	// Let redeliveries of anything unacknowledged at the kill run their course (ack wait 1s):
	// the consumer must have nothing pending, and the table must still hold each event once.
	nc, err = natsx.Connect(context.Background(), natsx.Config{URL: sluicetest.EmbeddedNATSURL(t, dir)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sluicetest.Eventually(t, 60*time.Second, "the ops log consumer drained", func() bool {
		c, err := nc.JS.Consumer(context.Background(), opsevents.StreamName, "opslog-writer")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	c, seen := count()
	// The publish cut by the kill may have been stored without its acknowledgement: one more
	// event is allowed, never a duplicate.
	if len(seen) != c || c < n || c > n+1 {
		t.Fatalf("table has %d rows, %d distinct ids; want %d (or one more)", c, len(seen), n)
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Fatalf("event %s written %d times", id, seen[id])
		}
	}
}
