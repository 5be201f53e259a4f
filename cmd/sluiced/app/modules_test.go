package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/lifecycle"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	warehousetest.Shutdown()
	os.Exit(code)
}

// stopsBefore are the shutdown orders the module table promises (modules.go): the first of
// each pair stops before the second whenever a process runs both.
var stopsBefore = [][2]string{
	// In-flight gRPC calls drain while what they use is still open.
	{"server", "auth"}, {"server", "nats"}, {"server", "clickhouse"},
	{"auth", "nats"},
	// A message handled while NATS drains may write to ClickHouse: chDB closes last.
	{"nats", "clickhouse"},
	// Peer connections close once nothing calls through them, and before the server.
	{"peers", "server"},
	{"scheduler", "peers"}, {"executor", "peers"}, {"ingest", "peers"},
	// The services that call the catalog finish (an executor drains its steps) while it runs.
	{"scheduler", "catalog"}, {"executor", "catalog"}, {"ingest", "catalog"},
}

// services stop before the server, NATS and the ClickHouse connection.
var services = []string{"catalog", "scheduler", "executor", "opslog", "ingest"}

// checkStopOrder fails for every promised order that stops does not keep.
func checkStopOrder(t *testing.T, what string, stops []string) {
	t.Helper()
	pairs := slices.Clone(stopsBefore)
	for _, s := range services {
		pairs = append(pairs, [2]string{s, "server"}, [2]string{s, "nats"})
		if s != "scheduler" {
			pairs = append(pairs, [2]string{s, "clickhouse"})
		}
	}
	for _, p := range pairs {
		i, j := slices.Index(stops, p[0]), slices.Index(stops, p[1])
		if i >= 0 && j >= 0 && i > j {
			t.Errorf("%s: %s stops after %s (stop order %v)", what, p[0], p[1], stops)
		}
	}
	if i := slices.Index(stops, "clickhouse"); i >= 0 && i != len(stops)-1 {
		t.Errorf("%s: clickhouse is not the last to stop: %v", what, stops)
	}
}

// Every process the -target flag can make (one service, several, all) stops in the order
// modules.go promises, from the module table itself. The manager breaks ties by name; the
// table is checked also with every name spelt backwards (a↔z, b↔y, ...), which reverses that
// tie-break, so that no promised order rests on how modules happen to be named.
func TestModuleStopOrderForEveryTarget(t *testing.T) {
	targets := [][]string{{"all"}, {"executor", "ingest"}, {"catalog", "opslog"}}
	for _, s := range Targets {
		if s != "all" {
			targets = append(targets, []string{s})
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, target := range targets {
		for _, spell := range []func(string) string{func(s string) string { return s }, backwards} {
			table := (&App{cfg: Config{Target: target}}).modules()
			for i := range table {
				table[i].Name = spell(table[i].Name)
				table[i].Deps = mapStrings(table[i].Deps, spell)
				table[i].After = mapStrings(table[i].After, spell)
			}
			mgr, err := lifecycle.New(table, mapStrings(target, spell), quiet)
			if err != nil {
				t.Fatalf("target %v: %v", target, err)
			}
			stops := mapStrings(mgr.Order(), spell)
			slices.Reverse(stops)
			checkStopOrder(t, "target "+strings.Join(target, ","), stops)
			if slices.Equal(target, []string{"scheduler"}) && slices.Contains(stops, "clickhouse") {
				t.Errorf("a scheduler-only process opens ClickHouse: %v", stops)
			}
		}
	}
}

// backwards spells a module name with the alphabet reversed; applied twice it gives the name.
func backwards(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return 'z' - (r - 'a')
		}
		return r
	}, s)
}

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// syncLog is a log that a process writes while the test reads it.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// An all-in-one process on embedded NATS and chDB stops its real modules in the promised
// order: the log records each module as its Stop returns.
func TestAllInOneStopsModulesInDependencyOrder(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig([]string{
		"-data-dir", dir,
		"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0",
		"-log-level", "debug", "-log-format", "json", "-shutdown-timeout", "10s",
		"-clickhouse-embedded-lib", warehousetest.LibPath(),
		"-clickhouse-embedded-path", warehousetest.EmbeddedDataDir(t),
		"-clickhouse-database", fmt.Sprintf("sluice_stop_order_%d", time.Now().UnixNano()),
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := New(ctx, cfg, logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, logs.String())
	}

	var stops []string
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg    string `json:"msg"`
			Module string `json:"module"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "module stopped" {
			stops = append(stops, rec.Module)
		}
	}
	want := []string{"auth", "catalog", "clickhouse", "executor", "ingest", "nats", "opslog", "peers", "scheduler", "server"}
	if got := slices.Sorted(slices.Values(stops)); !slices.Equal(got, want) {
		t.Fatalf("modules stopped: %v, want each of %v once", stops, want)
	}
	checkStopOrder(t, "all-in-one", stops)
}
