package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// health reads the gRPC health of service ("" for the process) at addr; "" when it cannot.
func health(addr, service string) string {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return ""
	}
	defer func() { _ = cc.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return ""
	}
	return resp.GetStatus().String()
}

// readyCode is the HTTP status of /ready at addr (0 when it does not answer).
func readyCode(addr string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/ready")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestServicesStartWithoutTheirDependencies starts the ops log and the executor as processes
// while NATS and ClickHouse are both down. They start and say what they wait for (health
// NOT_SERVING, /ready 503, calls refused with the reason, a log line naming the dependency),
// become ready when NATS and then ClickHouse come back, with no restart by hand, and the ops
// log then writes events. When ClickHouse goes away again, they report not serving, and
// serving when it is back.
func TestServicesStartWithoutTheirDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	sluiced, _ := sluicetest.Binaries(t)
	srv := warehousetest.NewPrivateServer(t)
	ns := sluicetest.StartNATS(t, false)
	srv.Stop(true)
	ns.Kill()

	tokenFile := filepath.Join(t.TempDir(), "service-token")
	token := "service-token-of-the-test-0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	type proc struct {
		p          *sluicetest.Process
		grpc, http string
		service    string
	}
	var procs []proc
	for _, target := range []string{"opslog", "executor"} {
		g, h := sluicetest.FreeAddr(t), sluicetest.FreeAddr(t)
		p := sluicetest.StartProcess(t, "sluiced-"+target, sluiced, append([]string{
			"-target", target, "-grpc-addr", g, "-http-addr", h, "-data-dir", t.TempDir(),
			"-nats-url", ns.URL, "-clickhouse-addr", srv.Addr(), "-catalog-addr", "127.0.0.1:1",
			"-auth.service-token-file", tokenFile,
		}, fastJobs...)...)
		procs = append(procs, proc{p, g, h, map[string]string{"opslog": "sluice.opslog.v1.OpsLogService", "executor": "sluice.executor.v1.ExecutorService"}[target]})
	}
	for _, pr := range procs {
		sluicetest.Eventually(t, 60*time.Second, pr.p.Name+" to answer health checks", func() bool {
			if pr.p.Exited() {
				t.Fatalf("%s exited without its dependencies:\n%s", pr.p.Name, pr.p.Output())
			}
			return health(pr.grpc, "") == "NOT_SERVING"
		})
		if got := health(pr.grpc, pr.service); got != "NOT_SERVING" {
			t.Errorf("%s: service health %s, want NOT_SERVING", pr.p.Name, got)
		}
		if code := readyCode(pr.http); code != http.StatusServiceUnavailable {
			t.Errorf("%s: /ready = %d, want 503", pr.p.Name, code)
		}
		sluicetest.Eventually(t, 30*time.Second, pr.p.Name+" to log that it waits for NATS", func() bool {
			return strings.Contains(pr.p.Output(), "waits for its dependencies") && strings.Contains(pr.p.Output(), "NATS at "+ns.URL)
		})
	}
	_, err := sluicetest.NewClients(t, procs[0].grpc, token).OpsLog.QueryEvents(context.Background(), &opslogv1.QueryEventsRequest{Filter: &opslogv1.EventFilter{Workspace: "w"}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "waiting for") {
		t.Errorf("a call while the ops log waits: %v, want Unavailable saying what it waits for", err)
	}

	ns.Start(t)
	for _, pr := range procs {
		sluicetest.Eventually(t, 60*time.Second, pr.p.Name+" to wait for ClickHouse, naming it", func() bool {
			return strings.Contains(pr.p.Output(), "ClickHouse at "+srv.Addr())
		})
		if got := health(pr.grpc, pr.service); got != "NOT_SERVING" {
			t.Errorf("%s with NATS back but no ClickHouse: health %s, want NOT_SERVING", pr.p.Name, got)
		}
	}
	srv.Start(t)
	for _, pr := range procs {
		sluicetest.Eventually(t, 60*time.Second, pr.p.Name+" to become ready", func() bool {
			if pr.p.Exited() {
				t.Fatalf("%s exited:\n%s", pr.p.Name, pr.p.Output())
			}
			return health(pr.grpc, "") == "SERVING" && health(pr.grpc, pr.service) == "SERVING" && readyCode(pr.http) == http.StatusOK
		})
	}

	// The ops log works: an event published now is written.
	nc, err := natsx.Connect(context.Background(), natsx.Config{URL: ns.URL}, testLog("publisher"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ev := &opslogv1.OpsEvent{Workspace: "deps", EventType: opslogv1.EventType_EVENT_TYPE_COPY, DatasourceName: "t", Result: opslogv1.Result_RESULT_OK, WrittenRows: 7}
	if err := opsevents.NewPublisher(nc, nil).Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	wh, err := warehouse.OpenNative(context.Background(), srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wh.Close() }()
	sluicetest.Eventually(t, 60*time.Second, "the event written", func() bool {
		res, err := wh.Query(context.Background(), "SELECT count(), sum(written_rows) FROM sluice.datasources_ops_log WHERE event_id = "+warehouse.QuoteString(ev.GetId()))
		return err == nil && fmt.Sprint(res.Rows[0]) == "[1 7]"
	})

	// ClickHouse goes away again: not serving; back: serving.
	srv.Stop(true)
	for _, pr := range procs {
		sluicetest.Eventually(t, 60*time.Second, pr.p.Name+" to report ClickHouse gone", func() bool {
			return health(pr.grpc, pr.service) == "NOT_SERVING" && readyCode(pr.http) == http.StatusServiceUnavailable
		})
	}
	srv.Start(t)
	for _, pr := range procs {
		sluicetest.Eventually(t, 60*time.Second, pr.p.Name+" to serve again", func() bool {
			return health(pr.grpc, pr.service) == "SERVING" && readyCode(pr.http) == http.StatusOK && !pr.p.Exited()
		})
	}
}
