package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// services are the services `sluice status` reports, in display order.
var services = []struct{ name, grpcName string }{
	{"catalog", catalogv1.CatalogService_ServiceDesc.ServiceName},
	{"scheduler", schedulerv1.SchedulerService_ServiceDesc.ServiceName},
	{"executor", executorv1.ExecutorService_ServiceDesc.ServiceName},
	{"opslog", opslogv1.OpsLogService_ServiceDesc.ServiceName},
	{"ingest", ingestv1.IngestService_ServiceDesc.ServiceName},
}

type serviceStatus struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	Status  string `json:"status"`
	Addr    string `json:"addr,omitempty"`
	// TLS tells whether the connection to the service is encrypted.
	TLS bool `json:"tls"`
}

func statusCommand() *command {
	return &command{
		name:  "status",
		short: "show every service's health; exits 1 unless all are serving",
		run: func(ctx context.Context, env *Env, _ []string) error {
			rows := make([]serviceStatus, len(services))
			for i, s := range services {
				rows[i] = serviceStatus{Name: s.name, Service: s.grpcName, Status: "UNKNOWN"}
			}
			var errs []string
			// In split mode each address serves some of the services: a service is serving if any
			// address says so.
			for _, addr := range env.Globals.addrs() {
				tlsOn := env.settingsFor(addr).tls
				cc, err := env.dial(addr)
				if err != nil {
					return err
				}
				hc := healthpb.NewHealthClient(cc)
				for i, s := range services {
					if rows[i].Status == "SERVING" {
						continue
					}
					resp, err := call(ctx, env, hc.Check, &healthpb.HealthCheckRequest{Service: s.grpcName})
					switch {
					case err == nil:
						rows[i].Status, rows[i].Addr, rows[i].TLS = resp.GetStatus().String(), addr, tlsOn
					case status.Code(err) == codes.NotFound:
						// This address does not run the service.
					default:
						msg := status.Convert(err).Message()
						errs = append(errs, fmt.Sprintf("%s: %v%s", addr, msg, tlsHint(msg)))
						rows[i].Status = "UNREACHABLE"
					}
				}
				_ = cc.Close()
			}
			allServing, allTLS := true, true
			for _, r := range rows {
				if r.Status != "SERVING" {
					allServing = false
				}
				if !r.TLS {
					allTLS = false
				}
			}
			if env.Globals.Output == "json" {
				if err := env.printJSON(map[string]any{"serving": allServing, "tls": allTLS, "services": rows}); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERVICE\tSTATUS\tADDRESS\tTLS")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Status, r.Addr, onOff(r.TLS))
				}
				_ = tw.Flush()
				switch {
				case allTLS:
					fmt.Fprintln(env.Stdout, "TLS: on")
				case allLoopback(env.Globals.addrs()):
					fmt.Fprintln(env.Stdout, "TLS: off (loopback only)")
				default:
					fmt.Fprintln(env.Stdout, "TLS: off: tokens and data cross the network unencrypted (servers: -tls-cert/-tls-key; here: --tls or --tls-ca)")
				}
			}
			if !allServing {
				msg := "not every service is serving"
				if len(errs) > 0 {
					msg += ": " + strings.Join(dedupe(errs), "; ")
				}
				return &ExitError{Code: 1, Err: fmt.Errorf("%s", msg)}
			}
			return nil
		},
	}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func allLoopback(addrs []string) bool {
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(normalizeAddr(a))
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
