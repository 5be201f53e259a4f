package telemetry

import (
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsAndReady(t *testing.T) {
	cfg := Config{LogLevel: "info", LogFormat: "json"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tel, err := New(context.Background(), cfg, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := tel.ServeHTTP("127.0.0.1:0", HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	if code, body := get(t, "http://"+addr+"/live"); code != http.StatusOK || body != "live\n" {
		t.Fatalf("/live = %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/ready"); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready before start = %d", code)
	}
	tel.SetReady(true)
	if code, _ := get(t, "http://"+addr+"/ready"); code != http.StatusOK {
		t.Fatalf("/ready = %d", code)
	}
	if code, body := get(t, "http://"+addr+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d", code)
	}
	if err := (Config{LogLevel: "loud", LogFormat: "text"}).Validate(); err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Fatalf("bad level: %v", err)
	}
}

// TestRegisterKeepsTheFirstCollector: a service registering its collectors a second time in
// one process (a restart) gets the first ones back and keeps counting on them; no registry
// registers nothing.
func TestRegisterKeepsTheFirstCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "h"}))
	first.Inc()
	again := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "h"}))
	again.Inc()
	if again != first {
		t.Fatal("the second registration did not return the first collector")
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 2 {
		t.Fatalf("gathered %v (%v), want one counter at 2", mfs, err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "h"})
	if Register(nil, c) != c {
		t.Error("a nil registry changed the collector")
	}
}
